//! The vhost-user transport (`virtio-blk-vhost-user`, docs/contract/virtio.md §7):
//! libblkio is the front-end on a Unix stream socket.
//!
//! * [`wire`] — messages and replies on the socket, read and checked by us
//!   (header first, exact sizes, a reply timeout), because the back-end is
//!   not trusted (docs/virtio-device-trust.md); request codes and flag bits
//!   come from the `vhost` crate;
//! * this module — the handshake, memory regions and queue setup.
//!
//! The socket is connected with [`UnixStream::connect`], so `blkio_connect`
//! reports the OS errno (-ENOENT, -ECONNREFUSED). Queues watch a duplicate
//! of the socket descriptor for `POLLHUP` ([`Transport::hangup_fd`]) to
//! notice a back-end that goes away outside a control message.

pub mod wire;

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;

use vhost::vhost_user::message::{FrontendReq, VhostUserProtocolFeatures};

use super::config::bit;
use super::transport::{EventFdKick, Identity, QueueSetup, Transport, CONFIG_LEN};
use crate::core::config::Config;
use crate::core::region::MemRegion;
use crate::core::{Error, Result};
use wire::Channel;

/// `VHOST_USER_F_PROTOCOL_FEATURES`: the back-end must offer it.
const PROTOCOL_FEATURES: u64 = bit(30);

/// A vhost-user connection.
pub struct VhostUser {
    channel: Channel,
    features: u64,
    max_mem_slots: u64,
    /// GET_QUEUE_NUM's answer (with the MQ protocol feature).
    queue_num: Option<u64>,
    /// A duplicate of the socket descriptor, polled for hang-ups.
    socket: Arc<OwnedFd>,
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
    /// The handshake on a connected socket (docs/contract/virtio.md §7.3).
    pub fn handshake(channel: Channel, driver_features: u64) -> Result<Self> {
        // SAFETY: F_DUPFD_CLOEXEC on the socket we hold; checked.
        let dup = unsafe { libc::fcntl(channel.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 0) };
        if dup < 0 {
            return Err(Error::last_os_error());
        }
        // SAFETY: a new descriptor owned by nobody else.
        let socket = Arc::new(unsafe { OwnedFd::from_raw_fd(dup) });
        let mut channel = channel;
        let (features, queue_num, max_mem_slots) = Self::negotiate(&mut channel, driver_features)?;
        Ok(VhostUser {
            channel,
            features,
            max_mem_slots,
            queue_num,
            socket,
        })
    }

    /// The handshake's messages; returns the features, GET_QUEUE_NUM's
    /// answer (with MQ) and GET_MAX_MEM_SLOTS's.
    fn negotiate(ch: &mut Channel, driver_features: u64) -> Result<(u64, Option<u64>, u64)> {
        ch.set(FrontendReq::SET_OWNER, &[], &[])?;
        let offered = ch.get_u64(FrontendReq::GET_FEATURES)?;
        if offered & PROTOCOL_FEATURES == 0 {
            return Err(Error::device(
                "vhost-user back-end does not offer VHOST_USER_F_PROTOCOL_FEATURES",
            ));
        }
        let features = offered & (driver_features | PROTOCOL_FEATURES);
        ch.set_u64(FrontendReq::SET_FEATURES, features, &[])?;

        let required = VhostUserProtocolFeatures::REPLY_ACK
            | VhostUserProtocolFeatures::CONFIG
            | VhostUserProtocolFeatures::CONFIGURE_MEM_SLOTS;
        let offered = ch.get_u64(FrontendReq::GET_PROTOCOL_FEATURES)?;
        let offered = VhostUserProtocolFeatures::from_bits_truncate(offered);
        if !offered.contains(required) {
            return Err(Error::device(
                "vhost-user back-end lacks a required protocol feature \
                 (REPLY_ACK, CONFIG, CONFIGURE_MEM_SLOTS)",
            ));
        }
        let acked = offered & (required | VhostUserProtocolFeatures::MQ);
        ch.set_u64(FrontendReq::SET_PROTOCOL_FEATURES, acked.bits(), &[])?;
        // From here on every message asks for a reply (flags 0x9).
        ch.enable_reply_ack();
        let mut queue_num = None;
        if acked.contains(VhostUserProtocolFeatures::MQ) {
            // `max-queues` comes from the config space
            // (docs/contract/properties.md §6.1), capped by this answer: the
            // back-end serves no more queues. A back-end with no queue at
            // all cannot serve any request: refuse it here with a clear
            // message (docs/virtio-device-trust.md).
            let n = ch.get_u64(FrontendReq::GET_QUEUE_NUM)?;
            if n == 0 {
                return Err(Error::device(
                    "vhost-user reply to GET_QUEUE_NUM: 0 queues, expected at least 1",
                ));
            }
            queue_num = Some(n);
        }
        let slots = ch.get_u64(FrontendReq::GET_MAX_MEM_SLOTS)?;
        Ok((features, queue_num, slots))
    }

