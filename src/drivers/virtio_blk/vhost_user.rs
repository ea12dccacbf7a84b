//! The vhost-user transport (`virtio-blk-vhost-user`, docs/contract/virtio.md §7):
//! libblkio is the front-end on a Unix stream socket, built on the `vhost`
//! crate's [`Frontend`].
//!
//! Where we do things by hand, and why:
//! * the socket is connected with [`UnixStream::connect`] rather than
//!   `Frontend::connect`, which retries refused connections for half a
//!   second and hides the OS errno that `blkio_connect` must report
//!   (-ENOENT, -ECONNREFUSED);
//! * the crate's `remove_mem_region` sends `REM_MEM_REG` without the
//!   region's fd (upstream attaches it); back-ends identify the region by
//!   its addresses, so this only differs on the wire;
//! * the crate has no notion of the back-end disappearing outside a
//!   request, so queues watch a duplicate of the socket descriptor for
//!   `POLLHUP` ([`Transport::hangup_fd`]).

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;

use vhost::vhost_user::message::{
    VhostUserConfigFlags, VhostUserHeaderFlag, VhostUserProtocolFeatures, VHOST_USER_MAX_VRINGS,
};
use vhost::vhost_user::{Frontend, VhostUserFrontend};
use vhost::{VhostBackend, VhostUserMemoryRegionInfo, VringConfigData};
use vmm_sys_util::eventfd::EventFd;

use super::config::bit;
use super::transport::{EventFdKick, Identity, QueueSetup, Transport, CONFIG_LEN};
use crate::core::config::Config;
use crate::core::region::MemRegion;
use crate::core::{Error, Result};

/// `VHOST_USER_F_PROTOCOL_FEATURES`: the back-end must offer it.
const PROTOCOL_FEATURES: u64 = bit(30);

/// A vhost-user connection.
pub struct VhostUser {
    frontend: Frontend,
    features: u64,
    max_mem_slots: u64,
    /// A duplicate of the socket descriptor, polled for hang-ups.
    socket: Arc<OwnedFd>,
}

/// Transport failures are -EIO with the crate's description.
fn vhost_error(e: vhost::Error) -> Error {
    Error::new(libc::EIO, e.to_string())
}

/// Connect errors keep their OS errno ("No such file or directory (os
/// error 2)", "Connection refused (os error 111)").
fn connect_error(e: std::io::Error) -> Error {
    match e.raw_os_error() {
        Some(_) => Error::os(e),
        None => Error::invalid(e.to_string()),
    }
}

impl VhostUser {
    fn negotiate(frontend: &mut Frontend, driver_features: u64) -> Result<(u64, u64)> {
        frontend.set_owner().map_err(vhost_error)?;
        let offered = frontend.get_features().map_err(vhost_error)?;
        if offered & PROTOCOL_FEATURES == 0 {
            return Err(Error::new(
                libc::EIO,
                "vhost-user back-end does not offer VHOST_USER_F_PROTOCOL_FEATURES",
            ));
        }
        let features = offered & (driver_features | PROTOCOL_FEATURES);
        frontend.set_features(features).map_err(vhost_error)?;

        let required = VhostUserProtocolFeatures::REPLY_ACK
            | VhostUserProtocolFeatures::CONFIG
            | VhostUserProtocolFeatures::CONFIGURE_MEM_SLOTS;
        let offered = frontend.get_protocol_features().map_err(vhost_error)?;
        if !offered.contains(required) {
            return Err(Error::new(
                libc::EIO,
                "vhost-user back-end lacks a required protocol feature \
                 (REPLY_ACK, CONFIG, CONFIGURE_MEM_SLOTS)",
            ));
        }
        let acked = offered & (required | VhostUserProtocolFeatures::MQ);
        frontend.set_protocol_features(acked).map_err(vhost_error)?;
        // From here on every message asks for a reply (flags 0x9).
        frontend.set_hdr_flags(VhostUserHeaderFlag::NEED_REPLY);
        if acked.contains(VhostUserProtocolFeatures::MQ) {
            // Only bounds the queue indexes the crate accepts; `max-queues`
            // comes from the config space (docs/contract/properties.md §6.1).
            // A back-end with no queue at all cannot serve any request:
            // refuse it here with a clear message (docs/virtio-device-trust.md).
            if frontend.get_queue_num().map_err(vhost_error)? == 0 {
                return Err(Error::new(
                    libc::EIO,
                    "vhost-user reply to GET_QUEUE_NUM: 0 queues, expected at least 1",
                ));
            }
        }
        let slots = frontend.get_max_mem_slots().map_err(vhost_error)?;
        Ok((features, slots))
    }

