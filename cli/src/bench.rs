//! `blkio bench`: a fixed-time I/O benchmark through the public API, one
//! thread per queue, reporting IOPS, bandwidth and latency percentiles.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use blkio::{Completion, MemRegion, Queue, ReqFlags};
use clap::ValueEnum;
use serde::{Serialize, Serializer};

use crate::args::{self, DeviceSpec};
use crate::cli::{DeviceArgs, HELP_TEMPLATE};
use crate::device;
use crate::histogram::Histogram;
use crate::output;
use crate::Failure;

const ABOUT: &str = "\
Runs I/O against the device for a fixed time and prints IOPS, bandwidth
and completion latency percentiles (p50, p99, p99.9). Every request goes
through the library's Rust API; buffers are memory regions the instance
allocates and maps (blkio_alloc_mem_region() and blkio_map_mem_region() in
C terms). With a terminal on stderr a live
progress line is shown.

WRITE WORKLOADS OVERWRITE THE DEVICE'S DATA.";

/// Measure IOPS, bandwidth and latency
#[derive(clap::Args)]
#[command(
    help_template = HELP_TEMPLATE,
    long_about = ABOUT,
    after_help = "Example:\n  blkio bench io_uring path=/dev/nvme0n1 direct=true --rw randread --iodepth 32"
)]
pub struct Args {
    #[command(flatten)]
    device: DeviceArgs,
    /// The I/O pattern
    #[arg(long, value_enum, value_name = "KIND", default_value_t = Workload::Randread)]
    rw: Workload,
    /// Request size; suffixes k, M, G (binary)
    #[arg(long, value_name = "SIZE", default_value = "4k", value_parser = args::parse_size)]
    bs: u64,
    /// Requests in flight per queue
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..=65536))]
    iodepth: u32,
    /// Queues, one thread each
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..=1024))]
    queues: u32,
    /// Duration in seconds
    #[arg(long, value_name = "SECS", default_value_t = 5.0, value_parser = args::parse_seconds)]
    runtime: f64,
    /// How completions are waited for
    #[arg(long, value_enum, default_value_t = Mode::Block)]
    mode: Mode,
    /// Working set from offset 0 (default: the capacity)
    #[arg(long, value_name = "SIZE", value_parser = args::parse_size)]
    size: Option<u64>,
    /// Print one JSON object
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
enum Workload {
    /// Random reads
    Randread,
    /// Random writes
    Randwrite,
    /// Sequential reads
    Read,
    /// Sequential writes
    Write,
    /// Random reads and writes, 50/50
    Randrw,
}

impl Workload {
    fn random(self) -> bool {
        matches!(
            self,
            Workload::Randread | Workload::Randwrite | Workload::Randrw
        )
    }

