//! Direct access to the submission and completion rings of an io_uring
//! instance, for the request path of the ring-based drivers.
//!
//! The `io-uring` crate sets the ring up, registers files and enters the
//! kernel; its `SubmissionQueue`/`CompletionQueue` views are not used on
//! the request path because every `push` builds a 64-byte entry on the
//! stack and copies it, and every view re-reads and re-publishes the shared
//! head and tail. [`Rings`] maps the same ring memory a second time (the
//! offsets come from the kernel's `io_uring_params`, which the crate's
//! `Parameters` wraps transparently) and keeps a private SQ tail:
//!
//! * SQEs are written in place at the private tail and made visible to the
//!   kernel once, by [`Rings::publish`], right before `io_uring_enter`;
//! * the kernel's SQ head only moves inside `io_uring_enter` (no SQPOLL),
//!   so it is read once after each call ([`Rings::entered`]) and the number
//!   of unsubmitted SQEs is a subtraction of two private counters;
//! * a CQ walk reads the kernel's tail once and publishes the new head once.
//!
//! A `Rings` is used by one thread at a time (its queue's), which is the
//! only writer of the SQ tail, the SQEs and the CQ head.

use std::marker::PhantomData;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicU32, Ordering};

use io_uring::{cqueue, squeue, IoUring};
use memmap2::MmapRaw;

use crate::core::{sys, Error, Result};

const IORING_OFF_SQ_RING: u64 = 0;
const IORING_OFF_CQ_RING: u64 = 0x800_0000;
const IORING_OFF_SQES: u64 = 0x1000_0000;

/// `struct io_sqring_offsets`.
#[repr(C)]
struct SqOffsets {
    head: u32,
    tail: u32,
    ring_mask: u32,
    ring_entries: u32,
    flags: u32,
    dropped: u32,
    array: u32,
    resv1: u32,
    user_addr: u64,
}

/// `struct io_cqring_offsets`.
#[repr(C)]
struct CqOffsets {
    head: u32,
    tail: u32,
    ring_mask: u32,
    ring_entries: u32,
    overflow: u32,
    cqes: u32,
    flags: u32,
    resv1: u32,
    user_addr: u64,
}

/// `struct io_uring_params`, as filled in by `io_uring_setup`.
///
/// Copied by hand because the `io-uring` crate keeps its bindings private
/// and its `Parameters` (a `#[repr(transparent)]` wrapper of this struct)
/// exposes no accessor for `sq_off`/`cq_off`; `libc` has no io_uring
/// structs. Cargo.toml pins the crate to the exact version this was checked
/// against; the size is checked below at compile time, the field offsets
/// and the values against the crate's accessors by the unit tests.
#[repr(C)]
struct Params {
    sq_entries: u32,
    cq_entries: u32,
    flags: u32,
    sq_thread_cpu: u32,
    sq_thread_idle: u32,
    features: u32,
    wq_fd: u32,
    resv: [u32; 3],
    sq_off: SqOffsets,
    cq_off: CqOffsets,
}

const _: () = assert!(std::mem::size_of::<Params>() == 120);
const _: () = assert!(std::mem::size_of::<Params>() == std::mem::size_of::<io_uring::Parameters>());

/// One shared mapping of ring memory (pre-faulted, as the crate does).
struct Map(MmapRaw);

impl Map {
    fn new(fd: RawFd, offset: u64, len: usize) -> Result<Map> {
        sys::map_shared(fd, offset, len, true)
            .map(Map)
            .map_err(Error::os)
    }

    /// The address of the `T` `offset` bytes into the mapping (an offset
    /// the kernel gave for this mapping). Checked in every build: only used
    /// while setting a ring up, never per request.
    fn at<T>(&self, offset: u32) -> *mut T {
        assert!(
            (offset as usize)
                .checked_add(std::mem::size_of::<T>())
                .is_some_and(|end| end <= self.0.len()),
            "io_uring ring offset {offset} outside a mapping of {} bytes",
            self.0.len()
        );
        // SAFETY: `offset + size_of::<T>()` <= len (checked above).
        unsafe { self.0.as_mut_ptr().add(offset as usize).cast() }
    }
}

/// The SQ and CQ of one ring. `S` and `C` are the crate's SQE and CQE
/// types (64/128 and 16/32 bytes, matching the ring's setup flags).
pub struct Rings<S, C> {
    sq_head: *const AtomicU32,
    sq_tail: *const AtomicU32,
    sqes: *mut S,
    sq_mask: u32,
    sq_entries: u32,
    /// The SQ tail including SQEs not yet published.
    tail: u32,
    /// The kernel's SQ head, as read after the last `io_uring_enter`.
    head: u32,
    cq_head: *const AtomicU32,
    cq_tail: *const AtomicU32,
    cqes: *const C,
    cq_mask: u32,
    /// Our CQ head (the kernel sees it after each walk).
    cq_next: u32,
    _maps: [Map; 3],
    _entries: PhantomData<(S, C)>,
}

