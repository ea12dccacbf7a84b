//! The connected namespace: its character device and the property values
//! derived from the Identify facts (docs/contract/properties.md §4), computed once at
//! connect.

use std::fs;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::PathBuf;

use super::command;
use super::identify::{self, Facts};
use crate::core::device_fd::DeviceFd;
use crate::core::{sys, Error, Result};

/// A namespace character device ready for I/O.
pub struct Namespace {
    pub fd: OwnedFd,
    pub nsid: u32,
    /// log2 of the LBA size.
    pub lba_shift: u32,
    pub limits: Limits,
}

/// Property values of a namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    pub lba_size: u32,
    pub capacity: u64,
    pub max_transfer: u32,
    pub max_write_zeroes: u64,
    pub max_discard: u64,
    pub flush_needed: bool,
    pub zoned: Option<ZoneLimits>,
}

/// Property values of a zoned namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ZoneLimits {
    pub zone_size: u64,
    pub nr_zones: u64,
    pub max_open: i32,
    pub max_active: i32,
    pub append: bool,
    pub append_max: u64,
}

impl Namespace {
    /// Identifies the namespace behind `fd`; it becomes the namespace's
    /// only if that succeeds.
    pub fn probe(fd: DeviceFd) -> Result<Self> {
        let (nsid, lba_shift, limits) = Self::inspect(fd.as_raw_fd())?;
        Ok(Namespace {
            fd: fd.keep(),
            nsid,
            lba_shift,
            limits,
        })
    }

    fn inspect(fd: RawFd) -> Result<(u32, u32, Limits)> {
        let st = sys::fstat(fd)?;
        if st.st_mode & libc::S_IFMT != libc::S_IFCHR {
            return Err(Error::invalid("The file must be a character device"));
        }
        let nsid = command::namespace_id(fd)?;
        let facts = identify::read_facts(fd, nsid)?;
        identify::check_format(&facts)?;
        let limits = Limits::new(&facts, max_hw_bytes(st.st_rdev));
        Ok((nsid, facts.lbads as u32, limits))
    }
}

impl Limits {
    /// The rules of docs/contract/properties.md §4, with its two [Q] recommendations:
    ///
    /// * `max-transfer` = min(65536 LBAs, 4 KiB × 2^MDTS when MDTS ≠ 0,
    ///   the kernel's `max_hw_sectors_kb` of the namespace when known) —
    ///   upstream reports 65536 LBAs and lets longer requests fail in the
    ///   kernel. The result is rounded down to whole LBAs (at least one)
    ///   and kept within `int`.
    /// * `zone-append-max-bytes` with ZASL 0 ("limited by MDTS") is
    ///   `max-transfer` instead of upstream's 4096.
    ///
    /// `max-write-zeroes-len` is 65536 LBAs (the 16-bit NLB field; no data
    /// moves, so MDTS does not apply — what upstream reports), further
    /// limited by a non-zero WZSL.
    pub fn new(f: &Facts, max_hw_bytes: Option<u64>) -> Limits {
        let shift = f.lbads as u32;
        let lba_size = 1u32 << shift;
        let nlb_limit = 65536u64 << shift;
        let units_4k = |exp: u8| 4096u64.checked_shl(exp as u32).unwrap_or(u64::MAX);
        let mut max_transfer = nlb_limit.min(i32::MAX as u64);
        if f.mdts != 0 {
            max_transfer = max_transfer.min(units_4k(f.mdts));
        }
        if let Some(hw) = max_hw_bytes.filter(|&b| b > 0) {
            max_transfer = max_transfer.min(hw);
        }
        let max_transfer = ((max_transfer >> shift) << shift).max(lba_size as u64) as u32;

        let max_write_zeroes = if f.oncs & (1 << 3) != 0 || f.wzsl != 0 {
            match f.wzsl {
                0 => nlb_limit,
                wzsl => nlb_limit.min(units_4k(wzsl)),
            }
        } else {
            0
        };
        let max_discard = if f.oncs & (1 << 2) != 0 {
            (u32::MAX as u64) << shift
        } else {
            (f.dmrsl as u64) << shift
        };
        let capacity = shl_saturating(f.nsze, shift);
        let zoned = f.zoned.as_ref().map(|z| {
            // A zone size beyond 64 bits is as unusable as none.
            let zone_size = z.zsze.checked_mul(1 << shift).unwrap_or(0);
            let append_max = match (z.append_supported, z.zasl) {
                (false, _) => 0,
                (true, 0) => max_transfer as u64,
                (true, zasl) => units_4k(zasl),
            };
            ZoneLimits {
                zone_size,
                nr_zones: capacity.checked_div(zone_size).unwrap_or(0),
                // "+ 1" in 32 bits: 0xFFFFFFFF (no limit) becomes 0.
                max_open: z.mor.wrapping_add(1) as i32,
                max_active: z.mar.wrapping_add(1) as i32,
                append: z.append_supported,
                append_max,
            }
        });
        Limits {
            lba_size,
            capacity,
            max_transfer,
            max_write_zeroes,
            max_discard,
            flush_needed: f.vwc_present && f.write_cache_enabled,
            zoned,
        }
    }
}

