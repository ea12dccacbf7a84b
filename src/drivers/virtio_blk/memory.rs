//! The virtqueue memory block of an instance (docs/contract/virtio.md §3): one shared
//! memfd mapping holding, per queue, the ring and the request records.

use std::os::fd::{AsRawFd, OwnedFd};
use std::ptr::NonNull;

use super::record::RECORD_LEN;
use super::virtqueue::{packed, split};
use crate::core::region::MemRegion;
use memmap2::MmapRaw;

use crate::core::{sys, Error, Result};

/// Where the parts of one queue's block are (docs/contract/virtio.md §3.2). The
/// descriptors start at offset 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockLayout {
    /// Driver area: the split ring's available ring, or the packed ring's
    /// driver event suppression area.
    pub driver: usize,
    /// Device area: the used ring, or the device event suppression area.
    pub device: usize,
    /// Offset of the request records (33 bytes each, indexed by chain id).
    pub records: usize,
    /// Bytes per queue, a multiple of 16.
    pub size: usize,
}

impl BlockLayout {
    pub const fn new(queue_size: u16, packed: bool) -> BlockLayout {
        let (driver, device, end) = if packed {
            let l = packed::Layout::new(queue_size);
            (l.driver, l.device, l.end)
        } else {
            let l = split::Layout::new(queue_size);
            (l.avail, l.used, l.end)
        };
        BlockLayout {
            driver,
            device,
            records: end,
            size: (end + RECORD_LEN * queue_size as usize).next_multiple_of(16),
        }
    }
}

/// A zeroed, shared, fd-backed mapping (memfd "virtio-ring", close-on-exec)
/// that the device can map too. Queues keep it alive through an `Arc`.
pub struct QueueMemory {
    map: MmapRaw,
    fd: OwnedFd,
}

impl QueueMemory {
    pub fn new(len: usize) -> Result<QueueMemory> {
        let fd = sys::memfd(c"virtio-ring", len)?;
        let map = sys::map_shared(fd.as_raw_fd(), 0, len, false).map_err(Error::os)?;
        Ok(QueueMemory { map, fd })
    }

    /// The block as a memory region, for registration with the device.
    pub fn region(&self) -> MemRegion {
        MemRegion {
            addr: self.map.as_mut_ptr().cast(),
            len: self.map.len(),
            iova: 0,
            fd_offset: 0,
            fd: self.fd.as_raw_fd(),
            flags: 0,
        }
    }

    /// The address `offset` bytes into the block (`offset` < len).
    pub fn at(&self, offset: usize) -> NonNull<u8> {
        assert!(offset < self.map.len());
        // SAFETY: inside the mapping, whose address is not null.
        unsafe { NonNull::new_unchecked(self.map.as_mut_ptr().add(offset)) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_sizes_match_the_recording() {
        let l = BlockLayout::new(256, false);
        assert_eq!(
            (l.driver, l.device, l.records, l.size),
            (4096, 4616, 6672, 15120)
        );
        assert_eq!(BlockLayout::new(4, false).size, 256);
        // Packed: 16 N descriptor bytes, 4 + 4 event bytes, the records.
        let p = BlockLayout::new(256, true);
        assert_eq!(
            (p.driver, p.device, p.records, p.size),
            (4096, 4100, 4104, 12560)
        );
    }

    #[test]
    fn memory_is_zeroed_and_fd_backed() {
        let m = QueueMemory::new(15120).unwrap();
        let r = m.region();
        assert_eq!(r.len, 15120);
        assert!(r.fd >= 0);
        // SAFETY: inside the fresh mapping.
        assert_eq!(unsafe { m.at(15119).as_ptr().read() }, 0);
        let link = std::fs::read_link(format!("/proc/self/fd/{}", r.fd)).unwrap();
        assert!(link.to_string_lossy().contains("virtio-ring"));
    }
}
