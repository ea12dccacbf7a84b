//! `blkio copy SRC DST`: copies a device's contents through the API with
//! a pipeline of `--iodepth` chunks, keeping holes (all-zero blocks become
//! write-zeroes requests), then flushes and optionally verifies.

use blkio::{Blkio, Completion, MemRegion, Queue, ReqFlags, Started, State};
use std::fs::OpenOptions;
use std::time::Instant;

use clap::ValueHint;

use crate::args::{self, DeviceSpec};
use crate::cli::HELP_TEMPLATE;
use crate::device;
use crate::output;
use crate::Failure;

const ABOUT: &str = "\
Copies the whole of SRC onto DST through libblkio. Blocks that are all
zeros in SRC are not written as data: DST gets write-zeroes requests
instead, so holes stay holes on sparse files (and unmapped on devices that
support it). DST is flushed at the end.

SRC and DST are each either
  DRIVER:NAME=VALUE,NAME=VALUE   a driver and its properties (a comma inside
                                 a value is written twice: ,,), e.g.
                                 io_uring:path=/dev/sdb,direct=true
  PATH                           shorthand for io_uring:path=PATH; a DST
                                 that is a regular file or does not exist
                                 is created and sized to SRC's capacity
                                 (like cp). Write ./a:b=c for a file whose
                                 name looks like a driver spec.

SRC is opened with read-only=true unless it says otherwise. A DST smaller
than SRC is an error unless it can grow (can-grow=true).";

const EXAMPLES: &str = "\
Examples:
  blkio copy disk.img io_uring:path=/dev/sdb,direct=true --verify
  blkio copy io_uring:path=/dev/vdb,read-only=true backup.img";

/// Copy a device, keeping holes
#[derive(clap::Args)]
#[command(help_template = HELP_TEMPLATE, long_about = ABOUT, after_help = EXAMPLES)]
pub struct Args {
    /// The source: DRIVER:NAME=VALUE,... or a path
    #[arg(value_parser = args::parse_target, value_hint = ValueHint::FilePath)]
    src: DeviceSpec,
    /// The destination: DRIVER:NAME=VALUE,... or a path
    #[arg(value_parser = args::parse_target, value_hint = ValueHint::FilePath)]
    dst: DeviceSpec,
    /// Chunk size; suffixes k, M, G (binary)
    #[arg(long, value_name = "SIZE", default_value = "1M", value_parser = args::parse_size)]
    bs: u64,
    /// Chunks in flight
    #[arg(long, value_name = "N", default_value_t = 8,
          value_parser = clap::value_parser!(u32).range(1..=4096))]
    iodepth: u32,
    /// Afterwards, read both back and compare them
    #[arg(long)]
    verify: bool,
}

/// The command line, checked.
struct Options {
    src: DeviceSpec,
    dst: DeviceSpec,
    bs: u64,
    iodepth: usize,
    verify: bool,
}

fn check(a: Args) -> Result<Options, Failure> {
    if a.bs == 0 || a.bs > (1 << 30) {
        return Err(Failure::usage("--bs: must be between 1 byte and 1 GiB"));
    }
    let mut src = a.src;
    if !src.has_prop("read-only") {
        src.props.push(("read-only".into(), "true".into()));
    }
    Ok(Options {
        src,
        dst: a.dst,
        bs: a.bs,
        iodepth: a.iodepth as usize,
        verify: a.verify,
    })
}

/// Creates a missing plain-path destination and sizes a regular file to
/// `size` (the rest of its old contents, if any, is overwritten by the
/// copy).
fn prepare_plain_destination(path: &str, size: u64) -> Result<(), Failure> {
    let fail = |e: std::io::Error| Failure::device(format!("{path}: {e}"));
    match std::fs::metadata(path) {
        Ok(m) if !m.file_type().is_file() => Ok(()),
        Ok(_) | Err(_) => {
            let f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .open(path)
                .map_err(fail)?;
            f.set_len(size).map_err(fail)
        }
    }
}

