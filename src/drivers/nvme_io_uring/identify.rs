//! The admin commands issued at connect (docs/contract/requests.md §7.2: Identify,
//! Get Log Page, Get Features) and the raw facts read from their data.
//! How those facts become property values is [`super::namespace`]'s job.

use std::os::fd::RawFd;

use super::command::{
    NvmeCmd, ADMIN_GET_FEATURES, ADMIN_GET_LOG_PAGE, ADMIN_IDENTIFY, CSI_NVM, CSI_ZONED,
    IO_ZONE_APPEND,
};
use crate::core::{Error, Result};

const CNS_NAMESPACE: u8 = 0x00;
const CNS_CONTROLLER: u8 = 0x01;
const CNS_NS_DESCRIPTORS: u8 = 0x03;
const CNS_CSI_NAMESPACE: u8 = 0x05;
const CNS_CSI_CONTROLLER: u8 = 0x06;
/// Namespace Identification Descriptor type: Command Set Identifier.
const NIDT_CSI: u8 = 4;
/// Log page: Commands Supported and Effects.
const LID_COMMAND_EFFECTS: u32 = 0x05;
/// Feature: Volatile Write Cache.
const FID_VOLATILE_WRITE_CACHE: u32 = 0x06;
const NSID_ALL: u32 = 0xFFFF_FFFF;
const PAGE: usize = 4096;
/// The largest LBA Data Size accepted (1 GiB blocks).
const MAX_LBADS: u8 = 30;

/// What the controller says about itself and the namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Facts {
    pub nsid: u32,
    /// Namespace size in logical blocks (NSZE).
    pub nsze: u64,
    /// LBA data size exponent of the formatted LBA format (LBADS).
    pub lbads: u8,
    /// Metadata size of the formatted LBA format (MS).
    pub metadata_size: u16,
    /// Maximum Data Transfer Size, a power of two in 4 KiB units; 0 = none.
    pub mdts: u8,
    /// Optional NVM Command Support.
    pub oncs: u16,
    /// A volatile write cache is present (VWC bit 0) ...
    pub vwc_present: bool,
    /// ... and enabled (Get Features FID 0x06, bit 0).
    pub write_cache_enabled: bool,
    /// Write Zeroes Size Limit (NVM I/O-command-set controller data).
    pub wzsl: u8,
    /// Dataset Management Range Size Limit, in logical blocks.
    pub dmrsl: u32,
    /// Zoned facts, when the namespace's command set is Zoned (CSI 2).
    pub zoned: Option<ZonedFacts>,
}

/// Facts of a zoned namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ZonedFacts {
    /// Maximum Active / Open Resources, 0-based; 0xFFFFFFFF = no limit.
    pub mar: u32,
    pub mor: u32,
    /// Zone size in logical blocks (first LBA format extension).
    pub zsze: u64,
    /// Zone Append Size Limit (power of two in 4 KiB units; 0 = MDTS).
    pub zasl: u8,
    /// The Commands Supported and Effects log lists Zone Append.
    pub append_supported: bool,
}

fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

fn le64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

/// An Identify command returning one 4 KiB page.
fn identify(fd: RawFd, cns: u8, csi: u8, nsid: u32) -> Result<Vec<u8>> {
    let mut page = vec![0u8; PAGE];
    let mut cmd = NvmeCmd::new(ADMIN_IDENTIFY, nsid).data(page.as_mut_ptr(), PAGE as u32);
    cmd.cdw10 = cns as u32;
    cmd.cdw11 = (csi as u32) << 24;
    cmd.admin(fd)?;
    Ok(page)
}

/// Reads everything the properties need. `nsid` comes from NVME_IOCTL_ID.
///
/// The commands a pre-2.0 controller may not know (I/O-command-set
/// controller data, identification descriptors) count as "field is 0" /
/// "not zoned" when they fail; the namespace and controller data are
/// required.
pub fn read_facts(fd: RawFd, nsid: u32) -> Result<Facts> {
    let ns = identify(fd, CNS_NAMESPACE, CSI_NVM, nsid)?;
    let ctrl = identify(fd, CNS_CONTROLLER, CSI_NVM, 0)?;
    let (lbads, metadata_size) = lba_format(&ns);
    let vwc_present = ctrl[525] & 1 != 0;
    let mut facts = Facts {
        nsid,
        nsze: le64(&ns, 0),
        lbads,
        metadata_size,
        mdts: ctrl[77],
        oncs: le16(&ctrl, 520),
        vwc_present,
        ..Facts::default()
    };
    if let Ok(nvm) = identify(fd, CNS_CSI_CONTROLLER, CSI_NVM, 0) {
        facts.wzsl = nvm[1];
        facts.dmrsl = le32(&nvm, 4);
    }
    let is_zoned = identify(fd, CNS_NS_DESCRIPTORS, CSI_NVM, nsid)
        .is_ok_and(|d| command_set(&d) == Some(CSI_ZONED));
    if is_zoned {
        facts.zoned = Some(zoned_facts(fd, nsid)?);
    }
    if vwc_present {
        let mut cmd = NvmeCmd::new(ADMIN_GET_FEATURES, 0);
        cmd.cdw10 = FID_VOLATILE_WRITE_CACHE;
        facts.write_cache_enabled = cmd.admin(fd)? & 1 != 0;
    }
    Ok(facts)
}

