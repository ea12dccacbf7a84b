//! The thread-local message of `blkio_get_error_msg()` (docs/contract/abi.md §4.2): one
//! 256-byte buffer per thread, empty at thread start, same address on every
//! call, written only by failing calls.

use std::cell::UnsafeCell;
use std::ffi::{c_char, c_int};

use crate::core::Error;

const MSG_CAPACITY: usize = 256;

thread_local! {
    static MSG: UnsafeCell<[u8; MSG_CAPACITY]> = const { UnsafeCell::new([0; MSG_CAPACITY]) };
}

/// Stores `msg`, cut to 255 bytes and NUL-terminated.
pub fn set_msg(msg: &str) {
    MSG.with(|buf| {
        // SAFETY: the buffer belongs to this thread; the only other access
        // is the application reading it between API calls.
        let buf = unsafe { &mut *buf.get() };
        let n = msg.len().min(MSG_CAPACITY - 1);
        buf[..n].copy_from_slice(&msg.as_bytes()[..n]);
        buf[n] = 0;
    });
}

/// The calling thread's message buffer.
pub fn msg_ptr() -> *const c_char {
    MSG.with(|buf| buf.get().cast::<c_char>().cast_const())
}

/// Records `err` and returns its negative errno.
pub fn fail(err: Error) -> c_int {
    set_msg(err.message());
    -err.errno()
}

/// `-EINVAL` with `msg`, for bad arguments caught at the C boundary.
pub fn invalid(msg: &'static str) -> c_int {
    fail(Error::invalid(msg))
}

/// 0, or the recorded failure.
pub fn status(r: crate::core::Result<()>) -> c_int {
    match r {
        Ok(()) => 0,
        Err(e) => fail(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn current() -> String {
        // SAFETY: the buffer is always NUL-terminated.
        unsafe { std::ffi::CStr::from_ptr(msg_ptr()) }
            .to_string_lossy()
            .into_owned()
    }

    #[test]
    fn long_messages_are_cut_to_255_bytes() {
        let long = "x".repeat(300);
        set_msg(&long);
        assert_eq!(current(), long[..255]);
        set_msg("short");
        assert_eq!(current(), "short");
        let exact = "y".repeat(255);
        set_msg(&exact);
        assert_eq!(current(), exact);
    }
}
