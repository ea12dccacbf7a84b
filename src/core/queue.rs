//! A queue as the application sees it (`struct blkioq`): the driver's ring
//! plus the two backlogs every driver shares, and the `blkioq_do_io`
//! algorithm of docs/contract/requests.md §4.
//!
//! * The **request backlog** holds requests that found no room in the ring;
//!   they are moved into the ring, in order, whenever completions are reaped.
//! * The **completion backlog** holds completions the library produced
//!   itself (bad flags, unsupported requests, ...); they are returned before
//!   anything reaped from the device, and each one signals the completion fd.
//!
//! Dispatch: [`QueueCore<D>`] is generic over the driver's ring type, so
//! the whole request path of one API call (checks, enqueue, SQE/descriptor
//! writing, reaping) is compiled together and inlined. The single dynamic
//! boundary is [`Queue`], the C handle, which holds a `Box<dyn QueueOps>`:
//! one indirect call per `blkioq_*` call, whatever the driver.

use std::collections::VecDeque;
use std::ffi::{c_int, CStr};
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use super::error::{Error, Result};
use super::request::{range_fits, Completion, Op, Request, Transfer, REQ_FUA};

/// What a driver did with a request offered to its ring.
pub enum Enqueue {
    /// Placed in the ring; it will complete through [`QueueDriver::reap`].
    Queued,
    /// No room right now; the request goes to (or stays in) the backlog.
    Full,
    /// Refused: completes at once with `-errno` and the message.
    Failed(i32, Option<&'static CStr>),
}

/// The driver side of one queue: a ring (io_uring SQ/CQ, virtqueue, ...).
pub trait QueueDriver: Send {
    /// Offers `req` to the ring. Flags were already validated.
    fn enqueue(&mut self, req: &Request) -> Enqueue;

    /// Places a plain read or write if that needs no decision (room in
    /// the ring, nothing to refuse) and returns true; false, with nothing
    /// changed, leaves the request to [`QueueDriver::enqueue`]. Drivers
    /// with such a quick path override this; by default every request
    /// takes `enqueue`.
    #[inline(always)]
    fn enqueue_transfer(&mut self, _t: Transfer) -> bool {
        false
    }

    /// Moves finished requests into `out`; returns how many were written.
    fn reap(&mut self, out: &mut [Completion]) -> usize;

    /// Requests owned by the ring (placed but not yet reaped).
    fn in_flight(&self) -> usize;

    /// Whether placed requests still wait to be handed to the device.
    fn needs_submit(&self) -> bool;

    /// Hands placed requests to the device, then, if `wait_for` > 0, sleeps
    /// until at least that many can be reaped (completions not reaped yet
    /// count, whenever they arrived), `timeout` runs out (-ETIME)
    /// or, with `sig`, a signal arrives (-EINTR). `EINTR` may also be
    /// returned without `sig`; the caller then retries.
    fn submit_and_wait(
        &mut self,
        wait_for: usize,
        timeout: Option<Duration>,
        sig: Option<&libc::sigset_t>,
    ) -> Result<()>;

    /// The completion eventfd, or -1 (poll queues).
    fn completion_fd(&self) -> RawFd;

    /// The application asked for the completion fd
    /// (`blkioq_get_completion_fd`). Drivers whose device signals the fd
    /// only for applications that wait on it set that up here; by default
    /// nothing needs doing.
    fn expose_completion_fd(&mut self) -> Result<()> {
        Ok(())
    }

