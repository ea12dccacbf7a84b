//! One virtio-blk queue: request checks, request → descriptor chain
//! encoding, completion of used chains, notification policy and waiting
//! (docs/contract/requests.md §4.2, §5, §6, §7.3; docs/contract/virtio.md §4).
//!
//! A device that goes away (the transport's hang-up fd reports POLLHUP) is
//! noticed while a `blkioq_do_io*` call waits (regular queues poll the fd
//! together with the call eventfd; poll queues check it every few thousand
//! spins) and, cheaply, every 256th reap that finds nothing while requests
//! are in flight. From then on every in-flight request completes with -EIO
//! "device disconnected" and new ones with -ENOTCONN. An application that
//! only sleeps on the completion fd and never calls `blkioq_do_io*` is not
//! woken: nothing signals that fd once the device is gone.

use std::ffi::CStr;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use virtio_bindings::virtio_blk::{
    VIRTIO_BLK_T_DISCARD, VIRTIO_BLK_T_FLUSH, VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT,
    VIRTIO_BLK_T_WRITE_ZEROES, VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP,
};
use vmm_sys_util::eventfd::EventFd;

use super::config::{DeviceInfo, SECTOR};
use super::memory::{BlockLayout, QueueMemory};
use super::record::{
    self, Header, Records, HEADER_LEN, SEGMENT_LEN, SEGMENT_OFFSET, STATUS_OFFSET,
};
use super::transport::{hung_up, DeviceAddress, Kick, Transport};
use super::virtqueue::{Buffer, Virtqueue};
use crate::core::queue::{duration_to_timespec, Enqueue, QueueDriver};
use crate::core::request::{Completion, Op, Request, Transfer, REQ_FUA, REQ_NO_UNMAP};
use crate::core::sys;
use crate::core::{Error, Result};

/// Longest data descriptor we create; longer buffers are split.
const MAX_DESC_LEN: usize = 1 << 31;

/// How many empty reaps with requests in flight pass between two cheap
/// hang-up checks outside of waits.
const IDLE_REAPS_PER_CHECK: u32 = 256;

/// Poll-queue busy loop iterations between two hang-up checks.
const SPINS_PER_CHECK: u32 = 4096;

