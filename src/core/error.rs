//! The error type used everywhere inside the library.
//!
//! An [`Error`] carries a positive errno value and a human-readable message.
//! Only the C API layer turns it into a negative return value and the
//! thread-local message of `blkio_get_error_msg()`.

use std::borrow::Cow;
use std::fmt;
use std::io;

/// A failure: an errno value (positive, e.g. `libc::EINVAL`) and a message.
#[derive(Clone, PartialEq, Eq)]
pub struct Error {
    errno: i32,
    msg: Cow<'static, str>,
}

/// Result type of the library's internals.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// An error with an explicit errno and message.
    pub fn new(errno: i32, msg: impl Into<Cow<'static, str>>) -> Self {
        Error {
            errno,
            msg: msg.into(),
        }
    }

    /// `EINVAL` with a message.
    pub fn invalid(msg: impl Into<Cow<'static, str>>) -> Self {
        Self::new(libc::EINVAL, msg)
    }

    /// An OS error, worded like upstream: `"<strerror> (os error N)"`.
    ///
    /// The errors a wait can return in normal operation come from static
    /// texts, so that the request path never allocates (tests/alloc_free.rs)
    /// even when `io_uring_enter` is interrupted and retried.
    pub fn os(err: io::Error) -> Self {
        let errno = err.raw_os_error().unwrap_or(libc::EIO);
        match static_os_message(errno) {
            Some(msg) => Error::new(errno, msg),
            None => Error::new(errno, err.to_string()),
        }
    }

    /// The OS error for `errno` (positive).
    pub fn from_errno(errno: i32) -> Self {
        Self::os(io::Error::from_raw_os_error(errno))
    }

    /// The current thread's `errno` after a failed system call.
    pub fn last_os_error() -> Self {
        Self::os(io::Error::last_os_error())
    }

    /// "Device must be connected" (`ENODEV`).
    pub fn not_connected() -> Self {
        Self::new(libc::ENODEV, "Device must be connected")
    }

    /// "Device must be started" (`EBUSY`).
    pub fn not_started() -> Self {
        Self::new(libc::EBUSY, "Device must be started")
    }

    /// The positive errno value.
    pub fn errno(&self) -> i32 {
        self.errno
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.msg
    }
}

/// `io::Error`'s wording of the errors of a wait, without allocating.
fn static_os_message(errno: i32) -> Option<&'static str> {
    Some(match errno {
        libc::EINTR => "Interrupted system call (os error 4)",
        libc::EAGAIN => "Resource temporarily unavailable (os error 11)",
        libc::EBUSY => "Device or resource busy (os error 16)",
        libc::ETIME => "Timer expired (os error 62)",
        _ => return None,
    })
}

impl From<io::Error> for Error {
    fn from(err: io::Error) -> Self {
        Error::os(err)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.msg)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Error({}, {:?})", self.errno, self.msg)
    }
}

impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_errors_use_upstream_wording() {
        let e = Error::from_errno(libc::ENOENT);
        assert_eq!(e.errno(), libc::ENOENT);
        assert_eq!(e.message(), "No such file or directory (os error 2)");
        assert_eq!(
            Error::from_errno(libc::ETIME).message(),
            "Timer expired (os error 62)"
        );
    }

    #[test]
    fn static_texts_match_the_os_wording() {
        for errno in [libc::EINTR, libc::EAGAIN, libc::EBUSY, libc::ETIME] {
            let text = io::Error::from_raw_os_error(errno).to_string();
            assert_eq!(static_os_message(errno), Some(text.as_str()));
        }
    }
}
