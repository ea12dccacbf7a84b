//! The error type used everywhere inside the library.
//!
//! An [`Error`] says what kind of failure happened (a timeout, a signal, a
//! failed system call with its [`io::Error`], a device that broke its
//! contract, a bad argument, a call in the wrong state, ...) and carries the
//! message `blkio_get_error_msg()` reports. Code inside the library matches
//! on the variants; the errno the C API returns (negated) comes from one
//! function, [`Error::errno`], which the C layer (`src/capi`) and the public
//! Rust API's `Error::errno()` both use.

use std::borrow::Cow;
use std::io;

/// A message: a static text or a formatted one.
pub type Message = Cow<'static, str>;

/// A failure inside the library. The `Display` text of every variant is
/// its message, worded as upstream libblkio words it.
///
/// The type is two words (`Result<(), Error>` comes back in registers, so
/// that the request path's matches on it fold away): the variants a wait
/// returns in normal operation carry no heap data, every other variant
/// boxes its message.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A wait's timeout ran out before enough completions arrived
    /// (`ETIME`).
    #[error("{}", .0.text())]
    TimedOut(Timeout),
    /// A signal interrupted a wait or a system call (`EINTR`).
    #[error("{INTERRUPTED}")]
    Interrupted,
    /// Nothing can be done now; trying again later may succeed (`EAGAIN`).
    #[error("{WOULD_BLOCK}")]
    WouldBlock,
    /// Any other failed system call; the errno is the OS error's.
    #[error("{}", .0.message)]
    Os(#[source] Box<OsError>),
    /// The device or the transport to it failed or broke its protocol: a
    /// malformed vhost-user reply, a virtqueue the device corrupted, a
    /// register that does not read back (`EIO`). When a system call on the
    /// transport failed, its OS error is kept as the source.
    #[error("{}", .0.message)]
    Device(#[source] Box<DeviceError>),
    /// An argument or property value is not acceptable (`EINVAL`).
    #[error("{0}")]
    InvalidArgument(Box<Message>),
    /// No such driver, property, queue or path (`ENOENT`).
    #[error("{0}")]
    NotFound(Box<Message>),
    /// A property accessed with another type than its own (`ENOTTY`).
    #[error("{0}")]
    WrongType(Box<Message>),
    /// A read-only property was written (`EACCES`).
    #[error("{0}")]
    ReadOnly(Box<Message>),
    /// The call needs a connected instance (`ENODEV`).
    #[error("{0}")]
    NotConnected(Box<Message>),
    /// The instance is in a state that does not allow the call, or the
    /// resource is in use (`EBUSY`).
    #[error("{0}")]
    BadState(Box<Message>),
    /// The driver or the device cannot do this (`ENOTSUP`).
    #[error("{0}")]
    NotSupported(Box<Message>),
    /// Any other errno with its message (`EROFS`, `ENOSPC`, `EOVERFLOW`,
    /// ...).
    #[error("{}", .0.message)]
    Other(Box<OtherError>),
}

/// Which timeout ran out: the two texts of [`Error::TimedOut`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Timeout {
    /// The kernel's: `io_uring_enter` returned `ETIME`.
    Os,
    /// The library's own wait (the virtio-blk queues' `ppoll`).
    Wait,
}

impl Timeout {
    /// The message.
    pub fn text(self) -> &'static str {
        match self {
            Timeout::Os => TIMER_EXPIRED,
            Timeout::Wait => "Timed out",
        }
    }
}

/// The payload of [`Error::Os`].
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct OsError {
    /// What the operating system reported.
    #[source]
    pub err: io::Error,
    /// Its text, `"<strerror> (os error N)"` or `"<what>: <strerror> ..."`.
    pub message: Message,
}

/// The payload of [`Error::Device`].
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct DeviceError {
    /// What went wrong.
    pub message: Message,
    /// The OS error behind it, if any.
    #[source]
    pub err: Option<io::Error>,
}

/// The payload of [`Error::Other`].
#[derive(Debug)]
pub struct OtherError {
    /// The positive errno value.
    pub errno: i32,
    /// The message.
    pub message: Message,
}

const INTERRUPTED: &str = "Interrupted system call (os error 4)";
const WOULD_BLOCK: &str = "Resource temporarily unavailable (os error 11)";
const TIMER_EXPIRED: &str = "Timer expired (os error 62)";