    fn writes(self) -> bool {
        !matches!(self, Workload::Randread | Workload::Read)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
enum Mode {
    /// blkioq_do_io() with min_completions=1
    Block,
    /// Completion fd + poll(2), then blkioq_do_io(min=0)
    Event,
    /// Busy loop of blkioq_do_io(min=0)
    Poll,
    /// Poll queues (num-poll-queues), blkioq_do_io(min=1)
    Pollq,
}

/// The name clap knows a value by (`randread`, `pollq`, ...).
fn name(v: impl ValueEnum) -> String {
    v.to_possible_value()
        .expect("no variant is skipped")
        .get_name()
        .to_owned()
}

/// The command line, checked.
struct Options {
    spec: DeviceSpec,
    rw: Workload,
    bs: u64,
    iodepth: u32,
    queues: u32,
    runtime: f64,
    mode: Mode,
    size: Option<u64>,
    json: bool,
}

fn check(a: Args) -> Result<Options, Failure> {
    if a.bs == 0 || a.bs > u32::MAX as u64 {
        return Err(Failure::usage(
            "--bs: must be between 1 and 4294967295 bytes",
        ));
    }
    let spec = a.device.spec();
    for name in ["num-queues", "num-poll-queues"] {
        if spec.has_prop(name) {
            return Err(Failure::usage(format!(
                "{name}: set by bench from --queues and --mode; use those instead"
            )));
        }
    }
    Ok(Options {
        spec,
        rw: a.rw,
        bs: a.bs,
        iodepth: a.iodepth,
        queues: a.queues,
        runtime: a.runtime,
        mode: a.mode,
        size: a.size,
        json: a.json,
    })
}

pub fn run(args: Args) -> Result<(), Failure> {
    let mut o = check(args)?;
    let queue_prop = if o.mode == Mode::Pollq {
        "num-poll-queues"
    } else {
        "num-queues"
    };
    o.spec.props.push((queue_prop.into(), o.queues.to_string()));
    let inst = device::open_started(&o.spec)?;

    let capacity = device::get_u64(&inst, "capacity")?;
    let size = o.size.unwrap_or(capacity);
    if size > capacity {
        return Err(Failure::usage(format!(
            "--size: {size} is larger than the capacity ({capacity} bytes)"
        )));
    }
    let blocks = size / o.bs;
    if blocks == 0 {
        return Err(Failure::usage(format!(
            "working set of {size} bytes is smaller than one request (--bs {})",
            o.bs
        )));
    }
    let align = device::get_int(&inst, "request-alignment")?.max(1) as u64;
    if o.bs % align != 0 {
        return Err(Failure::usage(format!(
            "--bs: {} is not a multiple of the device's request-alignment ({align})",
            o.bs
        )));
    }

    // One mapped region per queue: iodepth buffers of bs bytes each.
    let region_len = device::round_up(
        o.iodepth as usize * o.bs as usize,
        device::buffer_alignment(&inst)?,
    );
    let mut regions: Vec<MemRegion> = Vec::new();
    for _ in 0..o.queues {
        let mut r = inst
            .alloc_mem_region(region_len)
            .map_err(|e| Failure::device(format!("allocating buffers: {}", e.message())))?;
        // Non-zero data, so writes are not trivially compressible zeros.
        let bytes = r
            .bytes_mut()
            .expect("a new region has no request in flight");
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = (i as u8).wrapping_mul(31) | 1;
        }
        inst.map_mem_region(&r)
            .map_err(|e| Failure::device(format!("mapping buffers: {}", e.message())))?;
        regions.push(r);
    }
    let mut queues = Vec::new();
    for i in 0..o.queues as i32 {
        let q = if o.mode == Mode::Pollq {
            inst.poll_queue(i)
        } else {
            inst.queue(i)
        };
        queues.push(q.map_err(|e| Failure::device(format!("queue {i}: {}", e.message())))?);
    }

    let stop = AtomicBool::new(false);
    let counters: Vec<Counter> = (0..o.queues).map(|_| Counter::default()).collect();
    let started = Instant::now();
    let results: Vec<Result<Histogram, Failure>> = std::thread::scope(|s| {
        let handles: Vec<_> = queues
            .into_iter()
            .zip(&regions)
            .zip(&counters)
            .enumerate()
            .map(|(i, ((q, region), counter))| {
                let blocks_per_queue = (blocks / o.queues as u64).max(1);
                let w = Worker {
                    q,
                    region,
                    bs: o.bs,
                    iodepth: o.iodepth as usize,
                    rw: o.rw,
                    mode: o.mode,
                    blocks,
                    seq_first: (i as u64 * blocks_per_queue).min(blocks - 1),
                    seq_blocks: blocks_per_queue,
                    rng: 0x9E37_79B9_7F4A_7C15 ^ (i as u64 + 1).wrapping_mul(0xD1B5_4A32_D192_ED03),
                };
                let stop = &stop;
                s.spawn(move || w.run(stop, &counter.0))
            })
            .collect();
        watch(&o, started, &stop, &counters);
        handles
            .into_iter()
            .map(|h| h.join().expect("bench worker panicked"))
            .collect()
    });
    let elapsed = started.elapsed().as_secs_f64();
    drop(regions);

    let mut hist = Histogram::default();
    for r in results {
        hist.merge(&r?);
    }
    report(&o, elapsed, &hist);
    Ok(())
}

/// Sleeps for the runtime, updating the progress line, then stops the
/// workers (earlier if one of them failed).
fn watch(o: &Options, started: Instant, stop: &AtomicBool, counters: &[Counter]) {
    let runtime = Duration::from_secs_f64(o.runtime);
    let bar = output::progress(
        runtime.as_millis() as u64,
        "{elapsed:>4} [{wide_bar}] {msg:30}",
    );
    let (mut last_ios, mut last_t) = (0u64, started);
    while !stop.load(Relaxed) {
        let left = runtime.saturating_sub(started.elapsed());
        if left.is_zero() {
            break;
        }
        std::thread::sleep(left.min(Duration::from_millis(100)));
        bar.set_position(started.elapsed().as_millis() as u64);
        if last_t.elapsed() >= Duration::from_millis(500) {
            let ios: u64 = counters.iter().map(|c| c.0.load(Relaxed)).sum();
            let dt = last_t.elapsed().as_secs_f64().max(1e-9);
            let iops = (ios - last_ios) as f64 / dt;
            bar.set_message(format!(
                "{} IOPS  {}",
                output::count(iops),
                output::rate(iops * o.bs as f64)
            ));
            (last_ios, last_t) = (ios, Instant::now());
        }
    }
    stop.store(true, Relaxed);
    bar.finish_and_clear();
}

/// `blkio bench --json`.
#[derive(Serialize)]
struct BenchJson<'a> {
    driver: &'a str,
    /// The properties in command-line order.
    #[serde(serialize_with = "as_map")]
    properties: &'a [(String, String)],
    rw: Workload,
    bs: u64,
    iodepth: u32,
    queues: u32,
    mode: Mode,
    runtime_s: f64,
    ios: u64,
    iops: f64,
    bandwidth_bytes_per_s: f64,
    latency_ns: Latency,
}

