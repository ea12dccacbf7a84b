//! One io_uring ring per queue (docs/contract/requests.md §7.1).
//!
//! Every request in the ring owns a slot; the SQE's `user_data` is the slot
//! index. A slot stays busy across follow-up SQEs (short transfers, the
//! fsync after a FUA write-zeroes), so the application sees exactly one
//! completion per request. At most as many slots as CQ entries exist, so
//! the completion queue can never overflow.

use std::ffi::CStr;
use std::os::fd::{AsRawFd, RawFd};

use std::sync::Arc;
use std::time::Duration;

use io_uring::{cqueue, opcode, squeue, types, IoUring};

use super::file::{DeviceFile, BLOCK_URING_CMD_DISCARD};
use crate::core::queue::{Enqueue, QueueDriver};
use crate::core::request::{
    Completion, Op, Request, Transfer, REQ_FUA, REQ_NO_FALLBACK, REQ_NO_UNMAP,
};
use crate::core::{Error, Result};
use crate::drivers::uring_eventfd::CompletionFd;
use crate::drivers::uring_ring::Rings;
use crate::drivers::uring_wait;

const FIXED_FILE: types::Fixed = types::Fixed(0);
const RWF_HIPRI: i32 = 0x1;
const RWF_DSYNC: i32 = 0x2;
const FALLOC_FL_KEEP_SIZE: i32 = 0x01;
const FALLOC_FL_PUNCH_HOLE: i32 = 0x02;
const FALLOC_FL_ZERO_RANGE: i32 = 0x10;

/// [`Slot::expect`] of requests whose CQEs always take the full path; no
/// CQE result (an `i32`) equals it.
const NO_SHORTCUT: i64 = i64::MIN;

/// What a busy slot is doing.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    Main,
    /// A `NO_UNMAP` write-zeroes on a file system without
    /// `FALLOC_FL_ZERO_RANGE` (e.g. tmpfs): punch the range out ...
    Punch,
    /// ... and allocate it again, so it reads as zeros and stays allocated
    /// (and, like `ZERO_RANGE`, extends the file when it reaches past it).
    Allocate,
    /// The `fsync(DATASYNC)` that follows a FUA write-zeroes.
    Sync,
}

/// One request in the ring. Slots are reused in place: `enqueue` writes
/// only `req` and `expect`; a free slot has `done` 0, `phase` `Main` and
/// `rest` `None` (the full completion path restores them; the shortcut
/// never changes them).
struct Slot {
    req: Request,
    /// The CQE result that completes the request with 0 in one step (the
    /// length of a plain read or write), or [`NO_SHORTCUT`].
    expect: i64,
    /// Bytes already transferred by earlier SQEs of this request.
    done: u64,
    phase: Phase,
    /// The rest of a vectored request after a short transfer.
    rest: Option<Box<[libc::iovec]>>,
}

// SAFETY: `rest` points into the application's buffers, like the request
// itself (see `Request`); the queue is used by one thread at a time.
unsafe impl Send for Slot {}

pub struct RingQueue {
    /// Setup, registration and `io_uring_enter`.
    ring: IoUring,
    /// The request path's view of the SQ and CQ.
    rings: Rings<squeue::Entry, cqueue::Entry>,
    reqs: Requests,
    /// The completion fd (none on poll queues).
    eventfd: Option<CompletionFd>,
}

/// The requests in the ring: everything but the ring itself, so that the
/// completion queue can be walked while requests complete.
struct Requests {
    file: Arc<DeviceFile>,
    slots: Vec<Slot>,
    free: Vec<u32>,
    /// Slots whose next SQE could not be queued yet (SQ was full).
    retry: Vec<u32>,
    poll: bool,
    fallocate: bool,
}

