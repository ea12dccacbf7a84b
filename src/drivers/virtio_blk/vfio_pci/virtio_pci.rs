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

/// The virtio structures found in the capability list, as the device
/// describes them (not yet checked against its BARs: [`Caps::validate`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Caps {
    pub common: Option<CapLocation>,
    pub notify: Option<(CapLocation, u32)>,
    pub device: Option<CapLocation>,
}

/// The structures a driver maps, each one checked: inside its BAR,
/// aligned for the accesses made to it, large enough for its registers
/// and not overlapping another one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StructureLayout {
    pub common: CapLocation,
    pub notify: CapLocation,
    /// `notify_off_multiplier`: 0 or even, so every notify address is
    /// 2-byte aligned.
    pub notify_multiplier: u32,
    pub device: Option<CapLocation>,
}

/// A malformed or inconsistent capability: the device's fault (-EIO).
fn bad(msg: String) -> Error {
    Error::device(msg)
}

impl Caps {
    /// Walks the capability list: the first capability of each type whose
    /// BAR is 0–5 wins. Everything here is device-written: the walk ends
    /// after 48 entries (all that fit in 256 bytes, so a looping list
    /// ends too) or at a pointer below 0x40; a capability too short for
    /// its type is skipped. Where the structures lie in their BARs is
    /// checked by [`Caps::validate`].
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

    /// Checks the structures against the device's BARs (`bar_size` gives
    /// a BAR's size in bytes): common configuration and notification must
    /// be present (-ENOTSUP); each structure is at least `device_min`
    /// (device configuration), [`common::LEN`] or 2 bytes long, lies inside
    /// its BAR, is aligned for the accesses made to it (4 bytes, the
    /// notification 2) and overlaps no other one, and the notify
    /// multiplier is even (-EIO otherwise). Mapping the result can then
    /// never make a register access fall outside its window.
    pub fn validate(
        &self,
        device_min: usize,
        mut bar_size: impl FnMut(u8) -> Result<u64>,
    ) -> Result<StructureLayout> {
        let missing = |what| Error::not_supported(format!("virtio {what} capability missing"));
        let common = self.common.ok_or_else(|| missing("common configuration"))?;
        let (notify, notify_multiplier) = self.notify.ok_or_else(|| missing("notification"))?;
        let mut checked: Vec<(&str, CapLocation)> = Vec::with_capacity(3);
        let structures = [
            ("common configuration", Some(common), common::LEN, 4),
            ("notification", Some(notify), 2, 2),
            ("device configuration", self.device, device_min, 4),
        ];
        for (what, loc, min, align) in structures {
            let Some(loc) = loc else { continue };
            if (loc.length as usize) < min {
                return Err(bad(format!(
                    "virtio {what} structure is too small ({} bytes, {min} needed)",
                    loc.length
                )));
            }
            if loc.offset % align != 0 {
                return Err(bad(format!(
                    "virtio {what} structure at offset {:#x} of BAR {} is not {align}-byte aligned",
                    loc.offset, loc.bar
                )));
            }
            let size = bar_size(loc.bar)?;
            let end = u64::from(loc.offset) + u64::from(loc.length);
            if end > size {
                return Err(bad(format!(
                    "virtio {what} structure ({:#x} bytes at {:#x}) lies outside BAR {} \
                     ({size:#x} bytes)",
                    loc.length, loc.offset, loc.bar
                )));
            }
            let start = u64::from(loc.offset);
            for &(other, o) in &checked {
                let o_start = u64::from(o.offset);
                let o_end = o_start + u64::from(o.length);
                if o.bar == loc.bar && start < o_end && o_start < end {
                    return Err(bad(format!(
                        "virtio {other} and {what} structures overlap in BAR {}",
                        loc.bar
                    )));
                }
            }
            checked.push((what, loc));
        }
        if notify_multiplier % 2 != 0 {
            return Err(bad(format!(
                "virtio notify_off_multiplier {notify_multiplier} is odd"
            )));
        }
        Ok(StructureLayout {
            common,
            notify,
            notify_multiplier,
            device: self.device,
        })
    }
}