// SAFETY: the pointers point into the mappings this value owns; the queue
// that owns it is used by one thread at a time.
unsafe impl<S, C> Send for Rings<S, C> {}

impl<S: squeue::EntryMarker, C: cqueue::EntryMarker> Rings<S, C> {
    /// Maps the rings of `ring` (created with entries of types `S`/`C`).
    pub fn new(ring: &IoUring<S, C>) -> Result<Self> {
        let params: *const io_uring::Parameters = ring.params();
        // SAFETY: `Parameters` is `#[repr(transparent)]` over the kernel's
        // `io_uring_params` (documented by the crate); `Params` is that
        // struct's layout (size checked above).
        let p = unsafe { &*params.cast::<Params>() };
        let fd = ring.as_raw_fd();
        let sq_len = p.sq_off.array as usize + p.sq_entries as usize * 4;
        let cq_len = p.cq_off.cqes as usize + p.cq_entries as usize * std::mem::size_of::<C>();
        let sqe_len = p.sq_entries as usize * std::mem::size_of::<S>();
        let sq = Map::new(fd, IORING_OFF_SQ_RING, sq_len)?;
        let cq = Map::new(fd, IORING_OFF_CQ_RING, cq_len)?;
        let sqes = Map::new(fd, IORING_OFF_SQES, sqe_len)?;
        // SAFETY: offsets from the kernel, inside the mappings; the ring
        // fields are u32s the kernel initialised.
        let rings = unsafe {
            let array = sq.at::<u32>(p.sq_off.array);
            for i in 0..p.sq_entries {
                array.add(i as usize).write_volatile(i);
            }
            let sq_head = sq.at::<AtomicU32>(p.sq_off.head);
            let cq_head = cq.at::<AtomicU32>(p.cq_off.head);
            Rings {
                sq_head,
                sq_tail: sq.at(p.sq_off.tail),
                sqes: sqes.at(0),
                sq_mask: *sq.at::<u32>(p.sq_off.ring_mask),
                sq_entries: *sq.at::<u32>(p.sq_off.ring_entries),
                tail: (*sq.at::<AtomicU32>(p.sq_off.tail)).load(Ordering::Acquire),
                head: (*sq_head).load(Ordering::Acquire),
                cq_head,
                cq_tail: cq.at(p.cq_off.tail),
                cqes: cq.at(p.cq_off.cqes),
                cq_mask: *cq.at::<u32>(p.cq_off.ring_mask),
                cq_next: (*cq_head).load(Ordering::Acquire),
                _maps: [sq, cq, sqes],
                _entries: PhantomData,
            }
        };
        Ok(rings)
    }

    /// Writes `entry` at the SQ tail (not yet visible to the kernel); false
    /// when the SQ is full.
    ///
    /// # Safety
    /// Whatever the entry points to must stay valid until its completion
    /// is reaped.
    #[inline(always)]
    pub unsafe fn push(&mut self, entry: S) -> bool {
        if self.sq_full() {
            return false;
        }
        // SAFETY: the index is masked into the SQE array, and the slot is
        // free: the kernel has consumed everything before `head`.
        unsafe {
            self.sqes
                .add((self.tail & self.sq_mask) as usize)
                .write(entry)
        };
        self.tail = self.tail.wrapping_add(1);
        true
    }

    /// Whether the SQ has no room for another entry.
    #[inline(always)]
    pub fn sq_full(&self) -> bool {
        self.tail.wrapping_sub(self.head) == self.sq_entries
    }

    /// SQEs written but not yet consumed by the kernel.
    #[inline(always)]
    pub fn unsubmitted(&self) -> u32 {
        self.tail.wrapping_sub(self.head)
    }

    /// Makes the written SQEs visible to the kernel; call right before
    /// `io_uring_enter`.
    #[inline(always)]
    pub fn publish(&self) {
        // SAFETY: the tail field of our mapping.
        unsafe { (*self.sq_tail).store(self.tail, Ordering::Release) };
    }

    /// Takes note of the SQEs the kernel consumed; call after every
    /// `io_uring_enter` (the head moves only inside it).
    #[inline(always)]
    pub fn entered(&mut self) {
        // SAFETY: the head field of our mapping.
        self.head = unsafe { (*self.sq_head).load(Ordering::Acquire) };
    }