impl RingQueue {
    pub fn new(file: Arc<DeviceFile>, entries: u32, poll: bool) -> Result<Self> {
        let mut builder = IoUring::builder();
        if poll {
            builder.setup_iopoll();
        }
        let ring = builder.build(entries)?;
        if !ring.params().is_feature_ext_arg() {
            return Err(Error::not_supported(
                "io_uring without IORING_FEAT_EXT_ARG (Linux < 5.11) is not supported",
            ));
        }
        let submitter = ring.submitter();
        let own = file.reopen();
        let fd = own
            .as_ref()
            .map_or(file.fd.as_raw_fd(), |fd| fd.as_raw_fd());
        // The ring keeps its own reference to the registered file.
        submitter.register_files(&[fd])?;
        drop(own);
        let mut probe = io_uring::Probe::new();
        let fallocate = submitter.register_probe(&mut probe).is_ok()
            && probe.is_supported(opcode::Fallocate::CODE);
        let eventfd = if poll {
            None
        } else {
            Some(CompletionFd::new()?)
        };
        let capacity = ring.params().cq_entries();
        let rings = Rings::new(&ring)?;
        let idle = || Slot {
            req: Request {
                op: Op::Flush,
                start: 0,
                user_data: 0,
                flags: 0,
            },
            expect: NO_SHORTCUT,
            done: 0,
            phase: Phase::Main,
            rest: None,
        };
        Ok(RingQueue {
            ring,
            rings,
            reqs: Requests {
                file,
                slots: (0..capacity).map(|_| idle()).collect(),
                free: (0..capacity).rev().collect(),
                retry: Vec::with_capacity(capacity as usize),
                poll,
                fallocate,
            },
            eventfd,
        })
    }

    /// Queues the next SQE of slot `idx`; false when the SQ is full.
    #[inline(always)]
    fn push(&mut self, idx: u32) -> bool {
        let entry = self.reqs.sqe(idx);
        // SAFETY: the buffers and iovecs the SQE points to belong to the
        // application (valid until completion by contract) or to the slot,
        // which stays busy until the request's final CQE is reaped.
        unsafe { self.rings.push(entry) }
    }

    /// [`QueueDriver::enqueue`] for everything but plain data transfers
    /// that fit the quick path.
    #[inline(never)]
    fn enqueue_other(&mut self, req: &Request) -> Enqueue {
        if let Some((errno, msg)) = self.reqs.refuse(req) {
            return Enqueue::Failed(errno, msg);
        }
        let Some(idx) = self.reqs.take_slot(*req, NO_SHORTCUT) else {
            return Enqueue::Full;
        };
        let pushed = self.push(idx);
        self.reqs.placed(idx, pushed)
    }

    /// Moves follow-up SQEs that did not fit earlier into the SQ.
    #[cold]
    fn push_retries(&mut self) {
        while let Some(&idx) = self.reqs.retry.last() {
            if !self.push(idx) {
                break;
            }
            self.reqs.retry.pop();
        }
    }
}

impl Requests {
    /// A free slot holding `req`, or `None` when all are busy.
    #[inline(always)]
    fn take_slot(&mut self, req: Request, expect: i64) -> Option<u32> {
        let idx = self.free.pop()?;
        debug_assert!((idx as usize) < self.slots.len());
        // SAFETY: the free list holds only slot indices: it starts as
        // 0..slots.len() and gets back only indices `complete_full` and
        // `complete` were given, which are those `take_slot` handed out;
        // the slot table never shrinks.
        let slot = unsafe { self.slots.get_unchecked_mut(idx as usize) };
        slot.req = req;
        slot.expect = expect;
        Some(idx)
    }

    /// Slot `idx` is busy if its SQE was `pushed`, else free again.
    #[inline(always)]
    fn placed(&mut self, idx: u32, pushed: bool) -> Enqueue {
        if pushed {
            Enqueue::Queued
        } else {
            self.free.push(idx);
            Enqueue::Full
        }
    }

