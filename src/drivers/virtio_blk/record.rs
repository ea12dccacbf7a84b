//! The per-request record in queue memory (docs/contract/virtio.md §3.3): the
//! virtio-blk request header, the status byte the device writes, and the
//! discard / write-zeroes segment. 33 bytes, no padding, indexed by chain id.
//!
//! | Offset | Size | Content |
//! |---:|---:|---|
//! | 0 | 16 | header: type le32, reserved le32, sector le64 |
//! | 16 | 1 | status |
//! | 17 | 16 | segment: sector le64, num_sectors le32, flags le32 |

use std::ffi::CStr;
use std::ptr::NonNull;

use virtio_bindings::virtio_blk::{VIRTIO_BLK_S_IOERR, VIRTIO_BLK_S_OK, VIRTIO_BLK_S_UNSUPP};

pub const RECORD_LEN: usize = 33;
pub const HEADER_LEN: u32 = 16;
pub const STATUS_OFFSET: u64 = 16;
pub const SEGMENT_OFFSET: u64 = 17;
pub const SEGMENT_LEN: u32 = 16;

/// Written before a request is published, so a device that completes a
/// chain without writing the status cannot report success.
const STATUS_UNSET: u8 = 0xFF;

/// What goes into a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub kind: u32,
    pub sector: u64,
    /// (sector, num_sectors, flags) for discard and write zeroes.
    pub segment: Option<(u64, u32, u32)>,
}

/// The records of one queue.
pub struct Records {
    base: NonNull<u8>,
    count: usize,
}

// SAFETY: the memory belongs to the queue owning this value.
unsafe impl Send for Records {}

impl Records {
    /// # Safety
    ///
    /// `count` is a power of two; `base` points to `count` × [`RECORD_LEN`] bytes of queue memory that
    /// outlive this value and are shared only with the device.
    pub unsafe fn new(base: NonNull<u8>, count: usize) -> Records {
        debug_assert!(count.is_power_of_two());
        Records { base, count }
    }

    /// Record `id` modulo the (power of two) count; the fields are at
    /// fixed offsets below [`RECORD_LEN`].
    #[inline]
    fn record(&self, id: u16) -> *mut u8 {
        debug_assert!((id as usize) < self.count);
        let i = id as usize & (self.count - 1);
        // SAFETY: `i` < count (masked), inside the records area.
        unsafe { self.base.as_ptr().add(i * RECORD_LEN) }
    }

    /// Fills record `id` for a new request.
    /// The segment is written only for requests that have one: only
    /// their chains include it.
    #[inline]
    pub fn write(&mut self, id: u16, h: &Header) {
        let r = self.record(id);
        // SAFETY: unaligned writes at fixed offsets inside record `id`; the
        // chain is not published yet, so the device does not look at it.
        unsafe {
            // type and the reserved word in one store
            r.cast::<u64>().write_unaligned((h.kind as u64).to_le());
            r.add(8).cast::<u64>().write_unaligned(h.sector.to_le());
            r.add(16).write_volatile(STATUS_UNSET);
            if let Some((seg_sector, seg_num, seg_flags)) = h.segment {
                r.add(17).cast::<u64>().write_unaligned(seg_sector.to_le());
                r.add(25).cast::<u32>().write_unaligned(seg_num.to_le());
                r.add(29).cast::<u32>().write_unaligned(seg_flags.to_le());
            }
        }
    }

    /// The status byte of a used chain.
    #[inline]
    pub fn status(&self, id: u16) -> u8 {
        // SAFETY: inside record `id`; read after the used ring said so.
        unsafe { self.record(id).add(16).read_volatile() }
    }
}

/// Status byte → completion `ret` and `error_msg` (docs/contract/requests.md
/// §7.3): a status virtio-blk does not define says so.
pub fn status_to_ret(status: u8) -> (i32, Option<&'static CStr>) {
    match status as u32 {
        VIRTIO_BLK_S_OK => (0, None),
        VIRTIO_BLK_S_IOERR => (-libc::EIO, None),
        VIRTIO_BLK_S_UNSUPP => (-libc::ENOTSUP, None),
        _ => (-libc::EPROTO, Some(UNKNOWN_STATUS)),
    }
}

/// The `error_msg` of a status byte virtio-blk does not define.
pub const UNKNOWN_STATUS: &CStr = c"device returned an unknown virtio-blk status";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_and_status() {
        let mut mem = vec![0u8; RECORD_LEN * 2];
        let base = NonNull::new(mem.as_mut_ptr()).unwrap();
        // SAFETY: `mem` holds two records and outlives `r`.
        let mut r = unsafe { Records::new(base, 2) };
        r.write(
            1,
            &Header {
                kind: 13,
                sector: 0,
                segment: Some((0x0102030405060708, 0x11223344, 1)),
            },
        );
        assert_eq!(r.status(1), 0xFF);
        let rec = &mem[RECORD_LEN..];
        assert_eq!(&rec[0..4], &[13, 0, 0, 0]);
        assert_eq!(&rec[8..16], &[0; 8]);
        assert_eq!(&rec[17..25], &[8, 7, 6, 5, 4, 3, 2, 1]);
        assert_eq!(&rec[25..29], &[0x44, 0x33, 0x22, 0x11]);
        assert_eq!(&rec[29..33], &[1, 0, 0, 0]);
        assert_eq!(status_to_ret(0), (0, None));
        assert_eq!(status_to_ret(1), (-libc::EIO, None));
        assert_eq!(status_to_ret(2), (-libc::ENOTSUP, None));
        for unknown in [3, 0x7F, 0xFF] {
            assert_eq!(
                status_to_ret(unknown),
                (-libc::EPROTO, Some(UNKNOWN_STATUS))
            );
        }
    }
}
