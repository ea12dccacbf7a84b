//! Thin, documented wrappers around the few system calls the core and
//! several drivers share.

use std::fs;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use super::error::{Error, Result};

/// A new eventfd with `EFD_CLOEXEC | EFD_NONBLOCK`.
pub fn eventfd() -> Result<OwnedFd> {
    // SAFETY: eventfd has no memory arguments; the result is checked.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    if fd < 0 {
        return Err(Error::last_os_error());
    }
    // SAFETY: `fd` is a new descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
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
