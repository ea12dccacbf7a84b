//! A queue as the application sees it (`struct blkioq`): the driver's ring
//! plus the two backlogs every driver shares, and the `blkioq_do_io`
//! algorithm of REQUESTS.md §4.
//!
//! * The **request backlog** holds requests that found no room in the ring;
//!   they are moved into the ring, in order, whenever completions are reaped.
//! * The **completion backlog** holds completions the library produced
//!   itself (bad flags, unsupported requests, ...); they are returned before
//!   anything reaped from the device, and each one signals the completion fd.

use std::collections::VecDeque;
use std::ffi::CStr;
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use super::error::{Error, Result};
use super::request::{Completion, Request};

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

    /// Moves finished requests into `out`; returns how many were written.
    fn reap(&mut self, out: &mut [Completion]) -> usize;

    /// Requests owned by the ring (placed but not yet reaped).
    fn in_flight(&self) -> usize;

    /// Whether placed requests still wait to be handed to the device.
    fn needs_submit(&self) -> bool;

    /// Hands placed requests to the device, then, if `wait_for` > 0, sleeps
    /// until at least that many can be reaped, `timeout` runs out (-ETIME)
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

    /// `blkioq_set_completion_fd_enabled`: a hint, ignored by default.
    fn set_completion_fd_enabled(&mut self, _enabled: bool) {}
}

/// `struct blkioq`.
pub struct Queue {
    driver: Box<dyn QueueDriver>,
    backlog: VecDeque<Request>,
    completions: VecDeque<Completion>,
    poll: bool,
}

impl Queue {
    pub fn new(driver: Box<dyn QueueDriver>, poll: bool) -> Self {
        Queue {
            driver,
            backlog: VecDeque::with_capacity(64),
            completions: VecDeque::with_capacity(16),
            poll,
        }
    }

    pub fn is_poll(&self) -> bool {
        self.poll
    }

    /// Accepts a request from the application; never fails synchronously.
    #[inline]
    pub fn submit(&mut self, req: Request) {
        if let Err(msg) = req.check_flags() {
            return self.fail(req.user_data, libc::EINVAL, Some(msg));
        }
        if !self.backlog.is_empty() {
            self.backlog.push_back(req);
            return;
        }
        match self.driver.enqueue(&req) {
            Enqueue::Queued => {}
            Enqueue::Full => self.backlog.push_back(req),
            Enqueue::Failed(errno, msg) => self.fail(req.user_data, errno, msg),
        }
    }

    /// Completes a request at once with `-errno` (the completion backlog).
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

    pub fn completion_fd(&self) -> RawFd {
        self.driver.completion_fd()
    }

    pub fn set_completion_fd_enabled(&mut self, enabled: bool) {
        if !self.poll {
            self.driver.set_completion_fd_enabled(enabled);
        }
    }

    /// Requests this queue still owes a completion for.
    fn outstanding(&self) -> usize {
        self.driver.in_flight() + self.backlog.len() + self.completions.len()
    }

    /// Moves backlogged requests into the ring while it has room.
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

    /// Fills `out` from the completion backlog, then from the ring, then
    /// refills the ring from the request backlog. Returns the new fill.
    fn gather(&mut self, out: &mut [Completion], mut n: usize) -> usize {
        while n < out.len() {
            match self.completions.pop_front() {
                Some(c) => {
                    out[n] = c;
                    n += 1;
                }
                None => break,
            }
        }
        if n < out.len() {
            n += self.driver.reap(&mut out[n..]);
        }
        if !self.backlog.is_empty() {
            self.refill();
            // Requests refused while refilling complete in this call too.
            while n < out.len() {
                match self.completions.pop_front() {
                    Some(c) => {
                        out[n] = c;
                        n += 1;
                    }
                    None => break,
                }
            }
        }
        n
    }

    /// Puts gathered completions back in front of the completion backlog so
    /// a failing call loses none of them (REQUESTS.md §4.4).
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
    /// `timeout` is updated as REQUESTS.md §4.3 says when the call had to
    /// submit or wait. Without `sig` a signal never ends the call.
    pub fn do_io(
        &mut self,
        out: &mut [Completion],
        min: usize,
        timeout: Option<&mut libc::timespec>,
        sig: Option<&libc::sigset_t>,
    ) -> Result<usize> {
        if sig.is_some() && self.poll {
            return Err(Error::new(
                libc::ENOTSUP,
                "blkioq_do_io_interruptible() is not supported on poll queues",
            ));
        }
        let mut n = self.gather(out, 0);
        if min > n + self.outstanding() {
            self.put_back(&out[..n]);
            return Err(Error::invalid(
                "min_completions is larger than total outstanding requests",
            ));
        }

        let budget = timeout.as_deref().map(timespec_to_duration);
        let mut started: Option<Instant> = None;
        let mut entered = false;
        let result = loop {
            let need = min.saturating_sub(n);
            let poll_kick = self.poll && n == 0 && self.driver.in_flight() > 0;
            // Work placed after the last submission (refilled from the
            // backlog, or follow-ups queued while reaping) is submitted
            // before returning, so it never waits for the next call.
            if need == 0 && !self.driver.needs_submit() && (entered || !poll_kick) {
                break Ok(n);
            }
            if need > 0 && self.driver.in_flight() == 0 && !self.driver.needs_submit() {
                // Cannot happen while the outstanding count holds; refuse to
                // sleep forever if a driver ever breaks that rule.
                break Err(Error::new(libc::EIO, "no request in flight to wait for"));
            }
            let start = *started.get_or_insert_with(Instant::now);
            let remaining = budget.map(|b| b.saturating_sub(start.elapsed()));
            let wait_for = need.min(self.driver.in_flight());
            match self.driver.submit_and_wait(wait_for, remaining, sig) {
                Ok(()) => {}
                Err(e) if e.errno() == libc::EINTR && sig.is_none() => {}
                Err(e) => break Err(e),
            }
            entered = true;
            n = self.gather(out, n);
        };

        if let (Some(start), Some(ts), Some(b)) = (started, timeout, budget) {
            *ts = duration_to_timespec(b.saturating_sub(start.elapsed()));
        }
        if result.is_err() {
            self.put_back(&out[..n]);
        }
        result
    }
}

fn timespec_to_duration(ts: &libc::timespec) -> Duration {
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn duration_to_timespec(d: Duration) -> libc::timespec {
    libc::timespec {
        tv_sec: d.as_secs() as libc::time_t,
        tv_nsec: d.subsec_nanos() as libc::c_long,
    }
}