type Refusal = (i32, Option<&'static CStr>);

const fn refuse(errno: i32, msg: &'static CStr) -> Refusal {
    (errno, Some(msg))
}

/// What a chain in the ring stands for: its virtqueue token.
#[derive(Clone, Copy, Default)]
pub struct Pending {
    user_data: usize,
    /// FUA write without native FUA: queue a FLUSH after it succeeds and
    /// report only the flush.
    then_flush: bool,
}

/// The settings a queue is created with.
pub struct QueueParams<T: Transport> {
    pub memory: Arc<QueueMemory>,
    /// Offset of this queue's block in `memory`.
    pub offset: usize,
    /// The block's layout (split or packed ring).
    pub layout: BlockLayout,
    pub queue_size: u16,
    pub addr: T::Addr,
    pub kick: T::Kick,
    pub call: EventFd,
    pub poll: bool,
    pub info: DeviceInfo,
    /// The instance's `read-only` property.
    pub read_only: bool,
    pub hangup: Option<Arc<OwnedFd>>,
}

/// A virtio-blk queue over virtqueue `V`.
pub struct VirtioQueue<T: Transport, V: Virtqueue<Pending>> {
    vq: V,
    records: Records,
    /// Device address of record 0.
    records_dev: u64,
    /// Keeps the ring and records mapped.
    _memory: Arc<QueueMemory>,
    addr: T::Addr,
    kick: T::Kick,
    call: EventFd,
    poll: bool,
    info: DeviceInfo,
    read_only: bool,
    in_flight: usize,
    /// Scratch space for the chain being built.
    chain: Vec<Buffer>,
    /// The application's `blkioq_set_completion_fd_enabled` setting.
    notify: bool,
    hangup: Option<Arc<OwnedFd>>,
    /// What a sleep polls: the call eventfd (`POLLIN`) and the hang-up fd
    /// (`POLLRDHUP`; -1, ignored by `ppoll`, without one), set up once so
    /// that a sleep builds nothing (`ppoll` only writes `revents`).
    sleep_fds: [libc::pollfd; 2],
    /// The device went away: in-flight requests fail, new ones are refused.
    disconnected: bool,
    /// Why the queue stopped when the device broke the ring's rules rather
    /// than went away: requests then fail with -EIO and this message.
    fault: Option<&'static CStr>,
    idle_reaps: u32,
}

impl<T: Transport, V: Virtqueue<Pending>> VirtioQueue<T, V> {
    /// A queue over the ring `vq` (already placed in `p.memory`), with
    /// notifications off (docs/contract/requests.md §5).
    pub fn new(mut vq: V, p: QueueParams<T>) -> Result<Self> {
        let records_at = p.memory.at(p.offset + p.layout.records);
        let records_len = record::RECORD_LEN * p.queue_size as usize;
        let records_dev = p
            .addr
            .translate(records_at.as_ptr() as usize, records_len)
            .ok_or_else(|| Error::device("virtqueue memory is not mapped"))?;
        // SAFETY: the records area of this queue's block, kept alive by
        // `_memory`.
        let records = unsafe { Records::new(records_at, p.queue_size as usize) };
        if !p.poll {
            set_nonblocking(p.call.as_raw_fd())?;
        }
        vq.set_notifications(false);
        let sleep_fds = [
            libc::pollfd {
                fd: p.call.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: p.hangup.as_ref().map_or(-1, |f| f.as_raw_fd()),
                events: libc::POLLRDHUP,
                revents: 0,
            },
        ];
        Ok(VirtioQueue {
            vq,
            records,
            records_dev,
            _memory: p.memory,
            addr: p.addr,
            kick: p.kick,
            call: p.call,
            poll: p.poll,
            info: p.info,
            read_only: p.read_only,
            in_flight: 0,
            chain: Vec::with_capacity(8),
            notify: false,
            hangup: p.hangup,
            sleep_fds,
            disconnected: false,
            fault: None,
            idle_reaps: 0,
        })
    }

    /// The per-request checks of docs/contract/requests.md §7.3, first failure wins.
    fn check(&self, req: &Request) -> std::result::Result<(), Refusal> {
        let ro = || {
            if self.read_only {
                Err(refuse(libc::EBADF, c"device is read-only"))
            } else {
                Ok(())
            }
        };
        match req.op {
            Op::ReportZones { .. } | Op::ZoneMgmt { .. } => Err(refuse(
                libc::ENOTSUP,
                c"request not supported for this driver",
            )),
            Op::Read { .. } | Op::Readv { .. } | Op::Write { .. } | Op::Writev { .. } => {
                if req.start % SECTOR != 0 {
                    return Err(refuse(libc::EINVAL, c"invalid start offset"));
                }
                if req.op.is_modifying() {
                    ro()?;
                }
                Ok(())
            }
            Op::WriteZeroes { len } | Op::Discard { len } => {
                let (supported, unsupported) = match req.op {
                    Op::WriteZeroes { .. } => {
                        (self.info.write_zeroes, c"write zeroes not supported")
                    }
                    _ => (self.info.discard, c"discard not supported"),
                };
                if !supported {
                    return Err(refuse(libc::ENOTSUP, unsupported));
                }
                let bad_range = refuse(libc::EINVAL, c"invalid len or start offset");
                let end = req.start.checked_add(len);
                if req.start % SECTOR != 0 || end.is_none_or(|e| e % SECTOR != 0) {
                    return Err(bad_range);
                }
                ro()?;
                // More sectors than the segment's u32 can say: refused
                // rather than left in the backlog forever (docs/contract/requests.md §7.3).
                if len / SECTOR > u32::MAX as u64 {
                    return Err(bad_range);
                }
                Ok(())
            }
            Op::Flush => Ok(()),
        }
    }

    /// The record and data part of the chain for `req` with id `id`,
    /// built in `self.chain`.
    fn build(&mut self, req: &Request, id: u16) -> std::result::Result<Header, Refusal> {
        let rec = self.records_dev + (id as usize * record::RECORD_LEN) as u64;
        self.chain.clear();
        self.chain.push(Buffer {
            addr: rec,
            len: HEADER_LEN,
            device_writable: false,
        });
        let header = match req.op {
            Op::Read { buf, len } => {
                self.push_data(buf as usize, len, true)?;
                rw_header(VIRTIO_BLK_T_IN, req.start)
            }
            Op::Write { buf, len } => {
                self.push_data(buf as usize, len, false)?;
                rw_header(VIRTIO_BLK_T_OUT, req.start)
            }
            Op::Readv { .. } | Op::Writev { .. } => {
                let writable = matches!(req.op, Op::Readv { .. });
                // SAFETY: the request is being enqueued, so its iovec array
                // is valid (Queue::submit's contract).
                for v in unsafe { req.op.iovecs() } {
                    self.push_data(v.iov_base as usize, v.iov_len, writable)?;
                }
                let kind = if writable {
                    VIRTIO_BLK_T_IN
                } else {
                    VIRTIO_BLK_T_OUT
                };
                rw_header(kind, req.start)
            }
            Op::WriteZeroes { len } | Op::Discard { len } => {
                self.chain.push(Buffer {
                    addr: rec + SEGMENT_OFFSET,
                    len: SEGMENT_LEN,
                    device_writable: false,
                });
                let (kind, flags) = match req.op {
                    Op::Discard { .. } => (VIRTIO_BLK_T_DISCARD, 0),
                    _ if req.flags & REQ_NO_UNMAP != 0 => (VIRTIO_BLK_T_WRITE_ZEROES, 0),
                    _ => (
                        VIRTIO_BLK_T_WRITE_ZEROES,
                        VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP,
                    ),
                };
                Header {
                    kind,
                    sector: 0,
                    segment: Some((req.start / SECTOR, (len / SECTOR) as u32, flags)),
                }
            }
            Op::Flush => flush_header(),
            Op::ReportZones { .. } | Op::ZoneMgmt { .. } => unreachable!("refused by check"),
        };
        self.push_status(rec)?;
        Ok(header)
    }

    /// Adds the descriptors of one data buffer; empty buffers add none.
    fn push_data(
        &mut self,
        addr: usize,
        len: usize,
        writable: bool,
    ) -> std::result::Result<(), Refusal> {
        if len == 0 {
            return Ok(());
        }
        let dev = self.addr.translate(addr, len).ok_or(refuse(
            libc::EFAULT,
            c"buffer is not inside a mapped memory region",
        ))?;
        let mut done = 0;
        while done < len {
            // One slot must stay free for the status descriptor.
            if self.chain.len() + 1 >= self.vq.size() as usize {
                return Err(too_many_descriptors());
            }
            let piece = (len - done).min(MAX_DESC_LEN);
            self.chain.push(Buffer {
                addr: dev + done as u64,
                len: piece as u32,
                device_writable: writable,
            });
            done += piece;
        }
        Ok(())
    }

    fn push_status(&mut self, rec: u64) -> std::result::Result<(), Refusal> {
        if self.chain.len() >= self.vq.size() as usize {
            return Err(too_many_descriptors());
        }
        self.chain.push(Buffer {
            addr: rec + STATUS_OFFSET,
            len: 1,
            device_writable: true,
        });
        Ok(())
    }

    /// Publishes the chain in `self.chain` for request `id`.
    fn publish(&mut self, id: u16, header: &Header, pending: Pending) {
        self.records.write(id, header);
        let placed = self.vq.add_chain(&self.chain, pending);
        debug_assert_eq!(placed, id);
    }

    /// Queues the FLUSH that follows a FUA write. The write's chain was
    /// just freed (at least two descriptors), so there is always room.
    fn queue_flush(&mut self, user_data: usize) {
        let id = self.vq.next_id().expect("the write's descriptors are free");
        let rec = self.records_dev + (id as usize * record::RECORD_LEN) as u64;
        self.chain.clear();
        self.chain.push(Buffer {
            addr: rec,
            len: HEADER_LEN,
            device_writable: false,
        });
        self.chain.push(Buffer {
            addr: rec + STATUS_OFFSET,
            len: 1,
            device_writable: true,
        });
        self.publish(
            id,
            &flush_header(),
            Pending {
                user_data,
                then_flush: false,
            },
        );
    }

    /// Every request but a plain one-buffer read or write with room in
    /// the ring: the checks of docs/contract/requests.md §7.3 and the general chain.
    #[inline(never)]
    fn enqueue_other(&mut self, req: &Request) -> Enqueue {
        if self.disconnected {
            return match self.fault {
                Some(msg) => Enqueue::Failed(libc::EIO, Some(msg)),
                None => Enqueue::Failed(libc::ENOTCONN, Some(c"device disconnected")),
            };
        }
        if let Err((errno, msg)) = self.check(req) {
            return Enqueue::Failed(errno, msg);
        }
        if matches!(req.op, Op::Flush) && !self.info.flush {
            // Nothing to make durable: complete at once with 0.
            return Enqueue::Failed(0, None);
        }
        let Some(id) = self.vq.next_id() else {
            return Enqueue::Full;
        };
        let header = match self.build(req, id) {
            Ok(h) => h,
            Err((errno, msg)) => return Enqueue::Failed(errno, msg),
        };
        if self.chain.len() > self.vq.num_free() as usize {
            return Enqueue::Full;
        }
        let then_flush = req.fua() && self.info.flush && req.op.is_rw();
        self.publish(
            id,
            &header,
            Pending {
                user_data: req.user_data,
                then_flush,
            },
        );
        self.in_flight += 1;
        Enqueue::Queued
    }

    /// Spins (poll queue) or sleeps until `wait_for` used entries are
    /// there; see [`QueueDriver::submit_and_wait`], which makes the
    /// failure an [`Error`] (this result fits in a register).
    #[inline(never)]
    fn wait(
        &mut self,
        wait_for: usize,
        timeout: Option<Duration>,
        sig: Option<&libc::sigset_t>,
    ) -> std::result::Result<(), WaitFailed> {
        if self.poll {
            return self.spin(wait_for, timeout);
        }
        // With notifications off (the application's setting), the device
        // signals for this sleep alone.
        if !self.notify {
            self.vq.arm();
        }
        let result = self.sleep(timeout, sig);
        if !self.notify {
            self.vq.disarm();
        }
        result
    }

    /// A reap found nothing while requests are in flight: every
    /// [`IDLE_REAPS_PER_CHECK`]th time, look for a hang-up.
    #[cold]
    #[inline(never)]
    fn idle_reap(&mut self) {
        self.idle_reaps = self.idle_reaps.wrapping_add(1);
        if self.idle_reaps % IDLE_REAPS_PER_CHECK == 0 {
            self.check_hangup();
        }
    }

    fn check_hangup(&mut self) {
        if let Some(fd) = &self.hangup {
            if hung_up(fd) {
                self.disconnect();
            }
        }
    }

    /// The device wrote a used entry that breaks the ring's rules: the
    /// ring can no longer be trusted, so the queue stops as if the device
    /// had gone, and every request fails with -EIO.
    #[cold]
    #[inline(never)]
    fn device_broke(&mut self, out: &mut [Completion]) -> usize {
        self.fault = Some(c"device wrote an invalid used ring entry");
        self.disconnect();
        self.reap_disconnected(out)
    }

    /// The device is gone (or broke the ring): from now on requests fail.
    /// The one place `disconnected` is set; it also settles the kick
    /// decision for whatever was published, so that nothing counts as
    /// unsubmitted any more and [`QueueDriver::needs_submit`] and the kick
    /// need no test of `disconnected` of their own.
    #[cold]
    #[inline(never)]
    fn disconnect(&mut self) {
        self.disconnected = true;
        let _ = self.vq.needs_kick();
    }

    /// Fails every request still in the ring (the device is gone).
    fn reap_disconnected(&mut self, out: &mut [Completion]) -> usize {
        let mut n = 0;
        let msg = self.fault.unwrap_or(c"device disconnected");
        while n < out.len() {
            let Some(p) = self.vq.take_in_flight() else {
                break;
            };
            out[n] = Completion::new(p.user_data, -libc::EIO, Some(msg));
            n += 1;
        }
        self.in_flight -= n;
        n
    }

    /// Never kicks a device that is gone: nothing is published after
    /// [`VirtioQueue::disconnect`] (requests are refused), and it settled
    /// the decision for what was.
    fn kick_if_needed(&mut self) {
        if self.vq.needs_kick() {
            self.kick.kick();
        }
    }

    /// Used entries available, or the device is gone.
    fn ready(&self, wait_for: usize) -> bool {
        self.disconnected || self.vq.used_pending() as usize >= wait_for
    }

    /// Poll queue: spin on the used ring. Out of line: the sleep saves
    /// fewer registers without it.
    #[inline(never)]
    fn spin(
        &mut self,
        wait_for: usize,
        timeout: Option<Duration>,
    ) -> std::result::Result<(), WaitFailed> {
        let start = Instant::now();
        let mut spins = 0u32;
        while !self.ready(wait_for) {
            if timeout.is_some_and(|t| start.elapsed() >= t) {
                return Err(WaitFailed::TimedOut);
            }
            spins = spins.wrapping_add(1);
            if spins % SPINS_PER_CHECK == 0 {
                self.check_hangup();
            }
            std::hint::spin_loop();
        }
        Ok(())
    }

    /// Regular queue: sleep on the call eventfd (and the hang-up fd) with
    /// notifications on until the device has used at least one chain; the
    /// caller restores the application's setting, and the core reaps and
    /// calls again if it needs more. (With EVENT_IDX the device signals
    /// only when it passes `used_event`, so waiting here for more than one
    /// entry without popping would sleep forever.)
    ///
    /// The clock is read only with a timeout; `ppoll` and the drain of the
    /// eventfd are direct system calls (`core::sys`).
    fn sleep(
        &mut self,
        timeout: Option<Duration>,
        sig: Option<&libc::sigset_t>,
    ) -> std::result::Result<(), WaitFailed> {
        let start = timeout.map(|t| (Instant::now(), t));
        // A copy: with the queue's own array handed to the kernel, every
        // field of the queue would be reloaded after each system call.
        let mut fds = self.sleep_fds;
        // What is left of the timeout, built only when there is one.
        let mut left;
        // Re-checked after notifications were turned on: no lost wake-up.
        // The device is not known to be gone here (`submit_and_wait`
        // checked), and it can go only where the loop ends.
        while self.vq.used_pending() == 0 {
            let ts = match start {
                Some((s, t)) => {
                    left = duration_to_timespec(t.saturating_sub(s.elapsed()));
                    Some(&left)
                }
                None => None,
            };
            match sys::ppoll(&mut fds, ts, sig) {
                Ok(0) => return Err(WaitFailed::TimedOut),
                Ok(_) => {}
                Err(e) => return Err(WaitFailed::Os(e)),
            }
            if fds[0].revents != 0 {
                sys::eventfd_drain(fds[0].fd);
            }
            if fds[1].revents != 0 {
                self.disconnect();
                break;
            }
        }
        Ok(())
    }
}

fn rw_header(kind: u32, start: u64) -> Header {
    Header {
        kind,
        sector: start / SECTOR,
        segment: None,
    }
}

fn flush_header() -> Header {
    Header {
        kind: VIRTIO_BLK_T_FLUSH,
        sector: 0,
        segment: None,
    }
}

fn too_many_descriptors() -> Refusal {
    refuse(
        libc::EINVAL,
        c"request needs more descriptors than queue-size allows",
    )
}

/// Why a wait ended before the used ring had what it waited for.
#[derive(Clone, Copy)]
enum WaitFailed {
    /// The timeout ran out.
    TimedOut,
    /// `ppoll` failed (EINTR: a signal arrived).
    Os(sys::Errno),
}

impl From<WaitFailed> for Error {
    #[cold]
    fn from(w: WaitFailed) -> Error {
        match w {
            WaitFailed::TimedOut => Error::TimedOut(crate::core::error::Timeout::Wait),
            WaitFailed::Os(e) => e.into(),
        }
    }
}

fn set_nonblocking(fd: RawFd) -> Result<()> {
    // SAFETY: fcntl on a descriptor we own; results checked.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags < 0 || libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) < 0 {
            return Err(Error::last_os_error());
        }
    }
    Ok(())
}