    /// Checks the driver-specific rules of docs/contract/requests.md §6 and §7.1 for
    /// requests other than data transfers that fit an SQE (those pass).
    fn refuse(&self, req: &Request) -> Option<(i32, Option<&'static CStr>)> {
        if self.poll && !req.op.is_rw() {
            return Some((
                libc::ENOTSUP,
                Some(c"request not supported on poll queues for this driver"),
            ));
        }
        match req.op {
            Op::ReportZones { .. } | Op::ZoneMgmt { .. } => Some((
                libc::ENOTSUP,
                Some(c"request not supported for this driver"),
            )),
            Op::Read { len, .. } | Op::Write { len, .. } if len > u32::MAX as usize => Some((
                libc::EINVAL,
                Some(c"len must fit in an unsigned 32-bit integer"),
            )),
            Op::WriteZeroes { .. } | Op::Discard { .. } if !self.fallocate => Some((
                libc::ENOTSUP,
                Some(c"the kernel does not support IORING_OP_FALLOCATE"),
            )),
            Op::WriteZeroes { .. }
                if self.file.block
                    && !self.file.write_zeroes
                    && req.flags & REQ_NO_FALLBACK != 0 =>
            {
                Some((
                    libc::ENOTSUP,
                    Some(c"the block device does not support write zeroes with BLKIO_REQ_NO_FALLBACK"),
                ))
            }
            _ => None,
        }
    }

    /// The SQE for the next step of the request in slot `idx`.
    #[inline(always)]
    fn sqe(&self, idx: u32) -> squeue::Entry {
        let slot = &self.slots[idx as usize];
        let req = &slot.req;
        let offset = req.start + slot.done;
        let hipri = if self.poll { RWF_HIPRI } else { 0 };
        let dsync = if req.fua() { RWF_DSYNC } else { 0 };
        let done = slot.done as usize;
        let entry = match req.op {
            Op::Read { buf, len } => {
                // SAFETY: `done` < len, inside the application's buffer.
                let rest = unsafe { buf.add(done) };
                opcode::Read::new(FIXED_FILE, rest, (len - done) as u32)
                    .offset(offset)
                    .rw_flags(hipri)
                    .build()
            }
            Op::Write { buf, len } => {
                // SAFETY: `done` < len, inside the application's buffer.
                let rest = unsafe { buf.add(done) };
                opcode::Write::new(FIXED_FILE, rest, (len - done) as u32)
                    .offset(offset)
                    .rw_flags(hipri | dsync)
                    .build()
            }
            Op::Readv { iov, iovcnt } => {
                let (iov, cnt) = rest_or(slot, iov, iovcnt);
                opcode::Readv::new(FIXED_FILE, iov, cnt)
                    .offset(offset)
                    .rw_flags(hipri)
                    .build()
            }
            Op::Writev { iov, iovcnt } => {
                let (iov, cnt) = rest_or(slot, iov, iovcnt);
                opcode::Writev::new(FIXED_FILE, iov, cnt)
                    .offset(offset)
                    .rw_flags(hipri | dsync)
                    .build()
            }
            Op::WriteZeroes { .. } if slot.phase == Phase::Sync => opcode::Fsync::new(FIXED_FILE)
                .flags(types::FsyncFlags::DATASYNC)
                .build(),
            Op::WriteZeroes { len } => {
                let mode = match slot.phase {
                    Phase::Punch => FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                    Phase::Allocate => 0,
                    _ => self.write_zeroes_mode(req.flags),
                };
                opcode::Fallocate::new(FIXED_FILE, len)
                    .offset(req.start)
                    .mode(mode)
                    .build()
            }
            Op::Discard { len } if self.file.block => {
                let mut cmd = [0u8; 16];
                cmd[..8].copy_from_slice(&len.to_ne_bytes());
                opcode::UringCmd16::new(FIXED_FILE, BLOCK_URING_CMD_DISCARD)
                    .addr(Some(req.start))
                    .cmd(cmd)
                    .build()
            }
            Op::Discard { len } => opcode::Fallocate::new(FIXED_FILE, len)
                .offset(req.start)
                .mode(FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE)
                .build(),
            Op::Flush => opcode::Fsync::new(FIXED_FILE)
                .flags(types::FsyncFlags::DATASYNC)
                .build(),
            Op::ReportZones { .. } | Op::ZoneMgmt { .. } => unreachable!("refused at enqueue"),
        };
        entry.user_data(idx as u64)
    }