/// Result type of the library's internals.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// The variant for `errno` (positive) with `msg` as its message.
    ///
    /// `Error::new(e, m).errno() == e` and `.message() == m` for every `e`
    /// and `m` (an `ETIME`, `EINTR` or `EAGAIN` with another text than
    /// their variant's is an [`Error::Other`]).
    pub fn new(errno: i32, msg: impl Into<Message>) -> Self {
        let msg = msg.into();
        match errno {
            libc::ETIME if msg == TIMER_EXPIRED => Error::TimedOut(Timeout::Os),
            libc::ETIME if msg == Timeout::Wait.text() => Error::TimedOut(Timeout::Wait),
            libc::EINTR if msg == INTERRUPTED => Error::Interrupted,
            libc::EAGAIN if msg == WOULD_BLOCK => Error::WouldBlock,
            libc::EIO => Error::device(msg),
            libc::EINVAL => Error::InvalidArgument(Box::new(msg)),
            libc::ENOENT => Error::NotFound(Box::new(msg)),
            libc::ENOTTY => Error::WrongType(Box::new(msg)),
            libc::EACCES => Error::ReadOnly(Box::new(msg)),
            libc::ENODEV => Error::NotConnected(Box::new(msg)),
            libc::EBUSY => Error::BadState(Box::new(msg)),
            libc::ENOTSUP => Error::NotSupported(Box::new(msg)),
            errno => Error::Other(Box::new(OtherError {
                errno,
                message: msg,
            })),
        }
    }

    /// `EINVAL` with a message.
    pub fn invalid(msg: impl Into<Message>) -> Self {
        Error::InvalidArgument(Box::new(msg.into()))
    }

    /// A device or transport failure (`EIO`) without an OS error.
    pub fn device(msg: impl Into<Message>) -> Self {
        Error::Device(Box::new(DeviceError {
            message: msg.into(),
            err: None,
        }))
    }

    /// A device or transport failure (`EIO`) caused by the OS error `err`.
    pub fn transport(msg: impl Into<Message>, err: io::Error) -> Self {
        Error::Device(Box::new(DeviceError {
            message: msg.into(),
            err: Some(err),
        }))
    }

    /// This error reported as a device failure with `msg` (`EIO`),
    /// keeping the OS error behind it, if any.
    pub fn into_device(self, msg: impl Into<Message>) -> Self {
        match self.into_parts().2 {
            Some(err) => Error::transport(msg, err),
            None => Error::device(msg),
        }
    }

    /// The driver or device cannot do this (`ENOTSUP`).
    pub fn not_supported(msg: impl Into<Message>) -> Self {
        Error::NotSupported(Box::new(msg.into()))
    }

    /// No such driver, property, queue or path (`ENOENT`).
    pub fn not_found(msg: impl Into<Message>) -> Self {
        Error::NotFound(Box::new(msg.into()))
    }

    /// A property accessed with another type than its own (`ENOTTY`).
    pub fn wrong_type(msg: impl Into<Message>) -> Self {
        Error::WrongType(Box::new(msg.into()))
    }

    /// A read-only property was written (`EACCES`).
    pub fn read_only(msg: impl Into<Message>) -> Self {
        Error::ReadOnly(Box::new(msg.into()))
    }

    /// The call is not allowed in this state, or the resource is in use
    /// (`EBUSY`).
    pub fn bad_state(msg: impl Into<Message>) -> Self {
        Error::BadState(Box::new(msg.into()))
    }

    /// An OS error, worded like upstream: `"<strerror> (os error N)"`.
    /// `EINTR`, `EAGAIN` and `ETIME` become [`Error::Interrupted`],
    /// [`Error::WouldBlock`] and [`Error::TimedOut`].
    ///
    /// The errors a wait can return in normal operation allocate nothing,
    /// so that the request path never allocates (tests/alloc_free.rs) even
    /// when `io_uring_enter` is interrupted and retried.
    pub fn os(err: io::Error) -> Self {
        match err.raw_os_error() {
            Some(libc::EINTR) => Error::Interrupted,
            Some(libc::EAGAIN) => Error::WouldBlock,
            Some(libc::ETIME) => Error::TimedOut(Timeout::Os),
            errno => {
                let message: Message = match errno.and_then(static_os_message) {
                    Some(msg) => msg.into(),
                    None => err.to_string().into(),
                };
                Self::os_with_message(err, message)
            }
        }
    }

    /// The OS error `err` with its own message (e.g. `"<what>: <err>"`);
    /// an `io::Error` without an OS errno is a [`Error::Device`] failure
    /// (`EIO`). `EINTR`, `EAGAIN` and `ETIME` with another text than their
    /// variant's stay [`Error::Os`].
    pub fn os_with_message(err: io::Error, message: impl Into<Message>) -> Self {
        let message = message.into();
        match err.raw_os_error() {
            None => Error::transport(message, err),
            Some(_) => Error::Os(Box::new(OsError { err, message })),
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
        Error::NotConnected(Box::new("Device must be connected".into()))
    }

    /// "Device must be started" (`EBUSY`).
    pub fn not_started() -> Self {
        Error::BadState(Box::new("Device must be started".into()))
    }

    /// The positive errno value the C API returns (negated) for this
    /// error: the one place where variants become errno numbers.
    pub fn errno(&self) -> i32 {
        match self {
            Error::TimedOut(_) => libc::ETIME,
            Error::Interrupted => libc::EINTR,
            Error::WouldBlock => libc::EAGAIN,
            Error::Os(e) => e.err.raw_os_error().unwrap_or(libc::EIO),
            Error::Device(_) => libc::EIO,
            Error::InvalidArgument(_) => libc::EINVAL,
            Error::NotFound(_) => libc::ENOENT,
            Error::WrongType(_) => libc::ENOTTY,
            Error::ReadOnly(_) => libc::EACCES,
            Error::NotConnected(_) => libc::ENODEV,
            Error::BadState(_) => libc::EBUSY,
            Error::NotSupported(_) => libc::ENOTSUP,
            Error::Other(e) => e.errno,
        }
    }

    /// The message (the `Display` text, without allocating).
    pub fn message(&self) -> &str {
        match self {
            Error::TimedOut(t) => t.text(),
            Error::Interrupted => INTERRUPTED,
            Error::WouldBlock => WOULD_BLOCK,
            Error::Os(e) => &e.message,
            Error::Device(e) => &e.message,
            Error::Other(e) => &e.message,
            Error::InvalidArgument(m)
            | Error::NotFound(m)
            | Error::WrongType(m)
            | Error::ReadOnly(m)
            | Error::NotConnected(m)
            | Error::BadState(m)
            | Error::NotSupported(m) => m,
        }
    }

    /// The errno, the message and the OS error behind it, if any (for the
    /// public API's error, which keeps all three).
    pub fn into_parts(self) -> (i32, Message, Option<io::Error>) {
        let errno = self.errno();
        match self {
            Error::TimedOut(t) => (errno, t.text().into(), None),
            Error::Interrupted => (errno, INTERRUPTED.into(), None),
            Error::WouldBlock => (errno, WOULD_BLOCK.into(), None),
            Error::Os(e) => (errno, e.message, Some(e.err)),
            Error::Device(e) => (errno, e.message, e.err),
            Error::Other(e) => (errno, e.message, None),
            Error::InvalidArgument(m)
            | Error::NotFound(m)
            | Error::WrongType(m)
            | Error::ReadOnly(m)
            | Error::NotConnected(m)
            | Error::BadState(m)
            | Error::NotSupported(m) => (errno, *m, None),
        }
    }
}

