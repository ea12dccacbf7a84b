//! The VFIO-PCI transport (`virtio-blk-vfio-pci`, docs/contract/virtio.md §10): a
//! virtio-blk PCI device bound to `vfio-pci`, driven from user space.
//!
//! * [`container`] — VFIO container and group, the IOMMU's properties, DMA
//!   mapping;
//! * [`device`] — the PCI device: config space, BAR windows, MSI-X;
//! * [`virtio_pci`] — the virtio capabilities and common configuration;
//! * [`sys`] — the VFIO ioctls.
//!
//! Completions arrive as MSI-X interrupts: vector *i* belongs to queue *i*
//! and signals the queue's call eventfd (VFIO_DEVICE_SET_IRQS), so the call
//! eventfd is the completion fd as with the vhost transports. A kick is a
//! 16-bit write of the queue index to the queue's notify address.
//!
//! Teardown (drop) resets the device before anything else, so it stops
//! using memory, then turns bus mastering off and removes the DMA
//! mappings (upstream unmaps first; docs/contract/virtio.md §10).

mod container;
mod device;
mod sys;
pub mod virtio_pci;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::config::bit;
use super::iova::IovaTable;
use super::transport::{Kick, QueueSetup, Transport, CONFIG_LEN};
use crate::core::config::Config;
use crate::core::region::MemRegion;
use crate::core::{Error, Result};

use container::Container;
use device::{ConfigSpace, PciDevice, Window};
use virtio_pci::{common, Caps, NO_VECTOR};

/// Device status bits.
const ACKNOWLEDGE: u8 = 1;
const DRIVER: u8 = 2;
const DRIVER_OK: u8 = 4;
const FEATURES_OK: u8 = 8;
const FAILED: u8 = 128;

/// Feature bits the transport adds to the driver's (docs/contract/virtio.md §2.1).
const VERSION_1: u64 = bit(32);
const ACCESS_PLATFORM: u64 = bit(33);
const RING_PACKED: u64 = bit(34);
const ORDER_PLATFORM: u64 = bit(36);

/// The virtio vendor id and the block device ids (modern, transitional).
const VIRTIO_VENDOR: u16 = 0x1AF4;
const VIRTIO_BLK_IDS: [u16; 2] = [0x1042, 0x1001];

/// How long a reset may take.
const RESET_TIMEOUT: Duration = Duration::from_secs(5);

/// A connected virtio-blk PCI device.
pub struct VfioPci {
    // Field order is drop order: windows and device before the container.
    common: Window,
    notify: Arc<Window>,
    notify_multiplier: u32,
    device_cfg: Option<Window>,
    pci: PciDevice,
    container: Container,
    iovas: IovaTable,
    features: u64,
}

/// Kick: write the queue index to its notify address.
pub struct NotifyKick {
    window: Arc<Window>,
    offset: usize,
    index: u16,
}

impl Kick for NotifyKick {
    fn kick(&self) {
        self.window.write16(self.offset, self.index);
    }
}

/// -ENOTDIR "Not a directory (os error 20)" and friends.
fn os_error(errno: i32) -> Error {
    Error::os(std::io::Error::from_raw_os_error(errno))
}

impl VfioPci {
    fn status(&self) -> u8 {
        self.common.read8(common::DEVICE_STATUS)
    }

    fn set_status(&self, s: u8) {
        self.common.write8(common::DEVICE_STATUS, s);
    }

    fn add_status(&self, bits: u8) {
        self.set_status(self.status() | bits);
    }

