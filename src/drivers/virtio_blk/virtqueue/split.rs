//! The split virtqueue (docs/contract/virtio.md §3.2, §5; virtio 1.x §2.7).
//!
//! Layout of one ring of `N` entries, at offsets from its 16-byte aligned
//! base (see [`Layout`]): the descriptor table (16 N bytes), the available
//! ring (`flags`, `idx`, `ring[N]`, `used_event`; 8 + 2 N bytes reserved,
//! rounded up to 4), then the used ring (`flags`, `idx`, `ring[N]` of
//! `{id u32, len u32}`, `avail_event`; 8 + 8 N bytes). All fields are
//! little-endian.
//!
//! Free descriptors form a list kept in driver-private memory
//! (`free_next`), never in the shared table: the device may write the
//! table, and nothing is ever read back from it. A chain takes descriptors
//! from the head of that list in list order, and its links in the table are
//! written from the private list, so freeing a chain only relinks its last
//! descriptor (remembered per head, so freeing does not walk the chain).
//!
//! A used entry whose id is out of range or names no chain in flight (a
//! repeated id included) is a device error: the queue is then broken
//! ([`Virtqueue::is_broken`]), hands out nothing more, and the virtio-blk
//! layer fails every request with -EIO.
//!
//! Memory ordering: descriptors and ring slots are written before the
//! release store of `avail.idx`; used entries are read after the acquire
//! load of `used.idx`. Notification decisions use full fences, as the
//! virtio specification requires.

use std::ptr::NonNull;
use std::sync::atomic::{fence, AtomicU16, Ordering};

use virtio_bindings::virtio_ring::{
    VRING_AVAIL_F_NO_INTERRUPT, VRING_DESC_F_NEXT, VRING_DESC_F_WRITE, VRING_USED_F_NO_NOTIFY,
};

use super::{Buffer, Virtqueue};

/// End of the free list.
const NO_NEXT: u16 = 0xFFFF;

/// Offsets of the parts of a split ring of a given size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Available ring offset (the descriptor table starts at 0).
    pub avail: usize,
    /// Used ring offset.
    pub used: usize,
    /// First byte after the used ring.
    pub end: usize,
}

impl Layout {
    pub const fn new(size: u16) -> Layout {
        let n = size as usize;
        let avail = 16 * n;
        let used = avail + (8 + 2 * n).next_multiple_of(4);
        Layout {
            avail,
            used,
            end: used + 8 + 8 * n,
        }
    }
}

/// `struct vring_desc`.
#[repr(C)]
struct Descriptor {
    addr: u64,
    len: u32,
    flags: u16,
    next: u16,
}

/// Driver state of one split ring whose chains carry a `T` each.
pub struct SplitQueue<T> {
    desc: NonNull<Descriptor>,
    /// `avail.flags`; `idx` is at +1, `ring` at +2, `used_event` at +2+N.
    avail: NonNull<u16>,
    /// `avail.used_event`, written on every wait and (notifications on)
    /// every pop.
    used_event: NonNull<u16>,
    /// Start of the used ring.
    used: NonNull<u8>,
    size: u16,
    free_head: u16,
    num_free: u16,
    /// The free list's links, by descriptor (driver-private).
    free_next: Box<[u16]>,
    /// A used entry broke the rules; nothing more is popped.
    broken: bool,
    /// Next available index (not yet wrapped to the ring size).
    avail_idx: u16,
    /// `avail_idx` at the last kick decision.
    kicked_idx: u16,
    /// Used index up to which entries were popped.
    used_last: u16,
    event_idx: bool,
    notify: bool,
    /// Each in-flight chain, by head.
    chains: Box<[Chain<T>]>,
}

/// An in-flight chain, by head index.
#[derive(Clone, Copy, Default)]
struct Chain<T> {
    /// Descriptor count; 0 = not in flight.
    len: u16,
    /// Its last descriptor.
    tail: u16,
    /// What [`Virtqueue::add_chain`] was given for it.
    token: T,
}

// SAFETY: the ring memory is owned by the queue that owns this value (see
// `new`); only the device shares it, through the virtio protocol. The
// tokens are `Send`.
unsafe impl<T: Send> Send for SplitQueue<T> {}

