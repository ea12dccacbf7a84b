//! Runs the built `blkio` binary on scratch files and checks its output,
//! exit status and the data it writes.

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

const BIN: &str = env!("CARGO_BIN_EXE_blkio");

/// A scratch directory removed on drop ($BLKIO_TEST_DIR or the temp dir).
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let base = std::env::var_os("BLKIO_TEST_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir);
        let dir = base.join(format!(
            "blkio-cli-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    fn path(&self, name: &str) -> String {
        self.0.join(name).to_str().unwrap().to_owned()
    }

    /// A sparse file of `size` bytes.
    fn sparse(&self, name: &str, size: u64) -> String {
        let p = self.path(name);
        File::create(&p).unwrap().set_len(size).unwrap();
        p
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn blkio(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Deterministic non-zero data for `len` bytes at `offset`.
fn pattern(offset: u64, len: usize) -> Vec<u8> {
    (0..len as u64)
        .map(|i| {
            let x = (offset + i).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            (x >> 56) as u8 | 1
        })
        .collect()
}

#[test]
fn info_prints_every_property() {
    let s = Scratch::new();
    let img = s.sparse("a.img", 1 << 20);
    let o = blkio(&["info", "io_uring", &format!("path={img}")]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 33, "header + 32 properties:\n{out}");
    let fields = |name: &str| -> Vec<String> {
        let line = lines
            .iter()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("no {name} line in\n{out}"));
        line.split_whitespace().map(String::from).collect()
    };
    assert_eq!(fields("capacity"), ["capacity", "uint64", "r", "1048576"]);
    assert_eq!(fields("path"), ["path", "str", "rw:created", img.as_str()]);
    assert_eq!(
        fields("num-queues"),
        ["num-queues", "int", "rw:connected", "1"]
    );
    assert_eq!(fields("driver"), ["driver", "str", "r", "io_uring"]);
}

#[test]
fn info_sets_properties_in_the_right_state() {
    let s = Scratch::new();
    let img = s.sparse("a.img", 1 << 20);
    // read-only before connect, num-entries and num-queues after.
    let o = blkio(&[
        "info",
        "io_uring",
        "num-entries=8",
        &format!("path={img}"),
        "read-only=true",
        "num-queues=3",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    for want in [
        ("num-entries", "8"),
        ("num-queues", "3"),
        ("read-only", "true"),
    ] {
        assert!(
            out.lines().any(|l| {
                let f: Vec<_> = l.split_whitespace().collect();
                f.first() == Some(&want.0) && f.last() == Some(&want.1)
            }),
            "{want:?} in\n{out}"
        );
    }
}

/// The one JSON document `--json` prints.
fn json(o: &Output) -> serde_json::Value {
    let out = stdout(o);
    assert_eq!(out.lines().count(), 1, "one line:\n{out}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

#[test]
fn info_json() {
    let s = Scratch::new();
    let img = s.sparse("a.img", 4096);
    let o = blkio(&["info", "io_uring", &format!("path={img}"), "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v = json(&o);
    assert_eq!(v["driver"], "io_uring");
    let props = v["properties"].as_array().expect("a properties array");
    assert_eq!(props.len(), 32);
    let prop = |name: &str| {
        props
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("no {name} in {v}"))
    };
    assert_eq!(
        *prop("capacity"),
        serde_json::json!({"name": "capacity", "type": "uint64", "access": "r", "value": 4096})
    );
    assert_eq!(
        *prop("read-only"),
        serde_json::json!({"name": "read-only", "type": "bool", "access": "rw:created", "value": false})
    );
    assert_eq!(prop("path")["value"], img.as_str());
}

#[test]
fn usage_errors_exit_2_with_the_library_message() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["info", "nope"],
            "blkio: driver \"nope\": Unknown driver name\n",
        ),
        (
            &["info", "io_uring", "bogus=1"],
            "blkio: property bogus=1: Unknown property name\n",
        ),
        (
            &["info", "io_uring", "capacity=1"],
            "blkio: property capacity=1: Property is read-only\n",
        ),
        (
            &["info", "io_uring", "direct=yes"],
            "blkio: property direct=yes: Value must be \"true\" or \"false\"\n",
        ),
        (&["info", "io_uring", "path"], ""),
        (&["info"], ""),
        (&[], ""),
        (
            &["frobnicate"],
            "blkio: unknown command \"frobnicate\" (see 'blkio --help')\n",
        ),
        (&["bench", "io_uring", "--rw", "sideways"], ""),
        (&["bench", "io_uring", "--bs", "4q"], ""),
        (&["bench", "io_uring", "--iodepth", "0"], ""),
        (
            &["bench", "io_uring", "--nope"],
            "blkio: --nope: unknown option\n",
        ),
        (
            &["copy", "only-one"],
            "blkio: copy: missing DST (see 'blkio copy --help')\n",
        ),
        (
            &["copy", "a", "b", "c"],
            "blkio: unexpected argument \"c\" (see 'blkio copy --help')\n",
        ),
        (&["copy", "a", "b", "--bs", "0"], ""),
        (&["completions", "tcsh"], ""),
    ];
    for (args, msg) in cases {
        let o = blkio(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        if msg.is_empty() {
            assert!(
                stderr(&o).starts_with("blkio: "),
                "{args:?}: {}",
                stderr(&o)
            );
        } else {
            assert_eq!(stderr(&o), *msg, "{args:?}");
        }
        assert!(o.stdout.is_empty(), "{args:?}");
    }
}

#[test]
fn bad_value_of_a_connected_state_property_exits_2() {
    let s = Scratch::new();
    let img = s.sparse("a.img", 4096);
    for (prop, msg) in [
        ("num-queues=x", "Value must be a signed 32-bit integer"),
        (
            "num-queues=-1",
            "num_queues must be equal to or greater than 0",
        ),
    ] {
        let o = blkio(&["info", "io_uring", prop, &format!("path={img}")]);
        assert_eq!(o.status.code(), Some(2));
        assert_eq!(stderr(&o), format!("blkio: property {prop}: {msg}\n"));
    }
}

#[test]
fn device_errors_exit_1() {
    let s = Scratch::new();
    let missing = s.path("missing.img");
    let o = blkio(&["info", "io_uring", &format!("path={missing}")]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o),
        format!(
            "blkio: connecting io_uring path={missing}: No such file or directory (os error 2)\n"
        )
    );
    let o = blkio(&["copy", &format!("io_uring:path={missing}"), &s.path("x")]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("No such file or directory"));
}

#[test]
fn help_and_version() {
    let o = blkio(&["--help"]);
    assert!(o.status.success());
    let out = stdout(&o);
    assert!(out.starts_with("Usage: blkio COMMAND"));
    assert!(out.contains("Drivers: io_uring"));
    for cmd in ["info", "bench", "copy"] {
        let o = blkio(&[cmd, "--help"]);
        assert!(o.status.success(), "{cmd}");
        assert!(
            stdout(&o).starts_with(&format!("Usage: blkio {cmd} ")),
            "{cmd}"
        );
    }
    let o = blkio(&["--version"]);
    assert_eq!(stdout(&o), format!("blkio {}\n", env!("CARGO_PKG_VERSION")));
}

#[test]
fn completions_for_bash_know_the_commands_and_options() {
    let o = blkio(&["completions", "bash"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let script = stdout(&o);
    assert!(script.contains("complete -F _blkio"), "{script}");
    for word in [
        "info",
        "bench",
        "copy",
        "--iodepth",
        "--verify",
        "randwrite",
        "pollq",
    ] {
        assert!(script.contains(word), "{word} in\n{script}");
    }
    // bash itself accepts the script.
    if let Ok(st) = Command::new("bash").args(["-n", "-c", &script]).status() {
        assert!(st.success(), "bash -n rejects the script");
    }
    for shell in ["zsh", "fish"] {
        let o = blkio(&["completions", shell]);
        assert!(o.status.success() && !o.stdout.is_empty(), "{shell}");
    }
}

/// A 16 MiB sparse source with data in three places and an odd-sized tail.
fn sparse_source(s: &Scratch) -> (String, u64, u64) {
    let src = s.sparse("src.img", 16 << 20);
    let f = OpenOptions::new().write(true).open(&src).unwrap();
    let mut data = 0;
    for (off, len) in [
        (0u64, 8192usize),
        (5 << 20, 1 << 20),
        (9 << 20 | 4096, 4096),
    ] {
        f.write_all_at(&pattern(off, len), off).unwrap();
        data += len as u64;
    }
    let tail = (16 << 20) as u64;
    f.write_all_at(b"tail", tail).unwrap();
    f.sync_all().unwrap();
    (src, tail + 4, data)
}

fn assert_copy(src: &str, dst: &str, size: u64, data: u64) {
    assert_eq!(fs::read(src).unwrap(), fs::read(dst).unwrap(), "contents");
    let m = fs::metadata(dst).unwrap();
    assert_eq!(m.len(), size);
    let allocated = m.blocks() * 512;
    // Data plus a few file-system blocks at the edges, nowhere near 16 MiB.
    assert!(
        allocated <= data + 64 * 1024,
        "destination allocates {allocated} bytes for {data} bytes of data"
    );
}

#[test]
fn copy_to_a_new_file_keeps_data_and_holes() {
    let s = Scratch::new();
    let (src, size, data) = sparse_source(&s);
    let dst = s.path("dst.img");
    let o = blkio(&["copy", &src, &dst, "--verify", "--bs", "256k"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.starts_with("copied 16.00 MiB"), "{out}");
    assert!(out.contains("verified: 16.00 MiB identical"), "{out}");
    assert_copy(&src, &dst, size, data);
}

#[test]
fn copy_over_an_existing_file_zeroes_old_data() {
    let s = Scratch::new();
    let (src, size, data) = sparse_source(&s);
    // A larger destination full of old data: it is resized and every old
    // byte outside the source's data becomes a hole again.
    let dst = s.path("dst.img");
    fs::write(&dst, vec![0xAAu8; 20 << 20]).unwrap();
    let o = blkio(&["copy", &src, &dst, "--verify"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_copy(&src, &dst, size, data);
}

#[test]
fn copy_onto_a_growable_driver_spec_destination() {
    let s = Scratch::new();
    let (src, size, data) = sparse_source(&s);
    // An empty file named through the driver syntax is not resized by the
    // tool: it grows through the writes, holes included.
    let dst = s.sparse("dst.img", 0);
    let o = blkio(&[
        "copy",
        &format!("io_uring:path={src}"),
        &format!("io_uring:path={dst},num-entries=16"),
        "--iodepth",
        "3",
        "--bs",
        "64k",
        "--verify",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_copy(&src, &dst, size, data);
}

#[test]
fn bench_runs_and_reports() {
    let s = Scratch::new();
    let img = s.sparse("b.img", 8 << 20);
    let o = blkio(&[
        "bench",
        "io_uring",
        &format!("path={img}"),
        "--runtime",
        "1",
        "--iodepth",
        "4",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let iops: f64 = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("IOPS"))
        .unwrap_or_else(|| panic!("no IOPS line in\n{out}"))
        .trim()
        .parse()
        .unwrap();
    assert!(iops > 0.0, "{out}");
    assert!(out.contains("latency    p50 "), "{out}");
    // Not a terminal: no progress line.
    assert!(o.stderr.is_empty(), "{}", stderr(&o));

    let o = blkio(&[
        "bench",
        "io_uring",
        &format!("path={img}"),
        "--runtime",
        "0.3",
        "--rw",
        "randwrite",
        "--mode",
        "event",
        "--queues",
        "2",
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v = json(&o);
    assert_eq!(v["rw"], "randwrite", "{v}");
    assert_eq!(v["mode"], "event", "{v}");
    assert_eq!(v["queues"], 2, "{v}");
    assert_eq!(v["properties"]["path"], img.as_str(), "{v}");
    assert_eq!(v["properties"]["num-queues"], "2", "{v}");
    assert!(v["ios"].as_u64().unwrap() > 0, "{v}");
    assert!(v["iops"].as_f64().unwrap() > 0.0, "{v}");
    let lat = &v["latency_ns"];
    assert!(
        lat["p50"].as_u64().unwrap() <= lat["p99.9"].as_u64().unwrap(),
        "{v}"
    );
    assert!(
        lat["p99.9"].as_u64().unwrap() <= lat["max"].as_u64().unwrap(),
        "{v}"
    );
    // Writes really went to the file (it was all holes).
    assert!(fs::metadata(&img).unwrap().blocks() > 0);
}
