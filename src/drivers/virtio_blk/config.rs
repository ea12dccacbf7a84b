//! The virtio-blk feature bits and configuration space, and the property
//! values derived from them (docs/contract/virtio.md §2, docs/contract/properties.md §5).

use virtio_bindings::virtio_blk::{
    VIRTIO_BLK_F_BLK_SIZE, VIRTIO_BLK_F_CONFIG_WCE, VIRTIO_BLK_F_DISCARD, VIRTIO_BLK_F_FLUSH,
    VIRTIO_BLK_F_MQ, VIRTIO_BLK_F_RO, VIRTIO_BLK_F_SEG_MAX, VIRTIO_BLK_F_SIZE_MAX,
    VIRTIO_BLK_F_TOPOLOGY, VIRTIO_BLK_F_WRITE_ZEROES,
};
use virtio_bindings::virtio_config::VIRTIO_F_VERSION_1;
use virtio_bindings::virtio_ring::VIRTIO_RING_F_EVENT_IDX;

use super::transport::CONFIG_LEN;

pub const fn bit(n: u32) -> u64 {
    1 << n
}

/// Features the virtio-blk driver asks for, before the transport adds its
/// own (`0x1_2000_7E66`, docs/contract/virtio.md §2.1).
pub const DRIVER_FEATURES: u64 = bit(VIRTIO_BLK_F_SIZE_MAX)
    | bit(VIRTIO_BLK_F_SEG_MAX)
    | bit(VIRTIO_BLK_F_RO)
    | bit(VIRTIO_BLK_F_BLK_SIZE)
    | bit(VIRTIO_BLK_F_FLUSH)
    | bit(VIRTIO_BLK_F_TOPOLOGY)
    | bit(VIRTIO_BLK_F_CONFIG_WCE)
    | bit(VIRTIO_BLK_F_MQ)
    | bit(VIRTIO_BLK_F_DISCARD)
    | bit(VIRTIO_BLK_F_WRITE_ZEROES)
    | bit(VIRTIO_RING_F_EVENT_IDX)
    | bit(VIRTIO_F_VERSION_1);

/// Sector size of virtio-blk addressing, independent of `blk_size`.
pub const SECTOR: u64 = 512;

/// The fields of the 60-byte configuration space the driver uses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BlkConfig {
    pub capacity: u64,
    pub size_max: u32,
    pub seg_max: u32,
    pub blk_size: u32,
    pub physical_block_exp: u8,
    pub alignment_offset: u8,
    pub opt_io_size: u32,
    pub writeback: u8,
    pub num_queues: u16,
    pub max_discard_sectors: u32,
    pub discard_sector_alignment: u32,
    pub max_write_zeroes_sectors: u32,
}

impl BlkConfig {
    pub fn parse(b: &[u8; CONFIG_LEN]) -> BlkConfig {
        let u16_at = |o: usize| u16::from_le_bytes([b[o], b[o + 1]]);
        let u32_at = |o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap());
        BlkConfig {
            capacity: u64::from_le_bytes(b[0..8].try_into().unwrap()),
            size_max: u32_at(8),
            seg_max: u32_at(12),
            blk_size: u32_at(20),
            physical_block_exp: b[24],
            alignment_offset: b[25],
            opt_io_size: u32_at(28),
            writeback: b[32],
            num_queues: u16_at(34),
            max_discard_sectors: u32_at(36),
            discard_sector_alignment: u32_at(44),
            max_write_zeroes_sectors: u32_at(48),
        }
    }

    /// `max-queues`: `num_queues` with MQ (at least 1), else 1.
    pub fn max_queues(&self, features: u64) -> i32 {
        if features & bit(VIRTIO_BLK_F_MQ) != 0 {
            self.num_queues.max(1) as i32
        } else {
            1
        }
    }

    /// `capacity` in bytes.
    pub fn capacity_bytes(&self) -> u64 {
        self.capacity.saturating_mul(SECTOR)
    }
}

/// The largest power of two an `int` property can hold.
const MAX_ALIGNMENT: u64 = 1 << 30;

fn clamp_int(v: u64) -> i32 {
    v.min(i32::MAX as u64) as i32
}

/// The connect-time property values and the features requests depend on.
/// [`Default`] gives the created-state values of docs/contract/properties.md §5.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceInfo {
    pub request_alignment: i32,
    pub optimal_io_alignment: i32,
    pub optimal_io_size: i32,
    pub max_segment_len: i32,
    pub max_segments: i32,
    pub max_transfer: i32,
    pub max_write_zeroes_len: u64,
    pub max_discard_len: u64,
    pub discard_alignment: i32,
    pub discard_alignment_offset: i32,
    pub flush_needed: bool,
    pub flush: bool,
    pub write_zeroes: bool,
    pub discard: bool,
    /// The device is read-only (`VIRTIO_BLK_F_RO`).
    pub read_only: bool,
    pub event_idx: bool,
}

