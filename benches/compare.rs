//! Library vs raw io_uring: the same workloads through (a) libblkio's
//! public C API (the exported `blkio_*`/`blkioq_*` functions, statically
//! linked as with libblkio.a) and (b) a hand-written loop on the
//! `io-uring` crate doing exactly the same work: same file and open flags
//! (`O_RDWR | O_CLOEXEC`), same ring size (128 entries), the file
//! registered and used as fixed file 0, a registered eventfd, the same
//! buffers (one region from `blkio_alloc_mem_region`) and the same offsets.
//! Rounds alternate a/b/a/b and the ratio a/b is printed.
//!
//! Run: `benches/run.sh` (see docs/benchmarks.md for options).

#[allow(dead_code)]
#[path = "../cli/src/api.rs"]
mod api;

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use io_uring::{opcode, types, IoUring};

const RING_ENTRIES: u32 = 128; // the io_uring driver's num-entries default
const FILE_SIZE: u64 = 256 << 20;
const VHOST_USER: &str = "virtio-blk-vhost-user";
/// The CPU the vhost-user section runs qemu-storage-daemon and (under
/// callgrind) the library on, so that the two take turns as they would
/// on one core and the counts do not depend on the other CPU's load.
const VHOST_USER_CPU: usize = 0;

// ---------------------------------------------------------------------------
// Workloads

#[derive(Clone, Copy)]
struct Workload {
    name: &'static str,
    write: bool,
    random: bool,
    bs: usize,
    qd: usize,
}

const WORKLOADS: [Workload; 4] = [
    Workload {
        name: "randread 4k QD1",
        write: false,
        random: true,
        bs: 4096,
        qd: 1,
    },
    Workload {
        name: "randread 4k QD32",
        write: false,
        random: true,
        bs: 4096,
        qd: 32,
    },
    Workload {
        name: "randwrite 4k QD32",
        write: true,
        random: true,
        bs: 4096,
        qd: 32,
    },
    Workload {
        name: "read 64k QD8",
        write: false,
        random: false,
        bs: 65536,
        qd: 8,
    },
];

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    /// Wait for at least one completion (`blkioq_do_io(min=1)` /
    /// `submit_and_wait(1)`), resubmit each completed request.
    Block,
    /// Submit, reap without waiting; when nothing is there, poll(2) the
    /// completion eventfd and read it.
    Event,
    /// Submit the whole queue depth, wait for all of it, repeat.
    Batch,
}

const MODES: [Mode; 3] = [Mode::Block, Mode::Event, Mode::Batch];

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Block => "block",
            Mode::Event => "event",
            Mode::Batch => "batch",
        }
    }

    fn parse(s: &str) -> Mode {
        match s {
            "block" => Mode::Block,
            "event" => Mode::Event,
            "batch" => Mode::Batch,
            _ => panic!("unknown mode {s}"),
        }
    }
}

/// The offsets of a workload (the same sequence on both sides).
struct Offsets {
    rng: u64,
    next: u64,
    blocks: u64,
    bs: u64,
    random: bool,
}

impl Offsets {
    fn new(w: &Workload, size: u64) -> Self {
        Offsets {
            rng: 0x2545_F491_4F6C_DD1D,
            next: 0,
            blocks: size / w.bs as u64,
            bs: w.bs as u64,
            random: w.random,
        }
    }

    #[inline]
    fn next(&mut self) -> u64 {
        let block = if self.random {
            self.rng ^= self.rng >> 12;
            self.rng ^= self.rng << 25;
            self.rng ^= self.rng >> 27;
            self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D) % self.blocks
        } else {
            self.next = (self.next + 1) % self.blocks;
            self.next
        };
        block * self.bs
    }
}

// ---------------------------------------------------------------------------
// The two engines

/// What the shared loop needs from a side.
trait Engine {
    /// Prepares a request for buffer `slot` (submitted by the next wait).
    fn queue(&mut self, slot: usize, offset: u64, write: bool);
    /// Submits and reaps per `mode`; writes completed slots to `out`.
    fn wait(&mut self, mode: Mode, want: usize, out: &mut [u32]) -> usize;
}

/// (a) libblkio through its C API.
struct Lib<'a> {
    q: api::Queue<'a>,
    done: Vec<api::Completion>,
    buf: *mut u8,
    bs: usize,
    fd: RawFd,
}

