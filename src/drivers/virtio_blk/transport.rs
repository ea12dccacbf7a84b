//! What a virtio transport provides to the virtio-blk driver.
//!
//! The driver ([`super::VirtioBlk`]) and its queues ([`super::queue`]) are
//! generic over [`Transport`], so vhost-user, vhost-vdpa and VFIO-PCI share
//! the request encoding, the virtqueues and the property rules. A transport
//! does only what differs between them (docs/contract/virtio.md §1, §8):
//!
//! * connection and feature negotiation, config-space reads;
//! * memory regions: registration with the device (vhost-user
//!   `ADD_MEM_REG`, vDPA IOTLB update, VFIO DMA map) and the translation of
//!   process addresses into device addresses ([`DeviceAddress`]: identity
//!   for vhost-user, IOVAs for vDPA and VFIO);
//! * queue setup: ring addresses, size, the kick mechanism ([`Kick`]) and
//!   the call eventfd, which is the queue's completion fd;
//! * optionally a descriptor that reports the device going away
//!   ([`Transport::hangup_fd`]).
//!
//! The virtqueue memory block is allocated by the driver as a memfd and
//! registered through [`Transport::map_mem_region`] like any application
//! region, so one mechanism covers both.

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;

use vmm_sys_util::eventfd::EventFd;

use crate::core::config::Config;
use crate::core::region::MemRegion;
use crate::core::Result;

/// Size of the virtio-blk configuration space the driver reads.
pub const CONFIG_LEN: usize = 60;

/// Translates process addresses of mapped memory into device addresses.
/// Cloned into every queue, so lookups need no access to the driver: an
/// IOVA transport (vDPA, VFIO) hands out a shared table (for example an
/// `Arc<RwLock<..>>` of its mappings) that its `map_mem_region` and
/// `unmap_mem_region` update.
pub trait DeviceAddress: Clone + Send + 'static {
    /// The device address of `[addr, addr + len)`, or `None` when that range
    /// does not lie inside one mapped region.
    fn translate(&self, addr: usize, len: usize) -> Option<u64>;
}

/// Device address = process address (vhost-user: the back-end maps the
/// region fds at the addresses we announce, docs/contract/virtio.md §7.3).
#[derive(Clone, Copy, Debug, Default)]
pub struct Identity;

impl DeviceAddress for Identity {
    #[inline]
    fn translate(&self, addr: usize, _len: usize) -> Option<u64> {
        Some(addr as u64)
    }
}

/// How a queue tells the device that new chains are available.
pub trait Kick: Send + 'static {
    fn kick(&self);
}

/// Kick by writing 1 to an eventfd (vhost-user and vhost-vdpa), with the
/// request path's direct system call ([`crate::core::sys::eventfd_signal`]).
pub struct EventFdKick(pub EventFd);

impl Kick for EventFdKick {
    #[inline(always)]
    fn kick(&self) {
        crate::core::sys::eventfd_signal(self.0.as_raw_fd());
    }
}

/// Everything a transport needs to set up one virtqueue.
pub struct QueueSetup<'a> {
    /// Device queue index.
    pub index: usize,
    /// Number of entries.
    pub size: u16,
    /// Device addresses of the descriptor table, available and used ring.
    pub desc: u64,
    pub avail: u64,
    pub used: u64,
    /// The call eventfd the device signals (the queue's completion fd).
    pub call: &'a EventFd,
}

#[cfg(any(test, feature = "fuzzing"))]
impl<'a> QueueSetup<'a> {
    /// Queue 0 of 16 entries at fixed device addresses (descriptors at
    /// 0x1000, available ring at 0x2000, used ring at 0x3000): the queue
    /// the transport tests and fuzz targets set up against fake devices.
    pub fn example(call: &'a EventFd) -> Self {
        QueueSetup {
            index: 0,
            size: 16,
            desc: 0x1000,
            avail: 0x2000,
            used: 0x3000,
            call,
        }
    }
}

/// One way of reaching a virtio device.
pub trait Transport: Send + Sized + 'static {
    /// The `blkio_create` name of the driver using this transport.
    const DRIVER_NAME: &'static str;
    /// Whether the `fd` property may be set (vhost-vdpa) instead of `path`;
    /// when false its setter fails with -ENOENT "fd property not supported".
    const ACCEPTS_FD: bool;

    type Addr: DeviceAddress;
    type Kick: Kick;

    /// Connects using `config` (`path` or `fd`) and negotiates features:
    /// the device's offer ANDed with `driver_features` plus the transport's
    /// own bits.
    fn connect(config: &Config, driver_features: u64) -> Result<Self>;

    /// The negotiated feature bits.
    fn features(&self) -> u64;

    /// Reads the first [`CONFIG_LEN`] bytes of the device configuration.
    fn read_config(&self) -> Result<[u8; CONFIG_LEN]>;

    /// `max-mem-regions` after connect.
    fn max_mem_regions(&self) -> u64;

    /// How many queues the transport itself serves, when it says so
    /// (vhost-user's GET_QUEUE_NUM); `max-queues` is the smaller of this
    /// and the config space's count.
    fn queue_limit(&self) -> Option<u64> {
        None
    }

    /// `mem-region-alignment` after connect.
    fn mem_region_alignment(&self) -> u64;

    /// `needs-mem-region-fd` after connect.
    fn needs_mem_region_fd(&self) -> bool;

    /// Registers a region with the device.
    fn map_mem_region(&mut self, region: &MemRegion) -> Result<()>;

    /// Unregisters a region; failures are ignored (docs/contract/abi.md §6.10).
    fn unmap_mem_region(&mut self, region: &MemRegion);

    /// The translation queues use for buffers and the ring itself.
    fn address_space(&self) -> Self::Addr;

    /// Sets up and enables the queues, in the given order, and makes the
    /// device live. Returns one kick per queue.
    fn start_queues(&mut self, queues: &[QueueSetup<'_>]) -> Result<Vec<Self::Kick>>;

    /// A descriptor that polls `POLLHUP`/`POLLERR` once the device is gone
    /// (vhost-user: the socket), watched by queues while they wait.
    fn hangup_fd(&self) -> Option<Arc<OwnedFd>> {
        None
    }
}

/// Whether `fd` reports a hang-up or error right now.
pub fn hung_up(fd: &impl AsRawFd) -> bool {
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLRDHUP,
        revents: 0,
    };
    // SAFETY: one valid pollfd, zero timeout.
    let n = unsafe { libc::poll(&mut pfd, 1, 0) };
    n > 0 && pfd.revents & (libc::POLLHUP | libc::POLLERR | libc::POLLRDHUP | libc::POLLNVAL) != 0
}
