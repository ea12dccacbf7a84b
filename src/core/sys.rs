//! Thin, documented wrappers around the few system calls the core and
//! several drivers share.

use std::ffi::CStr;
use std::fs;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use memmap2::{MmapOptions, MmapRaw};
use vmm_sys_util::eventfd::EventFd;

use super::error::{Error, Result};

/// A new eventfd with `EFD_CLOEXEC`, and `EFD_NONBLOCK` when
/// `nonblocking`: the one way the library makes eventfds (completion fds,
/// virtqueue kick and call). The type is vmm-sys-util's [`EventFd`].
pub fn eventfd(nonblocking: bool) -> Result<EventFd> {
    let flags = libc::EFD_CLOEXEC | if nonblocking { libc::EFD_NONBLOCK } else { 0 };
    EventFd::new(flags).map_err(Error::os)
}

/// A memfd of `len` bytes (zeroed), close-on-exec: the one way the
/// library makes shared memory a device can map too (memory regions of
/// `blkio_alloc_mem_region`, the virtqueue block).
pub fn memfd(name: &CStr, len: usize) -> Result<OwnedFd> {
    // SAFETY: memfd_create with a NUL-terminated name; checked.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(Error::last_os_error());
    }
    // SAFETY: a new descriptor owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let len = libc::off_t::try_from(len).map_err(|_| Error::from_errno(libc::EINVAL))?;
    // SAFETY: ftruncate on our own descriptor; checked.
    if unsafe { libc::ftruncate(fd.as_raw_fd(), len) } < 0 {
        return Err(Error::last_os_error());
    }
    Ok(fd)
}

/// Maps `len` bytes of `fd` from byte `offset`, shared and read-write, and
/// pre-faulted when `populate`: the one way the library maps shared memory
/// (memory regions, the virtqueue block, io_uring rings, VFIO BARs). The
/// mapping is a [`MmapRaw`], unmapped when it drops. `offset` need not be
/// page-aligned: memmap2 maps from the page below and its pointer
/// (`as_mut_ptr`) is the byte at `offset`.
pub fn map_shared(fd: RawFd, offset: u64, len: usize, populate: bool) -> std::io::Result<MmapRaw> {
    let mut options = MmapOptions::new();
    options.offset(offset).len(len);
    if populate {
        options.populate();
    }
    options.map_raw(fd)
}

/// `fstat(fd)`.
pub fn fstat(fd: RawFd) -> Result<libc::stat> {
    // SAFETY: `st` is a valid out-pointer; a bad fd yields EBADF.
    unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        if libc::fstat(fd, &mut st) < 0 {
            return Err(Error::last_os_error());
        }
        Ok(st)
    }
}

/// Waits until `fd` is readable (or hung up, or in error: a read then
/// says which) or `deadline` passes; `Ok(false)` on timeout. Signals
/// do not cut the wait short.
pub fn poll_readable(fd: RawFd, deadline: std::time::Instant) -> Result<bool> {
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        // Round up so that a wait never ends before the deadline.
        let ms = left.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd for the duration of the call.
        match unsafe { libc::poll(&mut pfd, 1, ms) } {
            n if n > 0 => return Ok(true),
            0 if ms == 0 => return Ok(false),
            0 => {}
            _ => {
                let e = std::io::Error::last_os_error();
                if e.kind() != std::io::ErrorKind::Interrupted {
                    return Err(Error::os(e));
                }
            }
        }
    }
}

