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
//! No wake-up is lost on the way: completions posted before the eventfd
//! was registered are still in the CQ; when the fd is registered, a
//! non-empty CQ gets one signal of our own, so an application that polls
//! the fd next finds it readable.

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
}

impl CompletionFd {
    /// A new nonblocking, close-on-exec eventfd, not registered yet.
    pub fn new() -> Result<Self> {
        Ok(CompletionFd {
            fd: sys::eventfd(true)?,
            registered: false,
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

    /// The fd was just registered: if the CQ already holds completions,
    /// which the kernel posted without signalling, signal them once.
    fn catch_up<S: squeue::EntryMarker, C: cqueue::EntryMarker>(&self, ring: &IoUring<S, C>) {
        // Our store (the registration) before our load of the CQ tail; the
        // kernel has a full barrier between its store of the tail and its
        // look for an eventfd (the waiter check after posting). Either the
        // kernel sees the fd registered and signals, or we see its CQE
        // here.
        fence(Ordering::SeqCst);
        // SAFETY: the ring's only `CompletionQueue` views are the drivers'
        // short-lived ones inside reap, on this queue's thread, so none is
        // alive here; the view's drop writes back the CQ head it read.
        let pending = !unsafe { ring.completion_shared() }.is_empty();
        if pending {
            sys::eventfd_signal(self.raw());
        }
    }
}