    /// `blkioq_set_completion_fd_enabled`: a hint, ignored by default.
    fn set_completion_fd_enabled(&mut self, _enabled: bool) {}
}

/// The operations of a queue as the C API calls them; implemented by
/// [`QueueCore<D>`] for every driver ring type `D`.
pub trait QueueOps: Send {
    /// Accepts a request that passed [`Request::check`].
    fn place(&mut self, req: Request);
    /// [`QueueOps::place`] of a plain read (flags 0) that passed its
    /// checks. Reads and writes, nearly every request, get their own entry
    /// points: the arguments arrive in registers instead of as a request
    /// built on the stack, and the compiled path knows the request type.
    fn place_read(&mut self, start: u64, buf: *mut u8, len: usize, user_data: usize);
    /// [`QueueOps::place`] of a plain write that passed its checks.
    fn place_write(&mut self, start: u64, buf: *const u8, len: usize, user_data: usize, flags: u32);
    /// Completes a request at once with `-errno` (the completion backlog).
    fn fail(&mut self, user_data: usize, errno: i32, msg: Option<&'static CStr>);
    /// `blkioq_do_io*` after argument validation; see [`QueueCore::do_io`].
    fn do_io(
        &mut self,
        out: &mut [Completion],
        min: usize,
        timeout: Option<&mut libc::timespec>,
        sig: Option<&libc::sigset_t>,
    ) -> Result<usize>;
    /// [`QueueOps::do_io`] without timeout or signal mask (the usual
    /// call), for the C API: the number of completions, or what `report`
    /// makes of the error (a negative errno).
    ///
    /// A count comes back in a register, a `Result<usize>` (32 bytes)
    /// through memory, and the callers around a `Result` save more
    /// registers: returning `Result` here cost 10 instructions per I/O in
    /// block QD1 (384 -> 394 Ir/IO, whole process) and 24 in event QD1
    /// (630 -> 654, two calls per I/O), measured with `benches/run.sh
    /// callgrind` on the same loop. With the error turned into the return
    /// value here, the C entry point's call is a jump.
    fn do_io_reporting(
        &mut self,
        out: &mut [Completion],
        min: usize,
        report: fn(Error) -> c_int,
    ) -> c_int;
    /// [`QueueOps::do_io_reporting`] with no room for completions
    /// (`max_completions` 0, as in the call that only submits).
    fn do_io_reporting_none(&mut self, min: usize, report: fn(Error) -> c_int) -> c_int;
    /// `blkioq_get_completion_fd`: the fd (-1 for poll queues), which from
    /// now on is signalled for completions.
    fn completion_fd(&mut self) -> Result<RawFd>;
    fn set_completion_fd_enabled(&mut self, enabled: bool);
}

/// `struct blkioq`: the handle the application holds. Each method is one
/// indirect call into the driver-specific [`QueueCore`].
pub struct Queue {
    ops: Box<dyn QueueOps>,
}

impl Queue {
    /// A queue over the driver ring `driver`; `poll` for poll queues.
    pub fn new<D: QueueDriver + 'static>(driver: D, poll: bool) -> Self {
        Queue {
            ops: Box::new(QueueCore::new(driver, poll)),
        }
    }

    /// Accepts a request from the application; never fails synchronously.
    /// The call-time checks run here, inlined into the C entry point that
    /// built the request, where its type is known and most of the checks
    /// fold away; a request that fails them completes with -EINVAL.
    ///
    /// # Safety
    /// Every buffer the request points to (read/write buffer, iovec array
    /// and the buffers it lists, zone array) is valid for the request's
    /// lengths, and stays valid and otherwise unused (not even read, for a
    /// buffer the device writes) until the request's completion has been
    /// returned by [`Queue::do_io`] or the queue is dropped.
    #[inline(always)]
    pub unsafe fn submit(&mut self, req: Request) {
        match req.check() {
            Ok(()) => self.ops.place(req),
            Err(msg) => self.ops.fail(req.user_data, libc::EINVAL, Some(msg)),
        }
    }

    /// [`Queue::submit`] of `blkioq_read`. The usual valid case (flags 0,
    /// a buffer, `start` and `start + len` within `i64`: what
    /// [`Request::check`] asks of a read) is three tests; anything else,
    /// including a valid NULL buffer of length 0, takes the general path.
    ///
    /// # Safety
    /// As [`Queue::submit`]: `buf` is valid for `len` bytes until completion.
    #[inline(always)]
    pub unsafe fn read(
        &mut self,
        start: u64,
        buf: *mut u8,
        len: usize,
        user_data: usize,
        flags: u32,
    ) {
        if flags == 0 && !buf.is_null() && range_fits(start, len as u64) {
            self.ops.place_read(start, buf, len, user_data)
        } else {
            // SAFETY: this function's contract is submit's.
            unsafe {
                self.submit_cold(Request {
                    op: Op::Read { buf, len },
                    start,
                    user_data,
                    flags,
                })
            }
        }
    }

    /// [`Queue::submit`] of `blkioq_write`; as [`Queue::read`], with
    /// `BLKIO_REQ_FUA` allowed.
    ///
    /// # Safety
    /// As [`Queue::submit`]: `buf` is valid for `len` bytes until completion.
    #[inline(always)]
    pub unsafe fn write(
        &mut self,
        start: u64,
        buf: *const u8,
        len: usize,
        user_data: usize,
        flags: u32,
    ) {
        if flags & !REQ_FUA == 0 && !buf.is_null() && range_fits(start, len as u64) {
            self.ops.place_write(start, buf, len, user_data, flags)
        } else {
            // SAFETY: this function's contract is submit's.
            unsafe {
                self.submit_cold(Request {
                    op: Op::Write { buf, len },
                    start,
                    user_data,
                    flags,
                })
            }
        }
    }