impl<T: Copy + Default> SplitQueue<T> {
    /// A ring of `size` entries (a power of two ≤ 32768) at `mem`.
    ///
    /// With `event_idx` the `VIRTIO_RING_F_EVENT_IDX` rules apply.
    /// Notifications start enabled (the zeroed ring says so).
    ///
    /// # Safety
    ///
    /// `mem` is 16-byte aligned, points to `Layout::new(size).end` zeroed
    /// bytes that stay mapped while this value lives, and nothing but the
    /// device accesses them meanwhile.
    pub unsafe fn new(mem: NonNull<u8>, size: u16, event_idx: bool) -> SplitQueue<T> {
        debug_assert!(size.is_power_of_two() && size <= 32768);
        debug_assert_eq!(mem.as_ptr() as usize % 16, 0);
        let layout = Layout::new(size);
        // SAFETY: the offsets stay inside the block described by `layout`.
        let (avail, used) = unsafe { (mem.add(layout.avail).cast::<u16>(), mem.add(layout.used)) };
        // SAFETY: slot 2 + N of the available ring area.
        let used_event = unsafe { avail.add(2 + size as usize) };
        SplitQueue {
            desc: mem.cast(),
            avail,
            used_event,
            used,
            size,
            free_head: 0,
            num_free: size,
            free_next: (0..size)
                .map(|i| if i + 1 < size { i + 1 } else { NO_NEXT })
                .collect(),
            broken: false,
            avail_idx: 0,
            kicked_idx: 0,
            used_last: 0,
            event_idx,
            notify: true,
            chains: vec![Chain::default(); size as usize].into_boxed_slice(),
        }
    }

    /// Descriptor `i` modulo the ring size.
    #[inline]
    fn descriptor(&self, i: u16) -> *mut Descriptor {
        // SAFETY: masked below the (power of two) size: inside the table.
        unsafe { self.desc.as_ptr().add((i & (self.size - 1)) as usize) }
    }

    /// Writes `chain` into the descriptors from the free head on and
    /// publishes it; inlined so that fixed-length chains unroll.
    #[inline(always)]
    fn place(&mut self, chain: &[Buffer], token: T) -> u16 {
        assert!(!chain.is_empty() && chain.len() <= self.num_free as usize);
        let head = self.free_head & (self.size - 1);
        let mut idx = head;
        let mut tail = head;
        for (i, buf) in chain.iter().enumerate() {
            let mut flags = 0;
            if buf.device_writable {
                flags |= VRING_DESC_F_WRITE as u16;
            }
            if i + 1 < chain.len() {
                flags |= VRING_DESC_F_NEXT as u16;
            }
            tail = idx;
            let d = self.descriptor(idx);
            let mask = self.size - 1;
            // SAFETY: masked below size, the length of `free_next`.
            let next = unsafe { *self.free_next.get_unchecked((idx & mask) as usize) };
            // SAFETY: a free descriptor of this ring (`descriptor` masks).
            unsafe {
                (*d).addr = buf.addr.to_le();
                (*d).len = buf.len.to_le();
                (*d).flags = flags.to_le();
                (*d).next = next.to_le();
            }
            idx = next;
        }
        self.free_head = idx;
        self.num_free -= chain.len() as u16;
        // SAFETY: `head` is masked below size, the length of `chains`.
        unsafe {
            *self.chains.get_unchecked_mut(head as usize) = Chain {
                len: chain.len() as u16,
                tail: tail & (self.size - 1),
                token,
            }
        };

        let slot = (self.avail_idx & (self.size - 1)) as usize;
        // SAFETY: `avail.ring[slot]`, slot < N.
        unsafe {
            self.avail
                .as_ptr()
                .add(2 + slot)
                .write_volatile(head.to_le())
        };
        self.avail_idx = self.avail_idx.wrapping_add(1);
        self.avail_idx_atomic()
            .store(self.avail_idx.to_le(), Ordering::Release);
        head
    }

    fn avail_idx_atomic(&self) -> &AtomicU16 {
        // SAFETY: `avail.idx` is a 2-byte aligned u16 of the ring, only
        // accessed atomically from here on our side.
        unsafe { AtomicU16::from_ptr(self.avail.as_ptr().add(1)) }
    }

