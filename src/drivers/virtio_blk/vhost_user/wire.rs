//! The front-end side of the vhost-user wire protocol
//! (docs/contract/virtio.md §7.1): one message out, at most one reply in.
//!
//! We read replies ourselves instead of through the `vhost` crate's
//! front-end, because the back-end is not trusted
//! (docs/virtio-device-trust.md). The crate receives the header and the
//! body it expects in one call and checks them afterwards, so a reply whose
//! header announces a shorter or longer body leaves it waiting for bytes
//! that never come. Here a reply is read in two steps:
//!
//! 1. the 12-byte header, which must carry the request's code, version 1,
//!    the REPLY bit, no reserved bits, and exactly the body size this
//!    request's reply has;
//! 2. only then that many body bytes.
//!
//! Every reply must arrive within [`REPLY_TIMEOUT`]. A reply that breaks a
//! rule, a timeout or a closed connection fails the call with -EIO and a
//! message naming the request, and shuts the socket down: the stream is
//! out of step from then on, and the shutdown makes the queues see the
//! device as gone, as when the back-end hangs up.
//!
//! Sends use `MSG_NOSIGNAL` (a back-end that went away gives -EPIPE, not a
//! SIGPIPE to the application) and carry file descriptors as
//! `SCM_RIGHTS`. Replies never carry descriptors; any a back-end attaches
//! anyway are discarded by the kernel because we pass no control buffer.
//! Request codes and flag bits come from the `vhost` crate; the payloads
//! are encoded here field by field (native byte order, as the protocol
//! says), which needs no unsafe code.

use std::io::{self, Read};
use std::net::Shutdown;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use vhost::vhost_user::message::{FrontendReq, VhostUserHeaderFlag};

use crate::core::{Error, Result};

/// How long a reply may take. Generous for a local back-end (replies take
/// microseconds), short enough that `blkio_connect` and property reads
/// never hang on a back-end that stays connected but silent.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// Size of the message header: request, flags, size (u32 each).
pub const HEADER_LEN: usize = 12;

/// Version 1 of the protocol, in bits 0–1 of the flags.
const VERSION_1: u32 = 0x1;

/// The largest body we ever send (a config request with its 60 bytes).
const MAX_BODY: usize = 256;

/// Checks a reply header against the request it answers; returns `Ok`
/// when it is exactly what a well-behaved back-end sends.
pub fn check_reply_header(req: FrontendReq, body_len: usize, hdr: &[u8; HEADER_LEN]) -> Result<()> {
    let word = |i: usize| u32::from_ne_bytes([hdr[i], hdr[i + 1], hdr[i + 2], hdr[i + 3]]);
    let (code, flags, size) = (word(0), word(4), word(8));
    if code != u32::from(req) {
        return Err(protocol(format!(
            "vhost-user reply to {req:?} has request code {code}"
        )));
    }
    let valid = VhostUserHeaderFlag::VERSION.bits() | VhostUserHeaderFlag::ALL_FLAGS.bits();
    let version = flags & VhostUserHeaderFlag::VERSION.bits();
    if version != VERSION_1 || flags & VhostUserHeaderFlag::REPLY.bits() == 0 || flags & !valid != 0
    {
        return Err(protocol(format!(
            "vhost-user reply to {req:?} has flags {flags:#x}, expected version 1 with the reply bit"
        )));
    }
    if size as usize != body_len {
        return Err(protocol(format!(
            "vhost-user {req:?} reply has size {size}, expected {body_len}"
        )));
    }
    Ok(())
}

fn protocol(msg: String) -> Error {
    Error::device(msg)
}

/// A connected vhost-user socket, front-end side.
pub struct Channel {
    stream: UnixStream,
    /// After SET_PROTOCOL_FEATURES with REPLY_ACK: every message carries
    /// NEED_REPLY and every SET_* waits for its u64 acknowledgement.
    need_reply: bool,
    timeout: Duration,
}

impl Channel {
    /// A channel on a connected stream.
    pub fn new(stream: UnixStream) -> Self {
        Channel {
            stream,
            need_reply: false,
            timeout: REPLY_TIMEOUT,
        }
    }