impl Engine for Lib<'_> {
    #[inline]
    fn queue(&mut self, slot: usize, offset: u64, write: bool) {
        // SAFETY (pointer arithmetic): slot < qd, inside the region.
        let buf = unsafe { self.buf.add(slot * self.bs) };
        if write {
            self.q.write(offset, buf, self.bs, slot, 0);
        } else {
            self.q.read(offset, buf, self.bs, slot, 0);
        }
    }

    #[inline]
    fn wait(&mut self, mode: Mode, want: usize, out: &mut [u32]) -> usize {
        let n = loop {
            let n = match mode {
                Mode::Block => self.q.do_io(&mut self.done, 1),
                Mode::Event => self.q.do_io(&mut self.done, 0),
                Mode::Batch => self.q.do_io(&mut self.done[..want], want),
            }
            .expect("blkioq_do_io");
            if n > 0 {
                break n;
            }
            api::wait_readable(self.fd);
        };
        for (o, c) in out.iter_mut().zip(&self.done[..n]) {
            assert!(c.ret == 0, "library request failed: {}", c.ret);
            *o = c.user_data as u32;
        }
        n
    }
}

/// (b) the raw io_uring loop.
struct Raw {
    ring: IoUring,
    buf: *mut u8,
    bs: usize,
    efd: OwnedFd,
    _file: File,
}

impl Raw {
    fn new(path: &Path, buf: *mut u8, bs: usize) -> Raw {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(path)
            .expect("open");
        let ring = IoUring::new(RING_ENTRIES).expect("io_uring");
        ring.submitter()
            .register_files(&[file.as_raw_fd()])
            .expect("register file");
        // SAFETY: plain eventfd creation, checked.
        let efd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        assert!(efd >= 0);
        // SAFETY: a new descriptor.
        let efd = unsafe { OwnedFd::from_raw_fd(efd) };
        ring.submitter()
            .register_eventfd(efd.as_raw_fd())
            .expect("register eventfd");
        Raw {
            ring,
            buf,
            bs,
            efd,
            _file: file,
        }
    }
}

impl Engine for Raw {
    #[inline]
    fn queue(&mut self, slot: usize, offset: u64, write: bool) {
        // SAFETY (pointer arithmetic): slot < qd, inside the region.
        let buf = unsafe { self.buf.add(slot * self.bs) };
        let entry = if write {
            opcode::Write::new(types::Fixed(0), buf, self.bs as u32)
                .offset(offset)
                .build()
        } else {
            opcode::Read::new(types::Fixed(0), buf, self.bs as u32)
                .offset(offset)
                .build()
        };
        // SAFETY: the buffer stays valid until the CQE is reaped; the SQ
        // has room (qd ≤ ring size).
        unsafe {
            self.ring
                .submission()
                .push(&entry.user_data(slot as u64))
                .expect("SQ full")
        };
    }

    #[inline]
    fn wait(&mut self, mode: Mode, want: usize, out: &mut [u32]) -> usize {
        loop {
            match mode {
                Mode::Block => self.ring.submit_and_wait(1),
                Mode::Event => self.ring.submit(),
                Mode::Batch => self.ring.submit_and_wait(want),
            }
            .expect("io_uring_enter");
            let mut n = 0;
            for cqe in self.ring.completion() {
                assert!(
                    cqe.result() == self.bs as i32,
                    "raw request failed: {}",
                    cqe.result()
                );
                out[n] = cqe.user_data() as u32;
                n += 1;
            }
            if n > 0 {
                return n;
            }
            api::wait_readable(self.efd.as_raw_fd());
        }
    }
}

/// When a round ends.
enum Until {
    Time(Duration),
    Count(u64),
}