    fn used_idx_atomic(&self) -> &AtomicU16 {
        // SAFETY: `used.idx` (offset 2) is a 2-byte aligned u16 the device
        // stores to; we only load it.
        unsafe { AtomicU16::from_ptr(self.used.as_ptr().add(2).cast()) }
    }

    /// `avail.used_event`.
    fn write_used_event(&self, value: u16) {
        // SAFETY: `avail.used_event`, inside the ring block.
        unsafe { self.used_event.as_ptr().write_volatile(value.to_le()) };
    }

    /// `used.avail_event`, written by the device.
    fn read_avail_event(&self) -> u16 {
        // SAFETY: the u16 after the used ring's N entries.
        u16::from_le(unsafe {
            self.used
                .as_ptr()
                .add(4 + 8 * self.size as usize)
                .cast::<u16>()
                .read_volatile()
        })
    }

    /// `used.flags`, written by the device.
    fn read_used_flags(&self) -> u16 {
        // SAFETY: offset 0 of the used ring.
        u16::from_le(unsafe { self.used.as_ptr().cast::<u16>().read_volatile() })
    }
}

impl<T> SplitQueue<T> {
    /// Marks the ring broken by a bad used entry. Returns nothing, so
    /// that `pop_used`'s result is never merged through memory.
    #[cold]
    #[inline(never)]
    fn break_queue(&mut self) {
        self.broken = true;
    }
}

impl<T: Copy + Default + Send> Virtqueue<T> for SplitQueue<T> {
    fn size(&self) -> u16 {
        self.size
    }

    fn next_id(&self) -> Option<u16> {
        (self.num_free > 0).then_some(self.free_head)
    }

    fn num_free(&self) -> u16 {
        self.num_free
    }

    #[inline(always)]
    fn add_chain(&mut self, chain: &[Buffer], token: T) -> u16 {
        self.place(chain, token)
    }

    #[inline]
    fn used_pending(&self) -> u16 {
        u16::from_le(self.used_idx_atomic().load(Ordering::Acquire)).wrapping_sub(self.used_last)
    }

    /// Inlined: the one call is in the virtio-blk reap loop.
    #[inline(always)]
    fn pop_used(&mut self) -> Option<(u16, T)> {
        let pending = self.used_pending();
        if self.broken || pending == 0 {
            return None;
        }
        if pending > self.size {
            // The device moved used.idx further than it has chains.
            self.break_queue();
            return None;
        }
        let slot = (self.used_last & (self.size - 1)) as usize;
        // SAFETY: `used.ring[slot].id`, slot < N; ordered after the
        // acquire load in `used_pending`.
        let id = u32::from_le(unsafe {
            self.used
                .as_ptr()
                .add(4 + 8 * slot)
                .cast::<u32>()
                .read_volatile()
        });
        self.used_last = self.used_last.wrapping_add(1);
        if self.event_idx && self.notify {
            self.write_used_event(self.used_last);
            fence(Ordering::SeqCst);
        }
        if id >= self.size as u32 {
            self.break_queue();
            return None;
        }
        let head = id as u16;
        // SAFETY: `head` < size, the length of `chains`.
        let chain = unsafe { self.chains.get_unchecked_mut(head as usize) };
        let (len, tail, token) = (chain.len, chain.tail, chain.token);
        if len == 0 {
            // Not in flight: never placed, or already used once.
            self.break_queue();
            return None;
        }
        chain.len = 0;
        // SAFETY: the tail was masked below size when it was recorded.
        unsafe { *self.free_next.get_unchecked_mut(tail as usize) = self.free_head };
        self.free_head = head;
        self.num_free += len;
        Some((head, token))
    }

    fn take_in_flight(&mut self) -> Option<T> {
        let chain = self.chains.iter_mut().find(|c| c.len > 0)?;
        chain.len = 0;
        Some(chain.token)
    }

    fn is_broken(&self) -> bool {
        self.broken
    }

    fn has_unkicked(&self) -> bool {
        self.avail_idx != self.kicked_idx
    }

