//! Entry points for the fuzz targets of `fuzz/` (built only with the
//! `fuzzing` feature, and for `cargo test`). Each function takes the raw
//! bytes libFuzzer produces, decodes them into what a device or a program
//! would hand the library, feeds that to the library's own parsers and
//! state machines (nothing here re-implements them) and asserts the
//! invariants that must hold whatever the bytes are. A panic is a finding.
//!
//! The input formats are documented per function; `fuzz/make_corpus.py`
//! writes the seed corpus in the same formats.

use std::ffi::{c_int, c_void, CStr, CString};
use std::ptr::{self, NonNull};

use crate::capi::{self, Blkio};
use crate::core::queue::Queue;
use crate::core::region::MemRegion;
use crate::core::request::{Completion, Zone};
use crate::drivers::nvme_io_uring::identify::{self, Facts, ZonedFacts};
use crate::drivers::nvme_io_uring::namespace::Limits;
use crate::drivers::nvme_io_uring::{status, zones};
use crate::drivers::virtio_blk::config::{BlkConfig, DeviceInfo};
use crate::drivers::virtio_blk::record::{self, Header, Records, RECORD_LEN};
use crate::drivers::virtio_blk::transport::CONFIG_LEN;
use crate::drivers::virtio_blk::virtqueue::{checked, packed, split, Buffer, Virtqueue};

/// Reads fixed-size little-endian values off the front of the input; an
/// exhausted input reads as zeros.
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn take<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        let n = N.min(self.0.len());
        out[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        out
    }

    fn u8(&mut self) -> u8 {
        self.take::<1>()[0]
    }

    fn bool(&mut self) -> bool {
        self.u8() & 1 != 0
    }

    fn u16(&mut self) -> u16 {
        u16::from_le_bytes(self.take())
    }

    fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.take())
    }

    fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.take())
    }

    /// A string of up to 255 bytes (length byte first), cut at a NUL.
    fn cstring(&mut self) -> CString {
        let len = self.u8() as usize;
        let n = len.min(self.0.len());
        let (s, rest) = self.0.split_at(n);
        self.0 = rest;
        let s = s.split(|&b| b == 0).next().unwrap_or(&[]);
        CString::new(s).expect("no NUL left")
    }
}

/// The chains a test driver keeps in flight: id → descriptor count.
struct InFlight {
    len: Vec<u16>,
    descriptors: usize,
}

impl InFlight {
    fn new(size: u16) -> InFlight {
        InFlight {
            len: vec![0; size as usize],
            descriptors: 0,
        }
    }

    fn add(&mut self, id: u16, n: u16) {
        let slot = &mut self.len[id as usize];
        assert_eq!(*slot, 0, "id {id} handed out while still in flight");
        *slot = n;
        self.descriptors += n as usize;
    }

    fn remove(&mut self, id: u16) {
        let slot = self
            .len
            .get_mut(id as usize)
            .unwrap_or_else(|| panic!("popped id {id} is out of range"));
        assert_ne!(*slot, 0, "popped id {id} is not in flight");
        self.descriptors -= std::mem::take(slot) as usize;
    }

    /// The `k`-th in-flight id (wrapping), if any.
    fn pick(&self, k: u16) -> Option<u16> {
        let ids: Vec<u16> = (0..self.len.len() as u16)
            .filter(|&i| self.len[i as usize] != 0)
            .collect();
        (!ids.is_empty()).then(|| ids[k as usize % ids.len()])
    }
}

/// Memory standing in for a queue block: 16-byte aligned, zeroed.
struct Shared {
    words: Vec<u128>,
    /// The ring's length in bytes (the vector may be a little longer).
    len: usize,
}

impl Shared {
    fn new(len: usize) -> Shared {
        Shared {
            words: vec![0; len.div_ceil(16).max(1)],
            len,
        }
    }

    fn base(&mut self) -> NonNull<u8> {
        NonNull::new(self.words.as_mut_ptr().cast()).expect("vec pointer")
    }

    fn len(&self) -> usize {
        self.len
    }

    /// A device store of `v` at byte offset `off` (aligned to 2).
    fn store_u16(&mut self, off: usize, v: u16) {
        let off = off & !1;
        assert!(off + 2 <= self.len());
        // SAFETY: inside the vector, 2-byte aligned.
        unsafe {
            self.base()
                .as_ptr()
                .add(off)
                .cast::<u16>()
                .write_volatile(v.to_le())
        }
    }

    fn store_u32(&mut self, off: usize, v: u32) {
        assert!(off % 4 == 0 && off + 4 <= self.len());
        // SAFETY: inside the vector, 4-byte aligned.
        unsafe {
            self.base()
                .as_ptr()
                .add(off)
                .cast::<u32>()
                .write_volatile(v.to_le())
        }
    }
}

