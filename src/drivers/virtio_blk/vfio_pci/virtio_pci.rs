//! The modern virtio PCI interface (virtio 1.x §4.1): the vendor-specific
//! capabilities that locate the common configuration, notification and
//! device configuration structures inside the BARs, and the common
//! configuration registers.

use super::device::{ConfigSpace, PciDevice, Window};
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
    /// BAR is 0–5 wins. Everything here is device-written: the walk ends
    /// after 48 entries (all that fit in 256 bytes, so a looping list
    /// ends too) or at a pointer below 0x40; a capability too short for
    /// its type is skipped. Where the windows lie in their BARs is checked
    /// when they are mapped ([`map`]).
    pub fn find(pci: &impl ConfigSpace) -> Result<Caps> {
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
            // A virtio capability is 16 bytes, the notification one 20.
            let cap_len = if id == PCI_CAP_ID_VNDR {
                pci.config_u8(at + 2)?
            } else {
                0
            };
            if id == PCI_CAP_ID_VNDR && cap_len >= 16 {
                let cfg_type = pci.config_u8(at + 3)?;
                let loc = CapLocation {
                    bar: pci.config_u8(at + 4)?,
                    offset: pci.config_u32(at + 8)?,
                    length: pci.config_u32(at + 12)?,
                };
                if loc.bar <= 5 {
                    match cfg_type {
                        COMMON_CFG if caps.common.is_none() => caps.common = Some(loc),
                        NOTIFY_CFG if caps.notify.is_none() && cap_len >= 20 => {
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

/// A config space in memory (tests and fuzzing); reads past its end fail
/// as VFIO's do.
#[cfg(any(test, feature = "fuzzing"))]
pub struct MemConfigSpace(pub Vec<u8>);

#[cfg(any(test, feature = "fuzzing"))]
impl ConfigSpace for MemConfigSpace {
    fn config_read(&self, off: u64, buf: &mut [u8]) -> Result<()> {
        let src = usize::try_from(off)
            .ok()
            .and_then(|o| self.0.get(o..o.checked_add(buf.len())?))
            .ok_or_else(|| Error::new(libc::EIO, "Failed to read PCI config space"))?;
        buf.copy_from_slice(src);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use MemConfigSpace as Bytes;

    /// A 256-byte config space with the capability list bit and `caps`
    /// placed at 0x40, 0x58, ... chained in order.
    fn space(caps: &[(u8, u8, u8, u32, u32)]) -> Bytes {
        let mut b = vec![0u8; 256];
        b[0x06] = 0x10;
        b[0x34] = 0x40;
        for (i, &(cfg_type, len, bar, offset, length)) in caps.iter().enumerate() {
            let at = 0x40 + 0x18 * i;
            b[at] = PCI_CAP_ID_VNDR;
            b[at + 1] = if i + 1 < caps.len() {
                (at + 0x18) as u8
            } else {
                0
            };
            b[at + 2] = len;
            b[at + 3] = cfg_type;
            b[at + 4] = bar;
            b[at + 8..at + 12].copy_from_slice(&offset.to_le_bytes());
            b[at + 12..at + 16].copy_from_slice(&length.to_le_bytes());
            b[at + 16..at + 20].copy_from_slice(&4u32.to_le_bytes());
        }
        Bytes(b)
    }

    #[test]
    fn finds_the_three_structures() {
        let caps = Caps::find(&space(&[
            (COMMON_CFG, 16, 4, 0, 0x1000),
            (NOTIFY_CFG, 20, 4, 0x3000, 0x1000),
            (DEVICE_CFG, 16, 4, 0x2000, 0x1000),
        ]))
        .expect("caps");
        let loc = |offset| CapLocation {
            bar: 4,
            offset,
            length: 0x1000,
        };
        assert_eq!(caps.common, Some(loc(0)));
        assert_eq!(caps.notify, Some((loc(0x3000), 4)));
        assert_eq!(caps.device, Some(loc(0x2000)));
    }

    #[test]
    fn hostile_lists_end_or_are_skipped() {
        // BAR 6, a too-short capability and a notify without multiplier
        // are skipped; the next good one of the type wins.
        let caps = Caps::find(&space(&[
            (COMMON_CFG, 16, 6, 0, 0x1000),
            (COMMON_CFG, 8, 0, 0, 0x1000),
            (NOTIFY_CFG, 16, 0, 0, 0x1000),
            (COMMON_CFG, 16, 1, 0x40, 0x100),
        ]))
        .expect("caps");
        assert_eq!(caps.common.map(|c| (c.bar, c.offset)), Some((1, 0x40)));
        assert_eq!(caps.notify, None);
        // A list pointing at itself ends after 48 steps.
        let mut looping = space(&[(DEVICE_CFG, 16, 9, 0, 0)]);
        looping.0[0x41] = 0x40;
        assert_eq!(Caps::find(&looping).expect("looping list"), Caps::default());
        // A pointer near the end makes reads run past the space: -EIO.
        let mut past = space(&[]);
        past.0[0x34] = 0xFC;
        past.0[0xFC] = PCI_CAP_ID_VNDR;
        past.0[0xFE] = 16;
        let e = Caps::find(&past).expect_err("reads past the end");
        assert_eq!(e.errno(), libc::EIO);
        // No capability list at all.
        let mut none = space(&[(COMMON_CFG, 16, 0, 0, 0x1000)]);
        none.0[0x06] = 0;
        assert_eq!(Caps::find(&none).expect("no list"), Caps::default());
    }
}