    fn needs_kick(&mut self) -> bool {
        if !self.has_unkicked() {
            return false;
        }
        fence(Ordering::SeqCst);
        let new = self.avail_idx;
        let kick = if self.event_idx {
            let event = self.read_avail_event();
            new.wrapping_sub(event).wrapping_sub(1) < new.wrapping_sub(self.kicked_idx)
        } else {
            self.read_used_flags() & VRING_USED_F_NO_NOTIFY as u16 == 0
        };
        self.kicked_idx = new;
        kick
    }

    fn set_notifications(&mut self, enabled: bool) {
        self.notify = enabled;
        if self.event_idx {
            // On: signal at the next used entry. Off: an index just behind
            // the ones we popped, which the device passes only after
            // 65535 more entries (writing `used_last` here, as before,
            // left one signal armed: a stale count on the eventfd that
            // turned the next wait into two ppoll + read rounds).
            let event = if enabled {
                self.used_last
            } else {
                self.used_last.wrapping_sub(1)
            };
            self.write_used_event(event);
        } else {
            let flags = if enabled {
                0
            } else {
                VRING_AVAIL_F_NO_INTERRUPT as u16
            };
            // SAFETY: `avail.flags`.
            unsafe { self.avail.as_ptr().write_volatile(flags.to_le()) };
        }
        if enabled {
            fence(Ordering::SeqCst);
        }
    }

    /// With EVENT_IDX: `used_event = used_last`, what enabling writes,
    /// but pops do not keep it current.
    fn arm(&mut self) {
        if self.event_idx {
            self.write_used_event(self.used_last);
            fence(Ordering::SeqCst);
        } else {
            self.set_notifications(true);
        }
    }