/// The shared loop: keeps `qd` requests in flight until the round ends,
/// then drains. Returns (completed I/Os, seconds).
fn round<E: Engine>(e: &mut E, w: &Workload, mode: Mode, size: u64, until: &Until) -> (u64, f64) {
    let mut offsets = Offsets::new(w, size);
    let mut out = [0u32; 256];
    let start = Instant::now();
    for slot in 0..w.qd {
        e.queue(slot, offsets.next(), w.write);
    }
    let (mut ios, mut in_flight, mut next_check) = (0u64, w.qd, 64u64);
    let mut stopping = false;
    while in_flight > 0 {
        let n = e.wait(mode, in_flight, &mut out);
        ios += n as u64;
        if !stopping {
            stopping = match until {
                Until::Count(c) => ios >= *c,
                Until::Time(d) if ios >= next_check => {
                    next_check = ios + 64;
                    start.elapsed() >= *d
                }
                Until::Time(_) => false,
            };
        }
        for &slot in &out[..n] {
            if stopping {
                in_flight -= 1;
            } else {
                e.queue(slot as usize, offsets.next(), w.write);
            }
        }
    }
    (ios, start.elapsed().as_secs_f64())
}

// ---------------------------------------------------------------------------
// Setup

/// A started io_uring instance on `path` with one mapped region of
/// `len` bytes (the buffers of both sides).
struct LibSetup {
    inst: api::Instance,
}

impl LibSetup {
    fn open(driver: &str, props: &[(&str, String)], queues: usize) -> LibSetup {
        let inst = api::Instance::create(driver).expect("blkio_create");
        let table = inst.get_str("x.properties").unwrap_or_default();
        let after_connect = |k: &str| {
            table
                .lines()
                .any(|l| l.starts_with(&format!("{k} ")) && l.ends_with("rw:connected"))
        };
        for (k, v) in props.iter().filter(|(k, _)| !after_connect(k)) {
            inst.set_str(k, v)
                .unwrap_or_else(|e| panic!("{k}={v}: {e}"));
        }
        inst.connect().unwrap_or_else(|e| panic!("connect: {e}"));
        for (k, v) in props.iter().filter(|(k, _)| after_connect(k)) {
            inst.set_str(k, v)
                .unwrap_or_else(|e| panic!("{k}={v}: {e}"));
        }
        inst.set_str("num-queues", &queues.to_string())
            .expect("num-queues");
        inst.start().unwrap_or_else(|e| panic!("start: {e}"));
        LibSetup { inst }
    }

    /// Queue `index` driven in `mode`. Event mode turns the completion fd
    /// on first, as the event-driven protocol of REQUESTS.md §5 says
    /// (virtio-blk queues start with notifications off; io_uring ignores it).
    fn lib<'a>(&'a self, index: i32, buf: *mut u8, w: &Workload, mode: Mode) -> Lib<'a> {
        let mut q = self.inst.queue(index).expect("queue");
        q.set_completion_fd_enabled(mode == Mode::Event);
        let fd = q.completion_fd().expect("completion fd");
        Lib {
            q,
            done: api::completions(w.qd.max(1)),
            buf,
            bs: w.bs,
            fd,
        }
    }
}

/// Creates `path` with FILE_SIZE bytes of non-zero data and reads it
/// once so it is in the page cache.
fn prepare_file(path: &Path) {
    let chunk: Vec<u8> = (0..1 << 20)
        .map(|i: u32| (i.wrapping_mul(2654435761) >> 24) as u8 | 1)
        .collect();
    let fresh = fs::metadata(path)
        .map(|m| m.len() != FILE_SIZE)
        .unwrap_or(true);
    if fresh {
        let mut f = File::create(path).expect("create bench file");
        for _ in 0..FILE_SIZE >> 20 {
            f.write_all(&chunk).expect("write bench file");
        }
        f.sync_all().expect("sync");
    }
    let mut f = File::open(path).expect("open");
    let mut buf = vec![0u8; 1 << 20];
    while f.read(&mut buf).expect("pre-read") > 0 {}
}

fn fs_type(path: &Path) -> String {
    let out = Command::new("findmnt")
        .args(["-n", "-o", "FSTYPE", "-T"])
        .arg(path)
        .output();
    match out {
        Ok(o) => String::from_utf8_lossy(&o.stdout)
            .lines()
            .next()
            .unwrap_or("?")
            .to_owned(),
        Err(_) => "?".into(),
    }
}

// ---------------------------------------------------------------------------
// Sections

struct Config {
    rounds: usize,
    round: Duration,
    callgrind_ios: (u64, u64),
    sections: Vec<String>,
}

