//! Zone reports: the Zone Management Receive data (a 64-byte header and
//! 64-byte zone descriptors) turned into `struct blkio_zone` entries
//! (docs/contract/requests.md §7.2).
//!
//! The device writes into a library buffer, not into the application's
//! array: QEMU transfers the whole buffer, zero-filling what it did not
//! report, and entries past the completion's `ret` must stay untouched.

use super::status::Failure;
use crate::core::request::Zone;

/// Size of the report header and of one zone descriptor.
pub const ENTRY_SIZE: usize = 64;

const ZONE_TYPE_SEQWRITE_REQ: u8 = 2;
const ZONE_STATE_FULL: u8 = 0xE;
/// Zone attribute: Reset Zone Recommended.
const ZA_RZR: u8 = 1 << 2;

/// Geometry needed to convert LBAs to bytes.
#[derive(Clone, Copy)]
pub struct Geometry {
    pub lba_shift: u32,
    pub zone_size: u64,
}

/// Converts `report` (header + descriptors for up to `asked` zones) into
/// `zones[..n]`, n from the header, and returns n, the completion's `ret`.
///
/// # Safety
/// `zones` points to at least `asked` writable entries.
pub unsafe fn convert(
    report: &[u8],
    zones: *mut Zone,
    asked: u32,
    geo: Geometry,
) -> Result<i32, Failure> {
    let reported = le64(report, 0);
    if reported > asked as u64 {
        return Err((-libc::EIO, c"Invalid number of zones"));
    }
    let converted = report[ENTRY_SIZE..]
        .chunks_exact(ENTRY_SIZE)
        .take(reported as usize)
        .map(|d| descriptor_to_zone(d, geo))
        .collect::<Result<Vec<_>, _>>()?;
    for (i, zone) in converted.into_iter().enumerate() {
        // SAFETY: i < reported ≤ asked entries of the caller's array.
        unsafe { zones.add(i).write_unaligned(zone) };
    }
    Ok(reported as i32)
}

fn le64(d: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(d[at..at + 8].try_into().unwrap())
}

