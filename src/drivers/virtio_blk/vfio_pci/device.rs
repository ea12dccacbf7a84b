//! A PCI device opened through VFIO: its config space (read and written
//! through the device fd), memory-mapped windows of its BARs, MSI-X
//! interrupts delivered to eventfds, and reset.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use memmap2::MmapRaw;

use super::sys::*;
use crate::core::{Error, Result};

/// The PCI command register and its bus-master bit.
const PCI_COMMAND: u64 = 0x04;
const PCI_COMMAND_MASTER: u16 = 0x4;

pub struct PciDevice {
    fd: OwnedFd,
    /// File offset of the config-space region.
    config_offset: u64,
    /// MSI-X vectors the device has.
    pub msix_vectors: u32,
}

/// A memory-mapped window of a BAR, unmapped on drop.
pub struct Window {
    /// Starts at the window's first byte (memmap2 maps from the page
    /// below the BAR offset and points past the difference).
    map: MmapRaw,
    pub len: usize,
}

impl Window {
    /// Address of the `T` at byte `off` of the window. The bounds check is
    /// real in every build (the offsets come from the device's
    /// capabilities): a register outside the window panics instead of
    /// touching memory past the mapping.
    #[inline]
    pub fn at<T>(&self, off: usize) -> *mut T {
        assert!(
            off.checked_add(std::mem::size_of::<T>())
                .is_some_and(|end| end <= self.len),
            "register {off:#x} outside a window of {:#x} bytes",
            self.len
        );
        // SAFETY: `off + size_of::<T>()` <= `len`, the mapping's length
        // (checked above).
        unsafe { self.map.as_mut_ptr().add(off).cast() }
    }

    pub fn read8(&self, off: usize) -> u8 {
        // SAFETY: a device register inside the window (`at` checks).
        unsafe { self.at::<u8>(off).read_volatile() }
    }
    pub fn read16(&self, off: usize) -> u16 {
        // SAFETY: as above; virtio registers are naturally aligned.
        u16::from_le(unsafe { self.at::<u16>(off).read_volatile() })
    }
    pub fn read32(&self, off: usize) -> u32 {
        // SAFETY: as above.
        u32::from_le(unsafe { self.at::<u32>(off).read_volatile() })
    }
    pub fn write8(&self, off: usize, v: u8) {
        // SAFETY: as above.
        unsafe { self.at::<u8>(off).write_volatile(v) }
    }
    pub fn write16(&self, off: usize, v: u16) {
        // SAFETY: as above.
        unsafe { self.at::<u16>(off).write_volatile(v.to_le()) }
    }
    pub fn write32(&self, off: usize, v: u32) {
        // SAFETY: as above.
        unsafe { self.at::<u32>(off).write_volatile(v.to_le()) }
    }
    /// A 64-bit register as two 32-bit halves, low first.
    pub fn write64(&self, off: usize, v: u64) {
        self.write32(off, v as u32);
        self.write32(off + 4, (v >> 32) as u32);
    }
}

/// Read access to a PCI config space: the device's (through VFIO) or, in
/// tests and fuzzing, bytes in memory. Everything read is device-written.
pub trait ConfigSpace {
    /// Reads `buf.len()` bytes at `off`; a read the space cannot serve
    /// fails with -EIO.
    fn config_read(&self, off: u64, buf: &mut [u8]) -> Result<()>;

    fn config_u8(&self, off: u64) -> Result<u8> {
        let mut b = [0u8; 1];
        self.config_read(off, &mut b)?;
        Ok(b[0])
    }

    fn config_u16(&self, off: u64) -> Result<u16> {
        let mut b = [0u8; 2];
        self.config_read(off, &mut b)?;
        Ok(u16::from_le_bytes(b))
    }

    fn config_u32(&self, off: u64) -> Result<u32> {
        let mut b = [0u8; 4];
        self.config_read(off, &mut b)?;
        Ok(u32::from_le_bytes(b))
    }
}

impl ConfigSpace for PciDevice {
    fn config_read(&self, off: u64, buf: &mut [u8]) -> Result<()> {
        // SAFETY: pread into a live buffer.
        let n = unsafe {
            libc::pread(
                self.fd.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                (self.config_offset + off) as libc::off_t,
            )
        };
        if n != buf.len() as isize {
            return Err(Error::device("Failed to read PCI config space"));
        }
        Ok(())
    }
}

fn region_info(fd: &OwnedFd, index: u32) -> Result<RegionInfo> {
    let mut r = RegionInfo {
        argsz: argsz::<RegionInfo>(),
        flags: 0,
        index,
        cap_offset: 0,
        size: 0,
        offset: 0,
    };
    check(
        // SAFETY: GET_REGION_INFO fills at most argsz bytes.
        unsafe { ioctl_mut(fd, VFIO_DEVICE_GET_REGION_INFO(), &mut r) },
        "VFIO_DEVICE_GET_REGION_INFO",
    )?;
    Ok(r)
}

