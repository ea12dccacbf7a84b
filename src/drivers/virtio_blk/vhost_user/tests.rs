//! The handshake against a scripted back-end on a socket pair: a
//! well-behaved one, and one misbehaviour per test (docs/robustness.md).
//! Every failure must come back as -EIO with a message naming the bad
//! reply, and never wait for more than the reply timeout.

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::thread;
use std::time::{Duration, Instant};

use super::wire::{Channel, HEADER_LEN};
use super::*;

const GET_FEATURES: u32 = 1;
const SET_FEATURES: u32 = 2;
const SET_OWNER: u32 = 3;
const SET_VRING_KICK: u32 = 12;
const GET_PROTOCOL_FEATURES: u32 = 15;
const SET_PROTOCOL_FEATURES: u32 = 16;
const GET_QUEUE_NUM: u32 = 17;
const GET_CONFIG: u32 = 24;
const GET_MAX_MEM_SLOTS: u32 = 36;
const ADD_MEM_REG: u32 = 37;

/// What qemu-storage-daemon offers: VERSION_1, PROTOCOL_FEATURES and
/// a few virtio-blk bits; protocol features 0x8f2b.
const OFFERED: u64 = (1 << 32) | (1 << 30) | (1 << 9) | (1 << 6);
const PROTOCOL_OFFERED: u64 = 0x8f2b;

/// One thing the back-end does wrong.
#[derive(Clone, Copy, Debug)]
enum Fault {
    None,
    /// Answer `code` with this body size in the header (and that many bytes).
    Size(u32, u32),
    /// Answer `code` with a header announcing `size` but send nothing more.
    SizeOnly(u32, u32),
    /// Answer `code` with another request code.
    Code(u32, u32),
    /// Answer `code` with these flags.
    Flags(u32, u32),
    /// Never answer `code` (and keep the socket open).
    Silent(u32),
    /// Close the socket on receiving the n-th message (0-based).
    CloseAt(usize),
    /// Acknowledge `code` with a non-zero status.
    Nack(u32),
    /// GET_QUEUE_NUM answers 0.
    NoQueues,
    /// GET_CONFIG answers for offset 4.
    ConfigOffset,
}

/// A message as the back-end received it.
struct Received {
    code: u32,
    flags: u32,
    fds: usize,
}

/// Reads one message with `recvmsg`, counting (and closing) attached fds.
fn receive(sock: &UnixStream) -> Option<(Received, Vec<u8>)> {
    let mut hdr = [0u8; HEADER_LEN];
    let mut control = [0u64; 16];
    let mut iov = libc::iovec {
        iov_base: hdr.as_mut_ptr().cast(),
        iov_len: HEADER_LEN,
    };
    // SAFETY: a zeroed msghdr is valid; it points to `iov` and `control`,
    // which live across the call.
    let (n, fds) = unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&control);
        let n = libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_WAITALL);
        let mut fds = 0;
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while n > 0 && !cmsg.is_null() {
            let data = (*cmsg).cmsg_len as usize - libc::CMSG_LEN(0) as usize;
            for i in 0..data / 4 {
                let fd = *(libc::CMSG_DATA(cmsg) as *const i32).add(i);
                libc::close(fd);
                fds += 1;
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
        (n, fds)
    };
    if n != HEADER_LEN as isize {
        return None;
    }
    let word = |i: usize| u32::from_ne_bytes(hdr[i..i + 4].try_into().unwrap());
    let mut body = vec![0u8; word(8) as usize];
    (&*sock).read_exact(&mut body).ok()?;
    Some((
        Received {
            code: word(0),
            flags: word(4),
            fds,
        },
        body,
    ))
}

fn send(sock: &UnixStream, code: u32, flags: u32, size: u32, body: &[u8]) {
    let mut m = Vec::new();
    m.extend_from_slice(&code.to_ne_bytes());
    m.extend_from_slice(&flags.to_ne_bytes());
    m.extend_from_slice(&size.to_ne_bytes());
    m.extend_from_slice(body);
    let _ = (&*sock).write_all(&m);
}