impl<T: Transport, V: Virtqueue<Pending>> QueueDriver for VirtioQueue<T, V> {
    #[inline]
    fn enqueue(&mut self, req: &Request) -> Enqueue {
        match req.transfer() {
            Some(t) if self.enqueue_transfer(t) => Enqueue::Queued,
            _ => self.enqueue_other(req),
        }
    }

    /// The common case, a plain read or write of one buffer with room
    /// for its three descriptors; anything else (including every
    /// refusal) takes [`VirtioQueue::enqueue_other`], which checks in the
    /// order of docs/contract/requests.md §7.3. Reached straight from
    /// `blkioq_read`/`blkioq_write`: vhost-user batch QD32 295 -> 249
    /// Ir/IO whole process against going through `enqueue`.
    #[inline(always)]
    fn enqueue_transfer(&mut self, t: Transfer) -> bool {
        let (buf, len, read) = (t.buf as usize, t.len, !t.write);
        if self.disconnected
            || t.start % SECTOR != 0
            || (!read && self.read_only)
            || len.wrapping_sub(1) >= MAX_DESC_LEN
            || self.vq.num_free() < 3
        {
            return false;
        }
        let Some(dev) = self.addr.translate(buf, len) else {
            return false;
        };
        let Some(id) = self.vq.next_id() else {
            return false;
        };
        let kind = if read {
            VIRTIO_BLK_T_IN
        } else {
            VIRTIO_BLK_T_OUT
        };
        let rec = self.records_dev + (id as usize * record::RECORD_LEN) as u64;
        self.records.write(id, &rw_header(kind, t.start));
        let pending = Pending {
            user_data: t.user_data,
            then_flush: !read && t.flags & REQ_FUA != 0 && self.info.flush,
        };
        let placed = self.vq.add_chain(
            &[
                Buffer {
                    addr: rec,
                    len: HEADER_LEN,
                    device_writable: false,
                },
                Buffer {
                    addr: dev,
                    len: len as u32,
                    device_writable: read,
                },
                Buffer {
                    addr: rec + STATUS_OFFSET,
                    len: 1,
                    device_writable: true,
                },
            ],
            pending,
        );
        debug_assert_eq!(placed, id);
        self.in_flight += 1;
        true
    }