    /// The same channel with another reply timeout (tests).
    #[cfg(any(test, feature = "fuzzing"))]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// From now on ask for, and wait for, an acknowledgement of every
    /// SET_* message.
    pub fn enable_reply_ack(&mut self) {
        self.need_reply = true;
    }

    /// The socket's descriptor.
    pub fn as_raw_fd(&self) -> RawFd {
        self.stream.as_raw_fd()
    }

    /// Sends a message that has no reply of its own; with reply-acks
    /// enabled, waits for the acknowledgement (non-zero fails).
    pub fn set(&self, req: FrontendReq, body: &[u8], fds: &[RawFd]) -> Result<()> {
        self.send(req, body, fds)?;
        if !self.need_reply {
            return Ok(());
        }
        let mut ack = [0u8; 8];
        self.recv_reply(req, &mut ack)?;
        match u64::from_ne_bytes(ack) {
            0 => Ok(()),
            status => Err(self.broken(format!(
                "vhost-user back-end refused {req:?} (status {status:#x})"
            ))),
        }
    }

    /// Sends a `u64` value with a message that has no reply of its own.
    pub fn set_u64(&self, req: FrontendReq, value: u64, fds: &[RawFd]) -> Result<()> {
        self.set(req, &value.to_ne_bytes(), fds)
    }

    /// Sends a vring state {index, num}.
    pub fn set_vring_state(&self, req: FrontendReq, index: u32, num: u32) -> Result<()> {
        let mut body = [0u8; 8];
        body[..4].copy_from_slice(&index.to_ne_bytes());
        body[4..].copy_from_slice(&num.to_ne_bytes());
        self.set(req, &body, &[])
    }

    /// Asks for a `u64` (features, queue count, memory slots).
    pub fn get_u64(&self, req: FrontendReq) -> Result<u64> {
        self.send(req, &[], &[])?;
        let mut value = [0u8; 8];
        self.recv_reply(req, &mut value)?;
        Ok(u64::from_ne_bytes(value))
    }

    /// GET_CONFIG of `out.len()` bytes at offset 0; the reply must repeat
    /// the offset and size.
    pub fn get_config(&self, out: &mut [u8]) -> Result<()> {
        let req = FrontendReq::GET_CONFIG;
        let len = out.len();
        let mut body = [0u8; MAX_BODY];
        let size = u32::try_from(len).ok().filter(|_| 12 + len <= MAX_BODY);
        let size = size.ok_or_else(|| Error::invalid("config request too large"))?;
        body[4..8].copy_from_slice(&size.to_ne_bytes());
        self.send(req, &body[..12 + len], &[])?;
        let reply = &mut body[..12 + len];
        reply.fill(0);
        self.recv_reply(req, reply)?;
        let offset = u32::from_ne_bytes([reply[0], reply[1], reply[2], reply[3]]);
        let got = u32::from_ne_bytes([reply[4], reply[5], reply[6], reply[7]]);
        if offset != 0 || got != size {
            return Err(self.broken(format!(
                "vhost-user GET_CONFIG reply is for offset {offset} size {got}, \
                 expected offset 0 size {size}"
            )));
        }
        out.copy_from_slice(&reply[12..]);
        Ok(())
    }

    /// Sends header and body in one `sendmsg`, with `fds` as `SCM_RIGHTS`.
    fn send(&self, req: FrontendReq, body: &[u8], fds: &[RawFd]) -> Result<()> {
        // The descriptor count is checked by `send_with_fds`.
        assert!(body.len() <= MAX_BODY);
        let mut flags = VERSION_1;
        if self.need_reply {
            flags |= VhostUserHeaderFlag::NEED_REPLY.bits();
        }
        let mut msg = [0u8; HEADER_LEN + MAX_BODY];
        msg[0..4].copy_from_slice(&u32::from(req).to_ne_bytes());
        msg[4..8].copy_from_slice(&flags.to_ne_bytes());
        msg[8..12].copy_from_slice(&(body.len() as u32).to_ne_bytes());
        msg[HEADER_LEN..HEADER_LEN + body.len()].copy_from_slice(body);
        let msg = &msg[..HEADER_LEN + body.len()];
        match crate::core::sys::send_with_fds(self.stream.as_raw_fd(), msg, fds) {
            Ok(n) if n == msg.len() => Ok(()),
            Ok(n) => Err(self.broken(format!(
                "vhost-user {req:?}: only {n} of {} bytes sent",
                msg.len()
            ))),
            Err(e) => {
                let message = format!("vhost-user {req:?}: cannot send to the back-end: {e}");
                Err(Error::transport(message, e))
            }
        }
    }

