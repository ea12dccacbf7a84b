//! The VFIO ioctls and structures used here (linux/vfio.h), and the one
//! helper that turns their results into errors.
//!
//! Copied by hand: the `vfio-bindings` crate is not among this project's
//! dependencies (nor in the offline crate cache). Their layout is the
//! kernel's stable ABI and is checked by the unit tests below (sizes and
//! field offsets).

use std::os::fd::AsRawFd;

use vmm_sys_util::ioctl_io_nr;

use crate::core::{Error, Result};

const VFIO_TYPE: u32 = b';' as u32;
ioctl_io_nr!(VFIO_GET_API_VERSION, VFIO_TYPE, 100);
ioctl_io_nr!(VFIO_CHECK_EXTENSION, VFIO_TYPE, 101);
ioctl_io_nr!(VFIO_SET_IOMMU, VFIO_TYPE, 102);
ioctl_io_nr!(VFIO_GROUP_GET_STATUS, VFIO_TYPE, 103);
ioctl_io_nr!(VFIO_GROUP_SET_CONTAINER, VFIO_TYPE, 104);
ioctl_io_nr!(VFIO_GROUP_GET_DEVICE_FD, VFIO_TYPE, 106);
ioctl_io_nr!(VFIO_DEVICE_GET_INFO, VFIO_TYPE, 107);
ioctl_io_nr!(VFIO_DEVICE_GET_REGION_INFO, VFIO_TYPE, 108);
ioctl_io_nr!(VFIO_DEVICE_GET_IRQ_INFO, VFIO_TYPE, 109);
ioctl_io_nr!(VFIO_DEVICE_SET_IRQS, VFIO_TYPE, 110);
ioctl_io_nr!(VFIO_DEVICE_RESET, VFIO_TYPE, 111);
ioctl_io_nr!(VFIO_IOMMU_GET_INFO, VFIO_TYPE, 112);
ioctl_io_nr!(VFIO_IOMMU_MAP_DMA, VFIO_TYPE, 113);
ioctl_io_nr!(VFIO_IOMMU_UNMAP_DMA, VFIO_TYPE, 114);

pub const VFIO_API_VERSION: i32 = 0;
pub const VFIO_TYPE1V2_IOMMU: libc::c_ulong = 3;
pub const VFIO_GROUP_FLAGS_VIABLE: u32 = 1;
pub const VFIO_DEVICE_FLAGS_PCI: u32 = 1 << 1;
pub const VFIO_IOMMU_INFO_PGSIZES: u32 = 1;
pub const VFIO_IOMMU_INFO_CAPS: u32 = 1 << 1;
pub const VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE: u16 = 1;
pub const VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL: u16 = 3;
pub const VFIO_DMA_MAP_FLAG_READ: u32 = 1;
pub const VFIO_DMA_MAP_FLAG_WRITE: u32 = 1 << 1;
pub const VFIO_PCI_CONFIG_REGION_INDEX: u32 = 7;
pub const VFIO_PCI_MSIX_IRQ_INDEX: u32 = 2;
pub const VFIO_IRQ_SET_DATA_EVENTFD: u32 = 1 << 2;
pub const VFIO_IRQ_SET_ACTION_TRIGGER: u32 = 1 << 5;

/// `struct vfio_group_status`.
#[repr(C)]
pub struct GroupStatus {
    pub argsz: u32,
    pub flags: u32,
}

/// `struct vfio_iommu_type1_info` (the fixed part).
#[repr(C)]
pub struct IommuInfo {
    pub argsz: u32,
    pub flags: u32,
    pub iova_pgsizes: u64,
    pub cap_offset: u32,
    pub pad: u32,
}

/// `struct vfio_iommu_type1_dma_map`.
#[repr(C)]
pub struct DmaMap {
    pub argsz: u32,
    pub flags: u32,
    pub vaddr: u64,
    pub iova: u64,
    pub size: u64,
}

/// `struct vfio_iommu_type1_dma_unmap`.
#[repr(C)]
pub struct DmaUnmap {
    pub argsz: u32,
    pub flags: u32,
    pub iova: u64,
    pub size: u64,
}

