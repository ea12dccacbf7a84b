//! NVMe commands as the Linux passthrough interface carries them: the
//! 72-byte `struct nvme_passthru_cmd` (admin ioctl) and its twin
//! `struct nvme_uring_cmd` (the command area of an `IORING_OP_URING_CMD`
//! SQE), plus the opcodes and field encodings this driver uses
//! (docs/contract/requests.md §7.2).

use std::os::fd::RawFd;

use crate::core::{Error, Result};

/// `_IO('N', 0x40)`: the namespace id of a namespace device.
pub const NVME_IOCTL_ID: libc::c_ulong = 0x4E40;
/// `_IOWR('N', 0x41, struct nvme_passthru_cmd)`.
pub const NVME_IOCTL_ADMIN_CMD: libc::c_ulong = 0xC048_4E41;
/// `_IOWR('N', 0x80, struct nvme_uring_cmd)`: one data buffer.
pub const NVME_URING_CMD_IO: u32 = 0xC048_4E80;
/// `_IOWR('N', 0x81, struct nvme_uring_cmd)`: `addr` is an iovec array.
pub const NVME_URING_CMD_IO_VEC: u32 = 0xC048_4E81;

/// Admin opcodes.
pub const ADMIN_GET_LOG_PAGE: u8 = 0x02;
pub const ADMIN_IDENTIFY: u8 = 0x06;
pub const ADMIN_GET_FEATURES: u8 = 0x0A;

/// NVM and Zoned Namespace command set opcodes.
pub const IO_FLUSH: u8 = 0x00;
pub const IO_WRITE: u8 = 0x01;
pub const IO_READ: u8 = 0x02;
pub const IO_WRITE_ZEROES: u8 = 0x08;
pub const IO_DATASET_MANAGEMENT: u8 = 0x09;
pub const IO_ZONE_MGMT_SEND: u8 = 0x79;
pub const IO_ZONE_MGMT_RECV: u8 = 0x7A;
pub const IO_ZONE_APPEND: u8 = 0x7D;

/// CDW12 bits of Read/Write/Write Zeroes.
pub const CDW12_FUA: u32 = 1 << 30;
pub const CDW12_DEAC: u32 = 1 << 25;
/// CDW11 of Dataset Management: Attribute – Deallocate.
pub const DSM_DEALLOCATE: u32 = 1 << 2;
/// CDW13 of Zone Management Send: Select All.
pub const ZONE_SEND_SELECT_ALL: u32 = 1 << 8;
/// CDW13 of Zone Management Receive: Partial Report.
pub const ZONE_RECV_PARTIAL: u32 = 1 << 16;

/// Command Set Identifiers.
pub const CSI_NVM: u8 = 0;
pub const CSI_ZONED: u8 = 2;

/// `struct nvme_passthru_cmd` = `struct nvme_uring_cmd` (the last field is
/// `result` in the first and reserved in the second).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct NvmeCmd {
    pub opcode: u8,
    pub flags: u8,
    pub rsvd1: u16,
    pub nsid: u32,
    pub cdw2: u32,
    pub cdw3: u32,
    pub metadata: u64,
    pub addr: u64,
    pub metadata_len: u32,
    pub data_len: u32,
    pub cdw10: u32,
    pub cdw11: u32,
    pub cdw12: u32,
    pub cdw13: u32,
    pub cdw14: u32,
    pub cdw15: u32,
    pub timeout_ms: u32,
    pub result: u32,
}

const _: () = assert!(std::mem::size_of::<NvmeCmd>() == 72);

impl NvmeCmd {
    /// A command with `opcode` for namespace `nsid`.
    pub fn new(opcode: u8, nsid: u32) -> Self {
        NvmeCmd {
            opcode,
            nsid,
            ..Default::default()
        }
    }

    /// Sets CDW10/CDW11 to a 64-bit starting LBA.
    pub fn slba(mut self, lba: u64) -> Self {
        self.cdw10 = lba as u32;
        self.cdw11 = (lba >> 32) as u32;
        self
    }

    /// Points the command at a data buffer (or an iovec array for
    /// `NVME_URING_CMD_IO_VEC`, where `len` is the iovec count).
    pub fn data(mut self, addr: *const u8, len: u32) -> Self {
        self.addr = addr as u64;
        self.data_len = len;
        self
    }

    /// The 80-byte command area of a `IORING_OP_URING_CMD` SQE128.
    pub fn to_uring_cmd(self) -> [u8; 80] {
        let mut area = [0u8; 80];
        // SAFETY: NvmeCmd is a plain repr(C) struct of 72 bytes without
        // padding; it is copied into the larger area.
        let bytes =
            unsafe { std::slice::from_raw_parts((&self as *const NvmeCmd).cast::<u8>(), 72) };
        area[..72].copy_from_slice(bytes);
        area
    }

    /// Runs the command as an admin command through `NVME_IOCTL_ADMIN_CMD`
    /// (accepted by the namespace's char device) and returns the command's
    /// result dword. The data buffer must stay valid for the call.
    pub fn admin(mut self, fd: RawFd) -> Result<u32> {
        // SAFETY: the ioctl reads and updates this 72-byte struct; `addr`
        // points to a buffer of `data_len` bytes the caller owns.
        let ret = unsafe { libc::ioctl(fd, NVME_IOCTL_ADMIN_CMD, &mut self as *mut NvmeCmd) };
        match ret {
            0 => Ok(self.result),
            r if r < 0 => Err(Error::last_os_error()),
            status => Err(Error::device(format!(
                "Admin command {:#04x} failed with NVMe status {status:#x}",
                self.opcode
            ))),
        }
    }
}

/// One Dataset Management range (16 bytes, little endian).
pub fn dsm_range(slba: u64, nlb: u32) -> [u8; 16] {
    let mut r = [0u8; 16];
    r[4..8].copy_from_slice(&nlb.to_le_bytes());
    r[8..16].copy_from_slice(&slba.to_le_bytes());
    r
}

/// `NVME_IOCTL_ID`: the namespace id behind `fd`.
pub fn namespace_id(fd: RawFd) -> Result<u32> {
    // SAFETY: NVME_IOCTL_ID takes no argument; the result is checked.
    let ret = unsafe { libc::ioctl(fd, NVME_IOCTL_ID) };
    if ret < 0 {
        return Err(Error::last_os_error());
    }
    Ok(ret as u32)
}