fn ratio_line(label: &str, mode: Mode, a: (u64, f64), b: (u64, f64)) {
    let (ia, ib) = (a.0 as f64 / a.1, b.0 as f64 / b.1);
    println!(
        "  {label:<18} {:<6} {:>12.0} {:>12.0} {:>7.3}",
        mode.name(),
        ia,
        ib,
        ia / ib
    );
}

/// Library vs raw for every workload and mode on the file at `path`.
fn compare_file(cfg: &Config, title: &str, path: &Path) {
    prepare_file(path);
    println!(
        "\n== {title}: {} ({}, {} MiB, in the page cache) ==",
        path.display(),
        fs_type(path.parent().unwrap_or(Path::new("/"))),
        FILE_SIZE >> 20
    );
    println!(
        "  {:<18} {:<6} {:>12} {:>12} {:>7}",
        "workload", "mode", "library IOPS", "raw IOPS", "ratio"
    );
    let setup = LibSetup::open("io_uring", &[("path", path.display().to_string())], 1);
    let max_len = WORKLOADS.iter().map(|w| w.bs * w.qd).max().unwrap();
    let region = setup.inst.alloc_region(max_len).expect("alloc region");
    let _mapping = setup.inst.map(&region).expect("map region");
    let until = Until::Time(cfg.round);
    for w in &WORKLOADS {
        for mode in MODES {
            let mut lib = setup.lib(0, region.as_ptr(), w, mode);
            let mut raw = Raw::new(path, region.as_ptr(), w.bs);
            let (mut a, mut b) = ((0, 0.0), (0, 0.0));
            for _ in 0..cfg.rounds {
                let r = round(&mut lib, w, mode, FILE_SIZE, &until);
                a = (a.0 + r.0, a.1 + r.1);
                let r = round(&mut raw, w, mode, FILE_SIZE, &until);
                b = (b.0 + r.0, b.1 + r.1);
            }
            ratio_line(w.name, mode, a, b);
        }
    }
}

/// One queue vs two (one thread each), library and raw, block mode.
fn multiqueue(cfg: &Config, path: &Path) {
    prepare_file(path);
    println!(
        "\n== multi-queue scaling: {} (block mode, one thread per queue) ==",
        path.display()
    );
    println!(
        "  {:<18} {:>10} {:>12} {:>12} {:>7}",
        "workload", "side", "1 queue", "2 queues", "ratio"
    );
    let setup = LibSetup::open("io_uring", &[("path", path.display().to_string())], 2);
    for w in [&WORKLOADS[0], &WORKLOADS[1]] {
        let region = setup
            .inst
            .alloc_region(2 * w.bs * w.qd)
            .expect("alloc region");
        let _mapping = setup.inst.map(&region).expect("map region");
        let base = region.as_ptr() as usize;
        let until = Until::Time(cfg.round);
        let (mut lib1, mut lib2, mut raw1, mut raw2) = (0.0, 0.0, 0.0, 0.0);
        for _ in 0..cfg.rounds {
            let mut one = setup.lib(0, base as *mut u8, w, Mode::Block);
            let r = round(&mut one, w, Mode::Block, FILE_SIZE, &until);
            lib1 += r.0 as f64 / r.1;
            lib2 += std::thread::scope(|s| {
                let t: Vec<_> = (0..2)
                    .map(|i| {
                        let setup = &setup;
                        let until = &until;
                        s.spawn(move || {
                            let buf = (base + i * w.bs * w.qd) as *mut u8;
                            let mut e = setup.lib(i as i32, buf, w, Mode::Block);
                            let r = round(&mut e, w, Mode::Block, FILE_SIZE, until);
                            r.0 as f64 / r.1
                        })
                    })
                    .collect();
                t.into_iter().map(|h| h.join().unwrap()).sum::<f64>()
            });
            let mut one = Raw::new(path, base as *mut u8, w.bs);
            let r = round(&mut one, w, Mode::Block, FILE_SIZE, &until);
            raw1 += r.0 as f64 / r.1;
            raw2 += std::thread::scope(|s| {
                let t: Vec<_> = (0..2)
                    .map(|i| {
                        let until = &until;
                        s.spawn(move || {
                            let buf = (base + i * w.bs * w.qd) as *mut u8;
                            let mut e = Raw::new(path, buf, w.bs);
                            let r = round(&mut e, w, Mode::Block, FILE_SIZE, until);
                            r.0 as f64 / r.1
                        })
                    })
                    .collect();
                t.into_iter().map(|h| h.join().unwrap()).sum::<f64>()
            });
        }
        let n = cfg.rounds as f64;
        for (side, one, two) in [("library", lib1, lib2), ("raw", raw1, raw2)] {
            println!(
                "  {:<18} {:>10} {:>12.0} {:>12.0} {:>7.3}",
                w.name,
                side,
                one / n,
                two / n,
                two / one
            );
        }
    }
}