impl PciDevice {
    /// Checks that `fd` is a PCI device with a config region and MSI-X.
    pub fn new(fd: OwnedFd) -> Result<PciDevice> {
        let mut info = DeviceInfo {
            argsz: argsz::<DeviceInfo>(),
            flags: 0,
            num_regions: 0,
            num_irqs: 0,
            cap_offset: 0,
            pad: 0,
        };
        check(
            // SAFETY: GET_INFO fills at most argsz bytes.
            unsafe { ioctl_mut(&fd, VFIO_DEVICE_GET_INFO(), &mut info) },
            "VFIO_DEVICE_GET_INFO",
        )?;
        if info.flags & VFIO_DEVICE_FLAGS_PCI == 0
            || info.num_regions <= VFIO_PCI_CONFIG_REGION_INDEX
            || info.num_irqs <= VFIO_PCI_MSIX_IRQ_INDEX
        {
            return Err(Error::not_supported("Not a PCI device"));
        }
        let config_offset = region_info(&fd, VFIO_PCI_CONFIG_REGION_INDEX)?.offset;
        let mut irq = IrqInfo {
            argsz: argsz::<IrqInfo>(),
            flags: 0,
            index: VFIO_PCI_MSIX_IRQ_INDEX,
            count: 0,
        };
        check(
            // SAFETY: GET_IRQ_INFO fills at most argsz bytes.
            unsafe { ioctl_mut(&fd, VFIO_DEVICE_GET_IRQ_INFO(), &mut irq) },
            "VFIO_DEVICE_GET_IRQ_INFO",
        )?;
        if irq.count == 0 {
            return Err(Error::not_supported("The device has no MSI-X interrupts"));
        }
        Ok(PciDevice {
            fd,
            config_offset,
            msix_vectors: irq.count,
        })
    }

    fn config_write_u16(&self, off: u64, v: u16) -> Result<()> {
        let b = v.to_le_bytes();
        // SAFETY: pwrite from a live buffer.
        let n = unsafe {
            libc::pwrite(
                self.fd.as_raw_fd(),
                b.as_ptr().cast(),
                2,
                (self.config_offset + off) as libc::off_t,
            )
        };
        if n != 2 {
            return Err(Error::device("Failed to write PCI config space"));
        }
        Ok(())
    }

    /// Turns bus mastering (the device's DMA) on or off.
    pub fn set_bus_master(&self, on: bool) -> Result<()> {
        let cmd = self.config_u16(PCI_COMMAND)?;
        let new = if on {
            cmd | PCI_COMMAND_MASTER
        } else {
            cmd & !PCI_COMMAND_MASTER
        };
        self.config_write_u16(PCI_COMMAND, new)
    }

    /// The size of BAR `bar` in bytes (0 for a BAR the device lacks).
    pub fn bar_size(&self, bar: u8) -> Result<u64> {
        Ok(region_info(&self.fd, bar.into())?.size)
    }

    /// Maps `[off, off + len)` of BAR `bar`.
    pub fn map_bar(&self, bar: u8, off: u64, len: usize) -> Result<Window> {
        let r = region_info(&self.fd, bar.into())?;
        if off.checked_add(len as u64).is_none_or(|end| end > r.size) {
            return Err(Error::device(format!(
                "virtio capability outside BAR {bar}"
            )));
        }
        let map = crate::core::sys::map_shared(self.fd.as_raw_fd(), r.offset + off, len, false)
            .map_err(|e| {
                let message = format!("Failed to map BAR {bar}: {e}");
                Error::transport(message, e)
            })?;
        Ok(Window { map, len })
    }

    /// Makes MSI-X vectors 0..n signal the given eventfds.
    pub fn set_msix_eventfds(&self, fds: &[RawFd]) -> Result<()> {
        let head = 20usize;
        // u32 elements: aligned for the header and the i32 fds.
        let mut buf = vec![0u32; (head + 4 * fds.len()).div_ceil(4)];
        buf[0] = (head + 4 * fds.len()) as u32;
        buf[1] = VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER;
        buf[2] = VFIO_PCI_MSIX_IRQ_INDEX;
        buf[3] = 0;
        buf[4] = fds.len() as u32;
        for (i, fd) in fds.iter().enumerate() {
            buf[5 + i] = *fd as u32;
        }
        check(
            // SAFETY: a vfio_irq_set header followed by `count` i32 fds.
            unsafe { libc::ioctl(self.fd.as_raw_fd(), VFIO_DEVICE_SET_IRQS(), buf.as_ptr()) },
            "VFIO_DEVICE_SET_IRQS",
        )
        .map(|_| ())
    }

    /// VFIO device reset; false when the device cannot be reset this way.
    pub fn reset(&self) -> bool {
        // SAFETY: an ioctl without argument.
        unsafe { libc::ioctl(self.fd.as_raw_fd(), VFIO_DEVICE_RESET()) == 0 }
    }
}
