//! I/O virtual addresses for the transports whose device sees IOVAs rather
//! than process addresses (vhost-vdpa, VFIO-PCI; docs/contract/virtio.md §8).
//!
//! [`IovaTable`] records which process range is mapped at which IOVA, picks
//! IOVAs first-fit inside the device's allowed ranges, and translates
//! buffer addresses for the queues. It is shared (an `Arc`) between the
//! transport, which maps and unmaps regions, and every queue, which
//! translates: `blkio_map_mem_region` may run on another thread while
//! queues submit requests (docs/contract/abi.md §5), so the list sits behind an `RwLock`
//! (queues only take the read lock).

use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::transport::DeviceAddress;
use crate::core::{Error, Result};

/// One mapped process range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mapping {
    pub addr: usize,
    pub len: usize,
    pub iova: u64,
}

impl Mapping {
    fn contains(&self, addr: usize, len: usize) -> bool {
        addr >= self.addr && addr - self.addr <= self.len && len <= self.len - (addr - self.addr)
    }

    fn overlaps(&self, addr: usize, len: usize) -> bool {
        addr < self.addr + self.len && self.addr < addr + len
    }
}

/// An inclusive range of IOVAs the device accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IovaRange {
    pub first: u64,
    pub last: u64,
}

/// The mappings of one device, sorted by IOVA.
#[derive(Clone, Debug, Default)]
pub struct IovaTable(Arc<RwLock<Vec<Mapping>>>);

impl IovaTable {
    fn read(&self) -> RwLockReadGuard<'_, Vec<Mapping>> {
        // A panic while holding the lock cannot leave the list half
        // updated (every update is a single insert or retain).
        self.0.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Vec<Mapping>> {
        self.0.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Records `[addr, addr + len)` at the first IOVA, aligned to `align`
    /// (a power of two), where `len` bytes fit inside one of `ranges` without
    /// touching another mapping. With `skip_zero_page` a range starting at
    /// IOVA 0 loses its first `align` bytes (VFIO: IOVA 0 is left unused).
    ///
    /// Fails with -EIO "Address 0x… is already mapped" when the process
    /// range overlaps a mapped one, and -ENOSPC when no IOVA space is left.
    pub fn reserve(
        &self,
        addr: usize,
        len: usize,
        ranges: &[IovaRange],
        align: u64,
        skip_zero_page: bool,
    ) -> Result<Mapping> {
        let mut list = self.write();
        if list.iter().any(|m| m.overlaps(addr, len)) {
            return Err(Error::device(format!(
                "Address {addr:#x} is already mapped"
            )));
        }
        let size = (len as u64).next_multiple_of(align);
        let iova = ranges
            .iter()
            .find_map(|r| first_fit(&list, *r, size, align, skip_zero_page))
            .ok_or_else(|| Error::new(libc::ENOSPC, "No free IOVA space for memory region"))?;
        let m = Mapping { addr, len, iova };
        let at = list.partition_point(|x| x.iova < iova);
        list.insert(at, m);
        Ok(m)
    }

    /// Removes and returns every mapping that intersects `[addr, addr+len)`.
    pub fn remove(&self, addr: usize, len: usize) -> Vec<Mapping> {
        let mut list = self.write();
        let gone: Vec<Mapping> = list
            .iter()
            .filter(|m| m.overlaps(addr, len))
            .copied()
            .collect();
        list.retain(|m| !m.overlaps(addr, len));
        gone
    }
}

/// The lowest `align`-aligned IOVA in `r` where `size` bytes fit between
/// the mappings of `list` (sorted by IOVA).
fn first_fit(
    list: &[Mapping],
    r: IovaRange,
    size: u64,
    align: u64,
    skip_zero: bool,
) -> Option<u64> {
    let low = if skip_zero && r.first == 0 {
        align
    } else {
        r.first
    };
    let mut start = low.checked_next_multiple_of(align)?;
    for m in list {
        let end = m.iova.checked_add((m.len as u64).next_multiple_of(align))?;
        if end <= start {
            continue;
        }
        if m.iova >= start.checked_add(size)? {
            break;
        }
        start = end.checked_next_multiple_of(align)?;
    }
    let last = start.checked_add(size.checked_sub(1)?)?;
    (last <= r.last).then_some(start)
}

impl DeviceAddress for IovaTable {
    fn translate(&self, addr: usize, len: usize) -> Option<u64> {
        self.read()
            .iter()
            .find(|m| m.contains(addr, len))
            .map(|m| m.iova + (addr - m.addr) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: IovaRange = IovaRange {
        first: 0,
        last: u64::MAX,
    };

    #[test]
    fn first_fit_fills_holes_and_translates() {
        let t = IovaTable::default();
        let a = t.reserve(0x10_0000, 0x4000, &[ALL], 0x1000, false).unwrap();
        let b = t
            .reserve(0x20_0000, 0x10000, &[ALL], 0x1000, false)
            .unwrap();
        assert_eq!((a.iova, b.iova), (0, 0x4000));
        assert_eq!(t.translate(0x20_0010, 16), Some(0x4010));
        assert_eq!(t.translate(0x20_fff0, 16), Some(0x13ff0));
        // Crossing the region's end, or outside all regions: untranslatable.
        assert_eq!(t.translate(0x20_fff0, 17), None);
        assert_eq!(t.translate(0x30_0000, 1), None);

        // Removing the first mapping leaves a 16 KiB hole that a smaller
        // region fills; a bigger one goes after the last mapping.
        assert_eq!(t.remove(0x10_0000, 0x4000), vec![a]);
        let c = t.reserve(0x40_0000, 0x2000, &[ALL], 0x1000, false).unwrap();
        let d = t.reserve(0x50_0000, 0x8000, &[ALL], 0x1000, false).unwrap();
        assert_eq!((c.iova, d.iova), (0, 0x14000));
    }

    #[test]
    fn zero_page_ranges_and_overlaps() {
        let t = IovaTable::default();
        let ranges = [
            IovaRange {
                first: 0,
                last: 0x2fff,
            },
            IovaRange {
                first: 0x10_0000,
                last: 0x1f_ffff,
            },
        ];
        let a = t.reserve(0x1000, 0x2000, &ranges, 0x1000, true).unwrap();
        assert_eq!(a.iova, 0x1000);
        // Does not fit in the first range any more: goes to the second.
        let b = t.reserve(0x8000, 0x1000, &ranges, 0x1000, true).unwrap();
        assert_eq!(b.iova, 0x10_0000);
        let e = t
            .reserve(0x2000, 0x1000, &ranges, 0x1000, true)
            .unwrap_err();
        assert_eq!(
            (e.errno(), e.message()),
            (libc::EIO, "Address 0x2000 is already mapped")
        );
        let e = t
            .reserve(0x100_0000, 0x10_0000, &ranges, 0x1000, true)
            .unwrap_err();
        assert_eq!(e.errno(), libc::ENOSPC);
    }
}
