//! The target of the io_uring driver: a regular file or a block device,
//! and the limits derived from it at connect (docs/contract/properties.md §3).

use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use crate::core::device_fd::DeviceFd;
use crate::core::sys::{self, SysfsBlock};
use crate::core::{Error, Result};

/// `_IO(0x12, 0)`: the io_uring command form of BLKDISCARD (Linux 6.12+).
pub const BLOCK_URING_CMD_DISCARD: u32 = 0x1200;
/// `_IO(0x12, 119)`.
const BLKDISCARD: libc::c_ulong = 0x1277;
/// `_IOR(0x12, 114, size_t)`.
const BLKGETSIZE64: libc::c_ulong = 0x8008_1272;
/// `_IO(0x12, 104)`.
const BLKSSZGET: libc::c_ulong = 0x1268;

/// The device file an io_uring instance works on, with what connect learnt.
pub struct DeviceFile {
    pub fd: OwnedFd,
    /// Whether the library opened `path` (rather than taking the caller's fd).
    opened_by_library: bool,
    pub block: bool,
    pub direct: bool,
    pub read_only: bool,
    pub request_alignment: i32,
    pub optimal_io_alignment: i32,
    pub optimal_io_size: i32,
    pub discard_alignment: i32,
    pub discard_alignment_offset: i32,
    pub flush_needed: bool,
    pub supports_fua_natively: bool,
    pub supports_poll_queues: bool,
    /// Block device whose sysfs reports write-zeroes support.
    pub write_zeroes: bool,
    pub max_segments: i32,
}

impl DeviceFile {
    /// Inspects `fd`; it becomes the file's only if that succeeds.
    pub fn probe(fd: DeviceFd) -> Result<Self> {
        let info = Self::inspect(fd.as_raw_fd())?;
        let opened_by_library = fd.opened();
        Ok(info.into_file(fd.keep(), opened_by_library))
    }

    fn inspect(fd: RawFd) -> Result<Probe> {
        let st = sys::fstat(fd)?;
        let fmt = st.st_mode & libc::S_IFMT;
        let block = fmt == libc::S_IFBLK;
        if !block && fmt != libc::S_IFREG {
            return Err(Error::invalid(
                "The file must be a block device or a regular file",
            ));
        }
        // SAFETY: F_GETFL on a descriptor fstat just accepted.
        let fl = unsafe { libc::fcntl(fd, libc::F_GETFL) };
        if fl < 0 {
            return Err(Error::last_os_error());
        }
        let direct = fl & libc::O_DIRECT != 0;
        let read_only = fl & libc::O_ACCMODE == libc::O_RDONLY;
        let sysfs = SysfsBlock::new(if block { st.st_rdev } else { st.st_dev });
        let q = |name: &str| sysfs.as_ref().and_then(|s| s.queue_u64(name));
        let page = sys::page_size() as i32;

        let request_alignment = match (direct, block) {
            (false, _) => Some(1),
            (true, true) => logical_block_size(fd).or(q("logical_block_size").map(|v| v as i32)),
            (true, false) => q("logical_block_size").map(|v| v as i32),
        }
        .unwrap_or(page);

        let (optimal_io_alignment, optimal_io_size, discard_alignment, discard_alignment_offset);
        if block {
            optimal_io_alignment = q("physical_block_size").map_or(request_alignment, |v| v as i32);
            optimal_io_size = q("optimal_io_size").unwrap_or(0) as i32;
            discard_alignment = q("discard_granularity").map_or(request_alignment, |v| v as i32);
            let off = sysfs
                .as_ref()
                .and_then(|s| s.dev_u64("discard_alignment"))
                .unwrap_or(0) as i32;
            discard_alignment_offset = if off == discard_alignment { 0 } else { off };
        } else {
            optimal_io_alignment = statfs_bsize(fd).max(request_alignment);
            optimal_io_size = 0;
            discard_alignment = request_alignment;
            discard_alignment_offset = 0;
        }

        let write_back = sysfs
            .as_ref()
            .and_then(|s| s.queue_attr("write_cache"))
            .is_some_and(|v| v == "write back");
        let flush_needed = !block || write_back || !direct;
        let supports_fua_natively = q("fua").is_some_and(|v| v != 0);
        let supports_poll_queues = direct
            && match q("io_poll") {
                Some(v) => v == 1,
                None => iopoll_read_works(fd),
            };
        let write_zeroes = block && q("write_zeroes_max_bytes").is_some_and(|v| v > 0);

        Ok(Probe {
            block,
            direct,
            read_only,
            request_alignment,
            optimal_io_alignment,
            optimal_io_size,
            discard_alignment,
            discard_alignment_offset,
            flush_needed,
            supports_fua_natively,
            supports_poll_queues,
            write_zeroes,
        })
    }

