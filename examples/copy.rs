//! Copies one file (or block device) to another with the io_uring driver,
//! keeping several reads and writes in flight.
//!
//! ```text
//! cargo run --example copy -- SRC DST
//! ```
//!
//! DST must exist and be at least as large as SRC (`truncate -s` it).

use std::process::ExitCode;

use blkio::{Blkio, Completion, MemRegion, ReqFlags, Started};

/// Bytes per request.
const CHUNK: usize = 256 * 1024;
/// Requests in flight.
const DEPTH: usize = 8;

fn open(path: &str, read_only: bool) -> blkio::Result<Blkio<Started>> {
    let b = Blkio::new("io_uring")?;
    b.set("path", path)?;
    b.set("read-only", read_only)?;
    b.connect()?.start()
}

fn copy(src_path: &str, dst_path: &str) -> blkio::Result<u64> {
    let src = open(src_path, true)?;
    let dst = open(dst_path, false)?;
    let len = src.get::<u64>("capacity")?;
    if dst.get::<u64>("capacity")? < len {
        return Err(blkio::Error::new(
            libc::ENOSPC,
            "the destination is smaller than the source",
        ));
    }
    // One region, mapped into both instances: slot i is bytes
    // [i * CHUNK, (i + 1) * CHUNK).
    let region: MemRegion = src.alloc_mem_region(DEPTH * CHUNK)?;
    src.map_mem_region(&region)?;
    dst.map_mem_region(&region)?;
    let mut reads = src.queue(0)?;
    let mut writes = dst.queue(0)?;
    let mut done = [Completion::default(); DEPTH];

    // Slot i copies the chunk at offsets[i]: its read's completion
    // starts the write from the same slot, whose completion frees it.
    let mut offsets = [0u64; DEPTH];
    let mut free: Vec<usize> = (0..DEPTH).collect();
    let mut next = 0u64;
    while next < len || free.len() < DEPTH {
        while next < len {
            let Some(slot) = free.pop() else { break };
            let n = CHUNK.min((len - next) as usize);
            reads.read(next, &region, slot * CHUNK, n, slot, ReqFlags::NONE);
            offsets[slot] = next;
            next += n as u64;
        }
        // Reap reads without waiting; wait for a write only when no read
        // completed.
        let n = reads.do_io(&mut done, 0, None, None)?;
        for c in &done[..n] {
            c.result()?;
            let slot = c.user_data;
            let n = CHUNK.min((len - offsets[slot]) as usize);
            writes.write(
                offsets[slot],
                &region,
                slot * CHUNK,
                n,
                slot,
                ReqFlags::NONE,
            );
        }
        let min = usize::from(n == 0 && writes.outstanding() > 0);
        let n = writes.do_io(&mut done, min, None, None)?;
        for c in &done[..n] {
            c.result()?;
            free.push(c.user_data);
        }
    }
    writes.flush(0, ReqFlags::NONE);
    writes.do_io(&mut done[..1], 1, None, None)?;
    done[0].result()?;
    Ok(len)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let [_, src, dst] = args.as_slice() else {
        eprintln!("usage: copy SRC DST");
        return ExitCode::from(2);
    };
    match copy(src, dst) {
        Ok(n) => {
            println!("copied {n} bytes");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("copy: {e} ({:?}, errno {})", e.kind(), e.errno());
            ExitCode::FAILURE
        }
    }
}