fn zoned_facts(fd: RawFd, nsid: u32) -> Result<ZonedFacts> {
    let zns = identify(fd, CNS_CSI_NAMESPACE, CSI_ZONED, nsid)?;
    let zctrl = identify(fd, CNS_CSI_CONTROLLER, CSI_ZONED, 0)?;
    let mut effects = vec![0u8; PAGE];
    let mut cmd =
        NvmeCmd::new(ADMIN_GET_LOG_PAGE, NSID_ALL).data(effects.as_mut_ptr(), PAGE as u32);
    let numd = (PAGE / 4 - 1) as u32;
    cmd.cdw10 = LID_COMMAND_EFFECTS | (numd & 0xFFFF) << 16;
    cmd.cdw11 = numd >> 16;
    cmd.cdw14 = (CSI_ZONED as u32) << 24;
    cmd.admin(fd)?;
    Ok(ZonedFacts {
        mar: le32(&zns, 4),
        mor: le32(&zns, 8),
        // Entry 0 of the LBA format extensions, whatever format is active
        // (what upstream reads, docs/contract/properties.md §4).
        zsze: le64(&zns, 2816),
        zasl: zctrl[0],
        // I/O command entries follow the 256 admin ones (4 bytes each).
        append_supported: le32(&effects, 1024 + 4 * IO_ZONE_APPEND as usize) & 1 != 0,
    })
}

/// LBADS and MS of the formatted LBA format: the index is FLBAS bits 0–3,
/// plus bits 5–6 as the high bits when there are more than 16 formats.
fn lba_format(ns: &[u8]) -> (u8, u16) {
    let nlbaf = ns[25] as usize + 1;
    let flbas = ns[26] as usize;
    let mut index = flbas & 0xF;
    if nlbaf > 16 {
        index |= (flbas >> 5 & 0x3) << 4;
    }
    let entry = 128 + 4 * index;
    (ns[entry + 2], le16(ns, entry))
}

/// The Command Set Identifier from a namespace identification descriptor
/// list, if it has one.
fn command_set(list: &[u8]) -> Option<u8> {
    let mut at = 0;
    while at + 4 <= list.len() {
        let (kind, len) = (list[at], list[at + 1] as usize);
        if kind == 0 {
            return None;
        }
        if kind == NIDT_CSI && len >= 1 {
            return list.get(at + 4).copied();
        }
        at += 4 + len;
    }
    None
}

/// Checks the LBA format the driver can work with (docs/contract/properties.md §4).
pub fn check_format(facts: &Facts) -> Result<()> {
    if facts.metadata_size != 0 {
        return Err(Error::invalid(format!(
            "Metadata Size (MS) is {}, expected 0 since the driver does not support per-LBA metadata",
            facts.metadata_size
        )));
    }
    if facts.lbads < 9 {
        return Err(Error::invalid(format!(
            "LBA Data Size (LBADS) is {}, expected 9 or greater",
            facts.lbads
        )));
    }
    // The block size must fit the int `block-size` property (and the
    // shifts that convert LBAs into bytes).
    if facts.lbads > MAX_LBADS {
        return Err(Error::invalid(format!(
            "LBA Data Size (LBADS) is {}, expected {MAX_LBADS} or less",
            facts.lbads
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lba_format_index_uses_high_bits_beyond_16_formats() {
        let mut ns = vec![0u8; PAGE];
        ns[25] = 19; // 20 formats
        ns[26] = 0x2 | (1 << 5); // index 0x12
        ns[128 + 4 * 0x12 + 2] = 12;
        ns[128 + 4 * 0x12] = 8;
        assert_eq!(lba_format(&ns), (12, 8));
        ns[25] = 15; // 16 formats: bits 5-6 ignored
        ns[128 + 4 * 2 + 2] = 9;
        assert_eq!(lba_format(&ns), (9, 0));
    }

    #[test]
    fn descriptor_list_walk() {
        let mut list = vec![0u8; PAGE];
        // EUI64 descriptor (type 1, 8 bytes), then CSI (type 4, 1 byte).
        list[0] = 1;
        list[1] = 8;
        list[12] = NIDT_CSI;
        list[13] = 1;
        list[16] = CSI_ZONED;
        assert_eq!(command_set(&list), Some(CSI_ZONED));
        assert_eq!(command_set(&[0u8; 64]), None);
    }

    #[test]
    fn format_checks() {
        let mut f = Facts {
            lbads: 12,
            ..Facts::default()
        };
        assert!(check_format(&f).is_ok());
        f.lbads = 8;
        assert_eq!(
            check_format(&f).unwrap_err().message(),
            "LBA Data Size (LBADS) is 8, expected 9 or greater"
        );
        // Found by the nvme_identify fuzz target: LBADS 32 and more
        // overflowed the shifts of the property rules.
        f.lbads = 31;
        assert_eq!(
            check_format(&f).unwrap_err().message(),
            "LBA Data Size (LBADS) is 31, expected 30 or less"
        );
        f.lbads = 8;
        f.metadata_size = 8;
        assert_eq!(
            check_format(&f).unwrap_err().message(),
            "Metadata Size (MS) is 8, expected 0 since the driver does not support per-LBA metadata"
        );
    }
}
