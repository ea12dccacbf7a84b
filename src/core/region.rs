//! Memory regions: allocation through memfd, and the registries of
//! allocated and mapped regions (keyed by the complete 40-byte value).

use std::ffi::c_void;
use std::os::fd::{AsRawFd, OwnedFd};

use memmap2::MmapRaw;

use super::error::{Error, Result};
use super::sys;

/// `struct blkio_mem_region` (40 bytes, docs/contract/abi.md §2.2).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemRegion {
    pub addr: *mut c_void,
    pub len: usize,
    pub iova: u64,
    pub fd_offset: i64,
    pub fd: std::ffi::c_int,
    pub flags: u32,
}

// SAFETY: a region describes memory shared with the application; the
// library only passes its address around and unmaps what it allocated.
unsafe impl Send for MemRegion {}
// SAFETY: as for Send: the value is a plain description, no shared state.
unsafe impl Sync for MemRegion {}

/// A region made by [`allocate`] together with what backs it: the memfd and
/// its mapping. Dropping it unmaps the memory and closes the descriptor.
///
/// The C API hands out only the 40-byte [`MemRegion`] (`struct
/// blkio_mem_region`: address, length, fd), from which a mapping cannot be
/// rebuilt safely. So the [`MmapRaw`] that owns the mapping never leaves
/// the library: it stays here, in the instance's registry of allocated
/// regions next to the struct it describes, and `blkio_free_mem_region`
/// finds it again by comparing the complete 40-byte value.
pub struct Allocation {
    pub region: MemRegion,
    // Dropped in this order: the mapping, then the descriptor.
    _map: MmapRaw,
    _fd: OwnedFd,
}

/// Allocates a shared, fd-backed region of `len` bytes (`len` already
/// checked against the alignment): memfd "libblkio-buf" with close-on-exec,
/// sized with ftruncate and mapped shared.
pub fn allocate(len: usize, align: u64) -> Result<Allocation> {
    if len == 0 {
        return Err(Error::from_errno(libc::EINVAL));
    }
    let fd = sys::memfd(c"libblkio-buf", len)?;
    let map = sys::map_shared(fd.as_raw_fd(), 0, len, false).map_err(Error::os)?;
    let addr = map.as_mut_ptr().cast::<c_void>();
    if align > 1 && (addr as u64) % align != 0 {
        // `map` and `fd` drop here: unmapped and closed.
        return Err(Error::new(
            libc::EOVERFLOW,
            format!("Address {addr:p} violates mem-region-alignment {align}"),
        ));
    }
    Ok(Allocation {
        region: MemRegion {
            addr,
            len,
            iova: 0,
            fd_offset: 0,
            fd: fd.as_raw_fd(),
            flags: 0,
        },
        _map: map,
        _fd: fd,
    })
}

/// The regions an instance knows about.
#[derive(Default)]
pub struct Regions {
    allocated: Vec<Allocation>,
    mapped: Vec<MemRegion>,
}

impl Regions {
    pub fn add_allocated(&mut self, r: Allocation) {
        self.allocated.push(r);
    }

    /// Forgets and returns an allocated region if it is known and unmapped.
    pub fn take_allocated(&mut self, r: &MemRegion) -> Option<Allocation> {
        if self.is_mapped(r) {
            return None;
        }
        let i = self.allocated.iter().position(|a| a.region == *r)?;
        Some(self.allocated.swap_remove(i))
    }

    pub fn is_mapped(&self, r: &MemRegion) -> bool {
        self.mapped.contains(r)
    }

    pub fn add_mapped(&mut self, r: MemRegion) {
        self.mapped.push(r);
    }

    pub fn remove_mapped(&mut self, r: &MemRegion) -> bool {
        match self.mapped.iter().position(|m| m == r) {
            Some(i) => {
                self.mapped.swap_remove(i);
                true
            }
            None => false,
        }
    }

    /// Empties both registries, returning (mapped, allocated).
    pub fn drain(&mut self) -> (Vec<MemRegion>, Vec<Allocation>) {
        (
            std::mem::take(&mut self.mapped),
            std::mem::take(&mut self.allocated),
        )
    }
}