/// The callgrind runs: user-space instructions per I/O of each side.
fn callgrind(cfg: &Config, path: &Path) {
    println!("\n== user-space instructions per I/O (valgrind --tool=callgrind) ==");
    if Command::new("valgrind").arg("--version").output().is_err() {
        println!("skip - valgrind is not installed (apt-get install valgrind)");
        return;
    }
    prepare_file(path);
    let dir = out_dir().join("callgrind");
    fs::create_dir_all(&dir).expect("callgrind dir");
    let (n1, n2) = cfg.callgrind_ios;
    println!(
        "  (Ir difference between runs of {n1} and {n2} I/Os, so setup cancels out; 4k random reads on {})",
        path.display()
    );
    println!(
        "  {:<8} {:>4} {:>12} {:>12} {:>7}",
        "mode", "QD", "library Ir", "raw Ir", "ratio"
    );
    for (mode, qd) in [
        (Mode::Block, 1),
        (Mode::Block, 32),
        (Mode::Event, 1),
        (Mode::Event, 32),
        (Mode::Batch, 32),
    ] {
        let per_io =
            |side: &str| callgrind_per_io(&dir, cfg.callgrind_ios, side, mode, qd, path, None);
        let (a, b) = (per_io("lib"), per_io("raw"));
        println!(
            "  {:<8} {:>4} {:>12.0} {:>12.0} {:>7.2}",
            mode.name(),
            qd,
            a,
            b,
            a / b
        );
    }
    println!(
        "  profiles: {}/lib-<mode>-qd<QD>-{n2}.out (callgrind_annotate FILE)",
        dir.display()
    );
    let top = dir.join(format!("lib-block-qd1-{n2}.out"));
    if let Ok(o) = Command::new("callgrind_annotate")
        .args(["--inclusive=no", "--threshold=99"])
        .arg(&top)
        .output()
    {
        println!("\n  top self costs, library, block mode QD1 ({n2} I/Os incl. setup):");
        let text = String::from_utf8_lossy(&o.stdout);
        let lines: Vec<&str> = text
            .lines()
            .skip_while(|l| !l.contains("file:function"))
            .skip(2)
            .take(18)
            .collect();
        for l in lines {
            println!("  {l}");
        }
    }
}

/// User-space instructions per I/O of one side (`lib` or `raw`) under
/// callgrind: the Ir difference of a run of `ios.0` and one of `ios.1`
/// I/Os, divided by the difference. `driver` (default io_uring) is
/// `(name, cpu)`: the library side on that driver, pinned to `cpu`.
fn callgrind_per_io(
    dir: &Path,
    ios: (u64, u64),
    side: &str,
    mode: Mode,
    qd: usize,
    path: &Path,
    driver: Option<(&str, usize)>,
) -> f64 {
    let tag = driver.map_or(String::new(), |(d, _)| format!("{d}-"));
    let ir = |n: u64| {
        let out = dir.join(format!("{tag}{side}-{}-qd{qd}-{n}.out", mode.name()));
        let mut cmd = Command::new("valgrind");
        cmd.arg("--tool=callgrind")
            .arg(format!("--callgrind-out-file={}", out.display()))
            .arg(std::env::current_exe().expect("own path"))
            .args([
                "--callgrind-child",
                side,
                mode.name(),
                &qd.to_string(),
                &n.to_string(),
            ])
            .arg(path)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some((name, cpu)) = driver {
            cmd.arg(name);
            pin(&mut cmd, cpu);
        }
        let status = cmd.status().expect("valgrind");
        assert!(status.success(), "valgrind run {tag}{side} {mode:?} failed");
        total_ir(&out)
    };
    (ir(ios.1) - ir(ios.0)) as f64 / (ios.1 - ios.0) as f64
}

