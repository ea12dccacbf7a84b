//! The modern virtio PCI interface (virtio 1.x §4.1): the vendor-specific
//! capabilities that locate the common configuration, notification and
//! device configuration structures inside the BARs, and the common
//! configuration registers.

use super::device::{PciDevice, Window};
use crate::core::{Error, Result};

/// PCI config space: status register and its capability-list bit, the
/// first capability pointer, the vendor-specific capability id.
const PCI_STATUS: u64 = 0x06;
const PCI_STATUS_CAP_LIST: u16 = 0x10;
const PCI_CAPABILITY_LIST: u64 = 0x34;
const PCI_CAP_ID_VNDR: u8 = 0x09;

/// `cfg_type` values.
const COMMON_CFG: u8 = 1;
const NOTIFY_CFG: u8 = 2;
const DEVICE_CFG: u8 = 4;

/// Offsets in the common configuration structure.
pub mod common {
    pub const DEVICE_FEATURE_SELECT: usize = 0;
    pub const DEVICE_FEATURE: usize = 4;
    pub const DRIVER_FEATURE_SELECT: usize = 8;
    pub const DRIVER_FEATURE: usize = 12;
    pub const CONFIG_MSIX_VECTOR: usize = 16;
    pub const NUM_QUEUES: usize = 18;
    pub const DEVICE_STATUS: usize = 20;
    pub const CONFIG_GENERATION: usize = 21;
    pub const QUEUE_SELECT: usize = 22;
    pub const QUEUE_SIZE: usize = 24;
    pub const QUEUE_MSIX_VECTOR: usize = 26;
    pub const QUEUE_ENABLE: usize = 28;
    pub const QUEUE_NOTIFY_OFF: usize = 30;
    pub const QUEUE_DESC: usize = 32;
    pub const QUEUE_DRIVER: usize = 40;
    pub const QUEUE_DEVICE: usize = 48;
    /// Size of the structure.
    pub const LEN: usize = 56;
}

/// "No MSI-X vector".
pub const NO_VECTOR: u16 = 0xFFFF;

/// Where one structure is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CapLocation {
    pub bar: u8,
    pub offset: u32,
    pub length: u32,
}

/// The virtio structures found in the capability list.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Caps {
    pub common: Option<CapLocation>,
    pub notify: Option<(CapLocation, u32)>,
    pub device: Option<CapLocation>,
}

impl Caps {
    /// Walks the capability list: the first capability of each type whose
    /// BAR is 0–5 wins.
    pub fn find(pci: &PciDevice) -> Result<Caps> {
        let mut caps = Caps::default();
        if pci.config_u16(PCI_STATUS)? & PCI_STATUS_CAP_LIST == 0 {
            return Ok(caps);
        }
        let mut ptr = pci.config_u8(PCI_CAPABILITY_LIST)? & !3;
        // At most 48 capabilities fit in the 256-byte config space: a
        // bound that also ends a looping list.
        for _ in 0..48 {
            if ptr < 0x40 {
                break;
            }
            let at = u64::from(ptr);
            let id = pci.config_u8(at)?;
            let next = pci.config_u8(at + 1)? & !3;
            if id == PCI_CAP_ID_VNDR {
                let cfg_type = pci.config_u8(at + 3)?;
                let loc = CapLocation {
                    bar: pci.config_u8(at + 4)?,
                    offset: pci.config_u32(at + 8)?,
                    length: pci.config_u32(at + 12)?,
                };
                if loc.bar <= 5 {
                    match cfg_type {
                        COMMON_CFG if caps.common.is_none() => caps.common = Some(loc),
                        NOTIFY_CFG if caps.notify.is_none() => {
                            caps.notify = Some((loc, pci.config_u32(at + 16)?))
                        }
                        DEVICE_CFG if caps.device.is_none() => caps.device = Some(loc),
                        _ => {}
                    }
                }
            }
            ptr = next;
        }
        Ok(caps)
    }
}

/// Maps the window a capability describes (at least `min` bytes).
pub fn map(pci: &PciDevice, loc: CapLocation, min: usize, what: &str) -> Result<Window> {
    if (loc.length as usize) < min {
        return Err(Error::new(
            libc::EIO,
            format!("virtio {what} structure is too small"),
        ));
    }
    pci.map_bar(loc.bar, loc.offset.into(), loc.length as usize)
}