#[derive(Serialize)]
struct Latency {
    p50: u64,
    p99: u64,
    #[serde(rename = "p99.9")]
    p999: u64,
    max: u64,
}

fn as_map<S: Serializer>(props: &&[(String, String)], s: S) -> Result<S::Ok, S::Error> {
    s.collect_map(props.iter().map(|(k, v)| (k, v)))
}

/// `x` rounded to `decimals` decimal places, for the JSON numbers.
fn round(x: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    (x * scale).round() / scale
}

fn report(o: &Options, elapsed: f64, hist: &Histogram) {
    let ios = hist.count();
    let iops = ios as f64 / elapsed;
    let bw = iops * o.bs as f64;
    let latency = Latency {
        p50: hist.quantile(0.5),
        p99: hist.quantile(0.99),
        p999: hist.quantile(0.999),
        max: hist.max(),
    };
    if o.json {
        let out = BenchJson {
            driver: &o.spec.driver,
            properties: &o.spec.props,
            rw: o.rw,
            bs: o.bs,
            iodepth: o.iodepth,
            queues: o.queues,
            mode: o.mode,
            runtime_s: round(elapsed, 3),
            ios,
            iops: round(iops, 1),
            bandwidth_bytes_per_s: round(bw, 1),
            latency_ns: latency,
        };
        println!(
            "{}",
            serde_json::to_string(&out).expect("JSON of strings and numbers")
        );
    } else {
        println!(
            "{}: {} bs={} iodepth={} queues={} mode={}",
            o.spec.describe(),
            name(o.rw),
            o.bs,
            o.iodepth,
            o.queues,
            name(o.mode)
        );
        println!("  runtime    {elapsed:.2} s, {ios} I/Os");
        println!("  IOPS       {iops:.0}");
        println!("  bandwidth  {}", output::rate(bw));
        println!(
            "  latency    p50 {} us  p99 {} us  p99.9 {} us  max {} us",
            output::micros(latency.p50),
            output::micros(latency.p99),
            output::micros(latency.p999),
            output::micros(latency.max)
        );
    }
}

/// A per-worker I/O counter on its own cache line.
#[derive(Default)]
#[repr(align(64))]
struct Counter(AtomicU64);

/// One queue's loop.
struct Worker<'a> {
    q: Queue<'a>,
    /// The worker's buffers: buffer `i` is at offset `i * bs`.
    region: &'a MemRegion,
    bs: u64,
    iodepth: usize,
    rw: Workload,
    mode: Mode,
    blocks: u64,
    seq_first: u64,
    seq_blocks: u64,
    rng: u64,
}

