//! How a passthrough command's CQE result becomes a completion
//! (docs/contract/requests.md §7.2): 0 is success, a negative value a kernel errno, a
//! positive value the NVMe status field (SC in bits 0–7, SCT in 8–10).

use std::ffi::CStr;

/// The failure of a command: negative errno and the message every
/// nvme-io_uring failure carries.
pub type Failure = (i32, &'static CStr);

/// `None` for success, else the completion's `ret` and message.
pub fn check(res: i32) -> Option<Failure> {
    match res {
        0 => None,
        r if r < 0 => Some((r, c"Kernel error")),
        status => Some(nvme_status(status as u32)),
    }
}

/// Maps an NVMe status. The zone resource codes are compared without their
/// SCT (Command Specific, 1) bits, as upstream does: the real "Too Many
/// Active/Open Zones" statuses (0x1BD/0x1BE) therefore report "Nvme Error"
/// like upstream (docs/contract/requests.md §7.2 says to reproduce this).
fn nvme_status(status: u32) -> Failure {
    match status & 0x7FF {
        0x001 | 0x002 => (-libc::ENOTSUP, c"Operation not supported"),
        0x080 => (-libc::EINVAL, c"LBA out of range"),
        0x081 => (-libc::ENOSPC, c"Capacity exceeded"),
        0x0BD => (-libc::EOVERFLOW, c"Active zones exceeded"),
        0x0BE => (-libc::ETOOMANYREFS, c"Open zones exceeded"),
        _ => (-libc::EIO, c"Nvme Error"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_table() {
        assert_eq!(check(0), None);
        assert_eq!(check(-libc::EINVAL), Some((-libc::EINVAL, c"Kernel error")));
        assert_eq!(
            check(0x002),
            Some((-libc::ENOTSUP, c"Operation not supported"))
        );
        // DNR (bit 14) and More (bit 13) do not change the mapping.
        assert_eq!(check(0x4080), Some((-libc::EINVAL, c"LBA out of range")));
        assert_eq!(check(0x081), Some((-libc::ENOSPC, c"Capacity exceeded")));
        assert_eq!(check(0x0BD).unwrap().0, -libc::EOVERFLOW);
        assert_eq!(check(0x0BE).unwrap().0, -libc::ETOOMANYREFS);
        assert_eq!(check(0x1BD), Some((-libc::EIO, c"Nvme Error")));
        assert_eq!(check(0x1BC), Some((-libc::EIO, c"Nvme Error"))); // Zone Invalid Write
    }
}
