//! Model-based test of the request rules: random scripted sequences of
//! requests and `blkioq_do_io` calls run through the C API (io_uring driver,
//! a scratch file, a ring of 4 entries so that the request backlog is often
//! longer than the ring) and against a small reference model of what each
//! call may return, comparing completions, counts and errors.
//!
//! The model: every submitted request is outstanding until it comes back
//! exactly once, with the result its kind implies (0 for a valid read or
//! write, -EINVAL for unknown flag bits). A `blkioq_do_io(min, max)` call
//! fails with -EINVAL when `min > max` or `min` exceeds the outstanding count,
//! and then hands out nothing; a zero timeout with `min > 0` may fail with
//! -ETIME, handing out nothing; otherwise it returns between `min` and `max`
//! completions (never more than outstanding), each an outstanding request.
//! At the end a drain with `min = max = outstanding` returns all the rest.
//!
//! `BLKIO_MODEL_SEQUENCES` (default 2000) sets the count, `BLKIO_MODEL_SEED`
//! replays one sequence; a failure prints the seed and the script so far.

use std::collections::HashMap;
use std::ffi::{c_char, c_int, c_void, CString};
use std::ptr;

extern crate blkio;

#[repr(C)]
struct MemRegion {
    addr: *mut c_void,
    len: usize,
    iova: u64,
    fd_offset: i64,
    fd: c_int,
    flags: u32,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct Completion {
    user_data: *mut c_void,
    error_msg: *const c_char,
    ret: c_int,
    reserved: [u8; 12],
}

enum Blkio {}
enum Queue {}

extern "C" {
    fn blkio_create(driver: *const c_char, bp: *mut *mut Blkio) -> c_int;
    fn blkio_set_str(b: *mut Blkio, name: *const c_char, value: *const c_char) -> c_int;
    fn blkio_set_int(b: *mut Blkio, name: *const c_char, value: c_int) -> c_int;
    fn blkio_connect(b: *mut Blkio) -> c_int;
    fn blkio_start(b: *mut Blkio) -> c_int;
    fn blkio_destroy(bp: *mut *mut Blkio);
    fn blkio_alloc_mem_region(b: *mut Blkio, region: *mut MemRegion, len: usize) -> c_int;
    fn blkio_map_mem_region(b: *mut Blkio, region: *const MemRegion) -> c_int;
    fn blkio_get_queue(b: *mut Blkio, index: c_int) -> *mut Queue;
    fn blkio_get_poll_queue(b: *mut Blkio, index: c_int) -> *mut Queue;
    fn blkioq_read(
        q: *mut Queue,
        start: u64,
        buf: *mut c_void,
        len: usize,
        ud: *mut c_void,
        flags: u32,
    );
    fn blkioq_write(
        q: *mut Queue,
        start: u64,
        buf: *const c_void,
        len: usize,
        ud: *mut c_void,
        flags: u32,
    );
    fn blkioq_do_io(
        q: *mut Queue,
        c: *mut Completion,
        min: c_int,
        max: c_int,
        timeout: *mut libc::timespec,
    ) -> c_int;
    fn blkioq_do_io_interruptible(
        q: *mut Queue,
        c: *mut Completion,
        min: c_int,
        max: c_int,
        timeout: *mut libc::timespec,
        sig: *const libc::sigset_t,
    ) -> c_int;
}

const BS: usize = 4096;
const BLOCKS: u64 = 64;
const SLOTS: usize = 16;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

struct Instance {
    b: *mut Blkio,
    q: *mut Queue,
    buf: *mut u8,
    /// a poll queue: a signal mask fails with -ENOTSUP
    poll: bool,
    /// what a valid read or write returns on this queue (a poll queue on a
    /// file without O_DIRECT may refuse polled I/O; the probe tells)
    ok: i32,
}

impl Instance {
    /// An instance on `path`; with `poll`, driving a poll queue (O_DIRECT)
    /// if the file's device polls, else `None`.
    fn new(path: &CString, poll: bool) -> Option<Instance> {
        let mut b = ptr::null_mut();
        let mut region = MemRegion {
            addr: ptr::null_mut(),
            len: 0,
            iova: 0,
            fd_offset: 0,
            fd: -1,
            flags: 0,
        };
        // SAFETY: valid out-pointers and NUL-terminated strings.
        unsafe {
            assert_eq!(blkio_create(c"io_uring".as_ptr(), &mut b), 0);
            assert_eq!(blkio_set_str(b, c"path".as_ptr(), path.as_ptr()), 0);
            if poll {
                assert_eq!(blkio_set_str(b, c"direct".as_ptr(), c"true".as_ptr()), 0);
            }
            if blkio_connect(b) != 0 && poll {
                blkio_destroy(&mut b);
                return None;
            }
            assert_eq!(blkio_set_int(b, c"num-entries".as_ptr(), 4), 0);
            if poll {
                assert_eq!(blkio_set_int(b, c"num-poll-queues".as_ptr(), 1), 0);
                if blkio_start(b) != 0 {
                    blkio_destroy(&mut b);
                    return None;
                }
            } else {
                assert_eq!(blkio_start(b), 0);
            }
            assert_eq!(blkio_alloc_mem_region(b, &mut region, SLOTS * BS), 0);
            assert_eq!(blkio_map_mem_region(b, &region), 0);
        }
        // SAFETY: a started instance.
        let q = unsafe {
            if poll {
                blkio_get_poll_queue(b, 0)
            } else {
                blkio_get_queue(b, 0)
            }
        };
        assert!(!q.is_null());
        let mut c = [empty(); 1];
        // SAFETY: a live queue, a buffer inside the mapped region.
        let ok = unsafe {
            blkioq_read(q, 0, region.addr, BS, ptr::null_mut(), 0);
            assert_eq!(blkioq_do_io(q, c.as_mut_ptr(), 1, 1, ptr::null_mut()), 1);
            c[0].ret
        };
        Some(Instance {
            b,
            q,
            buf: region.addr.cast(),
            poll,
            ok,
        })
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        // SAFETY: created by blkio_create, destroyed once.
        unsafe { blkio_destroy(&mut self.b) };
    }
}

fn empty() -> Completion {
    Completion {
        user_data: ptr::null_mut(),
        error_msg: ptr::null(),
        ret: 0,
        reserved: [0; 12],
    }
}

/// One do_io call of the script.
#[derive(Debug)]
struct Call {
    min: i32,
    max: i32,
    null: bool,
    timeout: Option<libc::timespec>,
    sigmask: bool,
}

/// Runs one sequence; returns the script for the failure message.
fn sequence(inst: &Instance, seed: u64, log: &mut Vec<String>) {
    let mut rng = Rng(seed | 1);
    let mut outstanding: HashMap<u64, i32> = HashMap::new();
    let mut next_id = 1u64;
    let mut done = [empty(); 32];
    let steps = 10 + rng.below(40);
    for _ in 0..steps {
        if rng.below(3) != 0 {
            // a burst of requests, sometimes longer than the ring
            for _ in 0..1 + rng.below(8) {
                let id = next_id;
                next_id += 1;
                let start = rng.below(BLOCKS) * BS as u64;
                // SAFETY: (arithmetic) the slot is inside the region.
                let buf = unsafe { inst.buf.add((id as usize % SLOTS) * BS) };
                let (flags, ret) = match rng.below(10) {
                    0 => (0x8, -libc::EINVAL),
                    1 => (1, inst.ok),
                    _ => (0, inst.ok),
                };
                let write = rng.below(2) == 0;
                // SAFETY: a live queue, a buffer inside a mapped region.
                unsafe {
                    if write {
                        blkioq_write(inst.q, start, buf.cast(), BS, id as *mut c_void, flags);
                    } else {
                        // FUA is not a read flag: -EINVAL as well
                        blkioq_read(inst.q, start, buf.cast(), BS, id as *mut c_void, flags);
                    }
                }
                let ret = if !write && flags != 0 {
                    -libc::EINVAL
                } else {
                    ret
                };
                log.push(format!(
                    "{} #{id} start {start} flags {flags:#x} -> expect {ret}",
                    if write { "write" } else { "read" }
                ));
                outstanding.insert(id, ret);
            }
            continue;
        }
        let n = outstanding.len() as i32;
        let min = match rng.below(8) {
            0 => n + 1 + rng.below(2) as i32,
            1 => n,
            _ => rng.below(n as u64 + 1) as i32,
        };
        let max = match rng.below(10) {
            0 if min > 0 => min - 1,
            _ => (min + rng.below(6) as i32).min(32),
        };
        let null = max == 0 && rng.below(2) == 0;
        let timeout = match rng.below(6) {
            0 => Some(libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            }),
            1 => Some(libc::timespec {
                tv_sec: 5,
                tv_nsec: 0,
            }),
            _ => None,
        };
        let call = Call {
            min,
            max,
            null,
            timeout,
            sigmask: rng.below(4) == 0,
        };
        let mut ts = call.timeout;
        let ts_ptr = ts.as_mut().map_or(ptr::null_mut(), |t| t as *mut _);
        let out = if call.null {
            ptr::null_mut()
        } else {
            done.as_mut_ptr()
        };
        // SAFETY: `done` holds 32 >= max entries; the set is initialised.
        let got = unsafe {
            if call.sigmask {
                let mut set: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut set);
                blkioq_do_io_interruptible(inst.q, out, call.min, call.max, ts_ptr, &set)
            } else {
                blkioq_do_io(inst.q, out, call.min, call.max, ts_ptr)
            }
        };
        log.push(format!("do_io {call:?} with {n} outstanding -> {got}"));
        if min > max {
            assert_eq!(got, -libc::EINVAL, "min > max must fail with -EINVAL");
            continue;
        }
        if call.sigmask && inst.poll {
            assert_eq!(got, -libc::ENOTSUP, "a signal mask on a poll queue");
            continue;
        }
        if min > n {
            assert_eq!(
                got,
                -libc::EINVAL,
                "min above outstanding must fail with -EINVAL"
            );
            continue;
        }
        if got == -libc::ETIME && matches!(call.timeout, Some(t) if t.tv_sec == 0) && min > 0 {
            continue;
        }
        assert!(got >= 0, "valid call failed with {got}");
        assert!(
            got >= min && got <= max,
            "{got} completions outside [{min}, {max}]"
        );
        for c in &done[..got as usize] {
            let id = c.user_data as u64;
            let want = outstanding.remove(&id);
            assert!(
                want.is_some(),
                "completion #{id} is not outstanding (or came twice)"
            );
            assert_eq!(c.ret, want.unwrap(), "completion #{id} result");
            log.push(format!("  #{id} ret {}", c.ret));
        }
    }
    // drain: everything left comes back, then nothing is outstanding
    while !outstanding.is_empty() {
        let n = (outstanding.len() as i32).min(32);
        // SAFETY: `done` holds 32 entries.
        let got = unsafe { blkioq_do_io(inst.q, done.as_mut_ptr(), n, n, ptr::null_mut()) };
        log.push(format!("drain {n} -> {got}"));
        assert_eq!(got, n, "drain");
        for c in &done[..got as usize] {
            let id = c.user_data as u64;
            let want = outstanding.remove(&id);
            assert_eq!(Some(c.ret), want, "drained completion #{id}");
        }
    }
    // SAFETY: `done` holds 32 entries.
    let got = unsafe { blkioq_do_io(inst.q, done.as_mut_ptr(), 1, 1, ptr::null_mut()) };
    assert_eq!(got, -libc::EINVAL, "min 1 with nothing outstanding");
    // SAFETY: only submits.
    let got = unsafe { blkioq_do_io(inst.q, ptr::null_mut(), 0, 0, ptr::null_mut()) };
    assert_eq!(got, 0, "empty do_io");
}

