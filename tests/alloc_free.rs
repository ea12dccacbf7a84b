//! The request path allocates nothing: a counting global allocator watches
//! a steady-state loop of `blkioq_read`/`blkioq_write` + `blkioq_do_io`
//! through the C API functions (io_uring driver on a scratch file), in the
//! three ways applications drive a queue: blocking (min 1), polling the
//! completion fd (min 0) and whole batches (min = max = queue depth), also
//! with a timeout. Only the test thread's allocations are counted.
//!
//! The loop also checks what it reads: each block holds its own index.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::ffi::{c_void, CString};
use std::ptr;
use std::sync::atomic::{AtomicUsize, Ordering};

extern crate blkio;

mod common;
use common::capi::*;

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}

fn note() {
    if COUNTING.with(Cell::get) {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY: forwards to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: the caller's contract is passed on unchanged.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: the caller's contract is passed on unchanged.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, p: *mut u8, layout: Layout, size: usize) -> *mut u8 {
        note();
        // SAFETY: the caller's contract is passed on unchanged.
        unsafe { System.realloc(p, layout, size) }
    }
    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        note();
        // SAFETY: the caller's contract is passed on unchanged.
        unsafe { System.dealloc(p, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations (and frees) made by this thread while `f` runs.
fn allocations_in(f: impl FnOnce()) -> usize {
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    COUNTING.with(|c| c.set(true));
    f();
    COUNTING.with(|c| c.set(false));
    ALLOCATIONS.load(Ordering::Relaxed) - before
}

const BS: usize = 4096;
const BLOCKS: u64 = 256;
const QD: usize = 32;

#[derive(Clone, Copy, Debug)]
enum Mode {
    Block,
    Event,
    Batch,
    BatchWithTimeout,
}

struct Setup {
    b: *mut Blkio,
    q: *mut Queue,
    region: MemRegion,
    fd: i32,
    _dir: tempdir::Dir,
}

mod tempdir {
    /// A scratch directory under BLKIO_TEST_DIR (or the system temp dir),
    /// removed on drop.
    pub struct Dir(pub std::path::PathBuf);

    impl Dir {
        pub fn new() -> Dir {
            let base = std::env::var_os("BLKIO_TEST_DIR")
                .map(std::path::PathBuf::from)
                .unwrap_or_else(std::env::temp_dir);
            let dir = base.join(format!("blkio-alloc-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            Dir(dir)
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

fn check(ret: i32, what: &str) {
    assert_eq!(ret, 0, "{what} failed: {ret}");
}

impl Setup {
    fn new() -> Setup {
        let dir = tempdir::Dir::new();
        let path = dir.0.join("disk.img");
        std::fs::write(&path, vec![0u8; BLOCKS as usize * BS]).unwrap();
        let path = CString::new(path.to_str().unwrap()).unwrap();
        let mut b = ptr::null_mut();
        let mut region = MemRegion {
            addr: ptr::null_mut(),
            iova: 0,
            len: 0,
            fd_offset: 0,
            fd: -1,
            flags: 0,
        };
        // SAFETY: valid out-pointers and NUL-terminated strings.
        unsafe {
            check(blkio_create(c"io_uring".as_ptr(), &mut b), "create");
            check(blkio_set_str(b, c"path".as_ptr(), path.as_ptr()), "path");
            check(blkio_connect(b), "connect");
            check(blkio_start(b), "start");
            check(blkio_alloc_mem_region(b, &mut region, QD * BS), "alloc");
            check(blkio_map_mem_region(b, &region), "map");
        }
        // SAFETY: a started instance.
        let q = unsafe { blkio_get_queue(b, 0) };
        assert!(!q.is_null());
        // SAFETY: a live queue.
        let fd = unsafe { blkioq_get_completion_fd(q) };
        assert!(fd >= 0);
        Setup {
            b,
            q,
            region,
            fd,
            _dir: dir,
        }
    }

    fn buf(&self, slot: usize) -> *mut u8 {
        // SAFETY: slot < QD, inside the region.
        unsafe { self.region.addr.cast::<u8>().add(slot * BS) }
    }

    /// Runs `ios` I/Os at depth `QD` (block `i` holds `i` as u64 after the
    /// writes), keeping `QD` in flight; returns completions seen.
    fn run(&self, mode: Mode, write: bool, ios: u64) -> u64 {
        let mut done = [Completion::new(0, 0, None); QD];
        let mut next = 0u64;
        let mut completed = 0u64;
        let mut in_flight = 0usize;
        let issue = |slot: usize, next: &mut u64| {
            let block = *next % BLOCKS;
            *next += 1;
            let buf = self.buf(slot);
            // user_data: slot in the low bits, block above.
            let ud = (slot as u64 | block << 8) as usize as *mut c_void;
            // SAFETY: a live queue; the buffer is in the mapped region and
            // stays untouched until the request completes.
            unsafe {
                if write {
                    buf.cast::<u64>().write(block);
                    blkioq_write(self.q, block * BS as u64, buf.cast(), BS, ud, 0);
                } else {
                    blkioq_read(self.q, block * BS as u64, buf.cast(), BS, ud, 0);
                }
            }
        };
        for slot in 0..QD {
            issue(slot, &mut next);
            in_flight += 1;
        }
        while in_flight > 0 {
            let mut ts = libc::timespec {
                tv_sec: 10,
                tv_nsec: 0,
            };
            let (min, max, timeout) = match mode {
                Mode::Block => (1, QD, ptr::null_mut()),
                Mode::Event => (0, QD, ptr::null_mut()),
                Mode::Batch => (in_flight, in_flight, ptr::null_mut()),
                Mode::BatchWithTimeout => (in_flight, in_flight, &mut ts as *mut _),
            };
            // SAFETY: a live queue and `max` completion slots.
            let n =
                unsafe { blkioq_do_io(self.q, done.as_mut_ptr(), min as i32, max as i32, timeout) };
            assert!(n >= 0, "do_io failed: {n}");
            if n == 0 {
                wait_fd(self.fd);
                continue;
            }
            for c in &done[..n as usize] {
                assert_eq!(c.ret, 0);
                let ud = c.user_data as u64;
                let (slot, block) = ((ud & 0xff) as usize, ud >> 8);
                if !write {
                    // SAFETY: the slot's buffer, just filled by the read.
                    let got = unsafe { self.buf(slot).cast::<u64>().read() };
                    assert_eq!(got, block, "block {block} read back");
                }
                completed += 1;
                in_flight -= 1;
                if next < ios {
                    issue(slot, &mut next);
                    in_flight += 1;
                }
            }
        }
        completed
    }
}

/// Sleeps until the eventfd is readable and resets it.
fn wait_fd(fd: i32) {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    let mut v = 0u64;
    // SAFETY: one valid pollfd; an 8-byte read into a u64.
    unsafe {
        libc::poll(&mut pfd, 1, -1);
        libc::read(fd, (&mut v as *mut u64).cast(), 8);
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        // SAFETY: our instance and region; no request is in flight.
        unsafe {
            blkio_unmap_mem_region(self.b, &self.region);
            blkio_free_mem_region(self.b, &self.region);
            blkio_destroy(&mut self.b);
        }
    }
}

#[test]
fn request_path_does_not_allocate() {
    let s = Setup::new();
    // Fill the file (block i holds i) and warm every lazily sized buffer.
    assert_eq!(s.run(Mode::Block, true, BLOCKS), BLOCKS);
    for mode in [
        Mode::Block,
        Mode::Event,
        Mode::Batch,
        Mode::BatchWithTimeout,
    ] {
        let mut completed = 0;
        let n = allocations_in(|| completed = s.run(mode, false, 2000));
        assert_eq!(completed, 2000, "{mode:?}");
        assert_eq!(n, 0, "{mode:?}: {n} allocations on the request path");
        let n = allocations_in(|| completed = s.run(mode, true, 500));
        assert_eq!(completed, 500, "{mode:?} writes");
        assert_eq!(n, 0, "{mode:?} writes: {n} allocations");
    }
}

/// The counter is live: the test above cannot pass by counting nothing.
#[test]
fn counter_sees_allocations() {
    let n = allocations_in(|| drop(std::hint::black_box(vec![1u8; 64])));
    assert!(n >= 2, "alloc + free counted, got {n}");
}
