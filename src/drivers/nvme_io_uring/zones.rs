//! Zone reports: the Zone Management Receive data (a 64-byte header and
//! 64-byte zone descriptors) turned into `struct blkio_zone` entries
//! (REQUESTS.md §7.2).
//!
//! A zone descriptor and a `struct blkio_zone` are both 64 bytes, so the
//! device writes the descriptors straight into the application's array and
//! each entry is converted in place.

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

/// Converts the report in `zones[..n]` (n from `header`) in place and
/// returns n, the completion's `ret`.
///
/// # Safety
/// `zones` points to `nr_zones` writable entries holding the descriptors
/// the device returned.
pub unsafe fn convert(
    header: &[u8; ENTRY_SIZE],
    zones: *mut Zone,
    nr_zones: u32,
    geo: Geometry,
) -> Result<i32, Failure> {
    let reported = u64::from_le_bytes(header[..8].try_into().unwrap());
    if reported > nr_zones as u64 {
        return Err((-libc::EIO, c"Invalid number of zones"));
    }
    for i in 0..reported as usize {
        // SAFETY: i < reported ≤ nr_zones, inside the caller's array; a
        // Zone is 64 plain bytes.
        let entry = unsafe { &mut *zones.add(i) };
        // SAFETY: reading the 64 bytes of the entry as a byte array.
        let d: [u8; ENTRY_SIZE] = unsafe { std::mem::transmute_copy(entry) };
        *entry = descriptor_to_zone(&d, geo)?;
    }
    Ok(reported as i32)
}

fn le64(d: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(d[at..at + 8].try_into().unwrap())
}

fn descriptor_to_zone(d: &[u8; ENTRY_SIZE], geo: Geometry) -> Result<Zone, Failure> {
    let zone_type = d[0] & 0xF;
    if zone_type != ZONE_TYPE_SEQWRITE_REQ {
        return Err((-libc::EIO, c"Zone type is not supported"));
    }
    // NVMe zone states have the BLKIO_ZONE_STATE_* values.
    let state = d[1] >> 4;
    if !matches!(state, 0x1..=0x4 | 0xD..=0xF) {
        return Err((-libc::EIO, c"Zone state is not supported"));
    }
    let bytes = |lba: u64| lba << geo.lba_shift;
    let start = bytes(le64(d, 16));
    let write_pointer = if state == ZONE_STATE_FULL {
        start + geo.zone_size
    } else {
        bytes(le64(d, 24))
    };
    Ok(Zone {
        start,
        len: geo.zone_size,
        capacity: bytes(le64(d, 8)),
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

    fn descriptor(state: u8, zslba: u64, wp: u64, attrs: u8) -> Zone {
        let mut d = [0u8; ENTRY_SIZE];
        d[0] = ZONE_TYPE_SEQWRITE_REQ;
        d[1] = state << 4;
        d[2] = attrs;
        d[8..16].copy_from_slice(&4096u64.to_le_bytes());
        d[16..24].copy_from_slice(&zslba.to_le_bytes());
        d[24..32].copy_from_slice(&wp.to_le_bytes());
        // SAFETY: 64 bytes into a 64-byte plain struct.
        unsafe { std::mem::transmute(d) }
    }

    fn header(n: u64) -> [u8; ENTRY_SIZE] {
        let mut h = [0u8; ENTRY_SIZE];
        h[..8].copy_from_slice(&n.to_le_bytes());
        h
    }

    const GEO: Geometry = Geometry {
        lba_shift: 12,
        zone_size: 16 << 20,
    };

    #[test]
    fn converts_in_place() {
        let mut zones = [
            descriptor(0x1, 0, 0, 0),
            descriptor(0xE, 4096, 4096, ZA_RZR),
            descriptor(0x2, 8192, 8200, 0),
        ];
        let before = zones[2];
        let n = unsafe { convert(&header(2), zones.as_mut_ptr(), 3, GEO) };
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
        assert_eq!(
            (zones[2].start, zones[2].write_pointer),
            (before.start, before.write_pointer)
        );
    }

    #[test]
    fn rejects_bad_reports() {
        let mut zones = [descriptor(0x1, 0, 0, 0)];
        let r = unsafe { convert(&header(2), zones.as_mut_ptr(), 1, GEO) };
        assert_eq!(r, Err((-libc::EIO, c"Invalid number of zones")));
        let mut zones = [descriptor(0x5, 0, 0, 0)];
        let r = unsafe { convert(&header(1), zones.as_mut_ptr(), 1, GEO) };
        assert_eq!(r, Err((-libc::EIO, c"Zone state is not supported")));
        let mut zones = [descriptor(0x1, 0, 0, 0)];
        zones[0].start = 1; // zone type byte 0 = 1 (conventional)
        let r = unsafe { convert(&header(1), zones.as_mut_ptr(), 1, GEO) };
        assert_eq!(r, Err((-libc::EIO, c"Zone type is not supported")));
    }
}