    /// [`Queue::submit`] for a read or write that failed the quick test.
    ///
    /// # Safety
    /// As [`Queue::submit`].
    #[cold]
    #[inline(never)]
    unsafe fn submit_cold(&mut self, req: Request) {
        // SAFETY: this function's contract is submit's.
        unsafe { self.submit(req) }
    }

    #[inline]
    pub fn fail(&mut self, user_data: usize, errno: i32, msg: Option<&'static CStr>) {
        self.ops.fail(user_data, errno, msg)
    }

    /// See [`QueueCore::do_io`].
    #[inline]
    pub fn do_io(
        &mut self,
        out: &mut [Completion],
        min: usize,
        timeout: Option<&mut libc::timespec>,
        sig: Option<&libc::sigset_t>,
    ) -> Result<usize> {
        self.ops.do_io(out, min, timeout, sig)
    }

    /// See [`QueueOps::do_io_reporting`]; `out.len()` is at most
    /// `c_int::MAX`.
    #[inline(always)]
    pub fn do_io_reporting(
        &mut self,
        out: &mut [Completion],
        min: usize,
        report: fn(Error) -> c_int,
    ) -> c_int {
        self.ops.do_io_reporting(out, min, report)
    }

    /// See [`QueueOps::do_io_reporting_none`].
    #[inline(always)]
    pub fn do_io_reporting_none(&mut self, min: usize, report: fn(Error) -> c_int) -> c_int {
        self.ops.do_io_reporting_none(min, report)
    }

    /// See [`QueueOps::completion_fd`].
    pub fn completion_fd(&mut self) -> Result<RawFd> {
        self.ops.completion_fd()
    }

    pub fn set_completion_fd_enabled(&mut self, enabled: bool) {
        self.ops.set_completion_fd_enabled(enabled)
    }
}

/// One queue: the driver's ring and the two backlogs.
///
/// Aligned (and so sized) to whole pairs of cache lines: queues are used
/// from different threads at once, and two queues' hot fields must never
/// share a line (false sharing costs multi-queue scaling).
#[repr(align(128))]
pub struct QueueCore<D> {
    driver: D,
    backlog: VecDeque<Request>,
    completions: VecDeque<Completion>,
    poll: bool,
}

impl<D: QueueDriver> QueueCore<D> {
    pub fn new(driver: D, poll: bool) -> Self {
        QueueCore {
            driver,
            backlog: VecDeque::with_capacity(64),
            completions: VecDeque::with_capacity(16),
            poll,
        }
    }

    /// Accepts a request that passed [`Request::check`].
    #[inline(always)]
    pub fn place(&mut self, req: Request) {
        if !self.backlog.is_empty() {
            return self.defer(req);
        }
        match self.driver.enqueue(&req) {
            Enqueue::Queued => {}
            Enqueue::Full => self.defer(req),
            Enqueue::Failed(errno, msg) => self.fail(req.user_data, errno, msg),
        }
    }

    /// The quick path of a plain read or write: true when the driver
    /// placed it with nothing to decide (no backlog, room in the ring).
    #[inline(always)]
    fn place_quick(&mut self, t: Transfer) -> bool {
        self.backlog.is_empty() && self.driver.enqueue_transfer(t)
    }

    /// [`QueueOps::place_read`] when the quick path did not take it. Same
    /// arguments as the caller, so that the call is a jump and the quick
    /// path saves no registers.
    #[inline(never)]
    fn place_read_slow(&mut self, start: u64, buf: *mut u8, len: usize, user_data: usize) {
        self.place(Request {
            op: Op::Read { buf, len },
            start,
            user_data,
            flags: 0,
        })
    }

    /// [`QueueOps::place_write`] when the quick path did not take it.
    #[inline(never)]
    fn place_write_slow(
        &mut self,
        start: u64,
        buf: *const u8,
        len: usize,
        user_data: usize,
        flags: u32,
    ) {
        self.place(Request {
            op: Op::Write { buf, len },
            start,
            user_data,
            flags,
        })
    }

    /// Puts a request at the end of the request backlog.
    #[cold]
    #[inline(never)]
    fn defer(&mut self, req: Request) {
        self.backlog.push_back(req);
    }

    /// Completes a request at once with `-errno` (the completion backlog).
    #[cold]
    #[inline(never)]
    pub fn fail(&mut self, user_data: usize, errno: i32, msg: Option<&'static CStr>) {
        self.completions
            .push_back(Completion::new(user_data, -errno, msg));
        self.signal();
    }

    /// Writes 1 to the completion fd, if the queue has one.
    fn signal(&self) {
        let fd = self.driver.completion_fd();
        if fd >= 0 {
            let one: u64 = 1;
            // SAFETY: writing 8 bytes from a valid u64 to an eventfd we own.
            // A full counter (EAGAIN) still leaves the fd readable.
            unsafe { libc::write(fd, (&one as *const u64).cast(), 8) };
        }
    }