/// `sendmsg(fd, bytes)` with `fds` attached as `SCM_RIGHTS` and
/// `MSG_NOSIGNAL` (a closed peer gives EPIPE instead of SIGPIPE); retried
/// on EINTR. Returns the bytes sent.
pub fn send_with_fds(fd: RawFd, bytes: &[u8], fds: &[RawFd]) -> std::io::Result<usize> {
    const MAX_FDS: usize = 8;
    assert!(
        fds.len() <= MAX_FDS,
        "at most {MAX_FDS} descriptors per message"
    );
    // Control buffer for up to MAX_FDS descriptors, aligned for cmsghdr.
    #[repr(C, align(8))]
    struct Control([u8; 64]);
    let mut control = Control([0; 64]);
    let fds_len = std::mem::size_of_val(fds);
    let mut iov = libc::iovec {
        iov_base: bytes.as_ptr().cast_mut().cast(),
        iov_len: bytes.len(),
    };
    // SAFETY: a zeroed msghdr is a valid "no name, no control" header.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if !fds.is_empty() {
        // SAFETY: CMSG_SPACE only computes a size.
        let space = unsafe { libc::CMSG_SPACE(fds_len as u32) } as usize;
        assert!(space <= control.0.len());
        msg.msg_control = control.0.as_mut_ptr().cast();
        msg.msg_controllen = space;
        // SAFETY: msg_control points to `space` bytes of our aligned
        // buffer, enough for one cmsghdr with `fds_len` bytes of data
        // (checked above), so CMSG_FIRSTHDR is non-null and CMSG_DATA
        // has room for the descriptors.
        unsafe {
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN(fds_len as u32) as usize;
            std::ptr::copy_nonoverlapping(
                fds.as_ptr().cast::<u8>(),
                libc::CMSG_DATA(cmsg),
                fds_len,
            );
        }
    }
    loop {
        // SAFETY: `msg` points to `iov` (our live `bytes`) and to the
        // control buffer, both alive across the call.
        let n = unsafe { libc::sendmsg(fd, &msg, libc::MSG_NOSIGNAL) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// The soft `RLIMIT_NOFILE` of the process, or `None` when unlimited or
/// unknown.
pub fn open_file_limit() -> Option<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid out-pointer for the duration of the call.
    let ret = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    (ret == 0 && lim.rlim_cur != libc::RLIM_INFINITY).then_some(lim.rlim_cur)
}

/// The system page size.
pub fn page_size() -> usize {
    // SAFETY: sysconf has no side effects.
    match unsafe { libc::sysconf(libc::_SC_PAGESIZE) } {
        n if n > 0 => n as usize,
        _ => 4096,
    }
}

/// `sysconf(_SC_IOV_MAX)` (1024 on glibc).
pub fn iov_max() -> i32 {
    // SAFETY: sysconf has no side effects.
    match unsafe { libc::sysconf(libc::_SC_IOV_MAX) } {
        n if n > 0 => n.min(i32::MAX as libc::c_long) as i32,
        _ => 1024,
    }
}

/// The sysfs view of a block device (`/sys/dev/block/MAJ:MIN`), where the
/// queue attributes of a partition come from its parent disk.
pub struct SysfsBlock {
    dev_dir: PathBuf,
    queue_dir: PathBuf,
}

impl SysfsBlock {
    /// The block device `dev` (an `st_rdev` or `st_dev`), if sysfs has it.
    pub fn new(dev: libc::dev_t) -> Option<Self> {
        let dev_dir = PathBuf::from(format!(
            "/sys/dev/block/{}:{}",
            libc::major(dev),
            libc::minor(dev)
        ));
        if !dev_dir.exists() {
            return None;
        }
        let queue_dir = if dev_dir.join("partition").exists() {
            dev_dir.join("../queue")
        } else {
            dev_dir.join("queue")
        };
        Some(SysfsBlock { dev_dir, queue_dir })
    }

    /// A `queue/` attribute as text.
    pub fn queue_attr(&self, name: &str) -> Option<String> {
        read_trimmed(&self.queue_dir.join(name))
    }

    /// A numeric `queue/` attribute.
    pub fn queue_u64(&self, name: &str) -> Option<u64> {
        self.queue_attr(name)?.parse().ok()
    }

    /// A numeric attribute of the device directory itself.
    pub fn dev_u64(&self, name: &str) -> Option<u64> {
        read_trimmed(&self.dev_dir.join(name))?.parse().ok()
    }
}

fn read_trimmed(p: &Path) -> Option<String> {
    fs::read_to_string(p).ok().map(|s| s.trim().to_owned())
}

// --- The system calls of the request path -----------------------------------
//
// A kick, the drain of a call eventfd and the wait for it happen once per
// I/O or per wait. glibc's `write`, `read` and `ppoll` are cancellation
// points and enter and leave asynchronous-cancellation mode around the
// call: about 50 user-space instructions each, against a handful for the
// system call itself. These go to the kernel directly (an inline `syscall`
// on x86-64, libc's plain `syscall` stub elsewhere); the library never
// relies on thread cancellation.

/// A system call with up to five arguments; the kernel's result (a
/// negative errno on failure).
///
/// # Safety
/// The arguments must be valid for system call `nr`.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn syscall5(nr: libc::c_long, args: [usize; 5]) -> isize {
    let ret: isize;
    // SAFETY: the x86-64 Linux system call convention (number in rax,
    // arguments in rdi, rsi, rdx, r10, r8; rcx and r11 clobbered, flags
    // restored); the caller vouches for the arguments. Memory is not
    // declared untouched: the kernel reads and writes what they point to.
    unsafe {
        std::arch::asm!(
            "syscall",
            inlateout("rax") nr as isize => ret,
            in("rdi") args[0],
            in("rsi") args[1],
            in("rdx") args[2],
            in("r10") args[3],
            in("r8") args[4],
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack, preserves_flags)
        );
    }
    ret
}

/// [`syscall5`] through libc's generic stub (no cancellation point).
///
/// # Safety
/// The arguments must be valid for system call `nr`.
#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
unsafe fn syscall5(nr: libc::c_long, args: [usize; 5]) -> isize {
    // SAFETY: the caller vouches for the arguments.
    let ret = unsafe { libc::syscall(nr, args[0], args[1], args[2], args[3], args[4]) };
    if ret < 0 {
        -(std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO) as isize)
    } else {
        ret as isize
    }
}