/// `io::Error`'s wording of the errors of a wait, without allocating.
fn static_os_message(errno: i32) -> Option<&'static str> {
    Some(match errno {
        libc::EINTR => INTERRUPTED,
        libc::EAGAIN => WOULD_BLOCK,
        libc::EBUSY => "Device or resource busy (os error 16)",
        libc::ETIME => TIMER_EXPIRED,
        _ => return None,
    })
}

impl From<io::Error> for Error {
    fn from(err: io::Error) -> Self {
        Error::os(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_errors_use_upstream_wording() {
        let e = Error::from_errno(libc::ENOENT);
        assert_eq!(e.errno(), libc::ENOENT);
        assert_eq!(e.message(), "No such file or directory (os error 2)");
        assert_eq!(e.to_string(), e.message());
        let e = Error::from_errno(libc::ETIME);
        assert!(matches!(e, Error::TimedOut(_)), "{e:?}");
        assert_eq!(e.message(), "Timer expired (os error 62)");
        assert!(matches!(Error::from_errno(libc::EINTR), Error::Interrupted));
        assert!(matches!(Error::from_errno(libc::EAGAIN), Error::WouldBlock));
    }

    #[test]
    fn static_texts_match_the_os_wording() {
        for errno in [libc::EINTR, libc::EAGAIN, libc::EBUSY, libc::ETIME] {
            let text = io::Error::from_raw_os_error(errno).to_string();
            assert_eq!(static_os_message(errno), Some(text.as_str()));
            assert_eq!(Error::from_errno(errno).message(), text);
        }
    }

    #[test]
    fn every_errno_survives_the_round_trip() {
        for errno in 1..=133 {
            let e = Error::new(errno, "text");
            assert_eq!((e.errno(), e.message()), (errno, "text"));
            assert_eq!(e.to_string(), "text");
            assert_eq!(Error::from_errno(errno).errno(), errno);
        }
    }

    #[test]
    fn os_and_transport_errors_keep_their_source() {
        use std::error::Error as _;
        let e = Error::from_errno(libc::ECONNREFUSED);
        let src = e.source().expect("os error source");
        assert_eq!(src.to_string(), e.message());
        let e = Error::transport("send failed", io::Error::from_raw_os_error(libc::EPIPE));
        assert_eq!((e.errno(), e.message()), (libc::EIO, "send failed"));
        assert!(e.source().is_some());
        let (errno, msg, err) = e.into_parts();
        assert_eq!((errno, &*msg), (libc::EIO, "send failed"));
        assert_eq!(err.and_then(|e| e.raw_os_error()), Some(libc::EPIPE));
        assert!(Error::invalid("x").source().is_none());
        let e = Error::from_errno(libc::ENOENT).into_device("open failed");
        assert_eq!((e.errno(), e.message()), (libc::EIO, "open failed"));
        let (_, _, err) = e.into_parts();
        assert_eq!(err.and_then(|e| e.raw_os_error()), Some(libc::ENOENT));
    }

    #[test]
    fn two_words() {
        assert_eq!(
            std::mem::size_of::<Result<()>>(),
            2 * std::mem::size_of::<usize>()
        );
    }
}
