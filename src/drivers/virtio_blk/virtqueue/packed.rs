//! The packed virtqueue (docs/contract/virtio.md §3.2, §6; virtio 1.x §2.8), used when a
//! VFIO-PCI device offers `VIRTIO_F_RING_PACKED`.
//!
//! Layout of one ring of `N` entries (see [`Layout`]): the descriptor ring
//! (16 N bytes of `{addr le64, len le32, id le16, flags le16}`), the driver
//! event suppression area (`{off_wrap le16, flags le16}`) and the device
//! event suppression area (same shape).
//!
//! Chains occupy consecutive ring slots and carry a buffer id from a stack
//! of free ids; the ids index the request records like split-ring heads.
//! The AVAIL/USED flag bits of a descriptor encode the wrap counter of the
//! pass that wrote it; the head's flags are stored last, with release
//! ordering, which publishes the whole chain.
//!
//! Notification choice where the spec leaves room: used-buffer
//! notifications are switched with the plain ENABLE/DISABLE driver flags
//! also when `VIRTIO_RING_F_EVENT_IDX` was negotiated (always allowed);
//! kicks honour the device's DESC mode (event index) when it uses it.

use std::ptr::NonNull;
use std::sync::atomic::{fence, AtomicU16, Ordering};

use super::{Buffer, Virtqueue};

const F_NEXT: u16 = 1;
const F_WRITE: u16 = 2;
const F_AVAIL: u16 = 1 << 7;
const F_USED: u16 = 1 << 15;

/// Event suppression flags.
const EVENT_ENABLE: u16 = 0;
const EVENT_DISABLE: u16 = 1;
const EVENT_DESC: u16 = 2;

/// Offsets of the parts of a packed ring of a given size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Driver event suppression area (the descriptor ring starts at 0).
    pub driver: usize,
    /// Device event suppression area.
    pub device: usize,
    /// First byte after the ring.
    pub end: usize,
}

impl Layout {
    pub const fn new(size: u16) -> Layout {
        let driver = 16 * size as usize;
        Layout {
            driver,
            device: driver + 4,
            end: driver + 8,
        }
    }
}

/// `struct pvirtq_desc`.
#[repr(C)]
struct Descriptor {
    addr: u64,
    len: u32,
    id: u16,
    flags: u16,
}

/// Driver state of one packed ring whose chains carry a `T` each.
pub struct PackedQueue<T> {
    desc: NonNull<Descriptor>,
    /// Driver area `{off_wrap, flags}`, then the device area.
    events: NonNull<u16>,
    size: u16,
    /// Next slot to fill and the wrap counter of that pass.
    next_avail: u16,
    avail_wrap: bool,
    /// Next slot the device will mark used, and its wrap counter.
    next_used: u16,
    used_wrap: bool,
    /// Free ring slots.
    num_free: u16,
    /// Free buffer ids, the next one on top.
    free_ids: Vec<u16>,
    /// Descriptor count of each in-flight chain, by id; 0 = not in flight.
    chain_len: Box<[u16]>,
    /// The token of each in-flight chain, by id.
    tokens: Box<[T]>,
    /// Descriptors published since the last kick decision.
    unkicked: u16,
    /// A used descriptor named no chain in flight; nothing more is popped.
    broken: bool,
}

// SAFETY: the ring memory is owned by the queue that owns this value (see
// `new`); only the device shares it, through the virtio protocol. The
// tokens are `Send`.
unsafe impl<T: Send> Send for PackedQueue<T> {}

