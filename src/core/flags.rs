//! The request flags (`BLKIO_REQ_*`): one type, public as
//! `blkio::ReqFlags`, whose bits a [`Request`](super::request::Request)
//! carries. (Outside the files cbindgen reads: the C header has its own
//! `BLKIO_REQ_*` enum.)

use std::ops::BitOr;

/// Request flags (`BLKIO_REQ_*`), combined with `|`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ReqFlags(u32);

impl ReqFlags {
    /// No flags.
    pub const NONE: ReqFlags = ReqFlags(0);
    /// The written data is durable when the request completes (writes).
    pub const FUA: ReqFlags = ReqFlags(1 << 0);
    /// Write-zeroes must not deallocate the range.
    pub const NO_UNMAP: ReqFlags = ReqFlags(1 << 1);
    /// Write-zeroes fails rather than writing buffers of zeroes.
    pub const NO_FALLBACK: ReqFlags = ReqFlags(1 << 2);

    /// The flags with these bits, unknown ones included (a request with
    /// unknown bits completes with `-EINVAL`).
    pub const fn from_bits_retain(bits: u32) -> Self {
        ReqFlags(bits)
    }

    /// The bits, as the C API takes them.
    pub const fn bits(self) -> u32 {
        self.0
    }
}

impl BitOr for ReqFlags {
    type Output = ReqFlags;
    fn bitor(self, rhs: ReqFlags) -> ReqFlags {
        ReqFlags(self.0 | rhs.0)
    }
}

/// The bits of [`ReqFlags::FUA`].
pub const REQ_FUA: u32 = ReqFlags::FUA.bits();
/// The bits of [`ReqFlags::NO_UNMAP`].
pub const REQ_NO_UNMAP: u32 = ReqFlags::NO_UNMAP.bits();
/// The bits of [`ReqFlags::NO_FALLBACK`].
pub const REQ_NO_FALLBACK: u32 = ReqFlags::NO_FALLBACK.bits();