    /// Writes 0 to the status and waits until the device reads back 0.
    fn reset(&self) -> Result<()> {
        self.set_status(0);
        let start = Instant::now();
        while self.status() != 0 {
            if start.elapsed() > RESET_TIMEOUT {
                return Err(Error::device("Timed out resetting the device"));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(())
    }

    fn negotiate(&mut self, driver_features: u64) -> Result<()> {
        self.reset()?;
        self.pci.set_bus_master(true)?;
        self.add_status(ACKNOWLEDGE | DRIVER);
        let c = &self.common;
        let mut offered = 0u64;
        for half in 0..2u32 {
            c.write32(common::DEVICE_FEATURE_SELECT, half);
            offered |= u64::from(c.read32(common::DEVICE_FEATURE)) << (32 * half);
        }
        if offered & VERSION_1 == 0 {
            return Err(Error::not_supported(
                "Device does not offer VIRTIO_F_VERSION_1",
            ));
        }
        let wanted = driver_features | VERSION_1 | ACCESS_PLATFORM | RING_PACKED | ORDER_PLATFORM;
        let features = offered & wanted;
        for half in 0..2u32 {
            c.write32(common::DRIVER_FEATURE_SELECT, half);
            c.write32(common::DRIVER_FEATURE, (features >> (32 * half)) as u32);
        }
        self.add_status(FEATURES_OK);
        if self.status() & FEATURES_OK == 0 {
            return Err(Error::device("Device did not accept the features"));
        }
        self.features = features;
        Ok(())
    }

    fn open(config: &Config) -> Result<(Container, PciDevice, String)> {
        let dir = Path::new(&config.path);
        let meta = std::fs::metadata(dir).map_err(Error::os)?;
        if !meta.is_dir() {
            return Err(os_error(libc::ENOTDIR));
        }
        let dir = std::fs::canonicalize(dir).map_err(Error::os)?;
        let name = dir
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| os_error(libc::ENOENT))?
            .to_owned();
        let group = std::fs::read_link(dir.join("iommu_group")).map_err(Error::os)?;
        let group = group
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| os_error(libc::ENOENT))?;
        let container = Container::open(group)?;
        let pci = PciDevice::new(container.device(&name)?)?;
        Ok((container, pci, name))
    }
}

impl Transport for VfioPci {
    const DRIVER_NAME: &'static str = "virtio-blk-vfio-pci";
    const ACCEPTS_FD: bool = false;

    type Addr = IovaTable;
    type Kick = NotifyKick;

    fn connect(config: &Config, driver_features: u64) -> Result<Self> {
        let (container, pci, name) = Self::open(config)?;
        let vendor = pci.config_u16(0)?;
        let id = pci.config_u16(2)?;
        if vendor != VIRTIO_VENDOR || !VIRTIO_BLK_IDS.contains(&id) {
            return Err(Error::not_supported(format!(
                "{name} is not a virtio-blk device ({vendor:04x}:{id:04x})"
            )));
        }
        let layout = Caps::find(&pci)?.validate(CONFIG_LEN, |bar| pci.bar_size(bar))?;
        let common = virtio_pci::map(&pci, layout.common)?;
        let notify = Arc::new(virtio_pci::map(&pci, layout.notify)?);
        let notify_multiplier = layout.notify_multiplier;
        let device_cfg = layout
            .device
            .map(|loc| virtio_pci::map(&pci, loc))
            .transpose()?;
        let mut t = VfioPci {
            common,
            notify,
            notify_multiplier,
            device_cfg,
            pci,
            container,
            iovas: IovaTable::default(),
            features: 0,
        };
        if let Err(e) = t.negotiate(driver_features) {
            t.add_status(FAILED);
            return Err(e);
        }
        Ok(t)
    }

    fn features(&self) -> u64 {
        self.features
    }

    /// Reads the config window in 32-bit units until the configuration
    /// generation is stable around the read.
    fn read_config(&self) -> Result<[u8; CONFIG_LEN]> {
        let Some(w) = &self.device_cfg else {
            return Err(Error::not_supported(
                "Device has no device configuration structure",
            ));
        };
        let mut out = [0u8; CONFIG_LEN];
        loop {
            let gen = self.common.read8(common::CONFIG_GENERATION);
            for (i, chunk) in out.chunks_mut(4).enumerate() {
                chunk.copy_from_slice(&w.read32(4 * i).to_le_bytes());
            }
            if self.common.read8(common::CONFIG_GENERATION) == gen {
                return Ok(out);
            }
        }
    }