impl Default for DeviceInfo {
    fn default() -> Self {
        DeviceInfo {
            request_alignment: 512,
            optimal_io_alignment: 512,
            optimal_io_size: 0,
            max_segment_len: 0,
            max_segments: 1,
            max_transfer: 0,
            max_write_zeroes_len: 0,
            max_discard_len: 0,
            discard_alignment: 512,
            discard_alignment_offset: 0,
            flush_needed: true,
            flush: false,
            write_zeroes: false,
            discard: false,
            read_only: false,
            event_idx: false,
        }
    }
}

impl DeviceInfo {
    /// The values for a device with negotiated `features` and `cfg`.
    pub fn new(features: u64, cfg: &BlkConfig) -> DeviceInfo {
        let has = |b: u32| features & bit(b) != 0;
        let mut info = DeviceInfo {
            flush: has(VIRTIO_BLK_F_FLUSH),
            write_zeroes: has(VIRTIO_BLK_F_WRITE_ZEROES),
            discard: has(VIRTIO_BLK_F_DISCARD),
            read_only: has(VIRTIO_BLK_F_RO),
            event_idx: has(VIRTIO_RING_F_EVENT_IDX),
            ..DeviceInfo::default()
        };
        // A block size the requests could not honour (0, below a sector,
        // not a power of two, beyond what an int property can say) counts
        // as not offered: sector alignment.
        let blk = if has(VIRTIO_BLK_F_BLK_SIZE)
            && cfg.blk_size.is_power_of_two()
            && (SECTOR..=MAX_ALIGNMENT).contains(&(cfg.blk_size as u64))
        {
            cfg.blk_size as u64
        } else {
            SECTOR
        };
        info.request_alignment = clamp_int(blk);
        info.optimal_io_alignment = clamp_int(blk);
        if has(VIRTIO_BLK_F_TOPOLOGY) {
            // blk × 2^exp, at most the largest power of two in an int.
            let exp = (cfg.physical_block_exp as u32).min(MAX_ALIGNMENT.trailing_zeros());
            info.optimal_io_alignment = clamp_int((blk << exp).min(MAX_ALIGNMENT));
            info.optimal_io_size = clamp_int(blk * cfg.opt_io_size as u64);
            info.discard_alignment_offset = clamp_int(blk * cfg.alignment_offset as u64);
        }
        if has(VIRTIO_BLK_F_SIZE_MAX) {
            info.max_segment_len = clamp_int(cfg.size_max.into());
        }
        if has(VIRTIO_BLK_F_SEG_MAX) {
            // seg_max 0 would refuse every request: one segment instead.
            info.max_segments = clamp_int(cfg.seg_max.max(1).into());
        }
        if has(VIRTIO_BLK_F_SIZE_MAX) && has(VIRTIO_BLK_F_SEG_MAX) {
            // 64-bit product, clamped (upstream wraps in 32 bits).
            info.max_transfer = clamp_int(cfg.size_max as u64 * cfg.seg_max as u64);
        }
        if info.write_zeroes {
            info.max_write_zeroes_len = SECTOR * cfg.max_write_zeroes_sectors as u64;
        }
        if info.discard {
            info.max_discard_len = SECTOR * cfg.max_discard_sectors as u64;
            // 0 (no alignment stated) is sector alignment.
            info.discard_alignment = clamp_int(SECTOR * cfg.discard_sector_alignment.max(1) as u64);
        }
        info.flush_needed = if has(VIRTIO_BLK_F_CONFIG_WCE) {
            cfg.writeback != 0
        } else {
            info.flush
        };
        info
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The qemu-storage-daemon 7.2 config of a 2 MiB image (docs/contract/virtio.md §2.2).
    fn qsd_config() -> [u8; CONFIG_LEN] {
        let mut b = [0u8; CONFIG_LEN];
        b[0..8].copy_from_slice(&4096u64.to_le_bytes());
        b[12..16].copy_from_slice(&126u32.to_le_bytes());
        b[20..24].copy_from_slice(&512u32.to_le_bytes());
        b[26..28].copy_from_slice(&1u16.to_le_bytes());
        b[28..32].copy_from_slice(&1u32.to_le_bytes());
        b[34..36].copy_from_slice(&1u16.to_le_bytes());
        b[36..40].copy_from_slice(&32768u32.to_le_bytes());
        b[40..44].copy_from_slice(&1u32.to_le_bytes());
        b[44..48].copy_from_slice(&1u32.to_le_bytes());
        b[48..52].copy_from_slice(&32768u32.to_le_bytes());
        b[52..56].copy_from_slice(&1u32.to_le_bytes());
        b
    }

    #[test]
    fn driver_mask_is_the_recorded_one() {
        assert_eq!(DRIVER_FEATURES, 0x1_2000_7E66);
    }

    #[test]
    fn qemu_storage_daemon_values() {
        let cfg = BlkConfig::parse(&qsd_config());
        let features = 0x1_6000_7E46; // acknowledged in the recording
        let info = DeviceInfo::new(features, &cfg);
        assert_eq!(cfg.capacity_bytes(), 2 * 1024 * 1024);
        assert_eq!(cfg.max_queues(features), 1);
        assert_eq!(info.request_alignment, 512);
        assert_eq!(info.optimal_io_alignment, 512);
        assert_eq!(info.optimal_io_size, 512);
        assert_eq!((info.max_segment_len, info.max_segments), (0, 126));
        assert_eq!(info.max_transfer, 0);
        assert_eq!(info.max_write_zeroes_len, 16 * 1024 * 1024);
        assert_eq!(info.max_discard_len, 16 * 1024 * 1024);
        assert_eq!(
            (info.discard_alignment, info.discard_alignment_offset),
            (512, 0)
        );
        assert!(!info.flush_needed, "CONFIG_WCE with writeback 0");
        assert!(info.flush && info.write_zeroes && info.discard && info.event_idx);
        assert!(!info.read_only);
    }

    #[test]
    fn vdpa_sim_values() {
        // vdpa_sim_blk (docs/contract/properties.md §5.2): no CONFIG_WCE, no MQ.
        let mut b = [0u8; CONFIG_LEN];
        b[0..8].copy_from_slice(&262144u64.to_le_bytes());
        b[8..12].copy_from_slice(&4096u32.to_le_bytes());
        b[12..16].copy_from_slice(&32u32.to_le_bytes());
        b[20..24].copy_from_slice(&512u32.to_le_bytes());
        b[28..32].copy_from_slice(&1u32.to_le_bytes());
        b[36..40].copy_from_slice(&u32::MAX.to_le_bytes());
        b[44..48].copy_from_slice(&512u32.to_le_bytes());
        b[48..52].copy_from_slice(&u32::MAX.to_le_bytes());
        let cfg = BlkConfig::parse(&b);
        let features = 0x3_0000_7646;
        let info = DeviceInfo::new(features, &cfg);
        assert_eq!(cfg.max_queues(features), 1);
        assert_eq!((info.max_segment_len, info.max_segments), (4096, 32));
        assert_eq!(info.max_transfer, 131072);
        assert_eq!(info.max_discard_len, 2199023255040);
        assert_eq!(info.discard_alignment, 262144);
        assert!(info.flush_needed, "FLUSH without CONFIG_WCE");
        assert!(!info.event_idx);
    }

    #[test]
    fn created_state_defaults() {
        let d = DeviceInfo::default();
        assert_eq!(
            (d.request_alignment, d.max_segments, d.discard_alignment),
            (512, 1, 512)
        );
        assert!(d.flush_needed);
    }

    /// Found by the blk_config fuzz target: a block size of 0, below a
    /// sector, not a power of two or beyond an int, and a physical block
    /// exponent that shifts the alignment out of 64 bits, gave
    /// request-alignment values requests cannot meet and an
    /// optimal-io-alignment of 0; seg_max 0 and discard_sector_alignment 0
    /// gave max-segments 0 and discard-alignment 0.
    #[test]
    fn hostile_config_values_give_usable_properties() {
        for blk_size in [0, 1, 256, 520, 4095, 1 << 31, u32::MAX] {
            let mut cfg = BlkConfig::parse(&qsd_config());
            cfg.blk_size = blk_size;
            let info = DeviceInfo::new(DRIVER_FEATURES, &cfg);
            assert_eq!(info.request_alignment, 512, "blk_size {blk_size}");
        }
        let mut cfg = BlkConfig::parse(&qsd_config());
        cfg.blk_size = 4096;
        cfg.physical_block_exp = 60;
        let info = DeviceInfo::new(DRIVER_FEATURES, &cfg);
        assert_eq!(info.request_alignment, 4096);
        assert_eq!(info.optimal_io_alignment, 1 << 30);
        cfg.physical_block_exp = 255;
        assert_eq!(
            DeviceInfo::new(DRIVER_FEATURES, &cfg).optimal_io_alignment,
            1 << 30
        );
        cfg.seg_max = 0;
        cfg.discard_sector_alignment = 0;
        let info = DeviceInfo::new(DRIVER_FEATURES, &cfg);
        assert_eq!(info.max_segments, 1);
        assert_eq!(info.discard_alignment, 512);
    }

    #[test]
    fn huge_limits_are_clamped() {
        let mut cfg = BlkConfig::parse(&qsd_config());
        cfg.size_max = u32::MAX;
        cfg.seg_max = u32::MAX;
        let info = DeviceInfo::new(DRIVER_FEATURES, &cfg);
        assert_eq!(info.max_transfer, i32::MAX);
        assert_eq!(info.max_segment_len, i32::MAX);
    }
}