/// The completion values a virtio-blk status byte may map to.
fn check_status((ret, msg): (i32, Option<&CStr>)) {
    assert!(
        matches!(ret, 0) || [libc::EIO, libc::ENOTSUP, libc::EPROTO].contains(&-ret),
        "status mapped to {ret}"
    );
    assert_eq!(
        msg.is_some(),
        ret == -libc::EPROTO,
        "status mapped to {ret}, {msg:?}"
    );
}

/// The parts of a driver and a hostile device both rings share: chains
/// added through the ring, records with status bytes, and the invariants.
struct RingHarness {
    records_mem: Vec<u8>,
    records: Records,
    in_flight: InFlight,
    size: u16,
}

impl RingHarness {
    fn new(size: u16) -> RingHarness {
        let count = (size as usize).next_power_of_two();
        let mut records_mem = vec![0u8; count * RECORD_LEN];
        let base = NonNull::new(records_mem.as_mut_ptr()).expect("vec pointer");
        // SAFETY: `count` (a power of two) records that outlive `records`
        // (both live in this value, the vector's heap block never moves).
        let records = unsafe { Records::new(base, count) };
        RingHarness {
            records_mem,
            records,
            in_flight: InFlight::new(size),
            size,
        }
    }

    /// Adds a chain of 1–4 buffers if the ring has room.
    fn add(&mut self, q: &mut dyn Virtqueue<u16>, input: &mut Bytes) {
        let n = 1 + (input.u8() % 4) as u16;
        if n > q.num_free() {
            return;
        }
        let announced = q.next_id().expect("a free id when descriptors are free");
        let chain: Vec<Buffer> = (0..n)
            .map(|i| Buffer {
                addr: 0x1000 * (i as u64 + 1),
                len: 512,
                device_writable: i + 1 == n,
            })
            .collect();
        let id = checked::add(q, &chain);
        assert_eq!(id, announced, "add_chain returned another id than next_id");
        assert!(id < self.size, "id {id} outside a ring of {}", self.size);
        self.records.write(
            id,
            &Header {
                kind: 0,
                sector: 0,
                segment: None,
            },
        );
        self.in_flight.add(id, n);
    }

    /// The device writes a status byte into a record.
    fn write_status(&mut self, input: &mut Bytes) {
        let count = self.records_mem.len() / RECORD_LEN;
        let id = input.u16() as usize % count;
        self.records_mem[id * RECORD_LEN + record::STATUS_OFFSET as usize] = input.u8();
    }

    /// Pops one used chain and checks it was ours.
    fn pop(&mut self, q: &mut dyn Virtqueue<u16>) {
        let pending = q.used_pending();
        if let Some(id) = checked::pop(q) {
            assert!(pending > 0, "popped with nothing pending");
            self.in_flight.remove(id);
            check_status(record::status_to_ret(self.records.status(id)));
        }
    }

    fn check(&self, q: &dyn Virtqueue<u16>) {
        assert_eq!(
            q.num_free() as usize + self.in_flight.descriptors,
            self.size as usize,
            "free + in-flight descriptors != ring size"
        );
    }
}

/// The device side of one ring layout: how it reports a used chain and
/// how its used cursor moves. Everything else a hostile device does is
/// the same for both rings and lives in [`hostile_device`].
trait DeviceRing {
    /// The device reports a chain used: `known` is the in-flight id the
    /// input picked, or `None` for an arbitrary id read off the input; the
    /// length and any other field come off the input too.
    fn mark_used(
        &mut self,
        mem: &mut Shared,
        known: Option<u16>,
        in_flight: &InFlight,
        input: &mut Bytes,
    );

    /// The device moves its used cursor by `n` without reporting a chain.
    fn skip(&mut self, mem: &mut Shared, n: u16);
}

/// The device of a split ring: writes used elements at its own index
/// and publishes that index in `used.idx`.
struct SplitDevice {
    /// Byte offset of the used ring.
    used: usize,
    size: u16,
    idx: u16,
}

impl DeviceRing for SplitDevice {
    fn mark_used(
        &mut self,
        mem: &mut Shared,
        known: Option<u16>,
        _in_flight: &InFlight,
        input: &mut Bytes,
    ) {
        let id = known.map_or_else(|| input.u32(), u32::from);
        let slot = (self.idx % self.size) as usize;
        mem.store_u32(self.used + 4 + 8 * slot, id);
        mem.store_u32(self.used + 8 + 8 * slot, input.u32());
        self.skip(mem, 1);
    }

    fn skip(&mut self, mem: &mut Shared, n: u16) {
        self.idx = self.idx.wrapping_add(n);
        mem.store_u16(self.used + 2, self.idx);
    }
}

/// The device of a packed ring: overwrites descriptors at its own cursor,
/// with flags that match its wrap counter or arbitrary ones.
struct PackedDevice {
    size: u16,
    slot: u16,
    wrap: bool,
}