    /// See [`QueueOps::completion_fd`].
    pub fn completion_fd(&mut self) -> Result<RawFd> {
        self.driver.expose_completion_fd()?;
        Ok(self.driver.completion_fd())
    }

    pub fn set_completion_fd_enabled(&mut self, enabled: bool) {
        if !self.poll {
            self.driver.set_completion_fd_enabled(enabled);
        }
    }

    /// Requests this queue still owes a completion for.
    #[inline]
    fn outstanding(&self) -> usize {
        self.driver.in_flight() + self.backlog.len() + self.completions.len()
    }

    /// Moves backlogged requests into the ring while it has room.
    #[cold]
    fn refill(&mut self) {
        while let Some(req) = self.backlog.front() {
            match self.driver.enqueue(req) {
                Enqueue::Queued => {}
                Enqueue::Full => break,
                Enqueue::Failed(errno, msg) => {
                    let user_data = req.user_data;
                    self.fail(user_data, errno, msg);
                }
            }
            self.backlog.pop_front();
        }
    }

    /// Moves completions from the completion backlog to `out[n..]`.
    #[cold]
    fn take_backlogged(&mut self, out: &mut [Completion], mut n: usize) -> usize {
        while n < out.len() {
            match self.completions.pop_front() {
                Some(c) => {
                    out[n] = c;
                    n += 1;
                }
                None => break,
            }
        }
        n
    }

    /// Fills `out` from the completion backlog, then from the ring, then
    /// refills the ring from the request backlog. Returns the new fill.
    /// Inlined into both call sites in `do_io`: it is most of the fast path.
    #[inline(always)]
    fn gather(&mut self, out: &mut [Completion], mut n: usize) -> usize {
        if !self.completions.is_empty() {
            n = self.take_backlogged(out, n);
        }
        if n < out.len() {
            n += self.driver.reap(&mut out[n..]);
        }
        if !self.backlog.is_empty() {
            self.refill();
            // Requests refused while refilling complete in this call too.
            n = self.take_backlogged(out, n);
        }
        n
    }

    /// Puts gathered completions back in front of the completion backlog so
    /// a failing call loses none of them (docs/contract/requests.md §4.4).
    #[cold]
    fn put_back(&mut self, gathered: &[Completion]) {
        for c in gathered.iter().rev() {
            self.completions.push_front(*c);
        }
        if !gathered.is_empty() {
            self.signal();
        }
    }

    /// `blkioq_do_io*` after argument validation (the C layer checks the
    /// timespec and counts; `out.len()` is `max_completions`).
    ///
    /// `timeout` is updated as docs/contract/requests.md §4.3 says when the call had to
    /// submit or wait. Without `sig` a signal never ends the call. The
    /// clock is read only when there is a timeout.
    ///
    /// One loop ([`QueueCore::run`]) serves every call; it is compiled
    /// twice. The usual call (no timeout, no signal mask, not a poll
    /// queue) gets its own copy, inlined here with those arguments
    /// constant, so that it pays for neither the clock nor the mask nor
    /// the poll-queue rule; everything else takes [`QueueCore::do_io_with`].
    #[inline(always)]
    pub fn do_io(
        &mut self,
        out: &mut [Completion],
        min: usize,
        timeout: Option<&mut libc::timespec>,
        sig: Option<&libc::sigset_t>,
    ) -> Result<usize> {
        if timeout.is_none() && sig.is_none() && !self.poll {
            self.run(out, min, None, None, false, |r| r)
        } else {
            self.do_io_with(out, min, timeout, sig)
        }
    }

    /// Both backlogs are empty (the usual state).
    #[inline(always)]
    fn backlogs_empty(&self) -> bool {
        self.backlog.is_empty() && self.completions.is_empty()
    }

    /// [`QueueCore::do_io`] with a timeout, a signal mask or on a poll queue.
    #[inline(never)]
    fn do_io_with(
        &mut self,
        out: &mut [Completion],
        min: usize,
        timeout: Option<&mut libc::timespec>,
        sig: Option<&libc::sigset_t>,
    ) -> Result<usize> {
        if sig.is_some() && self.poll {
            return Err(interruptible_on_poll_queue());
        }
        self.run(out, min, timeout, sig, self.poll, |r| r)
    }

