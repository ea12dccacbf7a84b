//! virtio-blk-vhost-user against a real qemu-storage-daemon, through the C
//! API functions of the library. Each test starts its own daemon on a
//! private socket and stops it by PID. Tests print "skip" and pass only
//! when qemu-storage-daemon is not installed.

use std::ffi::{c_void, CStr, CString};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::ptr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

extern crate blkio;

mod common;
use common::capi::*;

const QSD: &str = "qemu-storage-daemon";
const MIB: u64 = 1024 * 1024;

fn have_qsd() -> bool {
    let found = Command::new(QSD)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !found {
        eprintln!("skip - {QSD} is not installed");
    }
    found
}

/// A qemu-storage-daemon with one vhost-user-blk export, in a private
/// directory; killed by PID when dropped.
struct Daemon {
    child: Child,
    dir: PathBuf,
    sock: PathBuf,
    image: PathBuf,
}

impl Daemon {
    /// `blockdev` is "file" (a raw image of `size` bytes) or "null".
    fn start(blockdev: &str, size: u64, export_opts: &str) -> Daemon {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "blkio-vu-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let image = dir.join("disk.img");
        let sock = dir.join("vhost.sock");
        let pidfile = dir.join("qsd.pid");
        let node = if blockdev == "null" {
            format!("driver=null-co,node-name=disk,size={size},read-zeroes=on")
        } else {
            std::fs::File::create(&image)
                .unwrap()
                .set_len(size)
                .unwrap();
            format!("driver=file,node-name=disk,filename={}", image.display())
        };
        let export = format!(
            "type=vhost-user-blk,id=exp0,node-name=disk,addr.type=unix,addr.path={},{export_opts}",
            sock.display()
        );
        let child = Command::new(QSD)
            .args(["--blockdev", &node, "--export", &export, "--pidfile"])
            .arg(&pidfile)
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn qemu-storage-daemon");
        let d = Daemon {
            child,
            dir,
            sock,
            image,
        };
        // The pid file is written once the export listens.
        let deadline = Instant::now() + Duration::from_secs(20);
        while !pidfile.exists() {
            assert!(
                Instant::now() < deadline,
                "qemu-storage-daemon did not start"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        d
    }

    fn kill(&mut self) {
        // SAFETY: signalling our own child by PID.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // SAFETY: signalling our own child by PID.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn cstr(s: &str) -> CString {
    CString::new(s).unwrap()
}

fn last_error() -> String {
    // SAFETY: the library's thread-local message.
    unsafe { CStr::from_ptr(blkio_get_error_msg()) }
        .to_string_lossy()
        .into_owned()
}

/// An instance, destroyed on drop.
struct Instance(*mut Blkio);

impl Instance {
    fn new() -> Instance {
        let mut b = ptr::null_mut();
        // SAFETY: valid driver name and out-pointer.
        let r = unsafe { blkio_create(c"virtio-blk-vhost-user".as_ptr(), &mut b) };
        assert_eq!(r, 0, "{}", last_error());
        Instance(b)
    }

    /// Created with `path` = the daemon's socket.
    fn at(path: &Path) -> Instance {
        let i = Instance::new();
        i.set_str("path", path.to_str().unwrap()).unwrap();
        i
    }

    fn result(r: i32) -> Result<(), (i32, String)> {
        if r < 0 {
            Err((r, last_error()))
        } else {
            Ok(())
        }
    }

    fn set_str(&self, name: &str, v: &str) -> Result<(), (i32, String)> {
        // SAFETY: live instance, NUL-terminated strings.
        Self::result(unsafe { blkio_set_str(self.0, cstr(name).as_ptr(), cstr(v).as_ptr()) })
    }

    fn set_int(&self, name: &str, v: i32) -> Result<(), (i32, String)> {
        // SAFETY: as above.
        Self::result(unsafe { blkio_set_int(self.0, cstr(name).as_ptr(), v) })
    }

    fn set_bool(&self, name: &str, v: bool) -> Result<(), (i32, String)> {
        // SAFETY: as above.
        Self::result(unsafe { blkio_set_bool(self.0, cstr(name).as_ptr(), v) })
    }

    fn int(&self, name: &str) -> Result<i32, (i32, String)> {
        let mut v = 0;
        // SAFETY: as above.
        Self::result(unsafe { blkio_get_int(self.0, cstr(name).as_ptr(), &mut v) }).map(|_| v)
    }

    fn u64(&self, name: &str) -> Result<u64, (i32, String)> {
        let mut v = 0;
        // SAFETY: as above.
        Self::result(unsafe { blkio_get_uint64(self.0, cstr(name).as_ptr(), &mut v) }).map(|_| v)
    }

    fn bool(&self, name: &str) -> Result<bool, (i32, String)> {
        let mut v = false;
        // SAFETY: as above.
        Self::result(unsafe { blkio_get_bool(self.0, cstr(name).as_ptr(), &mut v) }).map(|_| v)
    }

    fn connect(&self) -> Result<(), (i32, String)> {
        // SAFETY: live instance.
        Self::result(unsafe { blkio_connect(self.0) })
    }

    fn start(&self) -> Result<(), (i32, String)> {
        // SAFETY: live instance.
        Self::result(unsafe { blkio_start(self.0) })
    }

    fn queue(&self, i: i32) -> *mut Queue {
        // SAFETY: live instance.
        let q = unsafe { blkio_get_queue(self.0, i) };
        assert!(!q.is_null());
        q
    }

    fn poll_queue(&self, i: i32) -> *mut Queue {
        // SAFETY: live instance.
        let q = unsafe { blkio_get_poll_queue(self.0, i) };
        assert!(!q.is_null());
        q
    }

    /// A mapped buffer region of `len` bytes.
    fn region(&self, len: usize) -> MemRegion {
        let mut r = std::mem::MaybeUninit::<MemRegion>::zeroed();
        // SAFETY: live instance and a valid out-pointer.
        let ret = unsafe { blkio_alloc_mem_region(self.0, r.as_mut_ptr(), len) };
        assert_eq!(ret, 0, "{}", last_error());
        // SAFETY: initialised by the successful call.
        let r = unsafe { r.assume_init() };
        // SAFETY: live instance, region from the instance.
        let ret = unsafe { blkio_map_mem_region(self.0, &r) };
        assert_eq!(ret, 0, "{}", last_error());
        r
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        // SAFETY: the instance is destroyed once.
        unsafe { blkio_destroy(&mut self.0) };
    }
}

/// The region's memory as a byte slice.
fn bytes(r: &MemRegion) -> &'static mut [u8] {
    // SAFETY: the region stays mapped for the test's duration.
    unsafe { std::slice::from_raw_parts_mut(r.addr.cast(), r.len) }
}

fn pattern(buf: &mut [u8], seed: u64) {
    for (i, b) in buf.iter_mut().enumerate() {
        *b = ((i as u64).wrapping_mul(31).wrapping_add(seed * 7919) >> 3) as u8 ^ seed as u8;
    }
}

fn empty_completion() -> Completion {
    Completion::new(0, 0, None)
}

/// Waits for `n` completions; returns them.
fn wait(q: *mut Queue, n: usize) -> Vec<Completion> {
    let mut c = vec![empty_completion(); n];
    // SAFETY: live queue, `c` has room for `n`.
    let got = unsafe { blkioq_do_io(q, c.as_mut_ptr(), n as i32, n as i32, ptr::null_mut()) };
    assert_eq!(got, n as i32, "{}", last_error());
    c
}

fn msg(c: &Completion) -> Option<String> {
    (!c.error_msg.is_null()).then(|| {
        // SAFETY: a non-NULL message is a static NUL-terminated string.
        unsafe { CStr::from_ptr(c.error_msg) }
            .to_string_lossy()
            .into_owned()
    })
}

fn read(q: *mut Queue, start: u64, buf: &mut [u8]) -> i32 {
    // SAFETY: live queue; `buf` outlives the wait below.
    unsafe {
        blkioq_read(
            q,
            start,
            buf.as_mut_ptr().cast(),
            buf.len(),
            ptr::null_mut(),
            0,
        )
    };
    wait(q, 1)[0].ret
}

fn write(q: *mut Queue, start: u64, buf: &[u8], flags: u32) -> i32 {
    // SAFETY: as above.
    unsafe {
        blkioq_write(
            q,
            start,
            buf.as_ptr().cast(),
            buf.len(),
            ptr::null_mut(),
            flags,
        )
    };
    wait(q, 1)[0].ret
}

#[test]
fn properties_of_a_2mib_image() {
    if !have_qsd() {
        return;
    }
    let d = Daemon::start("file", 2 * MIB, "writable=on");
    let b = Instance::at(&d.sock);
    assert_eq!(b.u64("capacity").unwrap_err().0, -libc::ENODEV);
    assert_eq!(b.int("max-queues").unwrap_err().0, -libc::ENODEV);
    assert_eq!(b.int("request-alignment").unwrap(), 512);
    assert_eq!(
        b.set_int("fd", -1).unwrap_err(),
        (-libc::ENOENT, "fd property not supported".into())
    );
    b.connect().unwrap();
    assert_eq!(
        b.set_int("fd", 3).unwrap_err(),
        (
            -libc::EBUSY,
            "Cannot set property in connected state".into()
        )
    );
    for (name, want) in [
        ("request-alignment", 512),
        ("buf-alignment", 1),
        ("optimal-buf-alignment", 1),
        ("optimal-io-alignment", 512),
        ("optimal-io-size", 512),
        ("max-transfer", 0),
        ("max-segment-len", 0),
        ("max-queues", 1),
        ("max-queue-size", 32768),
        ("queue-size", 256),
        ("num-queues", 1),
        ("num-poll-queues", 0),
        ("discard-alignment", 512),
        ("discard-alignment-offset", 0),
        ("fd", -1),
    ] {
        assert_eq!(b.int(name).unwrap(), want, "{name}");
    }
    assert!(b.int("max-segments").unwrap() >= 1);
    for (name, want) in [
        ("capacity", 2 * MIB),
        ("mem-region-alignment", 1),
        ("max-write-zeroes-len", 16 * MIB),
        ("max-discard-len", 16 * MIB),
    ] {
        assert_eq!(b.u64(name).unwrap(), want, "{name}");
    }
    assert!(b.u64("max-mem-regions").unwrap() >= 2);
    for (name, want) in [
        ("needs-mem-regions", true),
        ("needs-mem-region-fd", true),
        ("may-pin-mem-regions", true),
        ("supports-fua-natively", false),
        ("supports-poll-queues", true),
        ("can-grow", false),
        ("can-add-queues", false),
        ("read-only", false),
    ] {
        assert_eq!(b.bool(name).unwrap(), want, "{name}");
    }
    b.start().unwrap();
    assert_eq!(b.u64("capacity").unwrap(), 2 * MIB);
    // SAFETY: live instance.
    assert_eq!(unsafe { blkio_add_queue(b.0) }, -libc::ENOTSUP);
}

#[test]
fn data_round_trips_and_errors() {
    if !have_qsd() {
        return;
    }
    let d = Daemon::start("file", 2 * MIB, "writable=on");
    let b = Instance::at(&d.sock);
    b.connect().unwrap();
    b.start().unwrap();
    let q = b.queue(0);
    let r = b.region(256 * 1024);
    let buf = bytes(&r);
    let (wbuf, rbuf) = buf.split_at_mut(128 * 1024);

    for (i, &off) in [0u64, 512, 4096, 65536, 2 * MIB - 128 * 1024]
        .iter()
        .enumerate()
    {
        pattern(wbuf, i as u64 + 1);
        assert_eq!(write(q, off, wbuf, 0), 0);
        rbuf.fill(0);
        assert_eq!(read(q, off, rbuf), 0);
        assert!(wbuf == rbuf, "data at {off}");
    }
    // What the daemon wrote is in the image file.
    let file = std::fs::read(&d.image).unwrap();
    assert!(file[65536..65536 + 128 * 1024] == wbuf[..] || file.len() == 2 * MIB as usize);

    // FUA write: one completion.
    pattern(wbuf, 99);
    assert_eq!(write(q, 8192, &wbuf[..4096], 1), 0);
    let file = std::fs::read(&d.image).unwrap();
    assert_eq!(&file[8192..8192 + 4096], &wbuf[..4096]);

    // Library errors and device errors.
    // SAFETY: live queue, buffers from the region.
    unsafe {
        blkioq_read(q, 100, rbuf.as_mut_ptr().cast(), 512, 1 as *mut c_void, 0);
        blkioq_write_zeroes(q, 100, 512, 2 as *mut c_void, 0);
        blkioq_discard(q, 0, 100, 3 as *mut c_void, 0);
        blkioq_reset_zone(q, 0, 4 as *mut c_void, 0);
        blkioq_read(
            q,
            2 * MIB,
            rbuf.as_mut_ptr().cast(),
            512,
            5 as *mut c_void,
            0,
        );
    }
    let mut got = wait(q, 5);
    got.sort_by_key(|c| c.user_data as usize);
    let summary: Vec<_> = got.iter().map(|c| (c.ret, msg(c))).collect();
    assert_eq!(
        summary,
        vec![
            (-libc::EINVAL, Some("invalid start offset".into())),
            (-libc::EINVAL, Some("invalid len or start offset".into())),
            (-libc::EINVAL, Some("invalid len or start offset".into())),
            (
                -libc::ENOTSUP,
                Some("request not supported for this driver".into())
            ),
            (-libc::EIO, None),
        ]
    );

    // write_zeroes and discard zero the range.
    pattern(wbuf, 5);
    assert_eq!(write(q, 0, &wbuf[..8192], 0), 0);
    // SAFETY: live queue.
    unsafe { blkioq_write_zeroes(q, 0, 4096, ptr::null_mut(), 0) };
    assert_eq!(wait(q, 1)[0].ret, 0);
    assert_eq!(read(q, 0, &mut rbuf[..8192]), 0);
    assert!(rbuf[..4096].iter().all(|&x| x == 0));
    assert_eq!(&rbuf[4096..8192], &wbuf[4096..8192]);
    // SAFETY: live queue.
    unsafe { blkioq_flush(q, ptr::null_mut(), 0) };
    assert_eq!(wait(q, 1)[0].ret, 0);
}

#[test]
fn many_requests_on_a_small_queue_and_poll_queue() {
    if !have_qsd() {
        return;
    }
    let d = Daemon::start("file", 2 * MIB, "writable=on,num-queues=2");
    let b = Instance::at(&d.sock);
    b.connect().unwrap();
    assert_eq!(b.int("max-queues").unwrap(), 2);
    b.set_int("queue-size", 16).unwrap();
    b.set_int("num-poll-queues", 1).unwrap();
    b.start().unwrap();
    let q = b.queue(0);
    let pq = b.poll_queue(0);
    // SAFETY: live queues.
    unsafe {
        assert!(blkioq_get_completion_fd(q) >= 0);
        assert_eq!(blkioq_get_completion_fd(pq), -1);
    }
    let r = b.region(1024 * 512);
    let buf = bytes(&r);
    pattern(buf, 7);
    for queue in [q, pq] {
        for i in 0..1024u64 {
            // SAFETY: live queue, buffers inside the mapped region.
            unsafe {
                blkioq_write(
                    queue,
                    i * 512,
                    buf.as_ptr().add(i as usize * 512).cast(),
                    512,
                    i as *mut c_void,
                    0,
                )
            };
        }
        let done = wait(queue, 1024);
        assert!(done.iter().all(|c| c.ret == 0));
        let mut ids: Vec<_> = done.iter().map(|c| c.user_data as usize).collect();
        ids.sort_unstable();
        assert_eq!(ids, (0..1024).collect::<Vec<_>>());
    }
    let copy = buf.to_vec();
    buf.fill(0);
    assert_eq!(read(pq, 0, buf), 0);
    assert!(copy == *buf);
}

#[test]
fn connect_errors_and_read_only_export() {
    if !have_qsd() {
        return;
    }
    let d = Daemon::start("null", 4 * MIB, "writable=off");
    let missing = Instance::at(&d.dir.join("nope.sock"));
    assert_eq!(
        missing.connect().unwrap_err(),
        (
            -libc::ENOENT,
            "No such file or directory (os error 2)".into()
        )
    );
    let not_socket = Instance::at(&d.dir.join("qsd.pid"));
    assert_eq!(
        not_socket.connect().unwrap_err(),
        (
            -libc::ECONNREFUSED,
            "Connection refused (os error 111)".into()
        )
    );
    let unset = Instance::new();
    assert_eq!(
        unset.connect().unwrap_err(),
        (-libc::EINVAL, "One of path and fd must be set".into())
    );

    let b = Instance::at(&d.sock);
    b.connect().unwrap();
    assert_eq!(b.u64("capacity").unwrap(), 4 * MIB);
    assert_eq!(
        b.start().unwrap_err(),
        (-libc::EROFS, "Device is read-only".into())
    );
    drop(b);
    let b = Instance::at(&d.sock);
    b.set_bool("read-only", true).unwrap();
    b.connect().unwrap();
    b.start().unwrap();
    let q = b.queue(0);
    let r = b.region(4096);
    let buf = bytes(&r);
    buf.fill(0xAA);
    assert_eq!(read(q, 4096, buf), 0);
    assert!(buf.iter().all(|&x| x == 0), "null-co with read-zeroes");
    // SAFETY: live queue, buffer in the region.
    unsafe { blkioq_write(q, 0, buf.as_ptr().cast(), 4096, ptr::null_mut(), 0) };
    let c = wait(q, 1);
    assert_eq!(
        (c[0].ret, msg(&c[0])),
        (-libc::EBADF, Some("device is read-only".into()))
    );
}

#[test]
fn daemon_killed_mid_io_fails_requests() {
    if !have_qsd() {
        return;
    }
    let mut d = Daemon::start("null", 64 * MIB, "writable=on");
    let b = Instance::at(&d.sock);
    b.connect().unwrap();
    b.start().unwrap();
    let q = b.queue(0);
    let r = b.region(1024 * 1024);
    let buf = bytes(&r);
    assert_eq!(read(q, 0, &mut buf[..4096]), 0);
    d.kill();
    for i in 0..64u64 {
        // SAFETY: live queue, buffer inside the region.
        unsafe {
            blkioq_read(
                q,
                i * 16384,
                buf.as_mut_ptr().add(i as usize * 16384).cast(),
                16384,
                ptr::null_mut(),
                0,
            )
        };
    }
    let start = Instant::now();
    let done = wait(q, 64);
    assert!(start.elapsed() < Duration::from_secs(5));
    assert!(done.iter().all(|c| c.ret < 0), "every request fails");
    // Later requests fail at once; property reads report the broken link.
    // SAFETY: live queue.
    unsafe { blkioq_read(q, 0, buf.as_mut_ptr().cast(), 512, ptr::null_mut(), 0) };
    let c = wait(q, 1);
    assert_eq!(c[0].ret, -libc::ENOTCONN);
    assert_eq!(b.u64("capacity").unwrap_err().0, -libc::EIO);
}