pub fn run(args: Args) -> Result<(), Failure> {
    let o = check(args)?;
    let src = device::open_started(&o.src)?;
    let src_cap = device::get_u64(&src, "capacity")?;
    if let Some(path) = &o.dst.plain_path {
        prepare_plain_destination(path, src_cap)?;
    }
    let dst = device::open_started(&o.dst)?;
    let dst_cap = device::get_u64(&dst, "capacity")?;
    let can_grow = device::get_bool(&dst, "can-grow")?;
    if dst_cap < src_cap && !can_grow {
        return Err(Failure::device(format!(
            "{}: destination ({dst_cap} bytes) is smaller than the source ({src_cap} bytes)",
            o.dst.describe()
        )));
    }
    fn align<S: State>(inst: &Blkio<S>) -> Result<u64, Failure> {
        device::get_int(inst, "request-alignment").map(|a| a.max(1) as u64)
    }
    let granule = 4096u64.max(align(&src)?).max(align(&dst)?);
    if o.bs % granule != 0 {
        return Err(Failure::usage(format!(
            "--bs: {} is not a multiple of {granule} (4 KiB and both devices' request-alignment)",
            o.bs
        )));
    }

    // Two buffers per slot (the second only for verification), one region
    // mapped into both instances.
    let buf_align = device::buffer_alignment(&src)?.max(device::buffer_alignment(&dst)?);
    let len = device::round_up(2 * o.iodepth * o.bs as usize, buf_align);
    let region = src
        .alloc_mem_region(len)
        .map_err(|e| Failure::device(format!("allocating buffers: {}", e.message())))?;
    for (inst, spec) in [(&src, &o.src), (&dst, &o.dst)] {
        inst.map_mem_region(&region).map_err(|e| {
            Failure::device(format!(
                "mapping buffers for {}: {}",
                spec.describe(),
                e.message()
            ))
        })?;
    }
    let mut pipe = Pipeline {
        src: End::new(queue(&src, &o.src)?, &o.src)?,
        dst: End::new(queue(&dst, &o.dst)?, &o.dst)?,
        region: &region,
        bs: o.bs,
        iodepth: o.iodepth,
        src_cap,
        dst_cap,
        granule,
        slots: vec![None; o.iodepth],
        done: vec![Completion::default(); o.iodepth.max(2)],
        failure: None,
        data_bytes: 0,
        zero_bytes: 0,
    };

    let started = Instant::now();
    let result = pipe.run(Job::Copy);
    let result = result.and_then(|()| pipe.flush_dst());
    let copy_secs = started.elapsed().as_secs_f64();
    let result = result.and_then(|()| {
        if o.verify {
            pipe.run(Job::Verify)
        } else {
            Ok(())
        }
    });
    // Requests may still be in flight on a broken queue: they keep the
    // region alive (the queues' drop cannot wait for them).
    if let Err(Fatal::Failed(f) | Fatal::QueueBroken(f)) = result {
        return Err(f);
    }
    println!(
        "copied {} in {copy_secs:.2} s ({}): {} as data, {} as zeroes",
        output::bytes(src_cap as f64),
        output::rate(src_cap as f64 / copy_secs.max(1e-9)),
        output::bytes(pipe.data_bytes as f64),
        output::bytes(pipe.zero_bytes as f64),
    );
    if o.verify {
        println!("verified: {} identical", output::bytes(src_cap as f64));
    }
    Ok(())
}

/// Queue 0 of a started instance.
fn queue<'a>(inst: &'a Blkio<Started>, spec: &DeviceSpec) -> Result<Queue<'a>, Failure> {
    inst.queue(0)
        .map_err(|e| Failure::device(format!("{}: queue 0: {}", spec.describe(), e.message())))
}

/// Why a pipeline stopped early.
enum Fatal {
    /// A request or a comparison failed; every request has completed.
    Failed(Failure),
    /// `blkioq_do_io` itself failed; requests may still be in flight.
    QueueBroken(Failure),
}

