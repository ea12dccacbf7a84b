//! Requests and completions as the queues see them.
//!
//! A [`Request`] is a small `Copy` value built by the C API from the
//! arguments of a `blkioq_*` call. [`Completion`] is the C ABI's
//! `struct blkio_completion`, written straight into the caller's array.

pub use super::flags::{REQ_FUA, REQ_NO_FALLBACK, REQ_NO_UNMAP};
use std::ffi::{c_char, c_int, c_void, CStr};

const REQ_ALL: u32 = REQ_FUA | REQ_NO_UNMAP | REQ_NO_FALLBACK;

/// Whether `start` and `start + len` both fit in an `i64`, in one test.
///
/// Every driver needs this: the kernel takes file offsets as signed 64-bit
/// values, and to `preadv2`/`pwritev2` (and io_uring) an offset of -1 means
/// "the file's current position", so a `start` of 2^64-1 passed on would
/// read or write at some unrelated place. With both operands below 2^63 the
/// sum cannot wrap, and its top bit is clear exactly when it fits.
#[inline(always)]
pub fn range_fits(start: u64, len: u64) -> bool {
    (start | len | start.wrapping_add(len)) >> 63 == 0
}

/// `struct blkio_completion` (32 bytes, docs/contract/abi.md §2.2).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Completion {
    pub user_data: *mut c_void,
    pub error_msg: *const c_char,
    pub ret: c_int,
    pub reserved_: [u8; 12],
}

// SAFETY: `user_data` is an opaque value the library never dereferences
// and `error_msg` points to a static string; backlogged completions move
// with their queue.
unsafe impl Send for Completion {}

impl Completion {
    /// A completion with `ret` (0 or negative errno) and an optional message.
    #[inline]
    pub fn new(user_data: usize, ret: i32, msg: Option<&'static CStr>) -> Self {
        Completion {
            user_data: user_data as *mut c_void,
            error_msg: msg.map_or(std::ptr::null(), CStr::as_ptr),
            ret,
            reserved_: [0; 12],
        }
    }
}

/// `struct blkio_zone` (64 bytes, docs/contract/abi.md §2.2).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Zone {
    pub start: u64,
    pub len: u64,
    pub capacity: u64,
    pub write_pointer: u64,
    pub zone_type: u8,
    pub zone_state: u8,
    pub reset: u8,
    pub reserved_: [u8; 29],
}

/// The zone management operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ZoneOp {
    Open,
    Close,
    Finish,
    Reset,
}

/// What a request does. Buffers are the caller's and stay valid until the
/// request completes (the API contract).
#[derive(Clone, Copy, Debug)]
pub enum Op {
    Read {
        buf: *mut u8,
        len: usize,
    },
    Write {
        buf: *const u8,
        len: usize,
    },
    Readv {
        iov: *const libc::iovec,
        iovcnt: u32,
    },
    Writev {
        iov: *const libc::iovec,
        iovcnt: u32,
    },
    WriteZeroes {
        len: u64,
    },
    Discard {
        len: u64,
    },
    Flush,
    ReportZones {
        zones: *mut Zone,
        nr_zones: u32,
    },
    /// One zone (`start` is its offset) or, with `all`, every zone.
    ZoneMgmt {
        op: ZoneOp,
        all: bool,
    },
}

impl Op {
    /// Flags a request of this type accepts (docs/contract/requests.md §2).
    #[inline]
    fn allowed_flags(&self) -> u32 {
        match self {
            Op::Write { .. } | Op::Writev { .. } => REQ_FUA,
            Op::WriteZeroes { .. } => REQ_ALL,
            _ => 0,
        }
    }

    /// The application's iovec array of readv/writev (empty otherwise).
    ///
    /// # Safety
    /// A non-NULL `iov` of readv/writev points to `iovcnt` iovecs that stay
    /// valid and unchanged while the returned slice is used: what the
    /// application promises for a request it submitted, until it completes.
    pub unsafe fn iovecs(&self) -> &[libc::iovec] {
        match *self {
            Op::Readv { iov, iovcnt } | Op::Writev { iov, iovcnt }
                if !iov.is_null() && iovcnt > 0 =>
            {
                // SAFETY: `iov` is non-NULL and points to `iovcnt` valid
                // iovecs (this function's contract).
                unsafe { std::slice::from_raw_parts(iov, iovcnt as usize) }
            }
            _ => &[],
        }
    }

    /// Whether the request changes the device's contents.
    pub fn is_modifying(&self) -> bool {
        !matches!(
            self,
            Op::Read { .. } | Op::Readv { .. } | Op::Flush | Op::ReportZones { .. }
        )
    }

    /// Whether this is a data transfer (read/write/readv/writev).
    pub fn is_rw(&self) -> bool {
        matches!(
            self,
            Op::Read { .. } | Op::Write { .. } | Op::Readv { .. } | Op::Writev { .. }
        )
    }
}