fn descriptor_to_zone(d: &[u8], geo: Geometry) -> Result<Zone, Failure> {
    let zone_type = d[0] & 0xF;
    if zone_type != ZONE_TYPE_SEQWRITE_REQ {
        return Err((-libc::EIO, c"Zone type is not supported"));
    }
    // NVMe zone states have the BLKIO_ZONE_STATE_* values.
    let state = d[1] >> 4;
    if !matches!(state, 0x1..=0x4 | 0xD..=0xF) {
        return Err((-libc::EIO, c"Zone state is not supported"));
    }
    // LBAs whose byte offsets do not fit 64 bits are a device error.
    let out_of_range = (-libc::EIO, c"Zone descriptor out of range");
    let bytes = |lba: u64| {
        (geo.lba_shift < 64 && lba <= u64::MAX >> geo.lba_shift)
            .then(|| lba << geo.lba_shift)
            .ok_or(out_of_range)
    };
    let start = bytes(le64(d, 16))?;
    let write_pointer = if state == ZONE_STATE_FULL {
        start.checked_add(geo.zone_size).ok_or(out_of_range)?
    } else {
        bytes(le64(d, 24))?
    };
    Ok(Zone {
        start,
        len: geo.zone_size,
        capacity: bytes(le64(d, 8))?,
        write_pointer,
        zone_type,
        zone_state: state,
        reset: u8::from(d[2] & ZA_RZR != 0),
        reserved_: [0; 29],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn descriptor(state: u8, zslba: u64, wp: u64, attrs: u8) -> [u8; ENTRY_SIZE] {
        let mut d = [0u8; ENTRY_SIZE];
        d[0] = ZONE_TYPE_SEQWRITE_REQ;
        d[1] = state << 4;
        d[2] = attrs;
        d[8..16].copy_from_slice(&4096u64.to_le_bytes());
        d[16..24].copy_from_slice(&zslba.to_le_bytes());
        d[24..32].copy_from_slice(&wp.to_le_bytes());
        d
    }

    fn report(n: u64, descriptors: &[[u8; ENTRY_SIZE]]) -> Vec<u8> {
        let mut r = vec![0u8; ENTRY_SIZE];
        r[..8].copy_from_slice(&n.to_le_bytes());
        for d in descriptors {
            r.extend_from_slice(d);
        }
        r
    }

    const GEO: Geometry = Geometry {
        lba_shift: 12,
        zone_size: 16 << 20,
    };

    #[test]
    fn converts_reported_zones_only() {
        let r = report(
            2,
            &[
                descriptor(0x1, 0, 0, 0),
                descriptor(0xE, 4096, 4096, ZA_RZR),
                [0; ENTRY_SIZE],
            ],
        );
        let mut zones = [Zone {
            start: 77,
            ..Zone::default()
        }; 3];
        // SAFETY: `zones` has room for the 3 entries asked for.
        let n = unsafe { convert(&r, zones.as_mut_ptr(), 3, GEO) };
        assert_eq!(n, Ok(2));
        assert_eq!(zones[0].start, 0);
        assert_eq!(zones[0].len, 16 << 20);
        assert_eq!(zones[0].capacity, 16 << 20);
        assert_eq!(zones[0].zone_state, 1);
        assert_eq!(zones[0].zone_type, 2);
        assert_eq!(zones[1].write_pointer, (16 << 20) * 2);
        assert_eq!(zones[1].reset, 1);
        assert_eq!(zones[1].reserved_, [0; 29]);
        // Entry 2 was not reported: untouched.
        assert_eq!(zones[2].start, 77);
    }

    #[test]
    fn rejects_bad_reports() {
        let mut zones = [Zone::default(); 2];
        let ok = descriptor(0x1, 0, 0, 0);
        // SAFETY: `zones` has room for the 1 entry asked for.
        let r = unsafe { convert(&report(2, &[ok]), zones.as_mut_ptr(), 1, GEO) };
        assert_eq!(r, Err((-libc::EIO, c"Invalid number of zones")));
        // SAFETY: `zones` has room for the 1 entry asked for.
        let r = unsafe {
            convert(
                &report(1, &[descriptor(0x5, 0, 0, 0)]),
                zones.as_mut_ptr(),
                1,
                GEO,
            )
        };
        assert_eq!(r, Err((-libc::EIO, c"Zone state is not supported")));
        let mut conventional = ok;
        conventional[0] = 1;
        // SAFETY: `zones` has room for the 1 entry asked for.
        let r = unsafe { convert(&report(1, &[conventional]), zones.as_mut_ptr(), 1, GEO) };
        assert_eq!(r, Err((-libc::EIO, c"Zone type is not supported")));
    }

    /// Found by the nvme_zone_report fuzz target: LBAs whose byte offset
    /// needs more than 64 bits lost their high bits, and a full zone at
    /// the top of the LBA space overflowed `start + zone size`.
    #[test]
    fn rejects_lbas_beyond_64_bits() {
        let mut zones = [Zone::default(); 1];
        let bad = Err((-libc::EIO, c"Zone descriptor out of range"));
        for d in [
            descriptor(0x1, 1 << 60, 0, 0),
            descriptor(0x1, 0, 1 << 60, 0),
            descriptor(0xE, (u64::MAX >> 12) - 1, 0, 0),
        ] {
            // SAFETY: `zones` has the one entry asked for.
            let r = unsafe { convert(&report(1, &[d]), zones.as_mut_ptr(), 1, GEO) };
            assert_eq!(r, bad);
        }
        let top = Geometry {
            lba_shift: 0,
            zone_size: 1 << 20,
        };
        let d = descriptor(0xE, u64::MAX - 10, 0, 0);
        // SAFETY: as above.
        let r = unsafe { convert(&report(1, &[d]), zones.as_mut_ptr(), 1, top) };
        assert_eq!(r, bad);
    }
}