/// Adds 1 to the counter of eventfd `fd` (a kick, a completion signal).
/// Errors are ignored: a full counter still leaves the fd readable, and a
/// bad fd is a bug elsewhere.
#[inline(always)]
pub fn eventfd_signal(fd: RawFd) {
    let one: u64 = 1;
    let buf = std::ptr::addr_of!(one) as usize;
    // SAFETY: write(2) of 8 bytes from a live u64.
    unsafe { syscall5(libc::SYS_write, [fd as usize, buf, 8, 0, 0]) };
}

/// Resets the counter of the nonblocking eventfd `fd`; an empty counter
/// (EAGAIN) is fine.
#[inline(always)]
pub fn eventfd_drain(fd: RawFd) {
    let mut count: u64 = 0;
    let buf = std::ptr::addr_of_mut!(count) as usize;
    // SAFETY: read(2) of at most 8 bytes into a live u64.
    unsafe { syscall5(libc::SYS_read, [fd as usize, buf, 8, 0, 0]) };
}

/// The errno of a failed request-path system call: one register wide, so
/// that a function returning `Result<_, Errno>` returns in registers; it
/// becomes an [`Error`] (EINTR: [`Error::Interrupted`]) where it leaves
/// the request path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Errno(pub i32);

impl From<Errno> for Error {
    #[cold]
    fn from(e: Errno) -> Error {
        Error::from_errno(e.0)
    }
}

/// `ppoll(fds, timeout, sig)`: the number of descriptors with events, 0
/// on timeout (a negative fd is ignored).
#[inline(always)]
pub fn ppoll(
    fds: &mut [libc::pollfd],
    timeout: Option<&libc::timespec>,
    sig: Option<&libc::sigset_t>,
) -> std::result::Result<usize, Errno> {
    /// The kernel's signal set size (`_NSIG / 8`): it reads the first
    /// 8 bytes of glibc's 128-byte `sigset_t`.
    const KERNEL_SIGSET: usize = 8;
    let args = [
        fds.as_mut_ptr() as usize,
        fds.len(),
        timeout.map_or(0, |t| t as *const libc::timespec as usize),
        sig.map_or(0, |s| s as *const libc::sigset_t as usize),
        KERNEL_SIGSET,
    ];
    // SAFETY: the pollfds, the timespec and the signal set are live for
    // the call.
    let ret = unsafe { syscall5(libc::SYS_ppoll, args) };
    if ret < 0 {
        Err(Errno(-ret as i32))
    } else {
        Ok(ret as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pollin(fd: RawFd) -> libc::pollfd {
        libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        }
    }

    #[test]
    fn eventfd_signal_drain_and_ppoll() {
        let efd = eventfd(true).unwrap();
        let fd = efd.as_raw_fd();
        let zero = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        let mut fds = [pollin(fd), pollin(-1)];
        assert_eq!(ppoll(&mut fds, Some(&zero), None).unwrap(), 0);
        eventfd_signal(fd);
        eventfd_signal(fd);
        assert_eq!(ppoll(&mut fds, Some(&zero), None).unwrap(), 1);
        assert_eq!(fds[0].revents, libc::POLLIN);
        assert_eq!(fds[1].revents, 0);
        // Both signals are in the counter; one drain takes them all.
        assert_eq!(efd.read().unwrap(), 2);
        eventfd_signal(fd);
        eventfd_drain(fd);
        eventfd_drain(fd); // empty: EAGAIN, ignored
        assert_eq!(ppoll(&mut fds, Some(&zero), None).unwrap(), 0);
    }

    #[test]
    fn ppoll_applies_the_signal_mask_and_reports_eintr() {
        // SIGUSR1 is blocked in this thread and pending; ppoll with a mask
        // that unblocks it is interrupted, one that keeps it blocked waits
        // out its timeout. The handler ignores the signal.
        extern "C" fn ignore(_: libc::c_int) {}
        // SAFETY: plain libc signal set and mask manipulation on this
        // thread; the handler does nothing.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGUSR1);
            let mut old: libc::sigset_t = std::mem::zeroed();
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, &mut old);
            libc::signal(libc::SIGUSR1, ignore as *const () as libc::sighandler_t);
            let efd = eventfd(true).unwrap();
            let mut fds = [pollin(efd.as_raw_fd())];
            let short = libc::timespec {
                tv_sec: 0,
                tv_nsec: 1_000_000,
            };
            libc::pthread_kill(libc::pthread_self(), libc::SIGUSR1);
            assert_eq!(ppoll(&mut fds, Some(&short), Some(&set)).unwrap(), 0);
            let mut open: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut open);
            let e = ppoll(&mut fds, Some(&short), Some(&open)).unwrap_err();
            assert_eq!(e, Errno(libc::EINTR));
            assert!(matches!(Error::from(e), Error::Interrupted));
            libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
        }
    }
}