    /// The ADD_MEM_REG / REM_MEM_REG payload: padding, guest address, size,
    /// user address, mmap offset (guest = user address: identity).
    fn region_body(region: &MemRegion) -> [u8; 40] {
        let mut body = [0u8; 40];
        let fields = [
            0,
            region.addr as u64,
            region.len as u64,
            region.addr as u64,
            region.fd_offset as u64,
        ];
        for (chunk, v) in body.chunks_exact_mut(8).zip(fields) {
            chunk.copy_from_slice(&v.to_ne_bytes());
        }
        body
    }
}

impl Transport for VhostUser {
    const DRIVER_NAME: &'static str = "virtio-blk-vhost-user";
    const ACCEPTS_FD: bool = false;

    type Addr = Identity;
    type Kick = EventFdKick;

    fn connect(config: &Config, driver_features: u64) -> Result<Self> {
        let stream = UnixStream::connect(&config.path).map_err(connect_error)?;
        Self::handshake(Channel::new(stream), driver_features)
    }

    fn features(&self) -> u64 {
        self.features
    }

    fn read_config(&self) -> Result<[u8; CONFIG_LEN]> {
        let mut config = [0u8; CONFIG_LEN];
        self.channel.get_config(&mut config)?;
        Ok(config)
    }

    fn max_mem_regions(&self) -> u64 {
        self.max_mem_slots
    }

    fn queue_limit(&self) -> Option<u64> {
        self.queue_num
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
            return Err(Error::device(text));
        }
        let body = Self::region_body(region);
        self.channel
            .set(FrontendReq::ADD_MEM_REG, &body, &[region.fd])
    }

    fn unmap_mem_region(&mut self, region: &MemRegion) {
        let body = Self::region_body(region);
        let fds: &[i32] = if region.fd >= 0 { &[region.fd] } else { &[] };
        let _ = self.channel.set(FrontendReq::REM_MEM_REG, &body, fds);
    }

    fn address_space(&self) -> Identity {
        Identity
    }

    fn start_queues(&mut self, queues: &[QueueSetup<'_>]) -> Result<Vec<EventFdKick>> {
        let mut kicks = Vec::with_capacity(queues.len());
        for q in queues {
            let ch = &self.channel;
            let index = u32::try_from(q.index)
                .map_err(|_| Error::invalid("vhost-user queue index out of range"))?;
            ch.set_vring_state(FrontendReq::SET_VRING_NUM, index, q.size.into())?;
            ch.set_vring_state(FrontendReq::SET_VRING_BASE, index, 0)?;
            // {index, flags 0, descriptor, used, available, log 0}.
            let mut addr = [0u8; 40];
            addr[..4].copy_from_slice(&index.to_ne_bytes());
            for (chunk, v) in addr[8..]
                .chunks_exact_mut(8)
                .zip([q.desc, q.used, q.avail, 0])
            {
                chunk.copy_from_slice(&v.to_ne_bytes());
            }
            ch.set(FrontendReq::SET_VRING_ADDR, &addr, &[])?;
            let kick = crate::core::sys::eventfd(false)?;
            ch.set_u64(
                FrontendReq::SET_VRING_KICK,
                index.into(),
                &[kick.as_raw_fd()],
            )?;
            ch.set_u64(
                FrontendReq::SET_VRING_CALL,
                index.into(),
                &[q.call.as_raw_fd()],
            )?;
            ch.set_vring_state(FrontendReq::SET_VRING_ENABLE, index, 1)?;
            kicks.push(EventFdKick(kick));
        }
        Ok(kicks)
    }

    fn hangup_fd(&self) -> Option<Arc<OwnedFd>> {
        Some(self.socket.clone())
    }
}

#[cfg(test)]
mod tests;
