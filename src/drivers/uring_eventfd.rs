//! The completion eventfd of a ring-based queue (io_uring, nvme-io_uring;
//! docs/contract/requests.md §5).
//!
//! The kernel signals an eventfd registered with a ring
//! (`IORING_REGISTER_EVENTFD`) for every completion it posts: a `write` to
//! the eventfd inside every completion, whether or not anybody waits on it.
//! Programs that wait in `blkioq_do_io` (fio, nbdkit, block mode) never
//! look at the fd, and paid for it: block QD1 on a page-cache file ran at
//! 0.94× a raw io_uring loop with an eventfd registered, against the same
//! loop without one (docs/benchmarks.md). So the eventfd is created with
//! the queue, but registered only when the application first asks for it
//! ([`CompletionFd::expose`]); until then the library's own signals (the
//! completion backlog, docs/contract/requests.md §4.4) are its only writes.
//!
//! `blkioq_set_completion_fd_enabled` is honoured with the CQ ring's
//! `IORING_CQ_EVENTFD_DISABLED` flag, which the kernel reads before each
//! signal: a hint the application gives when it stops waiting on the fd.
//!
//! No wake-up is lost on the way: completions posted before the eventfd
//! was registered, or while it was disabled, are still in the CQ; each
//! time the fd becomes live (registered and enabled), a non-empty CQ gets
//! one signal of our own, so an application that polls the fd next finds
//! it readable.

use std::io::ErrorKind;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{fence, Ordering};

use io_uring::{cqueue, squeue, IoUring};
use vmm_sys_util::eventfd::EventFd;

use crate::core::{sys, Error, Result};

/// A queue's completion eventfd and whether the kernel signals it.
pub struct CompletionFd {
    fd: EventFd,
    /// Registered with the ring (from the first [`CompletionFd::expose`]).
    registered: bool,
    /// The application's `blkioq_set_completion_fd_enabled` setting;
    /// `false` is `IORING_CQ_EVENTFD_DISABLED` in the CQ ring flags.
    enabled: bool,
}

impl CompletionFd {
    /// A new nonblocking, close-on-exec eventfd, not registered yet.
    pub fn new() -> Result<Self> {
        Ok(CompletionFd {
            fd: sys::eventfd(true)?,
            registered: false,
            enabled: true,
        })
    }

    /// The descriptor (the library writes to it for backlog completions
    /// even before it is registered).
    pub fn raw(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// The application asked for the fd: from now on the kernel signals it
    /// for every completion of `ring`. Registers it on the first call.
    pub fn expose<S: squeue::EntryMarker, C: cqueue::EntryMarker>(
        &mut self,
        ring: &IoUring<S, C>,
    ) -> Result<()> {
        if self.registered {
            return Ok(());
        }
        // Kernels before 5.18 wait for the requests in flight while they
        // register (ring quiesce); a signal ends that wait with EINTR.
        loop {
            match ring.submitter().register_eventfd(self.raw()) {
                Ok(()) => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::os(e)),
            }
        }
        self.registered = true;
        self.catch_up(ring);
        Ok(())
    }

    /// `blkioq_set_completion_fd_enabled(enabled)`: sets or clears
    /// `IORING_CQ_EVENTFD_DISABLED` (registered or not: the kernel reads
    /// the flag only for a registered eventfd).
    pub fn set_enabled<S: squeue::EntryMarker, C: cqueue::EntryMarker>(
        &mut self,
        ring: &IoUring<S, C>,
        enabled: bool,
    ) {
        if enabled == self.enabled {
            return;
        }
        self.enabled = enabled;
        // SAFETY: the ring's only `CompletionQueue` views are the drivers'
        // short-lived ones inside reap, on this queue's thread, so none is
        // alive here; the view's drop writes back the CQ head it read.
        let cq = unsafe { ring.completion_shared() };
        if enabled {
            cq.enable_eventfd();
        } else {
            cq.disable_eventfd();
        }
        drop(cq);
        self.catch_up(ring);
    }

    /// The fd just became live: if the CQ already holds completions, which
    /// the kernel posted without signalling, signal them once.
    fn catch_up<S: squeue::EntryMarker, C: cqueue::EntryMarker>(&self, ring: &IoUring<S, C>) {
        if !(self.registered && self.enabled) {
            return;
        }
        // Our store (the registration, the cleared flag) before our load
        // of the CQ tail; the kernel has a full barrier between its store
        // of the tail and its look at the eventfd and the flag (the
        // waiter check after posting). Either the kernel sees the fd live
        // and signals, or we see its CQE here.
        fence(Ordering::SeqCst);
        // SAFETY: as in `set_enabled`.
        let pending = !unsafe { ring.completion_shared() }.is_empty();
        if pending {
            sys::eventfd_signal(self.raw());
        }
    }
}