    /// Current size in bytes (`fstat` for files, `BLKGETSIZE64` for block
    /// devices: neither moves the file offset of a shared descriptor).
    pub fn capacity(&self) -> Result<u64> {
        let fd = self.fd.as_raw_fd();
        if self.block {
            let mut size: u64 = 0;
            // SAFETY: BLKGETSIZE64 writes one u64 to the pointer.
            if unsafe { libc::ioctl(fd, BLKGETSIZE64, &mut size) } < 0 {
                return Err(Error::last_os_error());
            }
            Ok(size)
        } else {
            Ok(sys::fstat(fd)?.st_size as u64)
        }
    }

    /// A new open file description of the same file for one queue, when
    /// the library opened `path` itself (`None` otherwise, or if the
    /// re-open fails: the queue then shares the instance's descriptor).
    ///
    /// Buffered I/O updates per-open-file state (the read-ahead window)
    /// on every request; queues sharing one description make the CPUs
    /// running them fight over those cache lines, which costs multi-queue
    /// scaling. Re-opening through `/proc/self/fd` reaches the very same
    /// file, with the same access mode and `O_DIRECT`. A descriptor the
    /// application passed in is never re-opened: a sandboxed process may
    /// hold descriptors it is not allowed to open again.
    pub fn reopen(&self) -> Option<OwnedFd> {
        if !self.opened_by_library {
            return None;
        }
        let fd = self.fd.as_raw_fd();
        // SAFETY: F_GETFL on our own descriptor.
        let fl = unsafe { libc::fcntl(fd, libc::F_GETFL) };
        if fl < 0 {
            return None;
        }
        let flags = (fl & (libc::O_ACCMODE | libc::O_DIRECT)) | libc::O_CLOEXEC;
        crate::core::device_fd::open_path(&format!("/proc/self/fd/{fd}"), flags).ok()
    }

    /// `BLKDISCARD` of `[start, start+len)`; returns 0 or a negative errno.
    pub fn discard_ioctl(&self, start: u64, len: u64) -> i32 {
        let range = [start, len];
        // SAFETY: BLKDISCARD reads two u64 from the pointer.
        if unsafe { libc::ioctl(self.fd.as_raw_fd(), BLKDISCARD, range.as_ptr()) } < 0 {
            -std::io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EIO)
        } else {
            0
        }
    }
}

/// What [`DeviceFile::inspect`] found, before taking ownership of the fd.
struct Probe {
    block: bool,
    direct: bool,
    read_only: bool,
    request_alignment: i32,
    optimal_io_alignment: i32,
    optimal_io_size: i32,
    discard_alignment: i32,
    discard_alignment_offset: i32,
    flush_needed: bool,
    supports_fua_natively: bool,
    supports_poll_queues: bool,
    write_zeroes: bool,
}

impl Probe {
    fn into_file(self, fd: OwnedFd, opened_by_library: bool) -> DeviceFile {
        DeviceFile {
            fd,
            opened_by_library,
            block: self.block,
            direct: self.direct,
            read_only: self.read_only,
            request_alignment: self.request_alignment,
            optimal_io_alignment: self.optimal_io_alignment,
            optimal_io_size: self.optimal_io_size,
            discard_alignment: self.discard_alignment,
            discard_alignment_offset: self.discard_alignment_offset,
            flush_needed: self.flush_needed,
            supports_fua_natively: self.supports_fua_natively,
            supports_poll_queues: self.supports_poll_queues,
            write_zeroes: self.write_zeroes,
            max_segments: sys::iov_max(),
        }
    }
}