/// Plays a back-end with one fault; returns the messages it saw.
fn backend(sock: UnixStream, fault: Fault) -> Vec<Received> {
    let mut seen = Vec::new();
    let mut n = 0;
    while let Some((msg, body)) = receive(&sock) {
        if let Fault::CloseAt(k) = fault {
            if n == k {
                return seen;
            }
        }
        n += 1;
        let code = msg.code;
        let need_reply = msg.flags & 0x8 != 0;
        seen.push(msg);
        let mut reply: Vec<u8> = match code {
            GET_FEATURES => OFFERED.to_ne_bytes().to_vec(),
            GET_PROTOCOL_FEATURES => PROTOCOL_OFFERED.to_ne_bytes().to_vec(),
            GET_QUEUE_NUM if matches!(fault, Fault::NoQueues) => 0u64.to_ne_bytes().to_vec(),
            GET_QUEUE_NUM => 1u64.to_ne_bytes().to_vec(),
            GET_MAX_MEM_SLOTS => 509u64.to_ne_bytes().to_vec(),
            GET_CONFIG => {
                let mut r = body.clone();
                if matches!(fault, Fault::ConfigOffset) {
                    r[0] = 4;
                }
                r[12..20].copy_from_slice(&2048u64.to_le_bytes());
                r
            }
            _ if need_reply => 0u64.to_ne_bytes().to_vec(),
            _ => continue,
        };
        let (mut rcode, mut flags, mut size) = (code, 0x5, reply.len() as u32);
        match fault {
            Fault::Size(c, s) if c == code => {
                size = s;
                reply.resize(s as usize, 0);
            }
            Fault::SizeOnly(c, s) if c == code => {
                size = s;
                reply.clear();
            }
            Fault::Code(c, other) if c == code => rcode = other,
            Fault::Flags(c, f) if c == code => flags = f,
            Fault::Silent(c) if c == code => {
                // Stay connected, say nothing, until the front-end gives up.
                let mut rest = Vec::new();
                let _ = (&sock).read_to_end(&mut rest);
                return seen;
            }
            Fault::Nack(c) if c == code => reply = 1u64.to_ne_bytes().to_vec(),
            _ => {}
        }
        send(&sock, rcode, flags, size, &reply);
    }
    seen
}

/// Runs the handshake (plus a config read and a memory-region map when it
/// succeeds) against a back-end with `fault`.
fn run(fault: Fault, timeout: Duration) -> (Result<[u8; CONFIG_LEN]>, Vec<Received>, Duration) {
    let (ours, theirs) = UnixStream::pair().expect("socketpair");
    let peer = thread::spawn(move || backend(theirs, fault));
    let t0 = Instant::now();
    let result = VhostUser::handshake(Channel::new(ours).with_timeout(timeout), 1 << 32).and_then(
        |mut vu| {
            let config = vu.read_config()?;
            let region = crate::core::region::allocate(4096, 1)?;
            let mapped = vu.map_mem_region(&region.region);
            // Unmapped and closed; the back-end thread closed its copy of
            // the descriptor and never maps it.
            drop(region);
            mapped.map(|()| config)
        },
    );
    let elapsed = t0.elapsed();
    // Dropping the handshake's channel closed our end; the back-end ends.
    (result, peer.join().expect("back-end thread"), elapsed)
}

fn fails_with(fault: Fault, msg: &str) {
    let (result, _, elapsed) = run(fault, Duration::from_secs(5));
    let e = result
        .err()
        .unwrap_or_else(|| panic!("{fault:?}: handshake succeeded"));
    assert_eq!((e.errno(), e.message()), (libc::EIO, msg), "{fault:?}");
    // Refused at once, not after the reply timeout.
    assert!(
        elapsed < Duration::from_secs(4),
        "{fault:?} took {elapsed:?}"
    );
}

#[test]
fn well_behaved_backend_connects() {
    let (result, seen, _) = run(Fault::None, Duration::from_secs(5));
    let config = result.expect("handshake");
    assert_eq!(u64::from_le_bytes(config[..8].try_into().unwrap()), 2048);
    let codes: Vec<u32> = seen.iter().map(|m| m.code).collect();
    assert_eq!(
        codes,
        [
            SET_OWNER,
            GET_FEATURES,
            SET_FEATURES,
            GET_PROTOCOL_FEATURES,
            SET_PROTOCOL_FEATURES,
            GET_QUEUE_NUM,
            GET_MAX_MEM_SLOTS,
            GET_CONFIG,
            ADD_MEM_REG
        ]
    );
    // Flags 0x1 before SET_PROTOCOL_FEATURES, 0x9 afterwards.
    let flags: Vec<u32> = seen.iter().map(|m| m.flags).collect();
    assert_eq!(flags, [1, 1, 1, 1, 1, 9, 9, 9, 9]);
    // The region's fd rides on ADD_MEM_REG, nothing else carries one.
    let fds: Vec<usize> = seen.iter().map(|m| m.fds).collect();
    assert_eq!(fds, [0, 0, 0, 0, 0, 0, 0, 0, 1]);
}

#[test]
fn short_and_huge_reply_sizes_fail_at_once() {
    fails_with(
        Fault::Size(GET_FEATURES, 4),
        "vhost-user GET_FEATURES reply has size 4, expected 8",
    );
    fails_with(
        Fault::SizeOnly(GET_PROTOCOL_FEATURES, 0x7fff_ffff),
        "vhost-user GET_PROTOCOL_FEATURES reply has size 2147483647, expected 8",
    );
    fails_with(
        Fault::Size(GET_CONFIG, 32),
        "vhost-user GET_CONFIG reply has size 32, expected 72",
    );
    fails_with(
        Fault::Size(ADD_MEM_REG, 0),
        "vhost-user ADD_MEM_REG reply has size 0, expected 8",
    );
}