    /// The `blkioq_do_io` algorithm (docs/contract/requests.md §4); `poll`
    /// is `self.poll`.
    ///
    /// It gathers what is there, refuses a `min` above what the queue
    /// owes, then submits, waits and gathers until `min` completions are
    /// in `out` and nothing placed is left unsubmitted. When there is work
    /// to submit and both backlogs are empty (an application keeping its
    /// queue depth in flight) the first gathering is left out: the wait
    /// counts completions not reaped yet, so the gathering after it
    /// returns the same and one reap is saved per call.
    ///
    /// The submit-only call ([`QueueCore::submit_only_call`]) is the
    /// early branch [`QueueCore::submit_only`]; every other call is
    /// [`QueueCore::run_gathering`].
    ///
    /// Every way out goes through `finish`, inlined at each: the C entry
    /// point turns the outcome into its return value where it is known,
    /// instead of merging a 32-byte `Result` in memory first.
    #[inline(always)]
    fn run<R>(
        &mut self,
        out: &mut [Completion],
        min: usize,
        timeout: Option<&mut libc::timespec>,
        sig: Option<&libc::sigset_t>,
        poll: bool,
        finish: impl Fn(Result<usize>) -> R,
    ) -> R {
        if self.submit_only_call(out, min, timeout.is_some(), poll) {
            return self.submit_only(sig, poll, finish);
        }
        self.run_gathering(out, min, timeout, sig, poll, finish)
    }

    /// A call with room for no completion and none required, no timeout,
    /// on a regular queue whose backlogs are empty: nothing can be
    /// gathered, so all it does is submit (what an event-driven
    /// application calls after queueing, `blkioq_do_io(q, NULL, 0, 0,
    /// NULL)`).
    #[inline(always)]
    fn submit_only_call(&self, out: &[Completion], min: usize, timeout: bool, poll: bool) -> bool {
        out.is_empty() && min == 0 && !timeout && !poll && self.backlogs_empty()
    }

    /// [`QueueCore::run`] of a submit-only call: hands what is placed to
    /// the device; only when something is left unsubmitted (a full
    /// submission ring, an interrupted submit) does it go on into
    /// [`QueueCore::run_loop`], which submits until nothing is.
    #[inline(always)]
    fn submit_only<R>(
        &mut self,
        sig: Option<&libc::sigset_t>,
        poll: bool,
        finish: impl Fn(Result<usize>) -> R,
    ) -> R {
        if !self.driver.needs_submit() {
            return finish(Ok(0));
        }
        let submitted = self.driver.submit_and_wait(0, None, sig);
        if submitted.is_ok() && !self.driver.needs_submit() {
            return finish(Ok(0));
        }
        self.submit_only_rest(submitted, sig, poll, finish)
    }

    /// What follows in [`QueueCore::submit_only`] when the submit failed
    /// or left something unsubmitted; out of line, so that the usual
    /// call needs no stack frame.
    #[cold]
    #[inline(never)]
    fn submit_only_rest<R>(
        &mut self,
        submitted: Result<()>,
        sig: Option<&libc::sigset_t>,
        poll: bool,
        finish: impl Fn(Result<usize>) -> R,
    ) -> R {
        match submitted {
            Ok(()) => {}
            Err(Error::Interrupted) if sig.is_none() => {}
            Err(e) => return finish(Err(e)),
        }
        self.run_loop(&mut [], 0, 0, true, None, sig, poll, finish)
    }

    /// [`QueueCore::run`] of every call but the submit-only one.
    #[inline(always)]
    fn run_gathering<R>(
        &mut self,
        out: &mut [Completion],
        min: usize,
        timeout: Option<&mut libc::timespec>,
        sig: Option<&libc::sigset_t>,
        poll: bool,
        finish: impl Fn(Result<usize>) -> R,
    ) -> R {
        let empty = self.backlogs_empty();
        let quick = empty && self.driver.needs_submit();
        let mut n = 0;
        if !quick {
            // With both backlogs empty, gathering is reaping.
            n = if empty {
                self.driver.reap(out)
            } else {
                self.gather(out, 0)
            };
            // What an event-driven application's reaping call ends with
            // (the loop's first test, ahead of the count below).
            if n >= min && !poll && !self.driver.needs_submit() {
                return finish(Ok(n));
            }
        }
        // With both backlogs empty the queue owes what is in the ring.
        let owed = if quick {
            self.driver.in_flight()
        } else {
            self.outstanding()
        };
        // `min - n > owed`, without the subtraction's test (both counts
        // are far from overflowing).
        if min > n + owed {
            self.put_back(&out[..n]);
            return finish(Err(min_above_outstanding()));
        }
        let mut entered = false;
        if quick && timeout.is_none() {
            // The loop's first round, peeled for the call without a
            // timeout: with nothing gathered the wait is for `min` (not
            // above the ring's count, checked above) and the reap after it
            // usually ends the call (block QD1 387 -> 355 Ir/IO,
            // whole process, `benches/run.sh callgrind`).
            match self.driver.submit_and_wait(min, None, sig) {
                Ok(()) => {
                    entered = true;
                    n = self.driver.reap(out);
                    if n >= min && !self.driver.needs_submit() {
                        return finish(Ok(n));
                    }
                }
                Err(Error::Interrupted) if sig.is_none() => {}
                Err(e) => return finish(Err(e)),
            }
        }
        self.run_loop(out, min, n, entered, timeout, sig, poll, finish)
    }

