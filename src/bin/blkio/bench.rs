//! `blkio bench`: a fixed-time I/O benchmark through the public API, one
//! thread per queue, reporting IOPS, bandwidth and latency percentiles.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use crate::api::{self, Queue};
use crate::args::{self, Arg, DeviceSpec, Parser};
use crate::device;
use crate::histogram::Histogram;
use crate::output::{self, JsonObject, Progress};
use crate::Failure;

pub const HELP: &str = "\
Usage: blkio bench DRIVER [NAME=VALUE...] [OPTIONS]

Runs I/O against the device for a fixed time and prints IOPS, bandwidth
and completion latency percentiles (p50, p99, p99.9). Every request goes
through the libblkio API; buffers come from blkio_alloc_mem_region() and
are mapped with blkio_map_mem_region(). With a terminal on stderr a live
progress line is shown.

WRITE WORKLOADS OVERWRITE THE DEVICE'S DATA.

Options:
  --rw KIND       randread (default), randwrite, read, write, randrw (50/50)
  --bs SIZE       request size (default 4k); suffixes k, M, G (binary)
  --iodepth N     requests in flight per queue (default 1)
  --queues N      queues, one thread each (default 1)
  --runtime SECS  duration (default 5)
  --mode MODE     how completions are waited for (default block):
                    block  blkioq_do_io() with min_completions=1
                    event  completion fd + poll(2), then blkioq_do_io(min=0)
                    poll   busy loop of blkioq_do_io(min=0)
                    pollq  poll queues (num-poll-queues), blkioq_do_io(min=1)
  --size SIZE     working set from offset 0 (default: the capacity)
  --json          print one JSON object
  -h, --help      show this help

Example:
  blkio bench io_uring path=/dev/nvme0n1 direct=true --rw randread --iodepth 32
";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Workload {
    RandRead,
    RandWrite,
    Read,
    Write,
    RandRw,
}

impl Workload {
    fn parse(s: &str) -> Result<Workload, Failure> {
        Ok(match s {
            "randread" => Workload::RandRead,
            "randwrite" => Workload::RandWrite,
            "read" => Workload::Read,
            "write" => Workload::Write,
            "randrw" => Workload::RandRw,
            _ => {
                return Err(Failure::usage(format!(
                    "--rw: unknown workload \"{s}\" (randread, randwrite, read, write, randrw)"
                )))
            }
        })
    }

    fn name(self) -> &'static str {
        match self {
            Workload::RandRead => "randread",
            Workload::RandWrite => "randwrite",
            Workload::Read => "read",
            Workload::Write => "write",
            Workload::RandRw => "randrw",
        }
    }

    fn random(self) -> bool {
        matches!(
            self,
            Workload::RandRead | Workload::RandWrite | Workload::RandRw
        )
    }

    fn writes(self) -> bool {
        !matches!(self, Workload::RandRead | Workload::Read)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Block,
    Event,
    Poll,
    PollQ,
}

impl Mode {
    fn parse(s: &str) -> Result<Mode, Failure> {
        Ok(match s {
            "block" => Mode::Block,
            "event" => Mode::Event,
            "poll" => Mode::Poll,
            "pollq" => Mode::PollQ,
            _ => {
                return Err(Failure::usage(format!(
                    "--mode: unknown mode \"{s}\" (block, event, poll, pollq)"
                )))
            }
        })
    }

    fn name(self) -> &'static str {
        match self {
            Mode::Block => "block",
            Mode::Event => "event",
            Mode::Poll => "poll",
            Mode::PollQ => "pollq",
        }
    }
}

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