fn logical_block_size(fd: RawFd) -> Option<i32> {
    let mut size: libc::c_int = 0;
    // SAFETY: BLKSSZGET writes one int to the pointer.
    (unsafe { libc::ioctl(fd, BLKSSZGET, &mut size) } == 0 && size > 0).then_some(size)
}

fn statfs_bsize(fd: RawFd) -> i32 {
    // SAFETY: `sfs` is a valid out-pointer.
    unsafe {
        let mut sfs: libc::statfs = std::mem::zeroed();
        if libc::fstatfs(fd, &mut sfs) == 0 && sfs.f_bsize > 0 {
            sfs.f_bsize.min(i32::MAX as _) as i32
        } else {
            0
        }
    }
}

/// Upstream's fallback test for poll support, used only where sysfs has no
/// `io_poll` attribute for the file's device: a zero-length read through an
/// `IORING_SETUP_IOPOLL` ring. Any failure counts as "cannot poll" (rather
/// than failing connect as upstream does), since polling is an option.
fn iopoll_read_works(fd: RawFd) -> bool {
    let Ok(mut ring) = io_uring::IoUring::builder().setup_iopoll().build(1) else {
        return false;
    };
    let mut byte = 0u8;
    let iov = libc::iovec {
        iov_base: (&mut byte as *mut u8).cast(),
        iov_len: 0,
    };
    let sqe = io_uring::opcode::Readv::new(io_uring::types::Fd(fd), &iov, 1)
        .offset(0)
        .build();
    // SAFETY: `iov` and `byte` outlive the ring, which is dropped below
    // after the single request completed (or the ring failed).
    unsafe {
        if ring.submission().push(&sqe).is_err() {
            return false;
        }
    }
    if ring.submit_and_wait(1).is_err() {
        return false;
    }
    let res = ring
        .completion()
        .next()
        .map(|c: io_uring::cqueue::Entry| c.result());
    res == Some(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::config::Config;
    use std::os::fd::AsRawFd;

    fn scratch(name: &str) -> std::path::PathBuf {
        let p = std::env::temp_dir().join(format!("blkio-{name}-{}", std::process::id()));
        std::fs::write(&p, [7u8; 4096]).unwrap();
        p
    }

    #[test]
    fn queues_of_a_path_instance_get_their_own_open_file() {
        let path = scratch("reopen");
        let config = Config {
            path: path.to_str().unwrap().into(),
            ..Config::default()
        };
        let fd = DeviceFd::new(&config, libc::O_RDONLY | libc::O_CLOEXEC).unwrap();
        let file = DeviceFile::probe(fd).unwrap();
        let own = file.reopen().expect("re-opened");
        assert_ne!(own.as_raw_fd(), file.fd.as_raw_fd());
        let (a, b) = (
            sys::fstat(own.as_raw_fd()).unwrap(),
            sys::fstat(file.fd.as_raw_fd()).unwrap(),
        );
        assert_eq!((a.st_dev, a.st_ino), (b.st_dev, b.st_ino));
        // SAFETY: F_GETFL on descriptors we own.
        let (fa, fb) = unsafe {
            (
                libc::fcntl(own.as_raw_fd(), libc::F_GETFL),
                libc::fcntl(file.fd.as_raw_fd(), libc::F_GETFL),
            )
        };
        assert_eq!(fa & libc::O_ACCMODE, fb & libc::O_ACCMODE);
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn a_callers_descriptor_is_never_reopened() {
        let path = scratch("no-reopen");
        let f = std::fs::File::open(&path).unwrap();
        let config = Config {
            fd: f.as_raw_fd(),
            ..Config::default()
        };
        let fd = DeviceFd::new(&config, 0).unwrap();
        let file = DeviceFile::probe(fd).unwrap();
        assert!(file.reopen().is_none());
        // The instance owns the caller's descriptor now; hand it back to `f`.
        std::mem::forget(file);
        std::fs::remove_file(path).unwrap();
    }
}