/// Maps the window of a structure [`Caps::validate`] checked.
pub fn map(pci: &PciDevice, loc: CapLocation) -> Result<Window> {
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
            .ok_or_else(|| Error::device("Failed to read PCI config space"))?;
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

/// [`Caps::validate`] on crafted capability lists.
#[cfg(test)]
mod layout_tests {
    use super::*;

    /// A config space with the capability-list bit set and the given
    /// capabilities placed from 0x40 on, each linked to the next.
    /// A capability is its bytes from `cap_len` on (id and next filled in).
    fn space(caps: &[Vec<u8>]) -> Vec<u8> {
        let mut s = vec![0u8; 256];
        s[PCI_STATUS as usize] = PCI_STATUS_CAP_LIST as u8;
        s[PCI_CAPABILITY_LIST as usize] = 0x40;
        let mut at = 0x40;
        for (i, body) in caps.iter().enumerate() {
            let next = at + (2 + body.len()).next_multiple_of(4);
            s[at] = PCI_CAP_ID_VNDR;
            s[at + 1] = if i + 1 == caps.len() { 0 } else { next as u8 };
            s[at + 2..at + 2 + body.len()].copy_from_slice(body);
            at = next;
        }
        s
    }

    /// A virtio capability body (from `cap_len` on).
    fn cap(cfg_type: u8, bar: u8, offset: u32, length: u32) -> Vec<u8> {
        let cap_len = if cfg_type == NOTIFY_CFG { 20 } else { 16 };
        let mut b = vec![cap_len, cfg_type, bar, 0, 0, 0];
        b.extend(offset.to_le_bytes());
        b.extend(length.to_le_bytes());
        if cfg_type == NOTIFY_CFG {
            b.extend(4u32.to_le_bytes());
        }
        b
    }

    /// QEMU's layout: all three in BAR 4, one page each.
    fn qemu_like() -> Vec<Vec<u8>> {
        vec![
            cap(COMMON_CFG, 4, 0, 0x1000),
            cap(DEVICE_CFG, 4, 0x2000, 0x1000),
            cap(NOTIFY_CFG, 4, 0x3000, 0x1000),
        ]
    }

    /// Every BAR is 16 KiB.
    fn bars(_: u8) -> Result<u64> {
        Ok(0x4000)
    }

    fn layout(caps: &[Vec<u8>]) -> Result<StructureLayout> {
        Caps::find(&MemConfigSpace(space(caps)))?.validate(60, bars)
    }

    fn eio(caps: &[Vec<u8>], needle: &str) {
        let e = layout(caps).expect_err("accepted");
        assert_eq!(e.errno(), libc::EIO, "{}", e.message());
        assert!(e.message().contains(needle), "{}", e.message());
    }

    #[test]
    fn a_well_formed_list_is_found() {
        let l = layout(&qemu_like()).expect("valid");
        let loc = |offset, length| CapLocation {
            bar: 4,
            offset,
            length,
        };
        assert_eq!(l.common, loc(0, 0x1000));
        assert_eq!(l.device, Some(loc(0x2000, 0x1000)));
        assert_eq!(l.notify, loc(0x3000, 0x1000));
        assert_eq!(l.notify_multiplier, 4);
    }

    #[test]
    fn missing_structures_are_not_supported() {
        let mut s = space(&qemu_like());
        s[PCI_STATUS as usize] = 0;
        let e = Caps::find(&MemConfigSpace(s))
            .unwrap()
            .validate(60, bars)
            .unwrap_err();
        assert_eq!(e.errno(), libc::ENOTSUP);
        assert!(
            e.message().contains("common configuration"),
            "{}",
            e.message()
        );
        let e = layout(&qemu_like()[..2]).unwrap_err();
        assert_eq!(e.errno(), libc::ENOTSUP);
        assert!(e.message().contains("notification"), "{}", e.message());
        // Device configuration is optional.
        let l = layout(&[qemu_like()[0].clone(), qemu_like()[2].clone()]).unwrap();
        assert_eq!(l.device, None);
    }

    #[test]
    fn structures_outside_their_bar_fail() {
        let mut caps = qemu_like();
        caps[2] = cap(NOTIFY_CFG, 4, 0x3800, 0x1000);
        eio(
            &caps,
            "notification structure (0x1000 bytes at 0x3800) lies outside BAR 4",
        );
        // offset + length wraps in 32 bits.
        caps[2] = cap(NOTIFY_CFG, 4, 0xFFFF_F000, 0x2000);
        eio(&caps, "outside BAR 4");
        // A BAR the device does not have.
        let e = Caps::find(&MemConfigSpace(space(&qemu_like())))
            .unwrap()
            .validate(60, |bar| Ok(if bar == 4 { 0 } else { 0x4000 }))
            .unwrap_err();
        assert_eq!(e.errno(), libc::EIO);
        assert!(
            e.message().contains("outside BAR 4 (0x0 bytes)"),
            "{}",
            e.message()
        );
    }

    #[test]
    fn overlapping_structures_fail() {
        let mut caps = qemu_like();
        caps[2] = cap(NOTIFY_CFG, 4, 0xFFC, 0x10);
        eio(
            &caps,
            "common configuration and notification structures overlap in BAR 4",
        );
        caps[2] = cap(NOTIFY_CFG, 4, 0x2000, 0x2);
        eio(
            &caps,
            "notification and device configuration structures overlap",
        );
        // The same offsets in different BARs do not overlap; adjacent
        // structures do not either.
        caps[2] = cap(NOTIFY_CFG, 2, 0, 0x1000);
        layout(&caps).expect("other BAR");
        caps[2] = cap(NOTIFY_CFG, 4, 0x1000, 0x1000);
        layout(&caps).expect("adjacent");
    }

    #[test]
    fn small_or_misaligned_structures_fail() {
        let mut caps = qemu_like();
        caps[0] = cap(COMMON_CFG, 4, 0, 55);
        eio(
            &caps,
            "common configuration structure is too small (55 bytes, 56 needed)",
        );
        caps[0] = cap(COMMON_CFG, 4, 2, 0x100);
        eio(&caps, "not 4-byte aligned");
        caps[0] = cap(COMMON_CFG, 4, 0, 0x1000);
        caps[1] = cap(DEVICE_CFG, 4, 0x2000, 59);
        eio(&caps, "device configuration structure is too small");
        caps[1] = cap(DEVICE_CFG, 4, 0x2000, 0x1000);
        caps[2] = cap(NOTIFY_CFG, 4, 0x3001, 0x100);
        eio(&caps, "not 2-byte aligned");
        caps[2] = cap(NOTIFY_CFG, 4, 0x3000, 1);
        eio(&caps, "notification structure is too small");
        caps[2] = cap(NOTIFY_CFG, 4, 0x3002, 0x100);
        layout(&caps).expect("2-byte aligned notification");
        caps[2][14] = 3;
        eio(&caps, "notify_off_multiplier 3 is odd");
        caps[2][14] = 0;
        layout(&caps).expect("multiplier 0: one notify address for all queues");
    }

    #[test]
    fn a_notify_capability_without_multiplier_is_skipped() {
        let mut caps = qemu_like();
        caps[2][0] = 16;
        let e = layout(&caps).expect_err("accepted");
        assert_eq!(e.errno(), libc::ENOTSUP);
        assert!(e.message().contains("notification"), "{}", e.message());
    }

    #[test]
    fn first_usable_capability_wins_and_loops_end() {
        let mut caps = qemu_like();
        // A reserved BAR is skipped; a second common capability is ignored.
        caps.insert(0, cap(COMMON_CFG, 6, 0x100, 0x1000));
        caps.push(cap(COMMON_CFG, 1, 0, 0x1000));
        let l = layout(&caps).expect("valid");
        assert_eq!(l.common.bar, 4);
        // A list whose last entry points back at the first still ends.
        let mut s = space(&qemu_like());
        s[0x60 + 1] = 0x40;
        let l = Caps::find(&MemConfigSpace(s))
            .unwrap()
            .validate(60, bars)
            .expect("valid");
        assert_eq!(l.notify.offset, 0x3000);
    }
}