impl<T: Copy + Default> PackedQueue<T> {
    /// A ring of `size` entries (≤ 32768) at `mem`, used-buffer
    /// notifications enabled (the zeroed areas say so).
    ///
    /// # Safety
    ///
    /// `mem` is 16-byte aligned, points to `Layout::new(size).end` zeroed
    /// bytes that stay mapped while this value lives, and nothing but the
    /// device accesses them meanwhile.
    pub unsafe fn new(mem: NonNull<u8>, size: u16) -> PackedQueue<T> {
        debug_assert!(size > 0 && size <= 32768);
        debug_assert_eq!(mem.as_ptr() as usize % 16, 0);
        // SAFETY: the driver area lies inside the block.
        let events = unsafe { mem.add(Layout::new(size).driver).cast::<u16>() };
        PackedQueue {
            desc: mem.cast(),
            events,
            size,
            next_avail: 0,
            avail_wrap: true,
            next_used: 0,
            used_wrap: true,
            num_free: size,
            free_ids: (0..size).rev().collect(),
            chain_len: vec![0; size as usize].into_boxed_slice(),
            tokens: vec![T::default(); size as usize].into_boxed_slice(),
            unkicked: 0,
            broken: false,
        }
    }

    fn descriptor(&self, slot: u16) -> *mut Descriptor {
        debug_assert!(slot < self.size);
        // SAFETY: slot < size, inside the descriptor ring.
        unsafe { self.desc.as_ptr().add(slot as usize) }
    }

    fn flags_atomic(&self, slot: u16) -> &AtomicU16 {
        // SAFETY: the 2-byte aligned flags field of a descriptor, shared
        // with the device and only accessed atomically on our side.
        unsafe { AtomicU16::from_ptr(std::ptr::addr_of_mut!((*self.descriptor(slot)).flags)) }
    }

    /// Word `i` of the event areas: 0 driver off_wrap, 1 driver flags,
    /// 2 device off_wrap, 3 device flags.
    fn event(&self, i: usize) -> *mut u16 {
        // SAFETY: the 8 bytes after the descriptor ring.
        unsafe { self.events.as_ptr().add(i) }
    }

    /// Whether the descriptor at `slot` was used in pass `wrap`.
    fn is_used(&self, slot: u16, wrap: bool) -> bool {
        let flags = u16::from_le(self.flags_atomic(slot).load(Ordering::Acquire));
        let avail = flags & F_AVAIL != 0;
        let used = flags & F_USED != 0;
        avail == used && used == wrap
    }

    /// `slot` advanced by `n` with the wrap counter flipped on wrapping.
    fn advance(&self, slot: u16, wrap: bool, n: u16) -> (u16, bool) {
        let next = slot as u32 + n as u32;
        if next >= self.size as u32 {
            ((next - self.size as u32) as u16, !wrap)
        } else {
            (next as u16, wrap)
        }
    }
}

impl<T: Copy + Default + Send> Virtqueue<T> for PackedQueue<T> {
    fn size(&self) -> u16 {
        self.size
    }

    fn next_id(&self) -> Option<u16> {
        if self.num_free == 0 {
            return None;
        }
        self.free_ids.last().copied()
    }

    fn num_free(&self) -> u16 {
        self.num_free
    }

    #[inline(always)]
    fn add_chain(&mut self, chain: &[Buffer], token: T) -> u16 {
        assert!(!chain.is_empty() && chain.len() <= self.num_free as usize);
        let id = self
            .free_ids
            .pop()
            .expect("a free id when descriptors are free");
        let (head, head_wrap) = (self.next_avail, self.avail_wrap);
        let (mut slot, mut wrap) = (head, head_wrap);
        let mut head_flags = 0;
        for (i, buf) in chain.iter().enumerate() {
            let mut flags = if wrap { F_AVAIL } else { F_USED };
            if buf.device_writable {
                flags |= F_WRITE;
            }
            if i + 1 < chain.len() {
                flags |= F_NEXT;
            }
            let d = self.descriptor(slot);
            // SAFETY: a free slot of this ring (num_free covers the chain).
            unsafe {
                (*d).addr = buf.addr.to_le();
                (*d).len = buf.len.to_le();
                (*d).id = id.to_le();
            }
            if i == 0 {
                head_flags = flags;
            } else {
                self.flags_atomic(slot)
                    .store(flags.to_le(), Ordering::Relaxed);
            }
            (slot, wrap) = self.advance(slot, wrap, 1);
        }
        // Publishes the chain: everything above is visible before this.
        self.flags_atomic(head)
            .store(head_flags.to_le(), Ordering::Release);
        (self.next_avail, self.avail_wrap) = (slot, wrap);
        let n = chain.len() as u16;
        self.num_free -= n;
        self.chain_len[id as usize] = n;
        self.tokens[id as usize] = token;
        self.unkicked = self.unkicked.saturating_add(n);
        id
    }