    /// The fallocate mode of a write-zeroes request (docs/contract/requests.md §7.1).
    fn write_zeroes_mode(&self, flags: u32) -> i32 {
        let no_unmap = flags & REQ_NO_UNMAP != 0;
        match (self.file.block, self.file.write_zeroes, no_unmap) {
            (true, true, false) => FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
            (true, _, _) => FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE,
            (false, _, true) => FALLOC_FL_ZERO_RANGE,
            (false, _, false) => FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
        }
    }

    /// Requests in the ring (busy slots).
    #[inline(always)]
    fn busy(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    /// The shortcut for one CQE: a plain read or write that transferred
    /// everything is done with 0; returns its user data. `None` leaves the
    /// CQE to [`Requests::complete`].
    #[inline(always)]
    fn complete_full(&mut self, idx: u32, res: i32) -> Option<usize> {
        debug_assert!((idx as usize) < self.slots.len());
        // SAFETY: `idx` is the user data of a CQE of this queue's private
        // ring, whose every SQE carries the index of its slot (see
        // `RingQueue::enqueue_transfer` and `Requests::sqe`), and the kernel returns
        // it unchanged; the slot table never shrinks.
        let slot = unsafe { self.slots.get_unchecked(idx as usize) };
        if i64::from(res) != slot.expect {
            return None;
        }
        let user_data = slot.req.user_data;
        self.free.push(idx);
        Some(user_data)
    }

    /// Handles one CQE that did not take the shortcut (errors, short
    /// transfers, vectored and other requests); returns the request's user
    /// data and result when it is done.
    #[cold]
    #[inline(never)]
    fn complete(&mut self, idx: u32, res: i32) -> Option<(usize, i32)> {
        let slot = &mut self.slots[idx as usize];
        let ret = match slot.req.op {
            Op::Read { .. } | Op::Write { .. } | Op::Readv { .. } | Op::Writev { .. } => {
                let expected = slot.req.data_len() - slot.done;
                if res < 0 {
                    res
                } else if res as u64 == expected {
                    0
                } else if res == 0 {
                    if self.file.block {
                        -libc::EIO
                    } else {
                        zero_fill_rest(slot);
                        0
                    }
                } else if (res as u64) < expected {
                    slot.done += res as u64;
                    slot.expect = NO_SHORTCUT;
                    advance(slot);
                    self.retry.push(idx);
                    return None;
                } else {
                    -libc::EIO
                }
            }
            Op::WriteZeroes { .. }
                if res == -libc::EOPNOTSUPP
                    && slot.phase == Phase::Main
                    && !self.file.block
                    && slot.req.flags & REQ_NO_UNMAP != 0 =>
            {
                slot.phase = Phase::Punch;
                self.retry.push(idx);
                return None;
            }
            Op::WriteZeroes { .. } if res == 0 && slot.phase == Phase::Punch => {
                slot.phase = Phase::Allocate;
                self.retry.push(idx);
                return None;
            }
            Op::WriteZeroes { .. }
                if res == 0
                    && slot.req.fua()
                    && matches!(slot.phase, Phase::Main | Phase::Allocate) =>
            {
                slot.phase = Phase::Sync;
                self.retry.push(idx);
                return None;
            }
            // Kernels before 6.12 have no discard command for block
            // devices; the ioctl gives the authoritative answer then.
            Op::Discard { len } if self.file.block && res < 0 => {
                self.file.discard_ioctl(slot.req.start, len)
            }
            _ if res > 0 => -libc::EIO,
            _ => res,
        };
        let user_data = slot.req.user_data;
        if slot.rest.is_some() {
            slot.rest = None;
        }
        slot.done = 0;
        slot.phase = Phase::Main;
        self.free.push(idx);
        Some((user_data, ret))
    }
}

/// The iovec array to use for a vectored request: the remaining part after
/// a short transfer, else the application's.
fn rest_or(slot: &Slot, iov: *const libc::iovec, iovcnt: u32) -> (*const libc::iovec, u32) {
    match &slot.rest {
        Some(rest) => (rest.as_ptr(), rest.len() as u32),
        None => (iov, iovcnt),
    }
}

/// After a short vectored transfer, keeps the iovecs still to be done.
/// (Rare: an allocation here is acceptable.)
fn advance(slot: &mut Slot) {
    let mut skip = slot.done as usize;
    let mut rest = Vec::new();
    // SAFETY: the slot's request is in flight, so its iovec array is valid
    // (Queue::submit's contract).
    for v in unsafe { slot.req.op.iovecs() } {
        if skip >= v.iov_len {
            skip -= v.iov_len;
            continue;
        }
        rest.push(libc::iovec {
            // SAFETY: `skip` < iov_len, inside the application's buffer.
            iov_base: unsafe { v.iov_base.cast::<u8>().add(skip) }.cast(),
            iov_len: v.iov_len - skip,
        });
        skip = 0;
    }
    slot.rest = Some(rest.into_boxed_slice());
}

/// A read that hit the end of a growable file: the rest reads as zeros.
fn zero_fill_rest(slot: &Slot) {
    let done = slot.done as usize;
    match slot.req.op {
        // SAFETY: the application's buffer of `len` bytes; `done` ≤ len.
        Op::Read { buf, len } => unsafe { std::ptr::write_bytes(buf.add(done), 0, len - done) },
        Op::Readv { .. } => {
            let mut skip = done;
            // SAFETY: the slot's request is in flight, so its iovec array
            // is valid (Queue::submit's contract).
            for v in unsafe { slot.req.op.iovecs() } {
                if skip >= v.iov_len {
                    skip -= v.iov_len;
                    continue;
                }
                // SAFETY: inside the application's iovec buffer.
                unsafe {
                    std::ptr::write_bytes(v.iov_base.cast::<u8>().add(skip), 0, v.iov_len - skip)
                };
                skip = 0;
            }
        }
        _ => {}
    }
}

impl QueueDriver for RingQueue {
    /// Data transfers (nearly every request) take a straight path: a
    /// slot and the SQE written in place. Everything else goes through
    /// [`RingQueue::enqueue_other`].
    #[inline(always)]
    fn enqueue(&mut self, req: &Request) -> Enqueue {
        if let Some(t) = req.transfer() {
            return if self.enqueue_transfer(t) {
                Enqueue::Queued
            } else if t.len > u32::MAX as usize {
                self.enqueue_other(req)
            } else {
                Enqueue::Full
            };
        }
        self.enqueue_other(req)
    }

