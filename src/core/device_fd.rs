//! The device descriptor of connect: `path` opened by the library or the
//! application's `fd`, and who closes it when connect fails (docs/contract/abi.md §6.3).
//!
//! Ownership of the application's `fd` passes to the library only when
//! connect succeeds (the manual's contract, docs/contract/abi.md §6.3 \[Q\]): a failed
//! connect leaves it open for the caller, while a descriptor opened from
//! `path` is closed again.

use std::ffi::{c_int, CString};
use std::mem::ManuallyDrop;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use super::config::Config;
use super::error::{Error, Result};

/// Opens `path` with `flags` (the caller includes `O_CLOEXEC`); an OS
/// failure is its errno with `"<strerror> (os error N)"`.
pub fn open_path(path: &str, flags: c_int) -> Result<OwnedFd> {
    let path = CString::new(path).map_err(|_| Error::invalid("path must not contain NUL bytes"))?;
    // SAFETY: `path` is NUL-terminated; the result is checked.
    let fd = unsafe { libc::open(path.as_ptr(), flags) };
    if fd < 0 {
        return Err(Error::last_os_error());
    }
    // SAFETY: a new descriptor owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The descriptor a driver probes during connect. Dropping it (connect
/// failed) closes it only when it was opened from `path`; [`keep`] makes
/// it the library's (connect succeeded).
///
/// [`keep`]: DeviceFd::keep
pub struct DeviceFd {
    fd: ManuallyDrop<OwnedFd>,
    opened: bool,
}

impl DeviceFd {
    /// `config.path` opened with `flags`, or, when `path` is empty, the
    /// application's `config.fd` (a negative one fails with -EBADF).
    /// Expects [`check_path_or_fd`](super::config::check_path_or_fd) to
    /// have passed.
    pub fn new(config: &Config, flags: c_int) -> Result<Self> {
        if !config.path.is_empty() {
            return Ok(DeviceFd {
                fd: ManuallyDrop::new(open_path(&config.path, flags)?),
                opened: true,
            });
        }
        if config.fd < 0 {
            return Err(Error::from_errno(libc::EBADF));
        }
        // SAFETY: the application handed us this descriptor; ManuallyDrop
        // leaves it open unless connect succeeds and `keep` takes it over.
        let fd = unsafe { OwnedFd::from_raw_fd(config.fd) };
        Ok(DeviceFd {
            fd: ManuallyDrop::new(fd),
            opened: false,
        })
    }

    /// Whether the descriptor was opened from `path`.
    pub fn opened(&self) -> bool {
        self.opened
    }

    pub fn get(&self) -> &OwnedFd {
        &self.fd
    }

    /// Connect succeeded: the descriptor is the library's from now on
    /// (closed when the instance is destroyed).
    pub fn keep(self) -> OwnedFd {
        let mut this = ManuallyDrop::new(self);
        // SAFETY: `this` is never used or dropped again.
        unsafe { ManuallyDrop::take(&mut this.fd) }
    }
}

impl AsRawFd for DeviceFd {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl Drop for DeviceFd {
    fn drop(&mut self) {
        if self.opened {
            // SAFETY: dropped once, here; `keep` skips this drop.
            unsafe { ManuallyDrop::drop(&mut self.fd) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(path: &str, fd: RawFd) -> Config {
        Config {
            path: path.into(),
            fd,
            ..Config::default()
        }
    }

    fn is_open(fd: RawFd) -> bool {
        // SAFETY: F_GETFD only reads the descriptor's flags.
        unsafe { libc::fcntl(fd, libc::F_GETFD) >= 0 }
    }

    #[test]
    fn callers_fd_stays_open_when_connect_fails() {
        let own = open_path("/dev/null", libc::O_RDONLY | libc::O_CLOEXEC).unwrap();
        let raw = own.as_raw_fd();
        let fd = DeviceFd::new(&config("", raw), libc::O_RDONLY).unwrap();
        assert!(!fd.opened());
        assert_eq!(fd.as_raw_fd(), raw);
        drop(fd);
        assert!(is_open(raw));
        let fd = DeviceFd::new(&config("", raw), libc::O_RDONLY).unwrap();
        let kept = fd.keep();
        assert_eq!(kept.as_raw_fd(), raw);
        // `kept` and `own` are the same descriptor now; close it once.
        std::mem::forget(own);
    }

    #[test]
    fn path_is_opened_with_the_flags() {
        let fd = DeviceFd::new(&config("/dev/null", -1), libc::O_WRONLY | libc::O_CLOEXEC).unwrap();
        assert!(fd.opened());
        // SAFETY: F_GETFL only reads the descriptor's flags.
        let fl = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) };
        assert_eq!(fl & libc::O_ACCMODE, libc::O_WRONLY);
        let kept = fd.keep();
        assert!(is_open(kept.as_raw_fd()));
    }

    #[test]
    fn bad_fd_and_path_errors() {
        let e = DeviceFd::new(&config("", -5), libc::O_RDONLY)
            .err()
            .unwrap();
        assert_eq!(e.errno(), libc::EBADF);
        assert_eq!(e.message(), "Bad file descriptor (os error 9)");
        let e = open_path("a\0b", libc::O_RDONLY).err().unwrap();
        assert_eq!(e.errno(), libc::EINVAL);
        assert_eq!(e.message(), "path must not contain NUL bytes");
        let e = open_path("/nonexistent/x", libc::O_RDONLY).err().unwrap();
        assert_eq!(e.errno(), libc::ENOENT);
        assert_eq!(e.message(), "No such file or directory (os error 2)");
    }
}