    /// Inlined into the core's loop (one or two reaps per call, one of
    /// them often with nothing to take); the rare parts are out of line.
    #[inline(always)]
    fn reap(&mut self, out: &mut [Completion]) -> usize {
        if self.disconnected {
            return self.reap_disconnected(out);
        }
        let mut n = 0;
        while n < out.len() {
            let Some((id, p)) = self.vq.pop_used() else {
                break;
            };
            let (ret, msg) = record::status_to_ret(self.records.status(id));
            if p.then_flush && ret == 0 {
                self.queue_flush(p.user_data);
                continue;
            }
            out[n] = Completion::new(p.user_data, ret, msg);
            n += 1;
        }
        self.in_flight -= n;
        if self.vq.is_broken() {
            return n + self.device_broke(&mut out[n..]);
        }
        if n == 0 && self.in_flight > 0 && !out.is_empty() {
            self.idle_reap();
        }
        n
    }

    fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Nothing is unkicked once the device is gone (see
    /// [`VirtioQueue::disconnect`]).
    fn needs_submit(&self) -> bool {
        self.vq.has_unkicked()
    }

    /// Inlined: the kick and the check that nothing needs waiting for;
    /// the wait itself is [`VirtioQueue::wait`].
    #[inline(always)]
    fn submit_and_wait(
        &mut self,
        wait_for: usize,
        timeout: Option<Duration>,
        sig: Option<&libc::sigset_t>,
    ) -> Result<()> {
        self.kick_if_needed();
        if wait_for == 0 || self.ready(wait_for) {
            return Ok(());
        }
        Ok(self.wait(wait_for, timeout, sig)?)
    }

    fn completion_fd(&self) -> RawFd {
        if self.poll {
            -1
        } else {
            self.call.as_raw_fd()
        }
    }

    fn set_completion_fd_enabled(&mut self, enabled: bool) {
        self.notify = enabled;
        self.vq.set_notifications(enabled);
    }
}