/// Runs `cmd` (and every thread it starts) on CPU `cpu` only.
fn pin(cmd: &mut Command, cpu: usize) {
    use std::os::unix::process::CommandExt;
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu, &mut set);
            if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

fn total_ir(path: &Path) -> u64 {
    let text = fs::read_to_string(path).expect("callgrind output");
    text.lines()
        .find_map(|l| {
            l.strip_prefix("totals: ")
                .or_else(|| l.strip_prefix("summary: "))
        })
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("totals line")
}

/// The child run under valgrind: exactly `count` I/Os of one side.
fn callgrind_child(args: &[String]) {
    let side = args[0].as_str();
    let mode = Mode::parse(&args[1]);
    let qd: usize = args[2].parse().unwrap();
    let count: u64 = args[3].parse().unwrap();
    let path = PathBuf::from(&args[4]);
    let driver = args.get(5).map_or("io_uring", String::as_str);
    let w = Workload {
        name: "randread 4k",
        write: false,
        random: true,
        bs: 4096,
        qd,
    };
    let setup = LibSetup::open(driver, &[("path", path.display().to_string())], 1);
    let size = setup.inst.get_u64("capacity").expect("capacity");
    let align = setup
        .inst
        .get_u64("mem-region-alignment")
        .unwrap_or(4096)
        .max(4096) as usize;
    let len = (w.bs * w.qd).div_ceil(align) * align;
    let region = setup.inst.alloc_region(len).expect("alloc region");
    let _mapping = setup.inst.map(&region).expect("map region");
    let until = Until::Count(count);
    let done = if side == "lib" {
        round(
            &mut setup.lib(0, region.as_ptr(), &w, mode),
            &w,
            mode,
            size,
            &until,
        )
    } else {
        round(
            &mut Raw::new(&path, region.as_ptr(), w.bs),
            &w,
            mode,
            FILE_SIZE,
            &until,
        )
    };
    // Draining may finish up to qd-1 extra I/Os: make the count exact by
    // construction (the stop condition is checked once per wait).
    assert!(done.0 >= count);
}

/// vhost-user against qemu-storage-daemon's null-co driver (library
/// only: there is no raw counterpart). Runs when the library has the
/// driver and qemu-storage-daemon is installed.
fn vhost_user(cfg: &Config) {
    println!("\n== vhost-user (qemu-storage-daemon, null-co) ==");
    if !blkio::drivers::NAMES.contains(&VHOST_USER) {
        println!("skip - this build has no {VHOST_USER} driver; the section runs by itself once drivers::NAMES lists it");
        return;
    }
    let Some(daemon) = QemuStorageDaemon::start(VHOST_USER_CPU) else {
        println!("skip - qemu-storage-daemon not found or did not start (apt-get install qemu-system-x86)");
        return;
    };
    println!("  {:<18} {:<6} {:>12}", "workload", "mode", "library IOPS");
    let props = [("path", daemon.socket.display().to_string())];
    let setup = LibSetup::open(VHOST_USER, &props, 1);
    let size = setup.inst.get_u64("capacity").expect("capacity");
    let align = setup
        .inst
        .get_u64("mem-region-alignment")
        .unwrap_or(4096)
        .max(4096) as usize;
    for w in &WORKLOADS[..2] {
        let len = (w.bs * w.qd).div_ceil(align) * align;
        let region = setup.inst.alloc_region(len).expect("alloc region");
        let _mapping = setup.inst.map(&region).expect("map region");
        for mode in MODES {
            let mut lib = setup.lib(0, region.as_ptr(), w, mode);
            let mut total = (0, 0.0);
            for _ in 0..cfg.rounds {
                let r = round(&mut lib, w, mode, size, &Until::Time(cfg.round));
                total = (total.0 + r.0, total.1 + r.1);
            }
            println!(
                "  {:<18} {:<6} {:>12.0}",
                w.name,
                mode.name(),
                total.0 as f64 / total.1
            );
        }
    }
    drop(setup);
    if Command::new("valgrind").arg("--version").output().is_err() {
        println!("skip - callgrind: valgrind is not installed (apt-get install valgrind)");
        return;
    }
    let dir = out_dir().join("callgrind");
    fs::create_dir_all(&dir).expect("callgrind dir");
    let (n1, n2) = cfg.callgrind_ios;
    println!(
        "  user-space instructions per I/O (callgrind, {n1} vs {n2} I/Os, daemon and library on CPU {VHOST_USER_CPU}):"
    );
    for (mode, qd) in [(Mode::Block, 1), (Mode::Batch, 32)] {
        let ir = callgrind_per_io(
            &dir,
            cfg.callgrind_ios,
            "lib",
            mode,
            qd,
            &daemon.socket,
            Some((VHOST_USER, VHOST_USER_CPU)),
        );
        println!(
            "  randread 4k QD{qd:<5} {:<6} {ir:>12.0} Ir/IO",
            mode.name()
        );
    }
    println!(
        "  profiles: {}/{VHOST_USER}-lib-<mode>-qd<QD>-{n2}.out",
        dir.display()
    );
}

