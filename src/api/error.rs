//! The public error type.

use std::borrow::Cow;
use std::error::Error as StdError;
use std::fmt;

use crate::core;

/// What went wrong, in a few stable classes.
///
/// New kinds may be added in later versions (the enum is
/// `#[non_exhaustive]`); [`Error::errno`] always gives the precise value.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// An argument or property value is not acceptable (`EINVAL`,
    /// `ERANGE`, `EOVERFLOW`).
    InvalidArgument,
    /// No such driver, property or queue (`ENOENT`).
    NotFound,
    /// The property has another type than the one asked for (`ENOTTY`).
    WrongType,
    /// The property is read-only, or the OS refused access (`EACCES`,
    /// `EPERM`).
    PermissionDenied,
    /// The instance is not in a state that allows the call, or the
    /// resource is busy (`EBUSY`, `ENODEV`).
    WrongState,
    /// The driver or device cannot do this (`ENOTSUP`, `EOPNOTSUPP`).
    NotSupported,
    /// A timeout ran out before enough completions arrived (`ETIME`,
    /// `ETIMEDOUT`).
    TimedOut,
    /// A signal interrupted the wait (`EINTR`).
    Interrupted,
    /// Memory could not be allocated (`ENOMEM`).
    OutOfMemory,
    /// The device or the transport failed (`EIO`).
    Io,
    /// Any other errno.
    Other,
}

impl ErrorKind {
    /// The kind of a positive errno value.
    pub fn from_errno(errno: i32) -> Self {
        match errno {
            libc::EINVAL | libc::ERANGE | libc::EOVERFLOW => ErrorKind::InvalidArgument,
            libc::ENOENT => ErrorKind::NotFound,
            libc::ENOTTY => ErrorKind::WrongType,
            libc::EACCES | libc::EPERM => ErrorKind::PermissionDenied,
            libc::EBUSY | libc::ENODEV => ErrorKind::WrongState,
            libc::ENOTSUP => ErrorKind::NotSupported,
            libc::ETIME | libc::ETIMEDOUT => ErrorKind::TimedOut,
            libc::EINTR => ErrorKind::Interrupted,
            libc::ENOMEM => ErrorKind::OutOfMemory,
            libc::EIO => ErrorKind::Io,
            _ => ErrorKind::Other,
        }
    }
}

/// A failed call: its [`ErrorKind`], the positive errno the C API would
/// return (negated), and the message `blkio_get_error_msg()` would give.
///
/// ```
/// use blkio::{Blkio, ErrorKind};
///
/// let e = Blkio::new("no-such-driver").unwrap_err();
/// assert_eq!(e.kind(), ErrorKind::NotFound);
/// assert_eq!(e.errno(), libc::ENOENT);
/// assert_eq!(e.message(), "Unknown driver name");
/// ```
///
/// A failed system call keeps its [`std::io::Error`] as the
/// [`source()`](StdError::source):
///
/// ```
/// use std::error::Error as _;
///
/// let b = blkio::Blkio::new("io_uring").unwrap();
/// b.set("path", "/nonexistent/blkio-doc").unwrap();
/// let e = b.connect().unwrap_err();
/// assert_eq!(e.errno(), libc::ENOENT);
/// let os = e.source().and_then(|s| s.downcast_ref::<std::io::Error>());
/// assert_eq!(os.and_then(|o| o.raw_os_error()), Some(libc::ENOENT));
/// ```
pub struct Error {
    kind: ErrorKind,
    errno: i32,
    message: Cow<'static, str>,
    source: Option<std::io::Error>,
}

impl Error {
    /// An error with an explicit errno and message; its kind is the one
    /// the library's own error with that errno and message has.
    pub fn new(errno: i32, message: impl Into<Cow<'static, str>>) -> Self {
        core::Error::new(errno, message).into()
    }

    /// The error's class.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The positive errno value (e.g. `libc::EINVAL`).
    pub fn errno(&self) -> i32 {
        self.errno
    }

    /// The human-readable message (the same text the C API reports).
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl From<core::Error> for Error {
    fn from(e: core::Error) -> Self {
        let kind = kind_of(&e);
        let (errno, message, source) = e.into_parts();
        Error {
            kind,
            errno,
            message,
            source,
        }
    }
}

/// The kind of the library's error: its variant says it, except for a
/// failed system call and the other errnos, which are known by their
/// number alone.
fn kind_of(e: &core::Error) -> ErrorKind {
    use core::Error as E;
    match e {
        E::TimedOut(_) => ErrorKind::TimedOut,
        E::Interrupted => ErrorKind::Interrupted,
        E::WouldBlock => ErrorKind::Other,
        E::Device(_) => ErrorKind::Io,
        E::InvalidArgument(_) => ErrorKind::InvalidArgument,
        E::NotFound(_) => ErrorKind::NotFound,
        E::WrongType(_) => ErrorKind::WrongType,
        E::ReadOnly(_) => ErrorKind::PermissionDenied,
        E::NotConnected(_) | E::BadState(_) => ErrorKind::WrongState,
        E::NotSupported(_) => ErrorKind::NotSupported,
        E::Os(_) | E::Other(_) => ErrorKind::from_errno(e.errno()),
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Error")
            .field("kind", &self.kind)
            .field("errno", &self.errno)
            .field("message", &self.message)
            .finish()
    }
}

impl StdError for Error {
    /// The operating-system error behind this one, when there is one (a
    /// failed system call, or a transport whose system call failed).
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source.as_ref().map(|e| e as &(dyn StdError + 'static))
    }
}

impl From<Error> for std::io::Error {
    fn from(e: Error) -> Self {
        std::io::Error::new(std::io::Error::from_raw_os_error(e.errno).kind(), e)
    }
}

/// Result type of the public API.
pub type Result<T> = std::result::Result<T, Error>;

#[cfg(test)]
mod tests {
    use super::*;

    /// Deriving the kind from the variant gives every error the kind its
    /// errno names (the documented classes), whichever way it was made.
    #[test]
    fn kind_follows_the_errno_classes() {
        for errno in 1..=133 {
            let want = ErrorKind::from_errno(errno);
            for e in [
                core::Error::new(errno, "text"),
                core::Error::from_errno(errno),
                core::Error::new(errno, std::io::Error::from_raw_os_error(errno).to_string()),
            ] {
                assert_eq!(Error::from(e).kind(), want, "errno {errno}");
            }
            assert_eq!(Error::new(errno, "text").kind(), want, "errno {errno}");
        }
        let e = Error::from(core::Error::transport(
            "send failed",
            std::io::Error::from_raw_os_error(libc::EPIPE),
        ));
        assert_eq!((e.kind(), e.errno()), (ErrorKind::Io, libc::EIO));
        assert_eq!(
            Error::from(core::Error::not_started()).kind(),
            ErrorKind::WrongState
        );
        assert_eq!(
            Error::from(core::Error::not_connected()).kind(),
            ErrorKind::WrongState
        );
    }
}