impl DeviceRing for PackedDevice {
    fn mark_used(
        &mut self,
        mem: &mut Shared,
        known: Option<u16>,
        in_flight: &InFlight,
        input: &mut Bytes,
    ) {
        let id = known.unwrap_or_else(|| input.u16());
        let flags = if input.bool() {
            input.u16()
        } else if self.wrap {
            (1 << 7) | (1 << 15)
        } else {
            0
        };
        let desc = 16 * self.slot as usize;
        mem.store_u32(desc + 8, input.u32());
        mem.store_u16(desc + 12, id);
        mem.store_u16(desc + 14, flags);
        // A used descriptor stands for its whole chain.
        let step = in_flight
            .len
            .get(id as usize)
            .copied()
            .filter(|&n| n > 0)
            .unwrap_or(1);
        self.skip(mem, step);
    }

    fn skip(&mut self, _mem: &mut Shared, n: u16) {
        let next = self.slot as u32 + n as u32;
        self.slot = (next % self.size as u32) as u16;
        self.wrap ^= (next / self.size as u32) % 2 == 1;
    }
}

/// The driver loop both ring targets share: a driver adding and popping
/// chains through `q` against a hostile device writing into `mem` (the
/// ring's memory) and the records, with the free-descriptor invariant
/// checked after every operation.
///
/// Input: operations of one byte each with their arguments: add a chain
/// (1 to 4 buffers), device marks a chain used (an in-flight id or an
/// arbitrary one, then what `device` reads), device moves its used
/// cursor by any amount, device scribbles a u16 anywhere in the ring
/// (the descriptor table included: the driver reads nothing back from
/// it that it relies on, docs/virtio-device-trust.md), device writes a
/// status byte, driver pops, kick decision, notification switch or a
/// sleep's arm and disarm.
fn hostile_device(
    q: &mut dyn Virtqueue<u16>,
    mem: &mut Shared,
    device: &mut dyn DeviceRing,
    mut input: Bytes,
) {
    let mut h = RingHarness::new(q.size());
    while !input.is_empty() {
        match input.u8() % 8 {
            0 => h.add(q, &mut input),
            1 => {
                let pick = input.u16();
                let known = if input.bool() {
                    None
                } else {
                    h.in_flight.pick(pick)
                };
                device.mark_used(mem, known, &h.in_flight, &mut input);
            }
            2 => device.skip(mem, input.u16()),
            3 => {
                let off = input.u16() as usize % mem.len();
                mem.store_u16(off, input.u16());
            }
            4 => h.write_status(&mut input),
            5 => h.pop(q),
            6 => {
                let _ = q.needs_kick();
            }
            _ => match input.u8() % 3 {
                0 => q.set_notifications(input.bool()),
                1 => q.arm(),
                _ => q.disarm(),
            },
        }
        h.check(q);
    }
}

/// Split ring against a hostile device.
///
/// Input: size exponent (ring of 1 to 256 entries), EVENT_IDX flag, then
/// the operations of [`hostile_device`]; a used element carries any u32
/// id when it is not an in-flight one, and any length.
pub fn split_ring(data: &[u8]) {
    let mut input = Bytes(data);
    let size = 1u16 << (input.u8() % 9);
    let event_idx = input.bool();
    let layout = split::Layout::new(size);
    let mut mem = Shared::new(layout.end);
    // SAFETY: zeroed, 16-byte aligned, `layout.end` bytes, outlives `q`.
    let mut q = unsafe { split::SplitQueue::new(mem.base(), size, event_idx) };
    let mut device = SplitDevice {
        used: layout.used,
        size,
        idx: 0,
    };
    hostile_device(&mut q, &mut mem, &mut device, input);
}

/// Packed ring against a hostile device.
///
/// Input: size (1 to 256 entries), then the operations of
/// [`hostile_device`]; a used descriptor carries an in-flight or any u16
/// id, flags that match the device's wrap counter or any u16 (a flag
/// byte, then the flags), and any length.
pub fn packed_ring(data: &[u8]) {
    let mut input = Bytes(data);
    let size = 1 + (input.u8() as u16);
    let layout = packed::Layout::new(size);
    let mut mem = Shared::new(layout.end);
    // SAFETY: zeroed, 16-byte aligned, `layout.end` bytes, outlives `q`.
    let mut q = unsafe { packed::PackedQueue::new(mem.base(), size) };
    let mut device = PackedDevice {
        size,
        slot: 0,
        wrap: true,
    };
    hostile_device(&mut q, &mut mem, &mut device, input);
}

/// The virtio-blk status byte: every value maps to success or an errno.
pub fn virtio_status(data: &[u8]) {
    for &b in data {
        check_status(record::status_to_ret(b));
    }
}