    /// Passes CQEs to `f`, oldest first, until `max` of them made `f`
    /// return true (a request's final CQE) or the CQ is empty, then frees
    /// their entries for the kernel. `f` also gets how many returned true
    /// before it. Returns how many returned true.
    #[inline(always)]
    pub fn reap(&mut self, max: usize, mut f: impl FnMut(&C, usize) -> bool) -> usize {
        // SAFETY: the tail field of our mapping; Acquire pairs with the
        // kernel's release of the CQEs before it.
        let tail = unsafe { (*self.cq_tail).load(Ordering::Acquire) };
        let mut head = self.cq_next;
        if head == tail || max == 0 {
            return 0;
        }
        let mut n = 0;
        loop {
            // SAFETY: an entry between our head and the kernel's tail,
            // masked into the CQE array.
            let cqe = unsafe { &*self.cqes.add((head & self.cq_mask) as usize) };
            head = head.wrapping_add(1);
            if f(cqe, n) {
                n += 1;
                if n == max {
                    break;
                }
            }
            if head == tail {
                break;
            }
        }
        self.cq_next = head;
        // SAFETY: the head field of our mapping; Release: the entries were
        // read before the kernel may reuse them.
        unsafe { (*self.cq_head).store(head, Ordering::Release) };
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{offset_of, size_of};

    /// The offsets of `<linux/io_uring.h>` (a stable kernel ABI).
    #[test]
    fn layout_matches_the_kernel() {
        assert_eq!(size_of::<SqOffsets>(), 40);
        assert_eq!(offset_of!(SqOffsets, head), 0);
        assert_eq!(offset_of!(SqOffsets, tail), 4);
        assert_eq!(offset_of!(SqOffsets, ring_mask), 8);
        assert_eq!(offset_of!(SqOffsets, ring_entries), 12);
        assert_eq!(offset_of!(SqOffsets, flags), 16);
        assert_eq!(offset_of!(SqOffsets, dropped), 20);
        assert_eq!(offset_of!(SqOffsets, array), 24);
        assert_eq!(offset_of!(SqOffsets, resv1), 28);
        assert_eq!(offset_of!(SqOffsets, user_addr), 32);

        assert_eq!(size_of::<CqOffsets>(), 40);
        assert_eq!(offset_of!(CqOffsets, head), 0);
        assert_eq!(offset_of!(CqOffsets, tail), 4);
        assert_eq!(offset_of!(CqOffsets, ring_mask), 8);
        assert_eq!(offset_of!(CqOffsets, ring_entries), 12);
        assert_eq!(offset_of!(CqOffsets, overflow), 16);
        assert_eq!(offset_of!(CqOffsets, cqes), 20);
        assert_eq!(offset_of!(CqOffsets, flags), 24);
        assert_eq!(offset_of!(CqOffsets, resv1), 28);
        assert_eq!(offset_of!(CqOffsets, user_addr), 32);

        assert_eq!(size_of::<Params>(), 120);
        assert_eq!(size_of::<Params>(), size_of::<io_uring::Parameters>());
        assert_eq!(
            std::mem::align_of::<Params>(),
            std::mem::align_of::<io_uring::Parameters>()
        );
        assert_eq!(offset_of!(Params, sq_entries), 0);
        assert_eq!(offset_of!(Params, cq_entries), 4);
        assert_eq!(offset_of!(Params, flags), 8);
        assert_eq!(offset_of!(Params, sq_thread_cpu), 12);
        assert_eq!(offset_of!(Params, sq_thread_idle), 16);
        assert_eq!(offset_of!(Params, features), 20);
        assert_eq!(offset_of!(Params, wq_fd), 24);
        assert_eq!(offset_of!(Params, resv), 28);
        assert_eq!(offset_of!(Params, sq_off), 40);
        assert_eq!(offset_of!(Params, cq_off), 80);
    }

    /// Our view of a real ring's parameters agrees with the crate's
    /// accessors, and the ring fields found through the offsets hold what
    /// the kernel put there.
    #[test]
    fn params_agree_with_the_crate() {
        let ring: IoUring = match IoUring::builder().setup_cqsize(64).build(8) {
            Ok(r) => r,
            // No io_uring here (seccomp, old kernel): nothing to compare.
            Err(_) => return,
        };
        let params = ring.params();
        // SAFETY: as in Rings::new.
        let p = unsafe { &*(params as *const io_uring::Parameters).cast::<Params>() };
        assert_eq!(p.sq_entries, params.sq_entries());
        assert_eq!(p.cq_entries, params.cq_entries());
        assert_eq!((p.sq_entries, p.cq_entries), (8, 64));
        const IORING_SETUP_CQSIZE: u32 = 1 << 3;
        assert_ne!(p.flags & IORING_SETUP_CQSIZE, 0);
        const IORING_FEAT_NODROP: u32 = 1 << 1;
        assert_eq!(
            p.features & IORING_FEAT_NODROP != 0,
            params.is_feature_nodrop()
        );
        assert!(p.sq_off.array > p.sq_off.tail && p.cq_off.cqes > p.cq_off.tail);

        let rings = Rings::<squeue::Entry, cqueue::Entry>::new(&ring).unwrap();
        assert_eq!(rings.sq_entries, 8);
        assert_eq!(rings.sq_mask, 7);
        assert_eq!(rings.cq_mask, 63);
        assert_eq!(rings.unsubmitted(), 0);
    }
}