fn parse(mut p: Parser) -> Result<Option<Options>, Failure> {
    let mut o = Options {
        spec: DeviceSpec::default(),
        rw: Workload::RandRead,
        bs: 4096,
        iodepth: 1,
        queues: 1,
        runtime: 5.0,
        mode: Mode::Block,
        size: None,
        json: false,
    };
    while let Some(arg) = p.next_arg() {
        match arg {
            Arg::Opt(name, v) => match name.as_str() {
                "help" => {
                    print!("{HELP}");
                    return Ok(None);
                }
                "json" if v.is_none() => o.json = true,
                "rw" => o.rw = Workload::parse(&p.value("rw", v)?)?,
                "bs" => o.bs = args::parse_size("--bs", &p.value("bs", v)?)?,
                "iodepth" => {
                    o.iodepth = args::parse_count("--iodepth", &p.value("iodepth", v)?, 65536)?
                }
                "queues" => o.queues = args::parse_count("--queues", &p.value("queues", v)?, 1024)?,
                "runtime" => o.runtime = args::parse_seconds("--runtime", &p.value("runtime", v)?)?,
                "mode" => o.mode = Mode::parse(&p.value("mode", v)?)?,
                "size" => o.size = Some(args::parse_size("--size", &p.value("size", v)?)?),
                _ => return Err(args::unknown_option(&name)),
            },
            Arg::Pos(w) if o.spec.driver.is_empty() => o.spec.driver = w,
            Arg::Pos(w) => o.spec.props.push(args::parse_prop(&w)?),
        }
    }
    if o.spec.driver.is_empty() {
        return Err(Failure::usage(
            "bench: missing DRIVER (see 'blkio bench --help')",
        ));
    }
    if o.bs == 0 || o.bs > u32::MAX as u64 {
        return Err(Failure::usage(
            "--bs: must be between 1 and 4294967295 bytes",
        ));
    }
    for name in ["num-queues", "num-poll-queues"] {
        if o.spec.has_prop(name) {
            return Err(Failure::usage(format!(
                "{name}: set by bench from --queues and --mode; use those instead"
            )));
        }
    }
    Ok(Some(o))
}