/// virtio-blk configuration space.
///
/// Input: the 60 bytes of the config space, then the negotiated feature
/// bits (u64). Checks the property values derived from them.
pub fn blk_config(data: &[u8]) {
    let mut input = Bytes(data);
    let space: [u8; CONFIG_LEN] = input.take();
    let features = input.u64();
    let cfg = BlkConfig::parse(&space);
    let info = DeviceInfo::new(features, &cfg);
    let max_queues = cfg.max_queues(features);
    assert!(max_queues >= 1, "max-queues {max_queues}");
    let capacity = cfg.capacity_bytes();
    assert!(capacity >= cfg.capacity, "capacity wrapped");
    let ra = info.request_alignment;
    assert!(
        ra >= 512 && (ra as u32).is_power_of_two(),
        "request-alignment {ra}"
    );
    let oa = info.optimal_io_alignment;
    assert!(
        oa >= ra && (oa as u32).is_power_of_two(),
        "optimal-io-alignment {oa} with request-alignment {ra}"
    );
    assert!(info.max_segments >= 1, "max-segments {}", info.max_segments);
    assert!(info.optimal_io_size >= 0 && info.max_transfer >= 0);
    assert!(info.max_segment_len >= 0);
    assert!(
        info.discard_alignment >= 512,
        "discard-alignment {}",
        info.discard_alignment
    );
    assert!(info.discard_alignment_offset >= 0);
}

/// The capability list of a virtio PCI function (VFIO) and the checks
/// of its structures against the BARs.
///
/// Input: the PCI config space (up to 256 bytes; shorter inputs make
/// reads past the end fail as they would on the device), then the sizes
/// of BARs 0–5 (u32 each; 16 KiB where the input has ended). The walk
/// must end, fail only with -EIO, and report only BARs 0–5; validation
/// fails with -ENOTSUP or -EIO, or gives structures that lie inside
/// their BARs, are large enough and aligned, and do not overlap.
pub fn virtio_pci_caps(data: &[u8]) {
    use crate::drivers::virtio_blk::vfio_pci::virtio_pci::{common, Caps, MemConfigSpace};
    let (space, rest) = data.split_at(data.len().min(256));
    let mut bars = [0x4000u64; 6];
    for (size, b) in bars.iter_mut().zip(rest.chunks_exact(4)) {
        *size = u32::from_le_bytes(b.try_into().expect("4 bytes")).into();
    }
    let caps = match Caps::find(&MemConfigSpace(space.to_vec())) {
        Ok(caps) => caps,
        Err(e) => return assert_eq!(e.errno(), libc::EIO, "{}", e.message()),
    };
    let found = [caps.common, caps.notify.map(|n| n.0), caps.device];
    assert!(found.iter().flatten().all(|c| c.bar <= 5), "{caps:?}");
    match caps.validate(CONFIG_LEN, |bar| Ok(bars[bar as usize])) {
        Ok(l) => {
            let all = [(l.common, common::LEN as u64, 4), (l.notify, 2, 2)]
                .into_iter()
                .chain(l.device.map(|d| (d, CONFIG_LEN as u64, 4)));
            let mut seen: Vec<(u8, u64, u64)> = Vec::new();
            for (c, min, align) in all {
                let (start, end) = (c.offset as u64, c.offset as u64 + c.length as u64);
                assert!(end <= bars[c.bar as usize], "{c:?} outside its BAR");
                assert!(c.length as u64 >= min && c.offset % align == 0, "{c:?}");
                for &(bar, s, e) in &seen {
                    assert!(bar != c.bar || end <= s || e <= start, "{c:?} overlaps");
                }
                seen.push((c.bar, start, end));
            }
            assert_eq!(l.notify_multiplier % 2, 0);
        }
        Err(e) => {
            assert!(
                [libc::EIO, libc::ENOTSUP].contains(&e.errno()),
                "{}",
                e.message()
            );
            assert!(e.message().starts_with("virtio "), "{}", e.message());
        }
    }
}

/// vhost-user replies: the whole byte stream a back-end sends.
///
/// Input: what the back-end writes on the socket, in order; after it the
/// back-end closes its sending side (so nothing waits for the reply
/// timeout). The library runs the handshake, reads the config space, maps
/// a memory region and sets up one queue. Whatever the stream holds, every
/// step either succeeds or fails with -EIO and a message naming the
/// vhost-user exchange; nothing panics or blocks.
pub fn vhost_user_reply(data: &[u8]) {
    use crate::drivers::virtio_blk::transport::{QueueSetup, Transport};
    use crate::drivers::virtio_blk::vhost_user::{wire::Channel, VhostUser};
    use std::io::Write;
    use std::os::unix::net::UnixStream;

    let (ours, theirs) = UnixStream::pair().expect("socketpair");
    // Far below the socket buffer, so the write cannot block.
    let stream = &data[..data.len().min(32 * 1024)];
    (&theirs).write_all(stream).expect("back-end stream");
    theirs
        .shutdown(std::net::Shutdown::Write)
        .expect("shutdown");
    let channel = Channel::new(ours).with_timeout(std::time::Duration::from_secs(1));
    let steps = VhostUser::handshake(channel, !0).and_then(|mut vu| {
        let config = vu.read_config()?;
        let _ = BlkConfig::parse(&config);
        let region = crate::core::region::allocate(4096, 1)?;
        let mapped = vu.map_mem_region(&region.region);
        // Unmapped and closed; the peer only holds the descriptor in its
        // receive queue and never maps it.
        drop(region);
        mapped?;
        let call = crate::core::sys::eventfd(false).expect("eventfd");
        vu.start_queues(&[QueueSetup::example(&call)])
            .map(|kicks| assert_eq!(kicks.len(), 1))
    });
    if let Err(e) = steps {
        assert_eq!(e.errno(), libc::EIO, "{}", e.message());
        assert!(e.message().starts_with("vhost-user "), "{}", e.message());
    }
    drop(theirs);
}