    /// With EVENT_IDX, once the device has used an entry (nothing was
    /// popped since [`Virtqueue::arm`]) it has passed the armed
    /// `used_event`, which then stays behind the used index until 65536
    /// more entries, as the disabled state's does: only a sleep that
    /// ended without one (timeout, signal, hang-up) writes anything.
    fn disarm(&mut self) {
        if !self.event_idx {
            self.set_notifications(false);
        } else if self.used_pending() == 0 {
            self.write_used_event(self.used_last.wrapping_sub(1));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drivers::virtio_blk::virtqueue::checked::{add, pop};

    /// A chain as the device sees it: (addr, len, device-writable) each.
    type DeviceChain = Vec<(u64, u32, bool)>;

    /// Zeroed, 16-byte aligned memory for a ring, plus a minimal device.
    struct Ring {
        mem: Vec<u128>,
        size: u16,
        /// Device side: next available index to consume.
        dev_avail: u16,
        /// Device side: used index produced so far.
        dev_used: u16,
    }

    impl Ring {
        fn new(size: u16) -> Ring {
            Ring {
                mem: vec![0; Layout::new(size).end.div_ceil(16)],
                size,
                dev_avail: 0,
                dev_used: 0,
            }
        }

        fn queue(&mut self, event_idx: bool) -> SplitQueue<u16> {
            let p = NonNull::new(self.mem.as_mut_ptr().cast::<u8>()).unwrap();
            // SAFETY: zeroed, aligned, large enough, outlives the test's queue.
            unsafe { SplitQueue::new(p, self.size, event_idx) }
        }

        fn base(&self) -> *const u8 {
            self.mem.as_ptr().cast()
        }

        fn u16_at(&self, off: usize) -> u16 {
            // SAFETY: inside `mem`, aligned.
            unsafe { self.base().add(off).cast::<u16>().read_volatile() }
        }

        fn set_u16(&mut self, off: usize, v: u16) {
            // SAFETY: inside `mem`, aligned.
            unsafe {
                self.mem
                    .as_mut_ptr()
                    .cast::<u8>()
                    .add(off)
                    .cast::<u16>()
                    .write_volatile(v)
            }
        }

        fn desc(&self, i: u16) -> (u64, u32, u16, u16) {
            // SAFETY: descriptor `i` of the table.
            let d = unsafe { &*self.base().cast::<Descriptor>().add(i as usize) };
            (d.addr, d.len, d.flags, d.next)
        }

        /// Device: takes the next available chain; returns its buffers.
        fn take(&mut self) -> Option<(u16, DeviceChain)> {
            let l = Layout::new(self.size);
            if self.u16_at(l.avail + 2) == self.dev_avail {
                return None;
            }
            let slot = (self.dev_avail % self.size) as usize;
            let head = self.u16_at(l.avail + 4 + 2 * slot);
            self.dev_avail = self.dev_avail.wrapping_add(1);
            let mut bufs = Vec::new();
            let mut i = head;
            loop {
                let (addr, len, flags, next) = self.desc(i);
                bufs.push((addr, len, flags & VRING_DESC_F_WRITE as u16 != 0));
                if flags & VRING_DESC_F_NEXT as u16 == 0 {
                    break;
                }
                i = next;
            }
            Some((head, bufs))
        }

        /// Device: marks chain `id` used.
        fn complete(&mut self, id: u32) {
            let l = Layout::new(self.size);
            let slot = (self.dev_used % self.size) as usize;
            // SAFETY: `used.ring[slot].id`.
            unsafe {
                self.mem
                    .as_mut_ptr()
                    .cast::<u8>()
                    .add(l.used + 4 + 8 * slot)
                    .cast::<u32>()
                    .write_volatile(id)
            };
            self.dev_used = self.dev_used.wrapping_add(1);
            self.set_u16(l.used + 2, self.dev_used);
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
    fn layout_matches_the_recorded_offsets() {
        assert_eq!(
            Layout::new(256),
            Layout {
                avail: 4096,
                used: 4616,
                end: 6672
            }
        );
        assert_eq!(
            Layout::new(4),
            Layout {
                avail: 64,
                used: 80,
                end: 120
            }
        );
    }

    #[test]
    fn chains_follow_the_free_list_and_come_back() {
        let mut ring = Ring::new(8);
        let mut q = ring.queue(false);
        assert_eq!(q.next_id(), Some(0));
        let chain = [
            buf(0x1000, 16, false),
            buf(0x2000, 512, true),
            buf(0x3000, 1, true),
        ];
        assert_eq!(add(&mut q, &chain), 0);
        assert_eq!(q.num_free(), 5);
        assert_eq!(q.next_id(), Some(3));
        assert_eq!(add(&mut q, &chain[..2]), 3);
        assert_eq!(
            ring.take().unwrap(),
            (
                0,
                vec![(0x1000, 16, false), (0x2000, 512, true), (0x3000, 1, true)]
            )
        );
        assert_eq!(ring.take().unwrap().0, 3);
        assert!(ring.take().is_none());

        // Completion out of order.
        assert_eq!(pop(&mut q), None);
        ring.complete(3);
        ring.complete(0);
        assert_eq!(q.used_pending(), 2);
        assert_eq!(pop(&mut q), Some(3));
        assert_eq!(pop(&mut q), Some(0));
        assert_eq!(pop(&mut q), None);
        assert_eq!(q.num_free(), 8);
        // The most recently freed chain is reused first, and its
        // descriptors follow in the old order.
        assert_eq!(q.next_id(), Some(0));
        assert_eq!(add(&mut q, &chain), 0);
        assert_eq!(ring.take().unwrap().1.len(), 3);
        assert_eq!((ring.desc(0).3, ring.desc(1).3), (1, 2));
        assert_eq!(q.next_id(), Some(3));
    }

    /// Sets the `next` field of descriptor `i`, as a device may.
    fn scribble_next(ring: &mut Ring, i: u16, next: u16) {
        ring.set_u16(16 * i as usize + 14, next);
    }

    #[test]
    fn device_writes_to_the_table_do_not_change_the_free_list() {
        let mut ring = Ring::new(8);
        let mut q = ring.queue(false);
        let chain = [
            buf(0x1000, 16, false),
            buf(0x2000, 512, true),
            buf(0x3000, 1, true),
        ];
        for round in 0..50u16 {
            let a = add(&mut q, &chain);
            let b = add(&mut q, &chain[..2]);
            // Both chains use distinct descriptors, linked as we wrote them.
            let mut used = std::collections::HashSet::new();
            for _ in 0..2 {
                let (head, bufs) = ring.take().unwrap();
                assert!(head == a || head == b);
                let mut i = head;
                for _ in 0..bufs.len() {
                    assert!(
                        used.insert(i),
                        "round {round}: descriptor {i} in two chains"
                    );
                    i = ring.desc(i).3;
                }
            }
            assert_eq!(used.len(), 5);
            // The device scribbles on every descriptor, in flight and free
            // (with event idx off, `next` of free ones is what the old
            // free list followed).
            for i in 0..8 {
                scribble_next(&mut ring, i, (i + round) % 8);
            }
            ring.complete(b as u32);
            ring.complete(a as u32);
            assert_eq!(pop(&mut q), Some(b));
            assert_eq!(pop(&mut q), Some(a));
            assert!(!q.is_broken());
            assert_eq!(q.num_free(), 8);
        }
    }

    #[test]
    fn used_id_out_of_range_breaks_the_ring() {
        let mut ring = Ring::new(8);
        let mut q = ring.queue(false);
        let chain = [buf(0x1000, 16, false), buf(0x3000, 1, true)];
        let a = add(&mut q, &chain);
        let _b = add(&mut q, &chain);
        // 8 + a would wrap onto `a` if masked.
        ring.complete(8 + a as u32);
        ring.complete(a as u32);
        assert_eq!(pop(&mut q), None);
        assert!(q.is_broken());
        assert_eq!(pop(&mut q), None);
    }

    #[test]
    fn used_id_not_in_flight_breaks_the_ring() {
        for repeated in [false, true] {
            let mut ring = Ring::new(8);
            let mut q = ring.queue(false);
            let chain = [buf(0x1000, 16, false), buf(0x3000, 1, true)];
            let a = add(&mut q, &chain);
            let b = add(&mut q, &chain);
            ring.complete(a as u32);
            if repeated {
                ring.complete(a as u32);
            } else {
                ring.complete(5); // inside a free range, never a head
            }
            ring.complete(b as u32);
            assert_eq!(pop(&mut q), Some(a));
            assert_eq!(pop(&mut q), None, "repeated {repeated}");
            assert!(q.is_broken());
            assert_eq!(pop(&mut q), None);
        }
    }

    #[test]
    fn used_index_jump_larger_than_the_ring_breaks_it() {
        let mut ring = Ring::new(8);
        let mut q = ring.queue(false);
        let a = add(&mut q, &[buf(0x1000, 16, false)]);
        ring.complete(a as u32);
        let l = Layout::new(8);
        ring.set_u16(l.used + 2, 9);
        assert_eq!(pop(&mut q), None);
        assert!(q.is_broken());
    }

    #[test]
    fn many_rounds_wrap_every_index() {
        // One chain stays outstanding while the next is added and the
        // older completed, so ids rotate and all indexes wrap many times.
        let mut ring = Ring::new(4);
        let mut q = ring.queue(true);
        let mut seen = std::collections::HashSet::new();
        let mut older: Option<u16> = None;
        for round in 0..70_000u32 {
            let n = 1 + (round % 2) as usize;
            let chain: Vec<Buffer> = (0..n)
                .map(|i| buf(round as u64, i as u32, i == 1))
                .collect();
            let id = q.next_id().unwrap();
            assert_eq!(add(&mut q, &chain), id);
            let (head, bufs) = ring.take().unwrap();
            assert_eq!(head, id);
            assert_eq!(bufs.len(), n);
            assert!(bufs.iter().all(|b| b.0 == round as u64));
            if let Some(old) = older {
                ring.complete(old as u32);
                assert_eq!(pop(&mut q), Some(old));
            }
            older = Some(id);
            seen.insert(id);
            assert!(q.num_free() >= 2);
        }
        assert!(seen.len() >= 2, "{seen:?}");
    }

    #[test]
    fn full_ring_has_no_next_id() {
        let mut ring = Ring::new(4);
        let mut q = ring.queue(false);
        add(&mut q, &[buf(1, 1, false), buf(2, 1, true)]);
        add(&mut q, &[buf(3, 1, false), buf(4, 1, true)]);
        assert_eq!(q.next_id(), None);
        assert_eq!(q.num_free(), 0);
    }

    #[test]
    fn kick_follows_no_notify_without_event_idx() {
        let mut ring = Ring::new(4);
        let mut q = ring.queue(false);
        assert!(!q.needs_kick(), "nothing published");
        add(&mut q, &[buf(1, 1, true)]);
        assert!(q.has_unkicked());
        assert!(q.needs_kick());
        assert!(!q.needs_kick(), "already decided");
        ring.set_u16(Layout::new(4).used, VRING_USED_F_NO_NOTIFY as u16);
        add(&mut q, &[buf(1, 1, true)]);
        assert!(!q.needs_kick());
    }

    #[test]
    fn kick_follows_avail_event_with_event_idx() {
        let mut ring = Ring::new(8);
        let mut q = ring.queue(true);
        let avail_event = Layout::new(8).used + 4 + 8 * 8;
        // Device wants a kick once index 0 is published.
        add(&mut q, &[buf(1, 1, true)]);
        assert!(q.needs_kick());
        // Device asks to be kicked only after index 3 (event 3).
        ring.set_u16(avail_event, 3);
        add(&mut q, &[buf(1, 1, true)]); // idx 1 → 2
        assert!(!q.needs_kick());
        add(&mut q, &[buf(1, 1, true)]); // 3
        assert!(!q.needs_kick());
        add(&mut q, &[buf(1, 1, true)]); // 4: crosses event 3
        assert!(q.needs_kick());
    }

    #[test]
    fn notification_controls() {
        let mut ring = Ring::new(4);
        let l = Layout::new(4);
        let mut q = ring.queue(false);
        q.set_notifications(false);
        assert_eq!(ring.u16_at(l.avail), VRING_AVAIL_F_NO_INTERRUPT as u16);
        q.set_notifications(true);
        assert_eq!(ring.u16_at(l.avail), 0);

        let mut ring = Ring::new(4);
        let used_event = l.avail + 4 + 2 * 4;
        let mut q = ring.queue(true);
        add(&mut q, &[buf(1, 1, true)]);
        add(&mut q, &[buf(1, 1, true)]);
        ring.complete(0);
        ring.complete(1);
        q.set_notifications(false);
        assert_eq!(ring.u16_at(used_event), u16::MAX, "behind used_last");
        assert_eq!(pop(&mut q), Some(0));
        assert_eq!(
            ring.u16_at(used_event),
            u16::MAX,
            "not updated while disabled"
        );
        q.set_notifications(true);
        assert_eq!(ring.u16_at(used_event), 1);
        assert_eq!(pop(&mut q), Some(1));
        assert_eq!(ring.u16_at(used_event), 2, "kept current while enabled");
        assert_eq!(ring.u16_at(l.avail), 0, "flags untouched with EVENT_IDX");
    }

    #[test]
    fn arm_for_one_sleep() {
        let mut ring = Ring::new(4);
        let l = Layout::new(4);
        let mut q = ring.queue(false);
        q.set_notifications(false);
        q.arm();
        assert_eq!(ring.u16_at(l.avail), 0, "armed without EVENT_IDX: on");
        q.disarm();
        assert_eq!(ring.u16_at(l.avail), VRING_AVAIL_F_NO_INTERRUPT as u16);

        let mut ring = Ring::new(4);
        let used_event = l.avail + 4 + 2 * 4;
        let mut q = ring.queue(true);
        q.set_notifications(false);
        add(&mut q, &[buf(1, 1, true)]);
        add(&mut q, &[buf(1, 1, true)]);
        add(&mut q, &[buf(1, 1, true)]);
        // A sleep that ends without a used entry puts used_event back
        // behind used_last.
        q.arm();
        assert_eq!(ring.u16_at(used_event), 0, "signal at the next entry");
        q.disarm();
        assert_eq!(ring.u16_at(used_event), u16::MAX);
        // One that ends with one leaves it where the device passed it.
        q.arm();
        ring.complete(0);
        q.disarm();
        assert_eq!(ring.u16_at(used_event), 0, "passed: left behind");
        assert_eq!(pop(&mut q), Some(0));
        assert_eq!(ring.u16_at(used_event), 0, "pops do not move it");
        q.arm();
        assert_eq!(ring.u16_at(used_event), 1);
        ring.complete(1);
        q.disarm();
        assert_eq!(pop(&mut q), Some(1));
        assert_eq!(ring.u16_at(used_event), 1, "armed state ended");
    }
}