#[test]
fn random_sequences_follow_the_request_rules() {
    let base = std::env::var_os("BLKIO_TEST_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let dir = base.join(format!("blkio-model-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("disk.img");
    std::fs::write(&path, vec![0u8; BLOCKS as usize * BS]).unwrap();
    let cpath = CString::new(path.to_str().unwrap()).unwrap();
    let seeds: Vec<u64> = match std::env::var("BLKIO_MODEL_SEED") {
        Ok(s) => vec![s.parse().expect("BLKIO_MODEL_SEED is a number")],
        Err(_) => {
            let count: u64 = std::env::var("BLKIO_MODEL_SEQUENCES")
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(2000);
            (0..count).map(|i| 0x5eed_0000 + i).collect()
        }
    };
    // one instance for a run of sequences: each sequence ends drained, so
    // the next starts from an empty queue; a fresh one every 100, every
    // other one driving a poll queue
    let mut inst = None;
    let mut polls_skipped = false;
    for (i, &seed) in seeds.iter().enumerate() {
        if i % 100 == 0 {
            let poll = i % 200 == 100;
            inst = Instance::new(&cpath, poll);
            if inst.is_none() {
                if !polls_skipped {
                    eprintln!(
                        "note: {} has no polled I/O; regular queues only",
                        path.display()
                    );
                }
                polls_skipped = true;
                inst = Instance::new(&cpath, false);
            }
        }
        let mut log = Vec::new();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            sequence(inst.as_ref().unwrap(), seed, &mut log)
        }));
        if let Err(e) = result {
            let _ = std::fs::remove_dir_all(&dir);
            let tail: Vec<_> = log.iter().rev().take(40).rev().cloned().collect();
            panic!(
                "sequence with seed {seed} failed (replay: BLKIO_MODEL_SEED={seed} cargo test --test model): {}\nscript (last 40 steps):\n{}",
                e.downcast_ref::<String>().cloned().unwrap_or_default(),
                tail.join("\n")
            );
        }
    }
    drop(inst);
    let _ = std::fs::remove_dir_all(&dir);
}