/// An NVMe completion's result field (the CQE status as the kernel
/// passes it on): success, or a negative errno with a message.
pub fn nvme_status(data: &[u8]) {
    let mut input = Bytes(data);
    while !input.is_empty() {
        let res = input.u32() as i32;
        match status::check(res) {
            None => assert_eq!(res, 0),
            Some((ret, msg)) => {
                assert!(ret < 0, "{res:#x} maps to {ret}");
                assert!(!msg.is_empty());
            }
        }
    }
}

/// NVMe Identify facts (the fields the namespace, controller and zoned
/// pages give) through the format check and the property rules.
///
/// Input: nsze u64, lbads u8, ms u16, mdts u8, oncs u16, vwc and write
/// cache bits, wzsl u8, dmrsl u32, a zoned flag and then mar u32, mor u32,
/// zsze u64, zasl u8, append flag; then an optional kernel
/// `max_hw_sectors_kb` × 1024 (u64, 0 = unknown).
pub fn nvme_identify(data: &[u8]) {
    let mut input = Bytes(data);
    let mut facts = Facts {
        nsid: 1,
        nsze: input.u64(),
        lbads: input.u8(),
        metadata_size: input.u16(),
        mdts: input.u8(),
        oncs: input.u16(),
        ..Facts::default()
    };
    let flags = input.u8();
    facts.vwc_present = flags & 1 != 0;
    facts.write_cache_enabled = flags & 2 != 0;
    facts.wzsl = input.u8();
    facts.dmrsl = input.u32();
    if flags & 4 != 0 {
        facts.zoned = Some(ZonedFacts {
            mar: input.u32(),
            mor: input.u32(),
            zsze: input.u64(),
            zasl: input.u8(),
            append_supported: input.bool(),
        });
    }
    let hw = Some(input.u64()).filter(|&b| b != 0);
    if identify::check_format(&facts).is_err() {
        return;
    }
    let l = Limits::new(&facts, hw);
    assert!(l.lba_size >= 512 && l.lba_size.is_power_of_two());
    assert!(l.max_transfer >= l.lba_size && l.max_transfer % l.lba_size == 0);
    assert!(l.max_transfer <= i32::MAX as u32);
    let shift = facts.lbads as u32;
    assert!(
        l.capacity == u64::MAX || l.capacity >> shift == facts.nsze,
        "capacity {} for {} blocks of 2^{shift}",
        l.capacity,
        facts.nsze
    );
    if let Some(z) = &l.zoned {
        assert!(z.zone_size == 0 || z.zone_size % l.lba_size as u64 == 0);
        assert!(z.zone_size == 0 || z.nr_zones <= l.capacity / z.zone_size);
    }
}

/// An NVMe zone report as the device writes it into the library's buffer.
///
/// Input: asked zones (u8), LBA shift (u8), zone size (u64), then the
/// report (header and descriptors), zero-filled to the buffer size the
/// queue allocates for `asked` zones.
pub fn nvme_zone_report(data: &[u8]) {
    let mut input = Bytes(data);
    let asked = input.u8() as u32;
    let geo = zones::Geometry {
        lba_shift: input.u8() as u32,
        zone_size: input.u64(),
    };
    let mut report = vec![0u8; zones::ENTRY_SIZE * (1 + asked as usize)];
    let n = report.len().min(input.0.len());
    report[..n].copy_from_slice(&input.0[..n]);
    const SENTINEL: u64 = 0x5EED_5EED_5EED_5EED;
    let mut out = vec![
        Zone {
            start: SENTINEL,
            ..Zone::default()
        };
        asked as usize + 1
    ];
    // SAFETY: `out` has `asked` + 1 entries.
    let r = unsafe { zones::convert(&report, out.as_mut_ptr(), asked, geo) };
    let written = match r {
        Ok(n) => {
            assert!(n >= 0 && n as u32 <= asked, "{n} zones of {asked}");
            n as usize
        }
        Err((ret, msg)) => {
            assert!(ret < 0 && !msg.is_empty());
            0
        }
    };
    for (i, z) in out.iter().enumerate().skip(written) {
        assert_eq!(
            z.start, SENTINEL,
            "entry {i} past ret {written} was written"
        );
    }
    for z in &out[..written] {
        assert!(z.zone_state != 0 && z.zone_type == 2);
    }
}