    /// The rest of [`QueueCore::run`] after its peeled first round: kept
    /// out of line so that the calls that end in that round save no
    /// registers for it.
    #[allow(clippy::too_many_arguments)]
    #[inline(never)]
    fn run_loop<R>(
        &mut self,
        out: &mut [Completion],
        min: usize,
        mut n: usize,
        mut entered: bool,
        timeout: Option<&mut libc::timespec>,
        sig: Option<&libc::sigset_t>,
        poll: bool,
        finish: impl Fn(Result<usize>) -> R,
    ) -> R {
        let budget = timeout.as_deref().map(timespec_to_duration);
        let mut started: Option<Instant> = None;
        let result = loop {
            let need = min.saturating_sub(n);
            // Never return with placed but unsubmitted requests: an
            // application waiting on the completion fd would wait forever.
            // A poll queue makes progress only when the kernel is entered, so
            // a call that found nothing enters once even with min 0.
            if need == 0
                && !self.driver.needs_submit()
                && !(poll && !entered && n == 0 && self.driver.in_flight() > 0)
            {
                break Ok(n);
            }
            let in_flight = self.driver.in_flight();
            if in_flight == 0 && need > 0 && !self.driver.needs_submit() {
                // Cannot happen while the outstanding count holds; refuse to
                // sleep forever if a driver ever breaks that rule.
                break Err(nothing_in_flight());
            }
            let remaining = budget.map(|b| {
                let start = *started.get_or_insert_with(Instant::now);
                b.saturating_sub(start.elapsed())
            });
            match self
                .driver
                .submit_and_wait(need.min(in_flight), remaining, sig)
            {
                Ok(()) => {}
                Err(Error::Interrupted) if sig.is_none() => {}
                Err(e) => break Err(e),
            }
            entered = true;
            n = self.gather(out, n);
        };

        if let (Some(start), Some(ts), Some(b)) = (started, timeout, budget) {
            let timed_out = matches!(result, Err(Error::TimedOut(_)));
            let left = if timed_out {
                Duration::ZERO
            } else {
                b.saturating_sub(start.elapsed())
            };
            *ts = duration_to_timespec(left);
        }
        if result.is_err() {
            self.put_back(&out[..n]);
        }
        finish(result)
    }
}

impl<D: QueueDriver> QueueOps for QueueCore<D> {
    fn place(&mut self, req: Request) {
        QueueCore::place(self, req)
    }

    fn place_read(&mut self, start: u64, buf: *mut u8, len: usize, user_data: usize) {
        let t = Transfer {
            write: false,
            buf,
            len,
            start,
            user_data,
            flags: 0,
        };
        if !self.place_quick(t) {
            self.place_read_slow(start, buf, len, user_data)
        }
    }

    fn place_write(
        &mut self,
        start: u64,
        buf: *const u8,
        len: usize,
        user_data: usize,
        flags: u32,
    ) {
        let t = Transfer {
            write: true,
            buf: buf.cast_mut(),
            len,
            start,
            user_data,
            flags,
        };
        if !self.place_quick(t) {
            self.place_write_slow(start, buf, len, user_data, flags)
        }
    }

    fn fail(&mut self, user_data: usize, errno: i32, msg: Option<&'static CStr>) {
        QueueCore::fail(self, user_data, errno, msg)
    }

    fn do_io(
        &mut self,
        out: &mut [Completion],
        min: usize,
        timeout: Option<&mut libc::timespec>,
        sig: Option<&libc::sigset_t>,
    ) -> Result<usize> {
        QueueCore::do_io(self, out, min, timeout, sig)
    }

    fn do_io_reporting(
        &mut self,
        out: &mut [Completion],
        min: usize,
        report: fn(Error) -> c_int,
    ) -> c_int {
        // The C entry point's call without room for completions comes
        // through `do_io_reporting_none`, which has `run`'s submit-only
        // branch; this one (`out` empty only with non-NULL completions
        // and max 0, where the general path does the same) goes straight
        // to the gathering part.
        if self.poll {
            self.do_io_reporting_poll(out, min, report)
        } else {
            self.run_gathering(out, min, None, None, false, move |r| reported(r, report))
        }
    }