/// A plain read or write (`blkioq_read` / `blkioq_write`) that passed the
/// call-time checks: the request path's form of [`Op::Read`] /
/// [`Op::Write`], passed around as scalars rather than as a [`Request`]
/// so that the common case needs no request type to match.
#[derive(Clone, Copy, Debug)]
pub struct Transfer {
    pub write: bool,
    /// Written to by a read, only read by a write.
    pub buf: *mut u8,
    pub len: usize,
    pub start: u64,
    pub user_data: usize,
    /// 0, or `REQ_FUA` on a write.
    pub flags: u32,
}

impl Transfer {
    /// The same request in its general form.
    #[inline]
    pub fn request(&self) -> Request {
        let (buf, len) = (self.buf, self.len);
        Request {
            op: if self.write {
                Op::Write {
                    buf: buf.cast_const(),
                    len,
                }
            } else {
                Op::Read { buf, len }
            },
            start: self.start,
            user_data: self.user_data,
            flags: self.flags,
        }
    }
}

/// A request waiting for, or placed in, a queue.
#[derive(Clone, Copy, Debug)]
pub struct Request {
    pub op: Op,
    /// Byte offset on the device (zone offset for zone requests).
    pub start: u64,
    pub user_data: usize,
    pub flags: u32,
}

// SAFETY: the raw pointers in `Op` are the application's buffers; the API
// contract makes the application keep them valid until completion, and a
// queue is used by one thread at a time.
unsafe impl Send for Request {}

