//! An event loop on a queue's completion fd: requests are submitted, the
//! loop sleeps in poll(2) until the fd is readable, then reaps without
//! blocking. This is how an application with its own event loop (epoll,
//! an async runtime) drives a queue.
//!
//! ```text
//! cargo run --example event_loop -- FILE
//! ```
//!
//! Reads FILE in 4 KiB blocks, 16 at a time, and prints a checksum.

use std::process::ExitCode;

use blkio::{Blkio, Completion, ReqFlags};

const BLOCK: usize = 4096;
const DEPTH: usize = 16;

/// Sleeps until `fd` is readable, then resets the eventfd. A completion
/// that arrives after the reset signals it again, so none is missed.
fn wait_readable(fd: i32) -> std::io::Result<()> {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd for the duration of the call.
    if unsafe { libc::poll(&mut pfd, 1, -1) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut counter = 0u64;
    // SAFETY: an 8-byte read from an eventfd into a u64.
    unsafe { libc::read(fd, (&mut counter as *mut u64).cast(), 8) };
    Ok(())
}

fn checksum(path: &str) -> blkio::Result<(u64, u64)> {
    let b = Blkio::new("io_uring")?;
    b.set("path", path)?;
    b.set("read-only", true)?;
    let b = b.connect()?.start()?;
    let len = b.get::<u64>("capacity")?;
    let mut region = b.alloc_mem_region(DEPTH * BLOCK)?;
    b.map_mem_region(&region)?;
    let mut q = b.queue(0)?;
    q.set_completion_fd_enabled(true);
    let fd = q
        .completion_fd()?
        .expect("regular queues have a completion fd");

    let mut done = [Completion::default(); DEPTH];
    let mut sum = 0u64;
    let mut next = 0u64;
    while next < len || q.outstanding() > 0 {
        // Submit a batch: one block per slot. Submitting and reaping both
        // happen in do_io; min 0 never blocks.
        let batch_start = next;
        let mut slots = 0;
        while next < len && slots < DEPTH {
            let n = BLOCK.min((len - next) as usize);
            q.read(next, &region, slots * BLOCK, n, slots, ReqFlags::NONE);
            next += n as u64;
            slots += 1;
        }
        let mut reaped = 0;
        while reaped < slots {
            let n = q.do_io(&mut done, 0, None, None)?;
            if n == 0 {
                wait_readable(fd).map_err(|e| {
                    blkio::Error::new(e.raw_os_error().unwrap_or(libc::EIO), e.to_string())
                })?;
                continue;
            }
            for c in &done[..n] {
                c.result()?;
            }
            reaped += n;
        }
        // The whole batch completed: the region is idle again.
        let bytes = region.bytes()?;
        let used = (next - batch_start) as usize;
        sum = bytes[..used]
            .iter()
            .fold(sum, |s, &x| s.wrapping_mul(31).wrapping_add(u64::from(x)));
    }
    Ok((len, sum))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let [_, path] = args.as_slice() else {
        eprintln!("usage: event_loop FILE");
        return ExitCode::from(2);
    };
    match checksum(path) {
        Ok((len, sum)) => {
            println!("{len} bytes, checksum {sum:016x}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("event_loop: {e}");
            ExitCode::FAILURE
        }
    }
}