    fn max_mem_regions(&self) -> u64 {
        self.container.dma_avail
    }

    fn mem_region_alignment(&self) -> u64 {
        self.container.page_size
    }

    fn needs_mem_region_fd(&self) -> bool {
        false
    }

    fn map_mem_region(&mut self, region: &MemRegion) -> Result<()> {
        let addr = region.addr as usize;
        let c = &self.container;
        let m = self
            .iovas
            .reserve(addr, region.len, &c.ranges, c.page_size, true)?;
        if let Err(e) = c.map_dma(addr, m.iova, m.len as u64) {
            self.iovas.remove(addr, region.len);
            return Err(e);
        }
        Ok(())
    }

    fn unmap_mem_region(&mut self, region: &MemRegion) {
        for m in self.iovas.remove(region.addr as usize, region.len) {
            self.container.unmap_dma(m.iova, m.len as u64);
        }
    }

    fn address_space(&self) -> IovaTable {
        self.iovas.clone()
    }

    fn start_queues(&mut self, queues: &[QueueSetup<'_>]) -> Result<Vec<NotifyKick>> {
        if queues.len() > self.pci.msix_vectors as usize {
            return Err(Error::device(format!(
                "{} queues need as many MSI-X vectors, the device has {}",
                queues.len(),
                self.pci.msix_vectors
            )));
        }
        let c = &self.common;
        let available = c.read16(common::NUM_QUEUES);
        if queues.len() > available as usize {
            return Err(Error::device(format!(
                "Device has {available} virtqueues, {} needed",
                queues.len()
            )));
        }
        c.write16(common::CONFIG_MSIX_VECTOR, NO_VECTOR);
        let mut kicks = Vec::with_capacity(queues.len());
        for q in queues {
            c.write16(common::QUEUE_SELECT, q.index as u16);
            let max = c.read16(common::QUEUE_SIZE);
            if q.size > max {
                return Err(Error::device(format!(
                    "Trying to set up queue with {} descriptors, maximum is {max}",
                    q.size
                )));
            }
            c.write16(common::QUEUE_SIZE, q.size);
            c.write16(common::QUEUE_MSIX_VECTOR, q.index as u16);
            if c.read16(common::QUEUE_MSIX_VECTOR) != q.index as u16 {
                return Err(Error::device(format!(
                    "Device refused MSI-X vector {} for its queue",
                    q.index
                )));
            }
            c.write64(common::QUEUE_DESC, q.desc);
            c.write64(common::QUEUE_DRIVER, q.avail);
            c.write64(common::QUEUE_DEVICE, q.used);
            let offset =
                c.read16(common::QUEUE_NOTIFY_OFF) as usize * self.notify_multiplier as usize;
            if offset + 2 > self.notify.len {
                return Err(Error::device(
                    "Queue notify address outside the notification structure",
                ));
            }
            c.write16(common::QUEUE_ENABLE, 1);
            kicks.push(NotifyKick {
                window: self.notify.clone(),
                offset,
                index: q.index as u16,
            });
        }
        let fds: Vec<_> = queues
            .iter()
            .map(|q| std::os::fd::AsRawFd::as_raw_fd(q.call))
            .collect();
        self.pci.set_msix_eventfds(&fds)?;
        self.add_status(DRIVER_OK);
        Ok(kicks)
    }
}

impl Drop for VfioPci {
    fn drop(&mut self) {
        if !self.pci.reset() {
            let _ = self.reset();
        }
        let _ = self.pci.set_bus_master(false);
        for m in self.iovas.remove(0, usize::MAX) {
            self.container.unmap_dma(m.iova, m.len as u64);
        }
    }
}