    fn used_pending(&self) -> u16 {
        let (mut slot, mut wrap) = (self.next_used, self.used_wrap);
        let mut n = 0;
        let in_flight = self.size - self.num_free;
        let mut seen = 0;
        while seen < in_flight && self.is_used(slot, wrap) {
            // SAFETY: a descriptor the device marked used.
            let id = u16::from_le(unsafe { (*self.descriptor(slot)).id });
            let len = self.chain_len.get(id as usize).copied().unwrap_or(0).max(1);
            n += 1;
            seen += len;
            (slot, wrap) = self.advance(slot, wrap, len);
        }
        n
    }

    fn pop_used(&mut self) -> Option<(u16, T)> {
        if self.broken
            || self.num_free == self.size
            || !self.is_used(self.next_used, self.used_wrap)
        {
            return None;
        }
        // SAFETY: a descriptor the device marked used (acquire above).
        let id = u16::from_le(unsafe { (*self.descriptor(self.next_used)).id });
        let len = match self.chain_len.get_mut(id as usize) {
            Some(l) if *l > 0 => std::mem::take(l),
            // Out of range, never placed or already used: a device error.
            _ => {
                self.broken = true;
                return None;
            }
        };
        (self.next_used, self.used_wrap) = self.advance(self.next_used, self.used_wrap, len);
        self.num_free += len;
        self.free_ids.push(id);
        Some((id, self.tokens[id as usize]))
    }

    fn take_in_flight(&mut self) -> Option<T> {
        let id = self.chain_len.iter().position(|&l| l > 0)?;
        self.chain_len[id] = 0;
        Some(self.tokens[id])
    }

    fn is_broken(&self) -> bool {
        self.broken
    }

    fn has_unkicked(&self) -> bool {
        self.unkicked != 0
    }

    fn needs_kick(&mut self) -> bool {
        if !self.has_unkicked() {
            return false;
        }
        fence(Ordering::SeqCst);
        // SAFETY: the device area words.
        let (off_wrap, flags) = unsafe {
            (
                u16::from_le(self.event(2).read_volatile()),
                u16::from_le(self.event(3).read_volatile()),
            )
        };
        let added = std::mem::take(&mut self.unkicked);
        match flags {
            EVENT_DISABLE => false,
            EVENT_DESC => {
                let new = self.next_avail;
                let old = new.wrapping_sub(added);
                let mut event = off_wrap & 0x7FFF;
                if (off_wrap >> 15 != 0) != self.avail_wrap {
                    event = event.wrapping_sub(self.size);
                }
                new.wrapping_sub(event).wrapping_sub(1) < new.wrapping_sub(old)
            }
            _ => true,
        }
    }