    /// A plain read or write with a length that fits the SQE, a free slot
    /// and room in the SQ. The slot notes the length, so that a CQE that
    /// transferred everything completes with one compare.
    #[inline(always)]
    fn enqueue_transfer(&mut self, t: Transfer) -> bool {
        if t.len > u32::MAX as usize || self.rings.sq_full() {
            return false;
        }
        let Some(idx) = self.reqs.take_slot(t.request(), t.len as i64) else {
            return false;
        };
        let hipri = if self.reqs.poll { RWF_HIPRI } else { 0 };
        let entry = if t.write {
            let dsync = if t.flags & REQ_FUA != 0 { RWF_DSYNC } else { 0 };
            opcode::Write::new(FIXED_FILE, t.buf, t.len as u32)
                .offset(t.start)
                .rw_flags(hipri | dsync)
                .build()
        } else {
            opcode::Read::new(FIXED_FILE, t.buf, t.len as u32)
                .offset(t.start)
                .rw_flags(hipri)
                .build()
        };
        // SAFETY: the buffer belongs to the application, valid until
        // completion by contract.
        unsafe { self.rings.push(entry.user_data(idx as u64)) }
    }

    /// Walks the completion queue once (one head update for the batch).
    #[inline(always)]
    fn reap(&mut self, out: &mut [Completion]) -> usize {
        let reqs = &mut self.reqs;
        let n = self.rings.reap(
            out.len(),
            #[inline(always)]
            |cqe, n| {
                let (idx, res) = (cqe.user_data() as u32, cqe.result());
                let done = match reqs.complete_full(idx, res) {
                    Some(user_data) => Some((user_data, 0)),
                    None => reqs.complete(idx, res),
                };
                match done {
                    Some((user_data, ret)) => {
                        debug_assert!(n < out.len());
                        // SAFETY: `Rings::reap` passes as `n` how many calls
                        // returned true so far, fewer than `out.len()`.
                        unsafe {
                            *out.get_unchecked_mut(n) = Completion::new(user_data, ret, None)
                        };
                        true
                    }
                    None => false,
                }
            },
        );
        if !self.reqs.retry.is_empty() {
            self.push_retries();
        }
        n
    }