// ---------------------------------------------------------------------------
// The C API

/// A scratch directory with one 1 MiB data file, made once per process.
fn scratch_file() -> &'static CStr {
    static PATH: std::sync::OnceLock<CString> = std::sync::OnceLock::new();
    PATH.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("blkio-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("scratch directory");
        let file = dir.join("data");
        std::fs::write(&file, vec![0u8; 1 << 20]).expect("scratch file");
        CString::new(file.into_os_string().into_encoded_bytes()).expect("path")
    })
}

/// A buffer requests point into; never freed, so a request the kernel
/// still works on after its instance is gone cannot touch freed memory.
fn io_buffer() -> *mut u8 {
    static BUF: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *BUF.get_or_init(|| {
        let layout = std::alloc::Layout::from_size_align(IO_BUF, 4096).expect("layout");
        // SAFETY: a non-zero size; the block is leaked on purpose.
        let p = unsafe { std::alloc::alloc_zeroed(layout) };
        assert!(!p.is_null());
        p as usize
    }) as *mut u8
}

const IO_BUF: usize = 256 * 1024;

/// Names the property calls pick from (plus arbitrary strings).
const NAMES: &[&str] = &[
    "buf-alignment",
    "can-add-queues",
    "capacity",
    "direct",
    "driver",
    "fd",
    "max-queues",
    "max-transfer",
    "mem-region-alignment",
    "needs-mem-regions",
    "num-entries",
    "num-poll-queues",
    "num-queues",
    "optimal-io-size",
    "path",
    "read-only",
    "request-alignment",
    "max-segments",
];

/// Checks the failure convention of a C API return value.
fn check_ret(what: &str, ret: c_int) {
    if ret < 0 {
        // SAFETY: the thread's message buffer is always NUL-terminated.
        let msg = unsafe { CStr::from_ptr(capi::blkio_get_error_msg()) };
        assert!(!msg.is_empty(), "{what} failed with {ret} and no message");
        assert!(ret >= -4095, "{what} returned {ret}");
    }
}