    /// Reads the reply to `req`: the header first, checked, then exactly
    /// `body.len()` body bytes, all within the reply timeout.
    fn recv_reply(&self, req: FrontendReq, body: &mut [u8]) -> Result<()> {
        let deadline = Instant::now() + self.timeout;
        let mut hdr = [0u8; HEADER_LEN];
        self.read_exact_by(req, &mut hdr, deadline)?;
        if let Err(e) = check_reply_header(req, body.len(), &hdr) {
            self.shut_down();
            return Err(e);
        }
        self.read_exact_by(req, body, deadline)
    }

    fn read_exact_by(&self, req: FrontendReq, buf: &mut [u8], deadline: Instant) -> Result<()> {
        let mut done = 0;
        while done < buf.len() {
            if !crate::core::sys::poll_readable(self.stream.as_raw_fd(), deadline)? {
                return Err(self.broken(format!(
                    "vhost-user back-end did not reply to {req:?} within {} s",
                    self.timeout.as_secs_f64()
                )));
            }
            match (&self.stream).read(&mut buf[done..]) {
                Ok(0) => {
                    return Err(self.broken(format!(
                        "vhost-user back-end closed the connection before replying to {req:?}"
                    )))
                }
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => {
                    self.shut_down();
                    let message = format!("vhost-user {req:?}: cannot read the reply: {e}");
                    return Err(Error::transport(message, e));
                }
            }
        }
        Ok(())
    }

    /// An -EIO error after shutting the connection down (see the module
    /// documentation).
    fn broken(&self, msg: String) -> Error {
        self.shut_down();
        protocol(msg)
    }

    fn shut_down(&self) {
        let _ = self.stream.shutdown(Shutdown::Both);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(code: u32, flags: u32, size: u32) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        h[0..4].copy_from_slice(&code.to_ne_bytes());
        h[4..8].copy_from_slice(&flags.to_ne_bytes());
        h[8..12].copy_from_slice(&size.to_ne_bytes());
        h
    }

    #[test]
    fn good_reply_header_passes() {
        let req = FrontendReq::GET_FEATURES;
        assert!(check_reply_header(req, 8, &header(1, 0x5, 8)).is_ok());
        // A back-end may echo NEED_REPLY.
        assert!(check_reply_header(req, 8, &header(1, 0xd, 8)).is_ok());
    }

    #[test]
    fn bad_reply_headers_name_the_fault() {
        let req = FrontendReq::GET_FEATURES;
        let cases: [([u8; HEADER_LEN], &str); 6] = [
            (header(2, 0x5, 8), "vhost-user reply to GET_FEATURES has request code 2"),
            (header(1, 0x1, 8), "vhost-user reply to GET_FEATURES has flags 0x1, expected version 1 with the reply bit"),
            (header(1, 0x6, 8), "vhost-user reply to GET_FEATURES has flags 0x6, expected version 1 with the reply bit"),
            (header(1, 0x15, 8), "vhost-user reply to GET_FEATURES has flags 0x15, expected version 1 with the reply bit"),
            (header(1, 0x5, 4), "vhost-user GET_FEATURES reply has size 4, expected 8"),
            (header(1, 0x5, 0x7fff_ffff), "vhost-user GET_FEATURES reply has size 2147483647, expected 8"),
        ];
        for (hdr, msg) in cases {
            let e = check_reply_header(req, 8, &hdr).unwrap_err();
            assert_eq!((e.errno(), e.message()), (libc::EIO, msg));
        }
    }
}