impl From<Failure> for Fatal {
    fn from(f: Failure) -> Self {
        Fatal::Failed(f)
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Job {
    Copy,
    Verify,
}

/// One side of the copy: its queue, completion fd and name for messages.
struct End<'a> {
    q: Queue<'a>,
    fd: i32,
    name: String,
}

impl<'a> End<'a> {
    fn new(mut q: Queue<'a>, spec: &DeviceSpec) -> Result<Self, Failure> {
        // Event driven: virtio-blk queues start with notifications off.
        q.set_completion_fd_enabled(true);
        let fd = q
            .completion_fd()
            .map_err(|e| Failure::device(format!("{}: completion fd: {e}", spec.describe())))?
            .ok_or_else(|| {
                Failure::device(format!("{}: queue has no completion fd", spec.describe()))
            })?;
        Ok(End {
            q,
            fd,
            name: spec.describe(),
        })
    }
}

/// A chunk being worked on in one slot.
#[derive(Clone, Copy)]
struct Chunk {
    offset: u64,
    len: usize,
    /// Requests of this chunk not yet completed.
    pending: u32,
}

/// What to do with one run of granules of a chunk on the destination.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Data,
    Zeroes,
    /// Beyond the end of a growable destination: left as a hole that a
    /// later write past it (the chunk at the very end is always written as
    /// data) turns into zeros.
    Skip,
}

struct Pipeline<'a> {
    src: End<'a>,
    dst: End<'a>,
    /// Slot `i`'s buffers: see [`Pipeline::buffers`].
    region: &'a MemRegion,
    bs: u64,
    iodepth: usize,
    src_cap: u64,
    dst_cap: u64,
    granule: u64,
    slots: Vec<Option<Chunk>>,
    done: Vec<Completion>,
    failure: Option<Failure>,
    data_bytes: u64,
    zero_bytes: u64,
}