/// What a slot's request is doing (for latency and error messages).
#[derive(Clone, Copy)]
struct Slot {
    submitted_ns: u64,
    offset: u64,
    write: bool,
}

impl Worker<'_> {
    /// xorshift64*.
    fn next_random(&mut self) -> u64 {
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn next_slot(&mut self, seq: &mut u64, now: u64) -> Slot {
        let block = if self.rw.random() {
            self.next_random() % self.blocks
        } else {
            let b = self.seq_first + *seq;
            *seq = (*seq + 1) % self.seq_blocks;
            b.min(self.blocks - 1)
        };
        let write = match self.rw {
            Workload::Randrw => self.next_random() >> 63 == 1,
            rw => rw.writes(),
        };
        Slot {
            submitted_ns: now,
            offset: block * self.bs,
            write,
        }
    }

    fn submit(&mut self, index: usize, slot: &Slot) {
        let (bs, at) = (self.bs as usize, index * self.bs as usize);
        let none = ReqFlags::NONE;
        if slot.write {
            self.q.write(slot.offset, self.region, at, bs, index, none);
        } else {
            self.q.read(slot.offset, self.region, at, bs, index, none);
        }
    }

    fn run(mut self, stop: &AtomicBool, counter: &AtomicU64) -> Result<Histogram, Failure> {
        let mut hist = Histogram::default();
        let mut done = vec![Completion::default(); self.iodepth];
        if self.mode == Mode::Event {
            // virtio-blk queues start with completion notifications off.
            self.q.set_completion_fd_enabled(true);
        }
        let fd = match self.mode {
            Mode::Event => Some(
                self.q
                    .completion_fd()
                    .map_err(|e| Failure::device(format!("completion fd: {e}")))?
                    .ok_or_else(|| Failure::device("queue has no completion fd"))?,
            ),
            _ => None,
        };
        let min = match self.mode {
            Mode::Block | Mode::Pollq => 1,
            Mode::Event | Mode::Poll => 0,
        };
        let base = Instant::now();
        let mut seq = 0;
        let mut slots = Vec::with_capacity(self.iodepth);
        for i in 0..self.iodepth {
            let s = self.next_slot(&mut seq, 0);
            self.submit(i, &s);
            slots.push(s);
        }
        let mut in_flight = self.iodepth;
        let mut failure = None;
        while in_flight > 0 {
            let n = match self.q.do_io(&mut done, min, None, None) {
                Ok(n) => n,
                Err(e) => {
                    // The queue is unusable; dropping it keeps the buffers
                    // of requests still in flight alive.
                    stop.store(true, Relaxed);
                    return Err(Failure::device(format!("blkioq_do_io: {}", e.message())));
                }
            };
            if n == 0 {
                if let Some(fd) = fd {
                    wait_readable(fd);
                }
                continue;
            }
            let now = base.elapsed().as_nanos() as u64;
            for c in &done[..n] {
                let index = c.user_data;
                let slot = slots[index];
                if let (Err(e), None) = (c.result(), &failure) {
                    failure = Some(Failure::device(format!(
                        "{} of {} bytes at offset {}: {}",
                        if slot.write { "write" } else { "read" },
                        self.bs,
                        slot.offset,
                        e.message()
                    )));
                    stop.store(true, Relaxed);
                }
                hist.record(now.saturating_sub(slot.submitted_ns));
                if stop.load(Relaxed) {
                    in_flight -= 1;
                } else {
                    let s = self.next_slot(&mut seq, now);
                    self.submit(index, &s);
                    slots[index] = s;
                }
            }
            counter.fetch_add(n as u64, Relaxed);
        }
        match failure {
            Some(f) => Err(f),
            None => Ok(hist),
        }
    }
}

/// Waits until `fd` (a completion eventfd) is readable, then resets it.
/// Resetting before the next `do_io` loses no wake-up: a completion that
/// arrives later signals the fd again.
fn wait_readable(fd: i32) {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd; an 8-byte read into a u64 from an eventfd.
    unsafe {
        libc::poll(&mut pfd, 1, -1);
        let mut v = 0u64;
        libc::read(fd, (&mut v as *mut u64).cast(), 8);
    }
}