/// `v << shift`, or `u64::MAX` when bits would be lost.
fn shl_saturating(v: u64, shift: u32) -> u64 {
    if shift >= 64 || v > u64::MAX >> shift {
        u64::MAX
    } else {
        v << shift
    }
}

/// `queue/max_hw_sectors_kb` × 1024 of the block device that goes with the
/// namespace character device `rdev` (`ngXnY` ↔ `nvmeXnY`), if sysfs has it.
fn max_hw_bytes(rdev: libc::dev_t) -> Option<u64> {
    let char_dir = PathBuf::from(format!(
        "/sys/dev/char/{}:{}",
        libc::major(rdev),
        libc::minor(rdev)
    ));
    let name = fs::canonicalize(char_dir).ok()?;
    let block = format!("nvme{}", name.file_name()?.to_str()?.strip_prefix("ng")?);
    let kb: u64 = fs::read_to_string(format!("/sys/class/block/{block}/queue/max_hw_sectors_kb"))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::super::identify::ZonedFacts;
    use super::*;

    /// The QEMU 7.2 controller of docs/contract/properties.md §4.1.
    fn qemu(lbads: u8, zoned: bool) -> Facts {
        Facts {
            nsid: 1,
            nsze: 268435456 >> lbads,
            lbads,
            mdts: 7,
            oncs: 0x15d,
            vwc_present: true,
            write_cache_enabled: true,
            dmrsl: 524287,
            zoned: zoned.then_some(ZonedFacts {
                mar: u32::MAX,
                mor: u32::MAX,
                zsze: 16777216 >> lbads,
                zasl: 0,
                append_supported: true,
            }),
            ..Facts::default()
        }
    }

    #[test]
    fn conventional_namespace_values() {
        let l = Limits::new(&qemu(9, false), Some(512 * 1024));
        assert_eq!(l.capacity, 268435456);
        assert_eq!(l.lba_size, 512);
        assert_eq!(l.max_transfer, 524288);
        assert_eq!(l.max_write_zeroes, 33554432);
        assert_eq!(l.max_discard, 2199023255040);
        assert!(l.flush_needed);
        assert_eq!(l.zoned, None);
    }

    #[test]
    fn zoned_namespace_values() {
        let l = Limits::new(&qemu(12, true), None);
        assert_eq!(l.max_transfer, 524288); // MDTS 7 without sysfs
        assert_eq!(l.max_write_zeroes, 268435456);
        assert_eq!(l.max_discard, 17592186040320);
        let z = l.zoned.unwrap();
        assert_eq!((z.zone_size, z.nr_zones), (16777216, 16));
        assert_eq!((z.max_open, z.max_active), (0, 0));
        assert!(z.append);
        assert_eq!(z.append_max, 524288);
    }

    #[test]
    fn limits_edge_cases() {
        let mut f = qemu(9, false);
        f.mdts = 0;
        f.oncs = 0;
        f.dmrsl = 0;
        f.write_cache_enabled = false;
        let l = Limits::new(&f, None);
        assert_eq!(l.max_transfer, 33554432);
        assert_eq!((l.max_write_zeroes, l.max_discard), (0, 0));
        assert!(!l.flush_needed);
        f.wzsl = 1;
        assert_eq!(Limits::new(&f, None).max_write_zeroes, 8192);
        // 64 KiB LBAs with a 4 KiB MDTS: at least one LBA.
        f.lbads = 16;
        f.mdts = 0;
        assert_eq!(Limits::new(&f, Some(4096)).max_transfer, 65536);
        let mut z = qemu(12, true);
        z.zoned.as_mut().unwrap().zasl = 5;
        z.zoned.as_mut().unwrap().mar = 13;
        let zl = Limits::new(&z, None).zoned.unwrap();
        assert_eq!((zl.append_max, zl.max_active), (131072, 14));
    }

    /// Found by the nvme_identify fuzz target: a namespace size whose byte
    /// count exceeds 64 bits wrapped (NSZE 2^60 of 4 KiB blocks gave
    /// capacity 0) instead of saturating; likewise the zone size.
    #[test]
    fn huge_sizes_saturate() {
        let mut f = qemu(12, true);
        f.nsze = 1 << 60;
        f.zoned.as_mut().unwrap().zsze = 1 << 60;
        let l = Limits::new(&f, None);
        assert_eq!(l.capacity, u64::MAX);
        let z = l.zoned.unwrap();
        assert_eq!((z.zone_size, z.nr_zones), (0, 0));
        assert_eq!(shl_saturating(3, 62), 3 << 62);
        assert_eq!(shl_saturating(4, 62), u64::MAX);
        assert_eq!(shl_saturating(1, 63), 1 << 63);
        assert_eq!(shl_saturating(1, 64), u64::MAX);
    }
}