impl Pipeline<'_> {
    /// The offsets in the region of slot `i`'s first (source) and second
    /// (destination) buffer.
    fn buffers(&self, i: usize) -> (usize, usize) {
        let bs = self.bs as usize;
        (i * bs, (self.iodepth + i) * bs)
    }

    /// `len` bytes of the region at `offset`, which no request in flight
    /// writes.
    ///
    /// # Safety
    /// Every request that wrote into these bytes has completed, and none
    /// that writes them is in flight until the slice is gone (requests of
    /// other slots use other bytes of the region).
    unsafe fn completed(&self, offset: usize, len: usize) -> &[u8] {
        assert!(offset + len <= self.region.len());
        // SAFETY: inside the region (asserted), which outlives the
        // pipeline; nothing writes these bytes meanwhile (the contract).
        unsafe { std::slice::from_raw_parts(self.region.as_ptr().add(offset), len) }
    }

    /// Runs `job` over the whole source with every slot busy, until all
    /// chunks are done or a failure was recorded and the rest drained.
    fn run(&mut self, job: Job) -> Result<(), Fatal> {
        let mut next = 0u64;
        let bar = output::progress(
            self.src_cap,
            "{prefix} [{wide_bar}] {percent:>3}%  {binary_bytes} / {binary_total_bytes}  \
             {binary_bytes_per_sec}",
        );
        bar.set_prefix(match job {
            Job::Copy => "copy  ",
            Job::Verify => "verify",
        });
        let mut finished = 0u64;
        loop {
            for i in 0..self.iodepth {
                if self.slots[i].is_none() && next < self.src_cap && self.failure.is_none() {
                    let len = self.bs.min(self.src_cap - next) as usize;
                    self.start(job, i, next, len);
                    next += len as u64;
                }
            }
            if self.slots.iter().all(Option::is_none) {
                break;
            }
            let reaped = self.reap(job, &mut finished)?;
            if reaped == 0 {
                wait_either(self.src.fd, self.dst.fd);
            }
            bar.set_position(finished);
        }
        bar.finish_and_clear();
        match self.failure.take() {
            Some(f) => Err(Fatal::Failed(f)),
            None => Ok(()),
        }
    }

    fn start(&mut self, job: Job, i: usize, offset: u64, len: usize) {
        let (a, b) = self.buffers(i);
        let pending = match job {
            Job::Copy => {
                self.src
                    .q
                    .read(offset, self.region, a, len, i, ReqFlags::NONE);
                1
            }
            Job::Verify => {
                self.src
                    .q
                    .read(offset, self.region, a, len, i, ReqFlags::NONE);
                self.dst
                    .q
                    .read(offset, self.region, b, len, i, ReqFlags::NONE);
                2
            }
        };
        self.slots[i] = Some(Chunk {
            offset,
            len,
            pending,
        });
    }

    /// Reaps both queues once; returns how many completions there were.
    fn reap(&mut self, job: Job, finished: &mut u64) -> Result<usize, Fatal> {
        let mut total = 0;
        for from_src in [true, false] {
            let end = if from_src {
                &mut self.src
            } else {
                &mut self.dst
            };
            let n = end.q.do_io(&mut self.done, 0, None, None).map_err(|e| {
                Fatal::QueueBroken(Failure::device(format!(
                    "{}: blkioq_do_io: {}",
                    end.name,
                    e.message()
                )))
            })?;
            total += n;
            for k in 0..n {
                let c = self.done[k];
                self.complete(job, from_src, &c, finished);
            }
        }
        Ok(total)
    }

    fn complete(&mut self, job: Job, from_src: bool, c: &Completion, finished: &mut u64) {
        let i = c.user_data;
        let mut chunk = self.slots[i].expect("completion for a busy slot");
        chunk.pending -= 1;
        if let Err(e) = c.result() {
            if self.failure.is_none() {
                let (what, end) = match (job, from_src) {
                    (_, true) => ("reading", &self.src.name),
                    (Job::Copy, false) => ("writing", &self.dst.name),
                    (Job::Verify, false) => ("reading", &self.dst.name),
                };
                self.failure = Some(Failure::device(format!(
                    "{what} {end} at offset {}: {}",
                    chunk.offset,
                    e.message()
                )));
            }
        } else if chunk.pending == 0 && self.failure.is_none() {
            match job {
                Job::Copy if from_src => chunk.pending = self.write_chunk(i, &chunk),
                Job::Copy => {}
                Job::Verify => self.compare_chunk(i, &chunk),
            }
        }
        if chunk.pending == 0 {
            self.slots[i] = None;
            if self.failure.is_none() {
                *finished += chunk.len as u64;
            }
        } else {
            self.slots[i] = Some(chunk);
        }
    }

    /// Queues the destination requests for a chunk that was read into slot
    /// `i`; returns how many.
    fn write_chunk(&mut self, i: usize, chunk: &Chunk) -> u32 {
        let (a, _) = self.buffers(i);
        // SAFETY: the read into this buffer has completed; nothing else
        // writes it until the slot is reused.
        let data = unsafe { self.completed(a, chunk.len) };
        let mut count = 0;
        for (start, len, kind) in runs(
            data,
            chunk.offset,
            self.granule as usize,
            self.dst_cap,
            self.src_cap,
        ) {
            let offset = chunk.offset + start as u64;
            match kind {
                Kind::Data => {
                    let at = a + start;
                    self.dst
                        .q
                        .write(offset, self.region, at, len, i, ReqFlags::NONE);
                    self.data_bytes += len as u64;
                    count += 1;
                }
                Kind::Zeroes => {
                    self.dst
                        .q
                        .write_zeroes(offset, len as u64, i, ReqFlags::NONE);
                    self.zero_bytes += len as u64;
                    count += 1;
                }
                Kind::Skip => self.zero_bytes += len as u64,
            }
        }
        count
    }

    fn compare_chunk(&mut self, i: usize, chunk: &Chunk) {
        let (a, b) = self.buffers(i);
        // SAFETY: both reads into these buffers have completed; nothing
        // writes them until the slot is reused.
        let (x, y) = unsafe { (self.completed(a, chunk.len), self.completed(b, chunk.len)) };
        if x == y {
            return;
        }
        if let Some(k) = x.iter().zip(y).position(|(p, q)| p != q) {
            self.failure = Some(Failure::device(format!(
                "verify: {} and {} differ at offset {}",
                self.src.name,
                self.dst.name,
                chunk.offset + k as u64
            )));
        }
    }

    /// Flushes the destination and waits for it.
    fn flush_dst(&mut self) -> Result<(), Fatal> {
        self.dst.q.flush(0, ReqFlags::NONE);
        let n = self
            .dst
            .q
            .do_io(&mut self.done[..1], 1, None, None)
            .map_err(|e| {
                Fatal::QueueBroken(Failure::device(format!(
                    "{}: blkioq_do_io: {}",
                    self.dst.name,
                    e.message()
                )))
            })?;
        match self.done[..n].first().map(Completion::result) {
            Some(Err(e)) => Err(Fatal::Failed(Failure::device(format!(
                "flushing {}: {}",
                self.dst.name,
                e.message()
            )))),
            _ => Ok(()),
        }
    }
}