    #[inline]
    fn in_flight(&self) -> usize {
        self.reqs.busy()
    }

    /// Follow-up SQEs waiting in `retry` count too, but need no test of
    /// their own: they are moved into the SQ after every reap and every
    /// `io_uring_enter`, so one is left waiting only while the SQ is full,
    /// that is while SQEs are unsubmitted.
    #[inline]
    fn needs_submit(&self) -> bool {
        debug_assert!(self.reqs.retry.is_empty() || self.rings.unsubmitted() != 0);
        self.rings.unsubmitted() != 0
    }

    #[inline(always)]
    fn submit_and_wait(
        &mut self,
        wait_for: usize,
        timeout: Option<Duration>,
        sig: Option<&libc::sigset_t>,
    ) -> Result<()> {
        let mut wait_for = wait_for;
        if !self.reqs.retry.is_empty() {
            self.push_retries();
            // A request whose follow-up SQE found no room in the SQ cannot
            // produce a CQE in this call: waiting for it would sleep until
            // the timeout (-ETIME with every request able to complete).
            // Wait at most for the requests the kernel will own; the
            // caller reaps, which queues the remaining follow-ups, and
            // calls again.
            wait_for = wait_for.min(self.reqs.busy() - self.reqs.retry.len());
        }
        self.rings.publish();
        let res = uring_wait::submit_and_wait(
            self.ring.as_raw_fd(),
            self.rings.unsubmitted(),
            wait_for,
            self.reqs.poll,
            timeout,
            sig,
        );
        self.rings.entered();
        if !self.reqs.retry.is_empty() {
            // What did not fit before may fit now (see `needs_submit`).
            self.push_retries();
        }
        res.map_err(Error::from)
    }

    fn completion_fd(&self) -> RawFd {
        self.eventfd.as_ref().map_or(-1, CompletionFd::raw)
    }

    fn expose_completion_fd(&mut self) -> Result<()> {
        match &mut self.eventfd {
            Some(fd) => fd.expose(&self.ring),
            None => Ok(()),
        }
    }

    fn set_completion_fd_enabled(&mut self, enabled: bool) {
        if let Some(fd) = &mut self.eventfd {
            fd.set_enabled(&self.ring, enabled);
        }
    }
}

/// How long dropping a queue waits for requests the kernel still owns.
const DRAIN_LIMIT: Duration = Duration::from_secs(5);

impl Drop for RingQueue {
    /// Requests still in flight are abandoned (no completions), but the
    /// kernel may still be reading or writing the application's buffers.
    /// Wait, for at most [`DRAIN_LIMIT`], until it has let go of them, so
    /// that after `blkio_destroy` / `blkio_remove_queue` returns the
    /// application may free its buffers. SQEs never submitted are dropped.
    fn drop(&mut self) {
        let unsubmitted = self.rings.unsubmitted() as usize + self.reqs.retry.len();
        let mut in_kernel = self.reqs.busy().saturating_sub(unsubmitted);
        let deadline = std::time::Instant::now() + DRAIN_LIMIT;
        while in_kernel > 0 {
            in_kernel -= self.rings.reap(in_kernel, |_, _| true);
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if in_kernel == 0 || left.is_zero() {
                break;
            }
            let res = uring_wait::submit_and_wait(
                self.ring.as_raw_fd(),
                0,
                1,
                self.reqs.poll,
                Some(left),
                None,
            );
            match res.map_err(Error::from) {
                Ok(()) | Err(Error::Interrupted | Error::TimedOut(_)) => {}
                Err(_) => break,
            }
        }
        if in_kernel > 0 {
            // The kernel may still read the iovec copies of short
            // transfers: leak them rather than free memory in use.
            for slot in &mut self.reqs.slots {
                std::mem::forget(slot.rest.take());
            }
        }
    }
}