    fn region_info(region: &MemRegion) -> VhostUserMemoryRegionInfo {
        VhostUserMemoryRegionInfo {
            guest_phys_addr: region.addr as u64,
            memory_size: region.len as u64,
            userspace_addr: region.addr as u64,
            mmap_offset: region.fd_offset as u64,
            mmap_handle: region.fd,
        }
    }
}

impl Transport for VhostUser {
    const DRIVER_NAME: &'static str = "virtio-blk-vhost-user";
    const ACCEPTS_FD: bool = false;

    type Addr = Identity;
    type Kick = EventFdKick;

    fn connect(config: &Config, driver_features: u64) -> Result<Self> {
        let stream = UnixStream::connect(&config.path).map_err(connect_error)?;
        // SAFETY: F_DUPFD_CLOEXEC on the socket we just connected; checked.
        let dup = unsafe { libc::fcntl(stream.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 0) };
        if dup < 0 {
            return Err(Error::last_os_error());
        }
        // SAFETY: a new descriptor owned by nobody else.
        let socket = Arc::new(unsafe { OwnedFd::from_raw_fd(dup) });
        let mut frontend = Frontend::from_stream(stream, VHOST_USER_MAX_VRINGS);
        let (features, max_mem_slots) = Self::negotiate(&mut frontend, driver_features)?;
        Ok(VhostUser {
            frontend,
            features,
            max_mem_slots,
            socket,
        })
    }

    fn features(&self) -> u64 {
        self.features
    }

    fn read_config(&self) -> Result<[u8; CONFIG_LEN]> {
        let zeroes = [0u8; CONFIG_LEN];
        // `Frontend` is a handle to shared state; the clone is cheap and
        // lets a property getter (`&self`) do the round trip.
        let (_, payload) = self
            .frontend
            .clone()
            .get_config(0, CONFIG_LEN as u32, VhostUserConfigFlags::empty(), &zeroes)
            .map_err(vhost_error)?;
        payload
            .as_slice()
            .try_into()
            .map_err(|_| Error::new(libc::EIO, "vhost-user GET_CONFIG reply has the wrong size"))
    }

    fn max_mem_regions(&self) -> u64 {
        self.max_mem_slots
    }

    fn mem_region_alignment(&self) -> u64 {
        1
    }

    fn needs_mem_region_fd(&self) -> bool {
        true
    }

    fn map_mem_region(&mut self, region: &MemRegion) -> Result<()> {
        if region.fd < 0 {
            // What sending fd -1 would give: "Bad file descriptor (os error 9)".
            let text = std::io::Error::from_raw_os_error(libc::EBADF).to_string();
            return Err(Error::new(libc::EIO, text));
        }
        self.frontend
            .add_mem_region(&Self::region_info(region))
            .map(|_| ())
            .map_err(vhost_error)
    }

    fn unmap_mem_region(&mut self, region: &MemRegion) {
        let _ = self.frontend.remove_mem_region(&Self::region_info(region));
    }

    fn address_space(&self) -> Identity {
        Identity
    }

    fn start_queues(&mut self, queues: &[QueueSetup<'_>]) -> Result<Vec<EventFdKick>> {
        let mut kicks = Vec::with_capacity(queues.len());
        for q in queues {
            let f = &mut self.frontend;
            f.set_vring_num(q.index, q.size).map_err(vhost_error)?;
            f.set_vring_base(q.index, 0).map_err(vhost_error)?;
            f.set_vring_addr(
                q.index,
                &VringConfigData {
                    queue_max_size: q.size,
                    queue_size: q.size,
                    flags: 0,
                    desc_table_addr: q.desc,
                    used_ring_addr: q.used,
                    avail_ring_addr: q.avail,
                    log_addr: None,
                },
            )
            .map_err(vhost_error)?;
            let kick = EventFd::new(libc::EFD_CLOEXEC).map_err(Error::os)?;
            f.set_vring_kick(q.index, &kick).map_err(vhost_error)?;
            f.set_vring_call(q.index, q.call).map_err(vhost_error)?;
            f.set_vring_enable(q.index, true).map_err(vhost_error)?;
            kicks.push(EventFdKick(kick));
        }
        Ok(kicks)
    }

    fn hangup_fd(&self) -> Option<Arc<OwnedFd>> {
        Some(self.socket.clone())
    }
}