/// Splits a chunk read from `chunk_offset` into runs of granules of one
/// [`Kind`]: (start within the chunk, length, kind).
fn runs(
    data: &[u8],
    chunk_offset: u64,
    granule: usize,
    dst_cap: u64,
    src_cap: u64,
) -> Vec<(usize, usize, Kind)> {
    let mut out: Vec<(usize, usize, Kind)> = Vec::new();
    for (n, g) in data.chunks(granule).enumerate() {
        let start = n * granule;
        let end = chunk_offset + (start + g.len()) as u64;
        let kind = if !is_zero(g) || (end > dst_cap && end == src_cap) {
            Kind::Data
        } else if end <= dst_cap {
            Kind::Zeroes
        } else {
            Kind::Skip
        };
        match out.last_mut() {
            Some(last) if last.2 == kind => last.1 += g.len(),
            _ => out.push((start, g.len(), kind)),
        }
    }
    out
}

fn is_zero(data: &[u8]) -> bool {
    let mut words = data.chunks_exact(16);
    words.all(|w| u128::from_ne_bytes(w.try_into().expect("16 bytes")) == 0)
        && words.remainder().iter().all(|&b| b == 0)
}

/// Sleeps until either completion fd is readable, then resets both (a
/// completion after the reset signals again, so none is missed).
fn wait_either(a: i32, b: i32) {
    let mut fds = [a, b].map(|fd| libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    });
    // SAFETY: two valid pollfds; 8-byte reads into a u64 from eventfds.
    unsafe {
        libc::poll(fds.as_mut_ptr(), 2, -1);
        for fd in [a, b] {
            let mut v = 0u64;
            libc::read(fd, (&mut v as *mut u64).cast(), 8);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_detection() {
        assert!(is_zero(&[0; 4096]));
        assert!(is_zero(&[0; 17]));
        assert!(is_zero(&[]));
        let mut v = vec![0u8; 4097];
        v[4096] = 1;
        assert!(!is_zero(&v));
        v[4096] = 0;
        v[3] = 9;
        assert!(!is_zero(&v));
    }

    #[test]
    fn runs_merge_granules() {
        let mut d = vec![0u8; 5 * 4];
        d[5] = 1; // granule 1
        d[9] = 1; // granule 2
                  // Destination as large as the source: zeros become write-zeroes.
        assert_eq!(
            runs(&d, 0, 4, 20, 20),
            vec![
                (0, 4, Kind::Zeroes),
                (4, 8, Kind::Data),
                (12, 8, Kind::Zeroes)
            ]
        );
        // Growable destination of 8 bytes: zeros past it are skipped,
        // except the final granule, which extends the destination.
        assert_eq!(
            runs(&d, 0, 4, 8, 20),
            vec![
                (0, 4, Kind::Zeroes),
                (4, 8, Kind::Data),
                (12, 4, Kind::Skip),
                (16, 4, Kind::Data)
            ]
        );
        // A short final chunk (granule 4, 6 bytes) at offset 100.
        assert_eq!(
            runs(&[0; 6], 100, 4, 0, 106),
            vec![(0, 4, Kind::Skip), (4, 2, Kind::Data)]
        );
    }
}