/// A sequence of C API calls on one io_uring instance over a scratch file.
///
/// Input: operations of one byte each with their arguments: set or get a
/// property (a known name or any string; any type; a value as a string
/// or a number; `path` and `fd` are never pointed at other files), connect,
/// start, allocate / map / unmap / free regions (real ones or with
/// arbitrary fields), add / get / remove queues with any index, requests
/// with any offset, length, flags and count (buffers stay inside one
/// library-owned buffer, or are NULL), do_io with any counts and short or
/// invalid timeouts. Ends with `blkio_destroy`.
pub fn c_api(data: &[u8]) {
    let mut input = Bytes(data);
    let mut b: *mut Blkio = ptr::null_mut();
    // SAFETY: valid pointers; the name is NUL-terminated.
    let ret = unsafe { capi::blkio_create(c"io_uring".as_ptr(), &mut b) };
    assert_eq!(ret, 0);
    let mut regions: Vec<MemRegion> = Vec::new();
    let mut comps = vec![Completion::new(0, 0, None); 64];
    let mut iov = [libc::iovec {
        iov_base: ptr::null_mut(),
        iov_len: 0,
    }; 8];
    let buf = io_buffer();
    let mut steps = 0;
    while !input.is_empty() && steps < 64 {
        steps += 1;
        let op = input.u8() % 16;
        // SAFETY: (the whole match) every pointer passed is NULL, `b`, a
        // live queue handle of `b`, or points into memory of this function
        // or the never-freed I/O buffer, with lengths that stay inside it.
        unsafe {
            match op {
                0..=2 => {
                    let name = if input.bool() {
                        CString::new(NAMES[input.u8() as usize % NAMES.len()]).expect("name")
                    } else {
                        input.cstring()
                    };
                    let n = name.to_bytes();
                    let kind = input.u8() % 8;
                    let ret = if n == b"path" && kind % 2 == 0 {
                        capi::blkio_set_str(b, name.as_ptr(), scratch_file().as_ptr())
                    } else if n == b"path" || n == b"fd" {
                        // Only harmless values: no other file, no fd we own.
                        match kind {
                            1 => capi::blkio_set_int(b, name.as_ptr(), -1 - input.u8() as c_int),
                            3 => capi::blkio_set_str(b, name.as_ptr(), c"".as_ptr()),
                            _ => capi::blkio_get_int(b, name.as_ptr(), &mut 0),
                        }
                    } else {
                        match kind {
                            0 => capi::blkio_set_int(b, name.as_ptr(), int_value(n, &mut input)),
                            1 => capi::blkio_set_uint64(b, name.as_ptr(), input.u64()),
                            2 => capi::blkio_set_bool(b, name.as_ptr(), input.bool()),
                            3 => capi::blkio_set_str(b, name.as_ptr(), input.cstring().as_ptr()),
                            4 => capi::blkio_get_int(b, name.as_ptr(), &mut 0),
                            5 => capi::blkio_get_uint64(b, name.as_ptr(), &mut 0),
                            6 => capi::blkio_get_bool(b, name.as_ptr(), &mut false),
                            _ => {
                                let mut s: *mut std::ffi::c_char = ptr::null_mut();
                                let r = capi::blkio_get_str(b, name.as_ptr(), &mut s);
                                if r == 0 {
                                    assert!(!s.is_null());
                                    libc::free(s.cast());
                                }
                                r
                            }
                        }
                    };
                    check_ret("property", ret);
                }
                3 => check_ret("connect", capi::blkio_connect(b)),
                4 => check_ret("start", capi::blkio_start(b)),
                5 => {
                    let len = match input.u8() % 4 {
                        0 => 4096 * (1 + input.u8() as usize % 4),
                        1 => input.u16() as usize,
                        _ => 0,
                    };
                    let mut r = std::mem::zeroed::<MemRegion>();
                    let ret = capi::blkio_alloc_mem_region(b, &mut r, len);
                    check_ret("alloc_mem_region", ret);
                    if ret == 0 {
                        regions.push(r);
                    }
                }
                6 => {
                    // A real region, or one with arbitrary fields (never
                    // freed by the library: it did not allocate it).
                    let r = match regions.get(input.u8() as usize) {
                        Some(r) if input.bool() => *r,
                        _ => MemRegion {
                            addr: input.u64() as usize as *mut c_void,
                            len: input.u64() as usize,
                            iova: input.u64(),
                            fd_offset: input.u64() as i64,
                            fd: -1 - (input.u8() as c_int),
                            flags: input.u32(),
                        },
                    };
                    match input.u8() % 3 {
                        0 => check_ret("map_mem_region", capi::blkio_map_mem_region(b, &r)),
                        1 => capi::blkio_unmap_mem_region(b, &r),
                        _ => {
                            capi::blkio_free_mem_region(b, &r);
                            regions.retain(|x| *x != r);
                        }
                    }
                }
                7 => {
                    let ret = match input.u8() % 4 {
                        0 => capi::blkio_add_queue(b),
                        1 => capi::blkio_add_poll_queue(b),
                        2 => capi::blkio_remove_queue(b, input.u8() as c_int - 2),
                        _ => capi::blkio_remove_poll_queue(b, input.u8() as c_int - 2),
                    };
                    check_ret("queue add/remove", ret);
                }
                _ => {
                    let q = if input.bool() {
                        capi::blkio_get_poll_queue(b, input.u8() as c_int - 1)
                    } else {
                        capi::blkio_get_queue(b, input.u8() as c_int - 1)
                    };
                    request(q, &mut input, buf, &mut iov, &mut comps);
                }
            }
        }
    }
    // SAFETY: `b` from blkio_create; queue handles are not used after.
    unsafe { drain_and_destroy(b) };
}

/// An int property value. Queue counts are negative, at most 64, or above
/// any open-file limit (2^21 and more), which the library refuses at once:
/// a count in between is legal and would have `blkio_start` set up that
/// many io_uring rings, which takes seconds and trips the fuzzer's timeout
/// without finding anything.
fn int_value(name: &[u8], input: &mut Bytes) -> c_int {
    let v = input.u32() as c_int;
    let queue_count = name == b"num-queues" || name == b"num-poll-queues";
    if queue_count && (0..1 << 21).contains(&v) {
        v % 65
    } else {
        v
    }
}