pub fn run(p: Parser) -> Result<(), Failure> {
    let Some(mut o) = parse(p)? else {
        return Ok(());
    };
    let queue_prop = if o.mode == Mode::PollQ {
        "num-poll-queues"
    } else {
        "num-queues"
    };
    o.spec.props.push((queue_prop.into(), o.queues.to_string()));
    let inst = device::open(&o.spec, true)?;

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
    let mut regions = Vec::new();
    for _ in 0..o.queues {
        let mut r = inst
            .alloc_region(region_len)
            .map_err(|e| Failure::device(format!("allocating buffers: {}", e.msg)))?;
        // Non-zero data, so writes are not trivially compressible zeros.
        for (i, b) in r.bytes_mut().iter_mut().enumerate() {
            *b = (i as u8).wrapping_mul(31) | 1;
        }
        regions.push(r);
    }
    let mut mappings = Vec::new();
    for r in &regions {
        mappings.push(
            inst.map(r)
                .map_err(|e| Failure::device(format!("mapping buffers: {}", e.msg)))?,
        );
    }
    let mut queues = Vec::new();
    for i in 0..o.queues as i32 {
        let q = if o.mode == Mode::PollQ {
            inst.poll_queue(i)
        } else {
            inst.queue(i)
        };
        queues.push(q.ok_or_else(|| Failure::device(format!("queue {i} does not exist")))?);
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
                    buf: region.as_ptr() as usize,
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
    drop(mappings);
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
    let mut progress = Progress::new(Duration::from_millis(500));
    let (mut last_ios, mut last_t) = (0u64, started);
    while !stop.load(Relaxed) {
        let left = runtime.saturating_sub(started.elapsed());
        if left.is_zero() {
            break;
        }
        std::thread::sleep(left.min(Duration::from_millis(100)));
        if progress.due() {
            let ios: u64 = counters.iter().map(|c| c.0.load(Relaxed)).sum();
            let dt = last_t.elapsed().as_secs_f64().max(1e-9);
            let iops = (ios - last_ios) as f64 / dt;
            progress.show(&format!(
                "{:5.1}s  {} IOPS  {}",
                started.elapsed().as_secs_f64(),
                output::count(iops),
                output::rate(iops * o.bs as f64)
            ));
            (last_ios, last_t) = (ios, Instant::now());
        }
    }
    stop.store(true, Relaxed);
    progress.finish();
}

fn report(o: &Options, elapsed: f64, hist: &Histogram) {
    let ios = hist.count();
    let iops = ios as f64 / elapsed;
    let bw = iops * o.bs as f64;
    let (p50, p99, p999) = (
        hist.quantile(0.5),
        hist.quantile(0.99),
        hist.quantile(0.999),
    );
    if o.json {
        let latency = JsonObject::new()
            .num("p50", p50)
            .num("p99", p99)
            .num("p99.9", p999)
            .num("max", hist.max())
            .build();
        let props: Vec<String> = o
            .spec
            .props
            .iter()
            .map(|(k, v)| format!("{}: {}", output::json_str(k), output::json_str(v)))
            .collect();
        println!(
            "{}",
            JsonObject::new()
                .str("driver", &o.spec.driver)
                .raw("properties", format!("{{{}}}", props.join(", ")))
                .str("rw", o.rw.name())
                .num("bs", o.bs)
                .num("iodepth", o.iodepth)
                .num("queues", o.queues)
                .str("mode", o.mode.name())
                .float("runtime_s", elapsed, 3)
                .num("ios", ios)
                .float("iops", iops, 1)
                .float("bandwidth_bytes_per_s", bw, 1)
                .raw("latency_ns", latency)
                .build()
        );
    } else {
        println!(
            "{}: {} bs={} iodepth={} queues={} mode={}",
            o.spec.describe(),
            o.rw.name(),
            o.bs,
            o.iodepth,
            o.queues,
            o.mode.name()
        );
        println!("  runtime    {elapsed:.2} s, {ios} I/Os");
        println!("  IOPS       {iops:.0}");
        println!("  bandwidth  {}", output::rate(bw));
        println!(
            "  latency    p50 {} us  p99 {} us  p99.9 {} us  max {} us",
            output::micros(p50),
            output::micros(p99),
            output::micros(p999),
            output::micros(hist.max())
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
    /// The region's address (buffer `i` is at `buf + i * bs`).
    buf: usize,
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
            Workload::RandRw => self.next_random() >> 63 == 1,
            rw => rw.writes(),
        };
        Slot {
            submitted_ns: now,
            offset: block * self.bs,
            write,
        }
    }

    fn submit(&mut self, index: usize, slot: &Slot) {
        let buf = (self.buf + index * self.bs as usize) as *mut u8;
        if slot.write {
            self.q.write(slot.offset, buf, self.bs as usize, index, 0);
        } else {
            self.q.read(slot.offset, buf, self.bs as usize, index, 0);
        }
    }

    fn run(mut self, stop: &AtomicBool, counter: &AtomicU64) -> Result<Histogram, Failure> {
        let mut hist = Histogram::default();
        let mut done = api::completions(self.iodepth);
        if self.mode == Mode::Event {
            // virtio-blk queues start with completion notifications off.
            self.q.set_completion_fd_enabled(true);
        }
        let fd = match self.mode {
            Mode::Event => Some(
                self.q
                    .completion_fd()
                    .ok_or_else(|| Failure::device("queue has no completion fd"))?,
            ),
            _ => None,
        };
        let min = match self.mode {
            Mode::Block | Mode::PollQ => 1,
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
            let n = match self.q.do_io(&mut done, min) {
                Ok(n) => n,
                Err(e) => {
                    // The queue is unusable; in-flight requests are
                    // abandoned with the instance (buffers outlive it).
                    stop.store(true, Relaxed);
                    return Err(Failure::device(format!("blkioq_do_io: {}", e.msg)));
                }
            };
            if n == 0 {
                if let Some(fd) = fd {
                    api::wait_readable(fd);
                }
                continue;
            }
            let now = base.elapsed().as_nanos() as u64;
            for c in &done[..n] {
                let index = c.user_data as usize;
                let slot = slots[index];
                if c.ret < 0 && failure.is_none() {
                    failure = Some(Failure::device(format!(
                        "{} of {} bytes at offset {}: {}",
                        if slot.write { "write" } else { "read" },
                        self.bs,
                        slot.offset,
                        api::completion_error(c)
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