/// `struct vfio_device_info`.
#[repr(C)]
pub struct DeviceInfo {
    pub argsz: u32,
    pub flags: u32,
    pub num_regions: u32,
    pub num_irqs: u32,
    pub cap_offset: u32,
    pub pad: u32,
}

/// `struct vfio_region_info`.
#[repr(C)]
pub struct RegionInfo {
    pub argsz: u32,
    pub flags: u32,
    pub index: u32,
    pub cap_offset: u32,
    pub size: u64,
    pub offset: u64,
}

/// `struct vfio_irq_info`.
#[repr(C)]
pub struct IrqInfo {
    pub argsz: u32,
    pub flags: u32,
    pub index: u32,
    pub count: u32,
}

/// The `argsz` of a fixed-size argument.
pub fn argsz<T>() -> u32 {
    std::mem::size_of::<T>() as u32
}

/// A VFIO ioctl's result: failures keep their OS errno, with the ioctl
/// named in the message.
pub fn check(ret: i32, what: &str) -> Result<i32> {
    if ret < 0 {
        let e = std::io::Error::last_os_error();
        let message = format!("{what}: {e}");
        Err(Error::os_with_message(e, message))
    } else {
        Ok(ret)
    }
}

/// Reads a structure with an ioctl that fills it in (argsz preset).
///
/// # Safety
///
/// `req` must be an ioctl that reads and writes at most `size_of::<T>()`
/// bytes (or `argsz` bytes, whichever is smaller) of `arg`.
pub unsafe fn ioctl_mut<F: AsRawFd, T>(fd: &F, req: libc::c_ulong, arg: &mut T) -> i32 {
    // SAFETY: guaranteed by the caller.
    unsafe { libc::ioctl(fd.as_raw_fd(), req, arg as *mut T) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ioctl_numbers_match_linux_vfio_h() {
        assert_eq!(VFIO_GET_API_VERSION(), 0x3B64);
        assert_eq!(VFIO_GROUP_GET_DEVICE_FD(), 0x3B6A);
        assert_eq!(VFIO_DEVICE_SET_IRQS(), 0x3B6E);
        assert_eq!(VFIO_IOMMU_GET_INFO(), 0x3B70);
        assert_eq!(VFIO_IOMMU_UNMAP_DMA(), 0x3B72);
    }

    /// Sizes and offsets of `<linux/vfio.h>`.
    #[test]
    fn layouts_match_linux_vfio_h() {
        use std::mem::{offset_of, size_of};
        assert_eq!(size_of::<GroupStatus>(), 8);
        assert_eq!(size_of::<IommuInfo>(), 24);
        assert_eq!(offset_of!(IommuInfo, iova_pgsizes), 8);
        assert_eq!(offset_of!(IommuInfo, cap_offset), 16);
        assert_eq!(size_of::<DmaMap>(), 32);
        assert_eq!(offset_of!(DmaMap, vaddr), 8);
        assert_eq!(offset_of!(DmaMap, iova), 16);
        assert_eq!(offset_of!(DmaMap, size), 24);
        assert_eq!(size_of::<DmaUnmap>(), 24);
        assert_eq!(offset_of!(DmaUnmap, iova), 8);
        assert_eq!(offset_of!(DmaUnmap, size), 16);
        assert_eq!(size_of::<DeviceInfo>(), 24);
        assert_eq!(offset_of!(DeviceInfo, num_regions), 8);
        assert_eq!(offset_of!(DeviceInfo, num_irqs), 12);
        assert_eq!(offset_of!(DeviceInfo, cap_offset), 16);
        assert_eq!(size_of::<RegionInfo>(), 32);
        assert_eq!(offset_of!(RegionInfo, index), 8);
        assert_eq!(offset_of!(RegionInfo, size), 16);
        assert_eq!(offset_of!(RegionInfo, offset), 24);
        assert_eq!(size_of::<IrqInfo>(), 16);
        assert_eq!(offset_of!(IrqInfo, index), 8);
        assert_eq!(offset_of!(IrqInfo, count), 12);
    }
}