/// A request or a do_io call on queue `q` (NULL allowed).
///
/// # Safety
/// `q` is NULL or a live queue handle; `buf` is the I/O buffer.
unsafe fn request(
    q: *mut Queue,
    input: &mut Bytes,
    buf: *mut u8,
    iov: &mut [libc::iovec; 8],
    comps: &mut [Completion],
) {
    let start = match input.u8() % 4 {
        0 => input.u64(),
        1 => 512 * (input.u16() as u64),
        _ => input.u16() as u64,
    };
    let len = match input.u8() % 3 {
        0 => 512 * (1 + input.u8() as usize % 8),
        _ => input.u16() as usize,
    };
    let (off, len) = (
        (input.u16() as usize % IO_BUF) & !(input.u8() as usize),
        len,
    );
    let len = len.min(IO_BUF - off);
    // SAFETY: `off` < IO_BUF, inside the I/O buffer.
    let data = unsafe { buf.add(off) };
    let user = input.u32() as usize as *mut c_void;
    let flags = input.u32() & if input.bool() { 1 } else { u32::MAX };
    // SAFETY: every buffer and iovec lies inside the I/O buffer.
    unsafe {
        match input.u8() % 10 {
            0 => capi::blkioq_read(q, start, data.cast(), len, user, flags),
            1 => capi::blkioq_write(q, start, data.cast(), len, user, flags),
            2 | 3 => {
                let cnt = input.u8() as usize % (iov.len() + 1);
                for v in iov.iter_mut().take(cnt) {
                    let o = input.u16() as usize % IO_BUF;
                    v.iov_base = buf.add(o).cast();
                    v.iov_len = (input.u16() as usize).min(IO_BUF - o);
                }
                let (p, c) = if input.bool() {
                    (ptr::null(), input.u32() as c_int)
                } else {
                    (iov.as_ptr(), cnt as c_int)
                };
                if input.bool() {
                    capi::blkioq_readv(q, start, p, c, user, flags)
                } else {
                    capi::blkioq_writev(q, start, p.cast_mut(), c, user, flags)
                }
            }
            4 => capi::blkioq_write_zeroes(q, start, bounded_len(input), user, flags),
            5 => capi::blkioq_discard(q, start, bounded_len(input), user, flags),
            6 => capi::blkioq_flush(q, user, flags),
            7 => {
                let fd = capi::blkioq_get_completion_fd(q);
                if q.is_null() {
                    check_ret("get_completion_fd", fd);
                }
                capi::blkioq_set_completion_fd_enabled(q, input.bool());
            }
            _ => {
                let max = input.u8() as c_int - 8;
                let min = input.u8() as c_int - 8;
                let (cp, max) = if input.bool() || max > comps.len() as c_int {
                    (ptr::null_mut(), max)
                } else {
                    (comps.as_mut_ptr(), max)
                };
                let mut ts = libc::timespec {
                    tv_sec: 0,
                    tv_nsec: (input.u16() as libc::c_long) * 100,
                };
                match input.u8() % 4 {
                    0 => ts.tv_nsec = -1,
                    1 => ts.tv_nsec = 1_000_000_000,
                    2 => ts.tv_sec = -1,
                    _ => {}
                }
                let ret = capi::blkioq_do_io(q, cp, min, max, &mut ts);
                check_ret("do_io", ret);
                if ret > 0 {
                    assert!(ret <= max, "{ret} completions for max {max}");
                    for c in &comps[..ret as usize] {
                        assert!(c.ret <= 0 || c.ret as usize <= IO_BUF);
                        if c.ret < 0 {
                            assert!(c.ret >= -4095);
                        }
                    }
                }
            }
        }
    }
}

/// Lengths for write zeroes and discard: small ones, or ones so large
/// they must be refused (never a real allocation of gigabytes).
fn bounded_len(input: &mut Bytes) -> u64 {
    if input.bool() {
        512 * (input.u16() as u64 % 64)
    } else {
        u64::MAX - input.u16() as u64
    }
}

/// Waits for what is in flight on every queue (bounded), then destroys.
///
/// # Safety
/// `b` is from blkio_create and not used afterwards.
unsafe fn drain_and_destroy(mut b: *mut Blkio) {
    let mut comps = vec![Completion::new(0, 0, None); 64];
    for i in 0..4 {
        for poll in [false, true] {
            // SAFETY: `b` is live; handles are used at once.
            unsafe {
                let q = if poll {
                    capi::blkio_get_poll_queue(b, i)
                } else {
                    capi::blkio_get_queue(b, i)
                };
                if q.is_null() {
                    continue;
                }
                for _ in 0..100 {
                    let mut ts = libc::timespec {
                        tv_sec: 0,
                        tv_nsec: 1_000_000,
                    };
                    let r = capi::blkioq_do_io(q, comps.as_mut_ptr(), 0, 64, &mut ts);
                    if r <= 0 {
                        break;
                    }
                }
            }
        }
    }
    // SAFETY: as documented.
    unsafe { capi::blkio_destroy(&mut b) };
    assert!(b.is_null());
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every committed seed and regression input of every target passes.
    #[test]
    fn committed_corpora_pass() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
        type Target = (&'static str, fn(&[u8]));
        let targets: &[Target] = &[
            ("split_ring", split_ring),
            ("packed_ring", packed_ring),
            ("virtio_status", virtio_status),
            ("blk_config", blk_config),
            ("nvme_status", nvme_status),
            ("nvme_identify", nvme_identify),
            ("nvme_zone_report", nvme_zone_report),
            ("c_api", c_api),
            ("vhost_user_reply", vhost_user_reply),
            ("virtio_pci_caps", virtio_pci_caps),
        ];
        let mut total = 0;
        for (name, f) in targets {
            let dir = root.join(name);
            let Ok(entries) = std::fs::read_dir(&dir) else {
                panic!("no corpus at {}", dir.display());
            };
            for e in entries {
                let path = e.expect("entry").path();
                let data = std::fs::read(&path).expect("seed");
                f(&data);
                total += 1;
            }
        }
        assert!(total >= targets.len(), "only {total} seeds");
        let dir = std::path::Path::new(scratch_file().to_str().expect("utf-8")).parent();
        let _ = std::fs::remove_dir_all(dir.expect("scratch directory"));
    }
}
