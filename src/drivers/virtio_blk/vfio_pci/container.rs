//! A VFIO container with one group attached and the type-1 v2 IOMMU: the
//! IOMMU's page sizes, valid IOVA ranges and DMA-mapping budget, DMA map
//! and unmap, and the device fd (docs/contract/virtio.md §10 "connect").

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use super::super::iova::IovaRange;
use super::sys::*;
use crate::core::device_fd::open_path;
use crate::core::{Error, Result};

/// The container, the group, and what the IOMMU reported.
pub struct Container {
    /// Fields drop in order: the group (detached from the container when
    /// its fd closes), then the container.
    group: OwnedFd,
    container: OwnedFd,
    /// Smallest IOMMU page size.
    pub page_size: u64,
    pub ranges: Vec<IovaRange>,
    /// DMA mappings still available at connect.
    pub dma_avail: u64,
}

/// How the group and the container character devices are opened.
const RW: libc::c_int = libc::O_RDWR | libc::O_CLOEXEC;

impl Container {
    /// Opens `/dev/vfio/<group>` (-ENOENT when the device is not bound to
    /// vfio-pci, -EBUSY when another instance holds it), a new container,
    /// attaches the group and selects the type-1 v2 IOMMU.
    pub fn open(group: &str) -> Result<Container> {
        let group = open_path(&format!("/dev/vfio/{group}"), RW)?;
        let mut status = GroupStatus {
            argsz: argsz::<GroupStatus>(),
            flags: 0,
        };
        check(
            // SAFETY: GROUP_GET_STATUS fills a vfio_group_status.
            unsafe { ioctl_mut(&group, VFIO_GROUP_GET_STATUS(), &mut status) },
            "VFIO_GROUP_GET_STATUS",
        )?;
        if status.flags & VFIO_GROUP_FLAGS_VIABLE == 0 {
            return Err(Error::invalid(
                "VFIO group is not viable (are all devices of the IOMMU group bound to vfio-pci?)",
            ));
        }
        let container = open_path("/dev/vfio/vfio", RW)?;
        // SAFETY: argument-less ioctls and ones taking an integer value.
        unsafe {
            if libc::ioctl(container.as_raw_fd(), VFIO_GET_API_VERSION()) != VFIO_API_VERSION {
                return Err(Error::invalid("Unsupported VFIO API version"));
            }
            let v2 = libc::ioctl(
                container.as_raw_fd(),
                VFIO_CHECK_EXTENSION(),
                VFIO_TYPE1V2_IOMMU,
            );
            if v2 <= 0 {
                return Err(Error::invalid("VFIO type-1 v2 IOMMU is not supported"));
            }
            let fd: libc::c_int = container.as_raw_fd();
            check(
                libc::ioctl(group.as_raw_fd(), VFIO_GROUP_SET_CONTAINER(), &fd),
                "VFIO_GROUP_SET_CONTAINER",
            )?;
            check(
                libc::ioctl(container.as_raw_fd(), VFIO_SET_IOMMU(), VFIO_TYPE1V2_IOMMU),
                "VFIO_SET_IOMMU",
            )?;
        }
        let (page_size, ranges, dma_avail) = Self::iommu_info(&container)?;
        Ok(Container {
            group,
            container,
            page_size,
            ranges,
            dma_avail,
        })
    }

