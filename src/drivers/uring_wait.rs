//! `io_uring_enter` for the ring-based drivers (io_uring, nvme-io_uring):
//! submit what is queued and optionally wait, with a timeout and a signal
//! mask (docs/contract/requests.md §4.2, §4.5).
//!
//! Both drivers wait the same way, whatever their SQE/CQE sizes, so the
//! system-call details live here once: the 8-byte kernel signal set and the
//! `IORING_ENTER_EXT_ARG` argument block that carries a timeout.
//!
//! The system call is made here rather than through the crate's
//! `Submitter`, for two measured or checked reasons:
//! * cost: `Submitter::enter` (through `IoUring::submitter()` per call, the
//!   crate's `io::Result` conversion and its registered-ring check) made
//!   the io_uring block-QD1 row of `benches/run.sh --quick callgrind` go
//!   from 363 to 377 instructions per I/O (+3.9%; block-QD32 171 -> 174,
//!   event-QD1 617 -> 623), above the 2% the benchmark rows may grow;
//! * `Submitter::submit_with_args` cannot carry a signal mask:
//!   `SubmitArgs::sigmask` passes `size_of::<libc::sigset_t>()` (128) as
//!   the mask size, which the kernel refuses with -EINVAL (it expects
//!   `_NSIG / 8` = 8); and `Submitter::submit_and_wait` counts the SQEs from
//!   the shared head and tail, while our rings keep that count privately
//!   (`super::uring_ring::Rings`).

use std::os::fd::RawFd;
use std::time::Duration;

use io_uring::types;

use crate::core::Error;

/// A failed `io_uring_enter(2)`: its errno. One register wide, so that
/// the request path branches on the system call's result itself; callers
/// build the [`Error`] (`Error::from`), out of line. Returning `Result<(),
/// Error>` from here made the result a tag in memory that the caller
/// tested again after the SQ head update: event-QD1 508 -> 502 Ir/IO,
/// block-QD1 305 -> 298 (whole process, `benches/run.sh --quick
/// callgrind`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EnterError(pub i32);

impl From<EnterError> for Error {
    #[cold]
    #[inline(never)]
    fn from(e: EnterError) -> Error {
        Error::from_errno(e.0)
    }
}

/// What the functions of this module return.
pub type EnterResult<T> = std::result::Result<T, EnterError>;

const IORING_ENTER_GETEVENTS: u32 = 1 << 0;
const IORING_ENTER_EXT_ARG: u32 = 1 << 3;
/// `_NSIG / 8`: the size of the kernel's signal set.
const KERNEL_SIGSET_SIZE: u32 = 8;

/// `struct io_uring_getevents_arg`. The crate's `types::SubmitArgs` wraps the
/// same struct, but its `sigmask` setter writes the 128-byte
/// `size_of::<libc::sigset_t>()` as the mask size, which the kernel
/// refuses; the layout is checked against it below.
#[repr(C)]
struct GeteventsArg {
    sigmask: u64,
    sigmask_sz: u32,
    pad: u32,
    ts: u64,
}

const _: () = assert!(std::mem::size_of::<GeteventsArg>() == 24);
const _: () = assert!(std::mem::offset_of!(GeteventsArg, sigmask_sz) == 8);
const _: () = assert!(std::mem::offset_of!(GeteventsArg, ts) == 16);
const _: () =
    assert!(std::mem::size_of::<GeteventsArg>() == std::mem::size_of::<types::SubmitArgs>());

/// Submits `to_submit` queued SQEs and, if `wait_for` > 0, waits until that
/// many completions are available, `timeout` runs out (-ETIME) or, with
/// `sig` as the mask while sleeping, a signal arrives (-EINTR).
///
/// The kernel may take fewer SQEs than `to_submit`: it stops at the first
/// one it refuses at submit time (posting that one's CQE with the error),
/// leaves the rest in the SQ, and then does not wait. Callers learn what
/// was taken from the SQ head and must hand the rest over in the next
/// call; this function never sleeps while SQEs it was asked to submit are
/// still unsent.
///
/// `poll` rings (`IORING_SETUP_IOPOLL`) always ask for events, so that the
/// kernel polls for completions even when nothing is waited for. The
/// timeout only applies when the call waits; it needs
/// `IORING_FEAT_EXT_ARG`, which the queues check when they are created.
#[inline]
pub fn submit_and_wait(
    ring_fd: RawFd,
    to_submit: u32,
    wait_for: usize,
    poll: bool,
    timeout: Option<Duration>,
    sig: Option<&libc::sigset_t>,
) -> EnterResult<()> {
    if timeout.is_none() && sig.is_none() {
        // The common case: one plain io_uring_enter.
        let flags = if wait_for > 0 || poll {
            IORING_ENTER_GETEVENTS
        } else {
            0
        };
        let wait_for = u32::try_from(wait_for).unwrap_or(u32::MAX);
        // SAFETY: no argument block.
        return unsafe { enter(ring_fd, to_submit, wait_for, flags, None::<&u64>) }.map(drop);
    }
    submit_and_wait_with(ring_fd, to_submit, wait_for, poll, timeout, sig)
}