    fn set_notifications(&mut self, enabled: bool) {
        let flags = if enabled { EVENT_ENABLE } else { EVENT_DISABLE };
        // SAFETY: the driver area's flags word.
        unsafe { self.event(1).write_volatile(flags.to_le()) };
        if enabled {
            fence(Ordering::SeqCst);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drivers::virtio_blk::virtqueue::checked::{add, pop};

    /// Ring memory plus a device model: it consumes available chains in
    /// ring order and marks them used in any order it is told, as the
    /// virtio spec describes the device side (test code only).
    struct Device {
        mem: Vec<u128>,
        size: u16,
        /// Next slot to read and its wrap counter.
        avail: u16,
        avail_wrap: bool,
        /// Next slot to write used entries to and its wrap counter.
        used: u16,
        used_wrap: bool,
    }

    /// A chain as the device read it: its id and (addr, len, writable).
    type Chain = (u16, Vec<(u64, u32, bool)>);

    impl Device {
        fn new(size: u16) -> Device {
            Device {
                mem: vec![0; Layout::new(size).end.div_ceil(16)],
                size,
                avail: 0,
                avail_wrap: true,
                used: 0,
                used_wrap: true,
            }
        }

        fn queue(&mut self) -> PackedQueue<u16> {
            let p = NonNull::new(self.mem.as_mut_ptr().cast::<u8>()).unwrap();
            // SAFETY: zeroed, aligned, large enough, outlives the queue.
            unsafe { PackedQueue::new(p, self.size) }
        }

        fn desc(&mut self, slot: u16) -> &mut Descriptor {
            // SAFETY: slot < size, inside `mem`.
            unsafe {
                &mut *self
                    .mem
                    .as_mut_ptr()
                    .cast::<Descriptor>()
                    .add(slot as usize)
            }
        }

        fn word(&mut self, i: usize) -> &mut u16 {
            let off = Layout::new(self.size).driver;
            // SAFETY: the event areas inside `mem`.
            unsafe {
                &mut *self
                    .mem
                    .as_mut_ptr()
                    .cast::<u8>()
                    .add(off)
                    .cast::<u16>()
                    .add(i)
            }
        }

        fn step(&self, slot: u16, wrap: bool) -> (u16, bool) {
            if slot + 1 == self.size {
                (0, !wrap)
            } else {
                (slot + 1, wrap)
            }
        }

        /// Reads the next available chain, if the driver published one.
        fn take(&mut self) -> Option<Chain> {
            let flags = self.desc(self.avail).flags;
            let avail = flags & F_AVAIL != 0;
            let used = flags & F_USED != 0;
            if avail == used || avail != self.avail_wrap {
                return None;
            }
            let id = self.desc(self.avail).id;
            let mut bufs = Vec::new();
            loop {
                let d = self.desc(self.avail);
                let (addr, len, flags) = (d.addr, d.len, d.flags);
                assert_eq!(d.id, id, "every descriptor carries the chain's id");
                bufs.push((addr, len, flags & F_WRITE != 0));
                (self.avail, self.avail_wrap) = self.step(self.avail, self.avail_wrap);
                if flags & F_NEXT == 0 {
                    break;
                }
            }
            Some((id, bufs))
        }

        /// Marks chain `id` of `n` descriptors used: one used descriptor,
        /// then the slots its chain took are skipped.
        fn complete(&mut self, id: u16, n: u16) {
            let wrap = self.used_wrap;
            let slot = self.used;
            let flags = if wrap { F_AVAIL | F_USED } else { 0 };
            let d = self.desc(slot);
            d.id = id;
            d.len = 0;
            d.flags = flags;
            for _ in 0..n {
                (self.used, self.used_wrap) = self.step(self.used, self.used_wrap);
            }
        }
    }

    fn buf(addr: u64, len: u32, w: bool) -> Buffer {
        Buffer {
            addr,
            len,
            device_writable: w,
        }
    }

    #[test]
    fn layout() {
        assert_eq!(
            Layout::new(256),
            Layout {
                driver: 4096,
                device: 4100,
                end: 4104
            }
        );
    }

    #[test]
    fn chains_are_published_consumed_and_returned() {
        let mut dev = Device::new(8);
        let mut q = dev.queue();
        assert_eq!(q.next_id(), Some(0));
        let three = [
            buf(0x1000, 16, false),
            buf(0x2000, 512, true),
            buf(0x3000, 1, true),
        ];
        assert_eq!(add(&mut q, &three), 0);
        assert_eq!(add(&mut q, &three[..2]), 1);
        assert_eq!((q.num_free(), q.next_id()), (3, Some(2)));
        assert_eq!(
            dev.take().unwrap(),
            (
                0,
                vec![(0x1000, 16, false), (0x2000, 512, true), (0x3000, 1, true)]
            )
        );
        assert_eq!(dev.take().unwrap().0, 1);
        assert!(dev.take().is_none());

        assert_eq!((q.used_pending(), pop(&mut q)), (0, None));
        // Out of order: chain 1 completes first.
        dev.complete(1, 2);
        assert_eq!(q.used_pending(), 1);
        dev.complete(0, 3);
        assert_eq!(q.used_pending(), 2);
        assert_eq!(pop(&mut q), Some(1));
        assert_eq!(pop(&mut q), Some(0));
        assert_eq!(pop(&mut q), None);
        assert_eq!(q.num_free(), 8);
    }

    #[test]
    fn bad_used_ids_break_the_ring() {
        // Out of range (would be 1 if masked), never placed, repeated.
        for (case, bad) in [(0, 8 + 1), (1, 5), (2, 0)] {
            let mut dev = Device::new(8);
            let mut q = dev.queue();
            let two = [buf(0x1000, 16, false), buf(0x3000, 1, true)];
            assert_eq!(add(&mut q, &two), 0);
            assert_eq!(add(&mut q, &two), 1);
            dev.take().unwrap();
            dev.take().unwrap();
            dev.complete(0, 2);
            assert_eq!(pop(&mut q), Some(0), "case {case}");
            dev.complete(bad, 1);
            dev.complete(1, 2);
            assert_eq!(pop(&mut q), None, "case {case}");
            assert!(q.is_broken(), "case {case}");
            assert_eq!(pop(&mut q), None, "case {case}");
        }
    }

    #[test]
    fn wrapping_flips_the_counters_many_times() {
        let mut dev = Device::new(4);
        let mut q = dev.queue();
        let chain = [
            buf(0x10, 16, false),
            buf(0x20, 512, true),
            buf(0x30, 1, true),
        ];
        // 3-descriptor chains on a ring of 4: every chain but some wrap.
        for round in 0..50u64 {
            let c = [buf(round, 16, false), chain[1], chain[2]];
            let id = add(&mut q, &c);
            let (got, bufs) = dev.take().expect("chain visible to the device");
            assert_eq!((got, bufs[0].0, bufs.len()), (id, round, 3));
            assert!(dev.take().is_none());
            dev.complete(got, 3);
            assert_eq!(q.used_pending(), 1);
            assert_eq!(pop(&mut q), Some(id));
            assert_eq!(q.num_free(), 4);
        }
    }

    #[test]
    fn notifications_and_kicks() {
        let mut dev = Device::new(8);
        let mut q = dev.queue();
        q.set_notifications(false);
        assert_eq!(*dev.word(1), EVENT_DISABLE);
        q.set_notifications(true);
        assert_eq!(*dev.word(1), EVENT_ENABLE);

        assert!(!q.needs_kick(), "nothing published");
        add(&mut q, &[buf(1, 1, false)]);
        assert!(q.has_unkicked());
        assert!(q.needs_kick(), "device flags ENABLE");
        add(&mut q, &[buf(1, 1, false)]);
        *dev.word(3) = EVENT_DISABLE;
        assert!(!q.needs_kick(), "device flags DISABLE");
        assert!(!q.has_unkicked());

        // DESC mode: kick only when the event slot was passed.
        *dev.word(3) = EVENT_DESC;
        *dev.word(2) = 5 | 0x8000; // slot 5, wrap 1
        add(&mut q, &[buf(1, 1, false)]); // slot 2 -> next 3
        assert!(!q.needs_kick(), "event slot 5 not reached");
        add(
            &mut q,
            &[buf(1, 1, false), buf(2, 2, true), buf(3, 3, true)],
        ); // 3..5
        assert!(q.needs_kick(), "slot 5 published");
        *dev.word(2) = 1; // slot 1 of the next pass (wrap 0)
        add(&mut q, &[buf(1, 1, false), buf(2, 2, false)]); // 6, 7 -> wraps
        assert!(!q.needs_kick(), "event in the next pass");
    }
}