struct QemuStorageDaemon {
    child: Child,
    socket: PathBuf,
}

impl QemuStorageDaemon {
    /// Starts the daemon with all its threads on CPU `cpu`.
    fn start(cpu: usize) -> Option<Self> {
        let socket = out_dir().join("vhost-user.sock");
        let _ = fs::remove_file(&socket);
        let mut cmd = Command::new("qemu-storage-daemon");
        pin(&mut cmd, cpu);
        let child = cmd
            .args([
                "--blockdev",
                "driver=null-co,node-name=null,size=1073741824,read-zeroes=on",
                "--export",
            ])
            .arg(format!(
                "type=vhost-user-blk,id=exp,node-name=null,addr.type=unix,addr.path={},writable=on,num-queues=2",
                socket.display()
            ))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let mut d = QemuStorageDaemon { child, socket };
        for _ in 0..100 {
            if d.socket.exists() {
                return Some(d);
            }
            if let Ok(Some(_)) = d.child.try_wait() {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for QemuStorageDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_file(&self.socket);
    }
}

fn out_dir() -> PathBuf {
    let dir = std::env::var_os("BLKIO_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench"));
    fs::create_dir_all(&dir).expect("bench dir");
    dir
}

fn machine() {
    let cpu = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
            })
        })
        .unwrap_or_else(|| "?".into());
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let load = fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "machine: nproc {}, CPU {cpu}, kernel {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        kernel.trim()
    );
    println!(
        "load average at start: {}",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    if args.first().map(String::as_str) == Some("--callgrind-child") {
        return callgrind_child(&args[1..]);
    }
    let env_num = |k: &str, d: u64| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let quick = args.iter().any(|a| a == "--quick");
    let cfg = Config {
        rounds: env_num("BLKIO_BENCH_ROUNDS", if quick { 2 } else { 4 }) as usize,
        round: Duration::from_millis(env_num(
            "BLKIO_BENCH_ROUND_MS",
            if quick { 200 } else { 500 },
        )),
        callgrind_ios: (
            env_num("BLKIO_BENCH_CALLGRIND_IOS", 20_000) / 5,
            env_num("BLKIO_BENCH_CALLGRIND_IOS", 20_000),
        ),
        sections: args
            .iter()
            .filter(|a| !a.starts_with("--"))
            .cloned()
            .collect(),
    };
    let want = |s: &str| cfg.sections.is_empty() || cfg.sections.iter().any(|x| x == s);
    machine();
    println!(
        "rounds: {} per side, {} ms each, alternating library/raw; ratio = library / raw",
        cfg.rounds,
        cfg.round.as_millis()
    );
    let disk = out_dir().join("bench.img");
    let shm_dir =
        PathBuf::from(std::env::var_os("BLKIO_BENCH_TMPFS").unwrap_or_else(|| "/dev/shm".into()));
    let shm = shm_dir.join(format!("blkio-bench-{}.img", std::process::id()));
    if want("disk") {
        compare_file(&cfg, "disk-backed file system", &disk);
    }
    if want("tmpfs") {
        compare_file(&cfg, "tmpfs", &shm);
    }
    if want("multiqueue") {
        multiqueue(&cfg, &disk);
        multiqueue(&cfg, &shm);
    }
    if want("callgrind") {
        callgrind(&cfg, &shm);
    }
    if want("vhost-user") {
        vhost_user(&cfg);
    }
    let _ = fs::remove_file(&shm);
}