#[test]
fn wrong_code_or_flags_fail() {
    fails_with(
        Fault::Code(GET_MAX_MEM_SLOTS, GET_QUEUE_NUM),
        "vhost-user reply to GET_MAX_MEM_SLOTS has request code 17",
    );
    fails_with(
        Fault::Flags(GET_FEATURES, 0x1),
        "vhost-user reply to GET_FEATURES has flags 0x1, expected version 1 with the reply bit",
    );
    fails_with(
        Fault::Flags(GET_QUEUE_NUM, 0x6),
        "vhost-user reply to GET_QUEUE_NUM has flags 0x6, expected version 1 with the reply bit",
    );
}

#[test]
fn refusals_and_bad_values_fail() {
    fails_with(
        Fault::Nack(ADD_MEM_REG),
        "vhost-user back-end refused ADD_MEM_REG (status 0x1)",
    );
    fails_with(
        Fault::NoQueues,
        "vhost-user reply to GET_QUEUE_NUM: 0 queues, expected at least 1",
    );
    fails_with(
        Fault::ConfigOffset,
        "vhost-user GET_CONFIG reply is for offset 4 size 60, expected offset 0 size 60",
    );
}

#[test]
fn silent_backend_times_out() {
    let (result, _, elapsed) = run(Fault::Silent(GET_QUEUE_NUM), Duration::from_millis(300));
    let e = result.expect_err("handshake against a silent back-end");
    assert_eq!(
        (e.errno(), e.message()),
        (
            libc::EIO,
            "vhost-user back-end did not reply to GET_QUEUE_NUM within 0.3 s"
        )
    );
    assert!(elapsed >= Duration::from_millis(300), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
}

#[test]
fn closed_at_every_step_fails() {
    // 9 messages in a full run: close on receiving each of them.
    for k in 0..9 {
        let (result, seen, elapsed) = run(Fault::CloseAt(k), Duration::from_secs(5));
        let e = result
            .err()
            .unwrap_or_else(|| panic!("closed at {k}: succeeded"));
        assert_eq!(e.errno(), libc::EIO, "closed at {k}: {}", e.message());
        assert!(e.message().starts_with("vhost-user "), "{}", e.message());
        assert_eq!(seen.len(), k);
        assert!(
            elapsed < Duration::from_secs(4),
            "closed at {k}: {elapsed:?}"
        );
    }
}

#[test]
fn kick_and_call_carry_their_eventfds() {
    let (ours, theirs) = UnixStream::pair().expect("socketpair");
    let peer = thread::spawn(move || backend(theirs, Fault::None));
    let mut vu = VhostUser::handshake(Channel::new(ours), 1 << 32).expect("handshake");
    let call = crate::core::sys::eventfd(false).expect("eventfd");
    let kicks = vu
        .start_queues(&[QueueSetup::example(&call)])
        .expect("start_queues");
    assert_eq!(kicks.len(), 1);
    drop(vu);
    let seen = peer.join().expect("back-end");
    let vring: Vec<(u32, usize)> = seen
        .iter()
        .skip_while(|m| m.code != 8)
        .map(|m| (m.code, m.fds))
        .collect();
    // NUM, BASE, ADDR, KICK (+fd), CALL (+fd), ENABLE.
    assert_eq!(
        vring,
        [
            (8, 0),
            (10, 0),
            (9, 0),
            (SET_VRING_KICK, 1),
            (13, 1),
            (18, 0)
        ]
    );
}

/// Through the C API: blkio_connect on a socket path whose back-end sends
/// a short reply fails with -EIO and the reply's description, at once.
#[test]
fn c_api_connect_reports_the_bad_reply() {
    let dir = std::env::temp_dir().join(format!("blkio-vu-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("sock");
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path).expect("bind");
    let peer = thread::spawn(move || {
        let (sock, _) = listener.accept().expect("accept");
        backend(sock, Fault::Size(GET_FEATURES, 4))
    });
    let mut b = std::ptr::null_mut();
    let c_path = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    let t0 = Instant::now();
    // SAFETY: valid pointers; strings are NUL-terminated; `b` is destroyed.
    unsafe {
        assert_eq!(
            crate::capi::blkio_create(c"virtio-blk-vhost-user".as_ptr(), &mut b),
            0
        );
        assert_eq!(
            crate::capi::blkio_set_str(b, c"path".as_ptr(), c_path.as_ptr()),
            0
        );
        assert_eq!(crate::capi::blkio_connect(b), -libc::EIO);
        let msg = std::ffi::CStr::from_ptr(crate::capi::blkio_get_error_msg());
        assert_eq!(
            msg.to_str().unwrap(),
            "vhost-user GET_FEATURES reply has size 4, expected 8"
        );
        crate::capi::blkio_destroy(&mut b);
    }
    assert!(t0.elapsed() < Duration::from_secs(4));
    peer.join().expect("back-end");
    let _ = std::fs::remove_dir_all(&dir);
}