/// `io_uring_enter(2)` on `ring_fd`, with `arg` as the argument block
/// (the signal mask, or `io_uring_getevents_arg` with
/// `IORING_ENTER_EXT_ARG`).
///
/// # Safety
/// `arg` must be what `flags` tell the kernel to expect; whatever it
/// points to must live for the call.
#[inline(always)]
unsafe fn enter<T>(
    ring_fd: RawFd,
    to_submit: u32,
    wait_for: u32,
    flags: u32,
    arg: Option<&T>,
) -> EnterResult<u32> {
    let (arg, size) = match arg {
        Some(a) => (
            (a as *const T).cast::<libc::c_void>(),
            std::mem::size_of::<T>(),
        ),
        None => (std::ptr::null(), 0),
    };
    // SAFETY: the caller vouches for `arg`; the other arguments are plain
    // integers.
    let res = unsafe { io_uring_enter(ring_fd, to_submit, wait_for, flags, arg, size) };
    if res < 0 {
        return Err(EnterError(-res as i32));
    }
    // The number of SQEs the kernel consumed (at most `to_submit`).
    Ok(res as u32)
}

/// The `io_uring_enter(2)` system call itself: the kernel's return value,
/// `-errno` on failure.
///
/// Made with the `syscall` instruction rather than through libc's
/// `syscall()`, whose variadic call, argument shuffle and `errno` store
/// cost 15 user instructions per call: block-QD1 349 -> 334 Ir/IO and
/// event-QD1 596 -> 581 (whole process, `benches/run.sh --quick
/// callgrind`). Other architectures keep libc's wrapper.
///
/// # Safety
/// As [`enter`]: `arg` (of `size` bytes) is what `flags` tell the kernel to
/// expect and lives for the call.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn io_uring_enter(
    ring_fd: RawFd,
    to_submit: u32,
    wait_for: u32,
    flags: u32,
    arg: *const libc::c_void,
    size: usize,
) -> isize {
    let res: isize;
    // SAFETY: the x86-64 Linux system call convention: number in rax,
    // arguments in rdi, rsi, rdx, r10, r8, r9; the kernel clobbers rcx and
    // r11 and touches no user stack. The memory the kernel reads or writes
    // (SQEs, CQEs, the argument block) is not otherwise borrowed across
    // the call, so no `nomem`/`readonly` option is given.
    unsafe {
        std::arch::asm!(
            "syscall",
            inlateout("rax") libc::SYS_io_uring_enter as isize => res,
            in("rdi") ring_fd,
            in("rsi") to_submit,
            in("rdx") wait_for,
            in("r10") flags,
            in("r8") arg,
            in("r9") size,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        )
    };
    res
}

/// As the x86-64 version: libc's `syscall()`, its `-1`/`errno` turned
/// back into `-errno`.
///
/// # Safety
/// As [`enter`].
#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
unsafe fn io_uring_enter(
    ring_fd: RawFd,
    to_submit: u32,
    wait_for: u32,
    flags: u32,
    arg: *const libc::c_void,
    size: usize,
) -> isize {
    // SAFETY: the caller vouches for `arg`; the rest are plain integers.
    let res = unsafe {
        libc::syscall(
            libc::SYS_io_uring_enter,
            ring_fd,
            to_submit,
            wait_for,
            flags,
            arg,
            size,
        )
    };
    if res < 0 {
        -(std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO) as isize)
    } else {
        res as isize
    }
}

/// [`submit_and_wait`] with a timeout or a signal mask.
#[cold]
fn submit_and_wait_with(
    ring_fd: RawFd,
    to_submit: u32,
    wait_for: usize,
    poll: bool,
    timeout: Option<Duration>,
    sig: Option<&libc::sigset_t>,
) -> EnterResult<()> {
    let mut to_submit = to_submit;
    if sig.is_some() && to_submit > 0 && wait_for > 0 {
        // When one io_uring_enter both submits and waits, the kernel returns
        // the number of SQEs submitted even if a signal ended the wait, so
        // -EINTR would be lost (the handler runs and `Queue::do_io` waits
        // again). With a signal mask, submit first and wait in a second
        // call that can report the signal.
        // SAFETY: no argument block.
        let submitted = unsafe { enter(ring_fd, to_submit, 0, 0, None::<&u64>) }?;
        if submitted < to_submit {
            // The kernel refused an SQE (its CQE carries the error) and
            // left the rest queued. Waiting now could sleep on requests
            // that were never sent: return, so that the caller reaps the
            // refusal and submits the rest (a one-call enter would not
            // wait either).
            return Ok(());
        }
        to_submit = 0;
    }
    let mut flags = 0;
    if wait_for > 0 || poll {
        flags |= IORING_ENTER_GETEVENTS;
    }
    let wait_for = u32::try_from(wait_for).unwrap_or(u32::MAX);
    // The kernel's sigset is 8 bytes; passing sizeof(sigset_t) (128) is
    // the upstream bug that turns every masked wait into -EINVAL.
    let mask = sig.map(|s| {
        // SAFETY: sigset_t is at least 8 bytes; the kernel reads 8.
        unsafe { *(s as *const libc::sigset_t).cast::<u64>() }
    });
    // SAFETY: every pointer handed to the kernel (mask, timespec, argument
    // block) lives on this stack frame for the whole call.
    let res = unsafe {
        match (timeout.filter(|_| wait_for > 0), &mask) {
            (None, None) => enter(ring_fd, to_submit, wait_for, flags, None::<&u64>),
            (None, Some(mask)) => enter(ring_fd, to_submit, wait_for, flags, Some(mask)),
            (Some(t), mask) => {
                let ts = types::Timespec::from(t);
                let arg = GeteventsArg {
                    sigmask: mask.as_ref().map_or(0, |m| m as *const u64 as u64),
                    sigmask_sz: if mask.is_some() {
                        KERNEL_SIGSET_SIZE
                    } else {
                        0
                    },
                    pad: 0,
                    ts: &ts as *const types::Timespec as u64,
                };
                enter(
                    ring_fd,
                    to_submit,
                    wait_for,
                    flags | IORING_ENTER_EXT_ARG,
                    Some(&arg),
                )
            }
        }
    };
    res.map(drop)
}