    /// `run`'s submit-only branch, and for anything else the general
    /// call, out of line so that the submit-only call saves no registers
    /// for it.
    fn do_io_reporting_none(&mut self, min: usize, report: fn(Error) -> c_int) -> c_int {
        if !self.poll && self.submit_only_call(&[], min, false, false) {
            self.submit_only(None, false, move |r| reported(r, report))
        } else {
            self.do_io_reporting_any(&mut [], min, report)
        }
    }

    fn completion_fd(&mut self) -> Result<RawFd> {
        QueueCore::completion_fd(self)
    }

    fn set_completion_fd_enabled(&mut self, enabled: bool) {
        QueueCore::set_completion_fd_enabled(self, enabled)
    }
}

impl<D: QueueDriver> QueueCore<D> {
    /// [`QueueOps::do_io_reporting`], called directly.
    #[inline(never)]
    fn do_io_reporting_any(
        &mut self,
        out: &mut [Completion],
        min: usize,
        report: fn(Error) -> c_int,
    ) -> c_int {
        QueueOps::do_io_reporting(self, out, min, report)
    }

    /// [`QueueOps::do_io_reporting`] on a poll queue, out of line so that
    /// the usual call keeps no frame for its `Result`.
    #[inline(never)]
    fn do_io_reporting_poll(
        &mut self,
        out: &mut [Completion],
        min: usize,
        report: fn(Error) -> c_int,
    ) -> c_int {
        reported(self.do_io_with(out, min, None, None), report)
    }
}

/// `do_io`'s outcome as the C entry point returns it: the completion
/// count, or `report(e)`.
#[inline(always)]
fn reported(r: Result<usize>, report: fn(Error) -> c_int) -> c_int {
    match r {
        // At most `out.len()`, which the caller keeps within c_int.
        Ok(n) => n as c_int,
        Err(e) => report_cold(report, e),
    }
}

/// `report(e)`, out of the way of the usual return.
#[cold]
#[inline(never)]
fn report_cold(report: fn(Error) -> c_int, e: Error) -> c_int {
    report(e)
}

#[cold]
fn interruptible_on_poll_queue() -> Error {
    Error::not_supported("blkioq_do_io_interruptible() is not supported on poll queues")
}

#[cold]
fn min_above_outstanding() -> Error {
    Error::invalid("min_completions is larger than total outstanding requests")
}

#[cold]
fn nothing_in_flight() -> Error {
    Error::device("no request in flight to wait for")
}

fn timespec_to_duration(ts: &libc::timespec) -> Duration {
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// `d` as the `timespec` the system calls take.
pub(crate) fn duration_to_timespec(d: Duration) -> libc::timespec {
    libc::timespec {
        tv_sec: d.as_secs() as libc::time_t,
        tv_nsec: d.subsec_nanos() as libc::c_long,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::request::REQ_FUA;

    /// A ring of fixed capacity whose requests complete when submitted:
    /// enough to exercise the backlog and counting rules of `do_io`.
    struct InstantRing {
        capacity: usize,
        placed: Vec<usize>,
        done: VecDeque<usize>,
        submits: usize,
    }

    impl InstantRing {
        fn new(capacity: usize) -> Self {
            InstantRing {
                capacity,
                placed: Vec::new(),
                done: VecDeque::new(),
                submits: 0,
            }
        }
    }

    impl QueueDriver for InstantRing {
        fn enqueue(&mut self, req: &Request) -> Enqueue {
            if matches!(req.op, Op::Discard { .. }) {
                return Enqueue::Failed(libc::ENOTSUP, Some(c"no discard"));
            }
            if self.placed.len() + self.done.len() == self.capacity {
                return Enqueue::Full;
            }
            self.placed.push(req.user_data);
            Enqueue::Queued
        }
        fn reap(&mut self, out: &mut [Completion]) -> usize {
            let mut n = 0;
            while n < out.len() {
                let Some(ud) = self.done.pop_front() else {
                    break;
                };
                out[n] = Completion::new(ud, 0, None);
                n += 1;
            }
            n
        }
        fn in_flight(&self) -> usize {
            self.placed.len() + self.done.len()
        }
        fn needs_submit(&self) -> bool {
            !self.placed.is_empty()
        }
        fn submit_and_wait(
            &mut self,
            _wait_for: usize,
            _timeout: Option<Duration>,
            _sig: Option<&libc::sigset_t>,
        ) -> Result<()> {
            self.submits += 1;
            self.done.extend(self.placed.drain(..));
            Ok(())
        }
        fn completion_fd(&self) -> RawFd {
            -1
        }
    }

    /// What [`Queue::submit`] does.
    fn submit<D: QueueDriver>(q: &mut QueueCore<D>, req: Request) {
        match req.check() {
            Ok(()) => q.place(req),
            Err(msg) => q.fail(req.user_data, libc::EINVAL, Some(msg)),
        }
    }

    fn flush(user_data: usize, flags: u32) -> Request {
        Request {
            op: Op::Flush,
            start: 0,
            user_data,
            flags,
        }
    }

    fn empty() -> Completion {
        Completion::new(0, 0, None)
    }

    #[test]
    fn more_requests_than_ring_entries_all_complete() {
        let mut q = QueueCore::new(InstantRing::new(4), false);
        for i in 1..=100 {
            submit(&mut q, flush(i, 0));
        }
        let mut out = vec![empty(); 100];
        let mut seen = Vec::new();
        while seen.len() < 100 {
            let n = q.do_io(&mut out, 1, None, None).unwrap();
            seen.extend(out[..n].iter().map(|c| c.user_data as usize));
        }
        seen.sort();
        assert_eq!(seen, (1..=100).collect::<Vec<_>>());
        assert_eq!(q.outstanding(), 0);
    }

    #[test]
    fn backlog_completions_come_first_in_order() {
        let mut q = QueueCore::new(InstantRing::new(8), false);
        submit(&mut q, flush(1, 0));
        submit(&mut q, flush(2, 8));
        submit(&mut q, flush(3, 0));
        submit(&mut q, flush(4, REQ_FUA));
        let mut out = vec![empty(); 4];
        let n = q.do_io(&mut out, 4, None, None).unwrap();
        let order: Vec<_> = out[..n].iter().map(|c| c.user_data as usize).collect();
        assert_eq!(order, [2, 4, 1, 3]);
        assert_eq!(out[0].ret, -libc::EINVAL);
    }

    #[test]
    fn min_above_outstanding_puts_completions_back() {
        let mut q = QueueCore::new(InstantRing::new(8), false);
        submit(&mut q, flush(1, 8));
        let mut out = vec![empty(); 4];
        let e = q.do_io(&mut out, 2, None, None).unwrap_err();
        assert_eq!(e.errno(), libc::EINVAL);
        assert_eq!(
            e.message(),
            "min_completions is larger than total outstanding requests"
        );
        assert_eq!(q.do_io(&mut out, 1, None, None).unwrap(), 1);
        assert_eq!(out[0].user_data as usize, 1);
    }

    #[test]
    fn submit_only_call_leaves_nothing_unsubmitted() {
        let mut q = QueueCore::new(InstantRing::new(2), false);
        for i in 1..=5 {
            submit(&mut q, flush(i, 0));
        }
        // max 0: nothing can be reaped, so only the two placed requests
        // are submitted and the rest waits in the backlog.
        assert_eq!(q.do_io(&mut [], 0, None, None).unwrap(), 0);
        assert_eq!(q.backlog.len(), 3);
        let mut out = vec![empty(); 8];
        let n = q.do_io(&mut out, 0, None, None).unwrap();
        assert!(n >= 2);
        assert!(!q.driver.needs_submit());
    }

    #[test]
    fn submit_only_call_submits_what_is_placed_and_nothing_else() {
        let report: fn(Error) -> c_int = |e| -e.errno();
        let mut q = QueueCore::new(InstantRing::new(4), false);
        submit(&mut q, flush(1, 0));
        submit(&mut q, flush(2, 0));
        assert_eq!(q.do_io_reporting_none(0, report), 0);
        assert_eq!(q.driver.submits, 1);
        assert!(!q.driver.needs_submit());
        // Nothing placed since: no second submit.
        assert_eq!(q.do_io_reporting_none(0, report), 0);
        assert_eq!(q.driver.submits, 1);
        // More required than owed is still refused, with nothing lost.
        assert_eq!(q.do_io_reporting_none(3, report), -libc::EINVAL);
        let mut out = vec![empty(); 4];
        assert_eq!(q.do_io(&mut out, 2, None, None).unwrap(), 2);
        assert_eq!(q.outstanding(), 0);
    }

    #[test]
    fn refused_requests_complete_with_their_message() {
        let mut q = QueueCore::new(InstantRing::new(2), false);
        submit(
            &mut q,
            Request {
                op: Op::Discard { len: 512 },
                start: 0,
                user_data: 7,
                flags: 0,
            },
        );
        let mut out = vec![empty(); 1];
        assert_eq!(q.do_io(&mut out, 1, None, None).unwrap(), 1);
        assert_eq!(out[0].ret, -libc::ENOTSUP);
        // SAFETY: the message is a static C string.
        let msg = unsafe { CStr::from_ptr(out[0].error_msg) };
        assert_eq!(msg, c"no discard");
    }
}