    /// `VFIO_IOMMU_GET_INFO` with its capability chain.
    fn iommu_info(container: &OwnedFd) -> Result<(u64, Vec<IovaRange>, u64)> {
        let mut head = IommuInfo {
            argsz: argsz::<IommuInfo>(),
            flags: 0,
            iova_pgsizes: 0,
            cap_offset: 0,
            pad: 0,
        };
        check(
            // SAFETY: fills at most argsz bytes of the structure.
            unsafe { ioctl_mut(container, VFIO_IOMMU_GET_INFO(), &mut head) },
            "VFIO_IOMMU_GET_INFO",
        )?;
        let size = head.argsz.max(argsz::<IommuInfo>()) as usize;
        // u64 elements: the buffer is aligned for every structure in it.
        let mut buf = vec![0u64; size.div_ceil(8)];
        // SAFETY: the buffer is at least `size` bytes; the kernel writes at
        // most `argsz` of them.
        let info = unsafe {
            let p = buf.as_mut_ptr().cast::<IommuInfo>();
            (*p).argsz = size as u32;
            check(
                libc::ioctl(container.as_raw_fd(), VFIO_IOMMU_GET_INFO(), p),
                "VFIO_IOMMU_GET_INFO",
            )?;
            p.read()
        };
        let page_size = if info.flags & VFIO_IOMMU_INFO_PGSIZES != 0 && info.iova_pgsizes != 0 {
            1u64 << info.iova_pgsizes.trailing_zeros()
        } else {
            4096
        };
        let bytes: Vec<u8> = buf.iter().flat_map(|w| w.to_ne_bytes()).collect();
        let u16_at = |o: usize| {
            bytes
                .get(o..o + 2)
                .map(|b| u16::from_ne_bytes([b[0], b[1]]))
        };
        let u32_at = |o: usize| {
            bytes
                .get(o..o + 4)
                .map(|b| u32::from_ne_bytes(b.try_into().unwrap()))
        };
        let u64_at = |o: usize| {
            bytes
                .get(o..o + 8)
                .map(|b| u64::from_ne_bytes(b.try_into().unwrap()))
        };
        let mut ranges = Vec::new();
        let mut dma_avail = u64::from(u16::MAX);
        let mut off = if info.flags & VFIO_IOMMU_INFO_CAPS != 0 {
            info.cap_offset as usize
        } else {
            0
        };
        // Each capability: {id u16, version u16, next u32}, then its body.
        while off != 0 {
            let (Some(id), Some(next)) = (u16_at(off), u32_at(off + 4)) else {
                break;
            };
            match id {
                VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE => {
                    let n = u32_at(off + 8).unwrap_or(0) as usize;
                    for i in 0..n {
                        let at = off + 16 + 16 * i;
                        if let (Some(first), Some(last)) = (u64_at(at), u64_at(at + 8)) {
                            ranges.push(IovaRange { first, last });
                        }
                    }
                }
                VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL => {
                    if let Some(n) = u32_at(off + 8) {
                        dma_avail = n.into();
                    }
                }
                _ => {}
            }
            off = next as usize;
        }
        if ranges.is_empty() {
            ranges.push(IovaRange {
                first: 0,
                last: u64::MAX,
            });
        }
        ranges.sort_by_key(|r| r.first);
        Ok((page_size, ranges, dma_avail))
    }

    /// The device fd of `name` (the PCI address) in the group.
    pub fn device(&self, name: &str) -> Result<OwnedFd> {
        let name = CString::new(name).map_err(|_| Error::invalid("Invalid PCI device name"))?;
        let fd = check(
            // SAFETY: GROUP_GET_DEVICE_FD reads a NUL-terminated string.
            unsafe {
                libc::ioctl(
                    self.group.as_raw_fd(),
                    VFIO_GROUP_GET_DEVICE_FD(),
                    name.as_ptr(),
                )
            },
            "VFIO_GROUP_GET_DEVICE_FD",
        )?;
        // SAFETY: a new descriptor owned by nobody else.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }

    /// Maps `[vaddr, vaddr + size)` read/write at `iova`.
    pub fn map_dma(&self, vaddr: usize, iova: u64, size: u64) -> Result<()> {
        let mut m = DmaMap {
            argsz: argsz::<DmaMap>(),
            flags: VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE,
            vaddr: vaddr as u64,
            iova,
            size,
        };
        check(
            // SAFETY: MAP_DMA reads a vfio_iommu_type1_dma_map.
            unsafe { ioctl_mut(&self.container, VFIO_IOMMU_MAP_DMA(), &mut m) },
            "VFIO_IOMMU_MAP_DMA",
        )
        .map(|_| ())
    }

    /// Unmaps `[iova, iova + size)`; failures are ignored (docs/contract/abi.md §6.10).
    pub fn unmap_dma(&self, iova: u64, size: u64) {
        let mut u = DmaUnmap {
            argsz: argsz::<DmaUnmap>(),
            flags: 0,
            iova,
            size,
        };
        // SAFETY: UNMAP_DMA reads (and updates `size` of) the structure.
        unsafe { ioctl_mut(&self.container, VFIO_IOMMU_UNMAP_DMA(), &mut u) };
    }
}