impl Request {
    /// The call-time checks: [`Request::check_flags`], then
    /// [`Request::check_pointers`], then [`Request::check_range`]. The
    /// common valid case costs a mask test, a NULL test and a range test;
    /// the messages are worked out only on failure.
    #[inline]
    pub fn check(&self) -> Result<(), &'static CStr> {
        // `range_ok` comes last: for readv/writev it reads the iovecs,
        // which `null_buffer` has made sure exist.
        if self.flags & !self.op.allowed_flags() == 0 && !self.null_buffer() && self.range_ok() {
            Ok(())
        } else {
            self.check_failed()
        }
    }

    #[cold]
    fn check_failed(&self) -> Result<(), &'static CStr> {
        self.check_flags()
            .and_then(|()| self.check_pointers())
            .and_then(|()| self.check_range())
    }

    /// The range rule every driver shares: `start`, and `start` plus the
    /// data length (for readv/writev the sum of the iovec lengths), must
    /// fit in a signed 64-bit integer. Call after
    /// [`Request::check_pointers`] succeeded.
    pub fn check_range(&self) -> Result<(), &'static CStr> {
        if self.start > i64::MAX as u64 {
            Err(c"start must fit in a signed 64-bit integer")
        } else if !self.range_ok() {
            Err(c"start + len must fit in a signed 64-bit integer")
        } else {
            Ok(())
        }
    }

    /// [`range_fits`] for this request's start and data length.
    #[inline]
    fn range_ok(&self) -> bool {
        let len = match self.op {
            Op::Read { len, .. } | Op::Write { len, .. } => len as u64,
            Op::WriteZeroes { len } | Op::Discard { len } => len,
            Op::Readv { .. } | Op::Writev { .. } => {
                // SAFETY: a request is checked while it is being submitted,
                // when its iovec array is valid (Queue::submit's contract).
                match unsafe { self.op.iovecs() }
                    .iter()
                    .try_fold(0u64, |sum, v| sum.checked_add(v.iov_len as u64))
                {
                    Some(len) => len,
                    None => return false,
                }
            }
            Op::Flush | Op::ReportZones { .. } | Op::ZoneMgmt { .. } => 0,
        };
        range_fits(self.start, len)
    }

    /// The call-time flag check of docs/contract/requests.md §2: unknown bits first, then
    /// the lowest known flag this request type does not allow.
    pub fn check_flags(&self) -> Result<(), &'static CStr> {
        if self.flags & !REQ_ALL != 0 {
            return Err(c"unsupported bits in request flags");
        }
        let bad = self.flags & !self.op.allowed_flags();
        if bad & REQ_FUA != 0 {
            Err(c"BLKIO_REQ_FUA is invalid for this request type")
        } else if bad & REQ_NO_UNMAP != 0 {
            Err(c"BLKIO_REQ_NO_UNMAP is invalid for this request type")
        } else if bad & REQ_NO_FALLBACK != 0 {
            Err(c"BLKIO_REQ_NO_FALLBACK is invalid for this request type")
        } else {
            Ok(())
        }
    }

    /// A NULL data pointer where data is expected (upstream would crash).
    pub fn check_pointers(&self) -> Result<(), &'static CStr> {
        if self.null_buffer() {
            Err(c"buffer must be non-NULL")
        } else {
            Ok(())
        }
    }

    /// A NULL data pointer with a non-zero length.
    #[inline]
    fn null_buffer(&self) -> bool {
        match self.op {
            Op::Read { buf, len } => buf.is_null() && len > 0,
            Op::Write { buf, len } => buf.is_null() && len > 0,
            Op::Readv { iov, iovcnt } | Op::Writev { iov, iovcnt } => iov.is_null() && iovcnt > 0,
            Op::ReportZones { zones, nr_zones } => zones.is_null() && nr_zones > 0,
            _ => false,
        }
    }

    /// A plain read or write in its request-path form.
    #[inline(always)]
    pub fn transfer(&self) -> Option<Transfer> {
        let (write, buf, len) = match self.op {
            Op::Read { buf, len } => (false, buf, len),
            Op::Write { buf, len } => (true, buf.cast_mut(), len),
            _ => return None,
        };
        Some(Transfer {
            write,
            buf,
            len,
            start: self.start,
            user_data: self.user_data,
            flags: self.flags,
        })
    }

    #[inline]
    pub fn fua(&self) -> bool {
        self.flags & REQ_FUA != 0
    }

    /// Total data length of a read/write type request.
    pub fn data_len(&self) -> u64 {
        match self.op {
            Op::Read { len, .. } | Op::Write { len, .. } => len as u64,
            Op::Readv { .. } | Op::Writev { .. } => {
                // SAFETY: a request's iovec array stays valid until it
                // completes (Queue::submit's contract); this is only asked
                // of requests in flight.
                unsafe { self.op.iovecs() }
                    .iter()
                    .map(|v| v.iov_len as u64)
                    .sum()
            }
            Op::WriteZeroes { len } | Op::Discard { len } => len,
            _ => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(op: Op, flags: u32) -> Request {
        Request {
            op,
            start: 0,
            user_data: 0,
            flags,
        }
    }

    #[test]
    fn flag_rules() {
        let read = Op::Read {
            buf: std::ptr::null_mut(),
            len: 0,
        };
        assert_eq!(
            req(read, 8).check_flags(),
            Err(c"unsupported bits in request flags")
        );
        assert_eq!(
            req(read, 8 | REQ_FUA).check_flags(),
            Err(c"unsupported bits in request flags")
        );
        assert_eq!(
            req(read, REQ_FUA).check_flags(),
            Err(c"BLKIO_REQ_FUA is invalid for this request type")
        );
        assert_eq!(
            req(Op::Flush, REQ_NO_UNMAP | REQ_NO_FALLBACK).check_flags(),
            Err(c"BLKIO_REQ_NO_UNMAP is invalid for this request type")
        );
        assert_eq!(
            req(Op::WriteZeroes { len: 1 }, REQ_ALL).check_flags(),
            Ok(())
        );
        let write = Op::Write {
            buf: std::ptr::null(),
            len: 0,
        };
        assert_eq!(req(write, REQ_FUA).check_flags(), Ok(()));
        assert_eq!(
            req(write, REQ_NO_FALLBACK).check_flags(),
            Err(c"BLKIO_REQ_NO_FALLBACK is invalid for this request type")
        );
    }

    #[test]
    fn range_rule() {
        let read = |start, len| {
            req(
                Op::Read {
                    buf: 8 as *mut u8,
                    len,
                },
                0,
            )
            .with_start(start)
        };
        let max = i64::MAX as u64;
        assert_eq!(read(0, 512).check(), Ok(()));
        assert_eq!(read(max - 512, 512).check(), Ok(()));
        assert_eq!(read(max, 0).check(), Ok(()));
        let start_msg = Err(c"start must fit in a signed 64-bit integer");
        let sum_msg = Err(c"start + len must fit in a signed 64-bit integer");
        assert_eq!(read(u64::MAX, 512).check(), start_msg);
        assert_eq!(read(max + 1, 0).check(), start_msg);
        assert_eq!(read(max - 511, 512).check(), sum_msg);
        assert_eq!(read(0, usize::MAX).check(), sum_msg);
        assert_eq!(read(1, 1 << 63).check(), sum_msg);
        let zeroes = req(Op::WriteZeroes { len: u64::MAX }, 0);
        assert_eq!(zeroes.check(), sum_msg);
        let discard = req(Op::Discard { len: 4096 }, 0).with_start(1 << 63);
        assert_eq!(discard.check(), start_msg);
        // iovec lengths whose sum wraps around u64.
        let iov = [
            libc::iovec {
                iov_base: 8 as *mut libc::c_void,
                iov_len: usize::MAX,
            },
            libc::iovec {
                iov_base: 8 as *mut libc::c_void,
                iov_len: 2,
            },
        ];
        let readv = req(
            Op::Readv {
                iov: iov.as_ptr(),
                iovcnt: 2,
            },
            0,
        );
        assert_eq!(readv.check(), sum_msg);
        // Flags are still reported first.
        assert_eq!(
            read(u64::MAX, 512).with_flags(REQ_FUA).check(),
            Err(c"BLKIO_REQ_FUA is invalid for this request type")
        );
        assert!(range_fits(max, 0));
        assert!(!range_fits(max, 1));
        assert!(!range_fits(u64::MAX, 1));
    }

    impl Request {
        fn with_start(mut self, start: u64) -> Self {
            self.start = start;
            self
        }
        fn with_flags(mut self, flags: u32) -> Self {
            self.flags = flags;
            self
        }
    }

    #[test]
    fn abi_sizes() {
        assert_eq!(std::mem::size_of::<Completion>(), 32);
        assert_eq!(std::mem::size_of::<Zone>(), 64);
    }
}
