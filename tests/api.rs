//! The public Rust API on io_uring over a temporary file: data read back,
//! states, property errors, request errors and queue handles.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use blkio::{
    Blkio, Completion, ErrorKind, PropertyAccess, PropertyType, ReqFlags, Started, DRIVERS,
};

/// A temporary file removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str, contents: &[u8]) -> Self {
        let path = std::env::temp_dir().join(format!("blkio-api-{}-{name}", std::process::id()));
        std::fs::write(&path, contents).unwrap();
        TempFile(path)
    }

    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn started(file: &TempFile, num_queues: i32) -> Blkio<Started> {
    let b = Blkio::new("io_uring").unwrap();
    b.set("path", file.path()).unwrap();
    let b = b.connect().unwrap();
    b.set("num-queues", num_queues).unwrap();
    b.start().unwrap()
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(7).wrapping_add(seed))
        .collect()
}

#[test]
fn write_then_read_back() {
    let file = TempFile::new("rw", &vec![0; 1 << 20]);
    let b = started(&file, 1);
    let mut region = b.alloc_mem_region(64 * 1024).unwrap();
    b.map_mem_region(&region).unwrap();
    let data = pattern(32 * 1024, 3);
    region.bytes_mut().unwrap()[..data.len()].copy_from_slice(&data);

    let mut q = b.queue(0).unwrap();
    let mut done = [Completion::default(); 4];
    q.write(8192, &region, 0, data.len(), 11, ReqFlags::FUA);
    assert_eq!(q.outstanding(), 1);
    // Bytes of a region with a request in flight are refused.
    let e = region.bytes().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::WrongState);
    assert_eq!(q.do_io(&mut done, 1, None, None).unwrap(), 1);
    assert_eq!((done[0].user_data, done[0].ret), (11, 0));
    assert_eq!(q.outstanding(), 0);

    q.read(8192, &region, 32 * 1024, data.len(), 12, ReqFlags::NONE);
    q.flush(13, ReqFlags::NONE);
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let n = q.do_io(&mut done, 1, None, None).unwrap();
        for c in &done[..n] {
            c.result().unwrap();
            seen.push(c.user_data);
        }
    }
    seen.sort();
    assert_eq!(seen, [12, 13]);
    assert_eq!(&region.bytes().unwrap()[32 * 1024..], &data[..]);
    drop(q);
    drop(b);
    drop(region);
    // Also on disk.
    let disk = std::fs::read(&file.0).unwrap();
    assert_eq!(&disk[8192..8192 + data.len()], &data[..]);
}

#[test]
fn write_zeroes_and_raw_requests() {
    let file = TempFile::new("raw", &pattern(1 << 16, 1));
    let b = started(&file, 1);
    let mut q = b.queue(0).unwrap();
    let mut done = [Completion::default(); 2];
    q.write_zeroes(4096, 4096, 1, ReqFlags::NONE);
    assert_eq!(q.do_io(&mut done, 1, None, None).unwrap(), 1);
    done[0].result().unwrap();

    let mut buf = vec![0xffu8; 8192];
    // SAFETY: `buf` outlives the request, which completes below before it
    // is looked at.
    unsafe { q.read_raw(0, buf.as_mut_ptr(), buf.len(), 2, ReqFlags::NONE) };
    assert_eq!(q.do_io(&mut done, 1, None, None).unwrap(), 1);
    assert_eq!((done[0].user_data, done[0].ret), (2, 0));
    assert_eq!(&buf[..4096], &pattern(1 << 16, 1)[..4096]);
    assert!(buf[4096..].iter().all(|&x| x == 0));

    let a = vec![1u8; 512];
    let c = vec![2u8; 512];
    let iov = [a.as_slice(), c.as_slice()].map(|s| libc::iovec {
        iov_base: s.as_ptr() as *mut libc::c_void,
        iov_len: s.len(),
    });
    // SAFETY: the iovecs and their buffers outlive the request.
    unsafe { q.writev_raw(0, &iov, 3, ReqFlags::NONE) };
    assert_eq!(q.do_io(&mut done, 1, None, None).unwrap(), 1);
    assert_eq!((done[0].user_data, done[0].ret), (3, 0));
    let disk = std::fs::read(&file.0).unwrap();
    assert_eq!(&disk[..512], &a[..]);
    assert_eq!(&disk[512..1024], &c[..]);
}

#[test]
fn bad_requests_complete_with_einval() {
    let file = TempFile::new("bad", &vec![0; 65536]);
    let b = started(&file, 1);
    let region = b.alloc_mem_region(4096).unwrap();
    b.map_mem_region(&region).unwrap();
    let mut q = b.queue(0).unwrap();
    let mut done = [Completion::default(); 4];

    // FUA on a read.
    q.read(0, &region, 0, 512, 1, ReqFlags::FUA);
    // A buffer past the end of the region.
    q.read(0, &region, 4000, 512, 2, ReqFlags::NONE);
    // Unknown flag bits.
    q.flush(3, ReqFlags::from_bits_retain(1 << 7));
    let mut got = Vec::new();
    while got.len() < 3 {
        let n = q.do_io(&mut done, 1, None, None).unwrap();
        got.extend(done[..n].iter().copied());
    }
    got.sort_by_key(|c| c.user_data);
    let msgs: Vec<_> = got.iter().map(|c| (c.ret, c.error_msg.unwrap())).collect();
    assert_eq!(
        msgs,
        [
            (
                -libc::EINVAL,
                "BLKIO_REQ_FUA is invalid for this request type"
            ),
            (-libc::EINVAL, "buffer lies outside the memory region"),
            (-libc::EINVAL, "unsupported bits in request flags"),
        ]
    );
    let e = got[0].result().unwrap_err();
    assert_eq!(
        (e.kind(), e.errno()),
        (ErrorKind::InvalidArgument, libc::EINVAL)
    );
}

#[test]
fn do_io_argument_errors_and_timeouts() {
    let file = TempFile::new("doio", &vec![0; 65536]);
    let b = started(&file, 1);
    let mut q = b.queue(0).unwrap();
    let mut done = [Completion::default(); 2];
    let e = q.do_io(&mut done, 3, None, None).unwrap_err();
    assert_eq!(e.errno(), libc::EINVAL);
    assert_eq!(
        e.message(),
        "min_completions must be less than or equal to max_completions"
    );
    let e = q.do_io(&mut done, 1, None, None).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    assert_eq!(
        e.message(),
        "min_completions is larger than total outstanding requests"
    );
    // Nothing in flight: a zero timeout returns at once with nothing.
    let t = Instant::now();
    assert_eq!(
        q.do_io(&mut done, 0, Some(Duration::ZERO), None).unwrap(),
        0
    );
    assert!(t.elapsed() < Duration::from_secs(5));
    // A signal mask on a regular queue is accepted.
    // SAFETY: sigemptyset initialises the set.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid sigset_t.
    unsafe { libc::sigemptyset(&mut set) };
    q.flush(9, ReqFlags::NONE);
    assert_eq!(
        q.do_io(&mut done, 1, Some(Duration::from_secs(5)), Some(&set))
            .unwrap(),
        1
    );
    assert_eq!(done[0].user_data, 9);
}

#[test]
fn property_errors() {
    let file = TempFile::new("props", &vec![0; 4096]);
    let b = Blkio::new("io_uring").unwrap();
    assert_eq!(b.driver(), "io_uring");
    let e = b.get::<u64>("no-such-property").unwrap_err();
    assert_eq!((e.kind(), e.errno()), (ErrorKind::NotFound, libc::ENOENT));
    let e = b.get::<i32>("path").unwrap_err();
    assert_eq!((e.kind(), e.errno()), (ErrorKind::WrongType, libc::ENOTTY));
    assert_eq!(e.message(), "Property is not an int");
    let e = b.set("num-queues", 2).unwrap_err();
    assert_eq!((e.kind(), e.errno()), (ErrorKind::WrongState, libc::ENODEV));
    let e = b.set("capacity", 5u64).unwrap_err();
    assert_eq!(
        (e.kind(), e.errno()),
        (ErrorKind::PermissionDenied, libc::EACCES)
    );
    let e = b.set("direct", "yes").unwrap_err();
    assert_eq!(e.message(), "Value must be \"true\" or \"false\"");
    // A bad value has no operating-system error behind it ...
    assert!(std::error::Error::source(&e).is_none());
    // ... a failed open has: source() is the io::Error of the call.
    let missing = Blkio::new("io_uring").unwrap();
    missing.set("path", "/nonexistent/blkio-api-test").unwrap();
    let e = missing.connect().unwrap_err();
    assert_eq!(e.errno(), libc::ENOENT);
    let os = std::error::Error::source(&e)
        .and_then(|s| s.downcast_ref::<std::io::Error>())
        .expect("the open's io::Error");
    assert_eq!(os.raw_os_error(), Some(libc::ENOENT));
    b.set("path", file.path()).unwrap();
    assert_eq!(b.get::<String>("path").unwrap(), file.path());
    let b = b.connect().unwrap();
    assert_eq!(b.get::<u64>("capacity").unwrap(), 4096);
    // A number as text works for a typed property.
    b.set("num-queues", "3").unwrap();
    assert_eq!(b.get::<i32>("num-queues").unwrap(), 3);
    assert_eq!(b.get::<String>("num-queues").unwrap(), "3");
    let e = b.set("path", "/elsewhere").unwrap_err();
    assert_eq!((e.kind(), e.errno()), (ErrorKind::WrongState, libc::EBUSY));

    let props = b.properties();
    assert_eq!(props.len(), 32);
    let p = props.iter().find(|p| p.name == "num-queues").unwrap();
    assert_eq!(
        (p.ty, p.access),
        (PropertyType::Int, PropertyAccess::Connected)
    );
    let names: Vec<_> = props.iter().map(|p| p.name).collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);
}

#[test]
fn create_and_connect_errors() {
    assert!(DRIVERS.contains(&"io_uring"));
    let e = Blkio::new("nope").unwrap_err();
    assert_eq!((e.kind(), e.errno()), (ErrorKind::NotFound, libc::ENOENT));
    let b = Blkio::new("io_uring").unwrap();
    b.set("path", "/nonexistent/blkio-api-test").unwrap();
    let e = b.connect().unwrap_err();
    assert_eq!(e.errno(), libc::ENOENT);
    let e = Blkio::new("io_uring").unwrap().connect().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
}

#[test]
fn queue_handles_are_exclusive() {
    let file = TempFile::new("queues", &vec![0; 4096]);
    let b = started(&file, 2);
    let q0 = b.queue(0).unwrap();
    let e = b.queue(0).unwrap_err();
    assert_eq!((e.kind(), e.errno()), (ErrorKind::WrongState, libc::EBUSY));
    let e = b.queue(2).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    let e = b.poll_queue(0).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert_eq!(b.remove_queue(0).unwrap_err().errno(), libc::EBUSY);
    drop(q0);
    let mut q0 = b.queue(0).unwrap();
    assert!(q0.completion_fd().unwrap().is_some());
    // Two queues used from two threads.
    std::thread::scope(|s| {
        let mut q1 = b.queue(1).unwrap();
        let h = s.spawn(move || {
            let mut done = [Completion::default(); 1];
            q1.flush(1, ReqFlags::NONE);
            q1.do_io(&mut done, 1, None, None).unwrap();
            done[0]
        });
        let mut done = [Completion::default(); 1];
        q0.flush(0, ReqFlags::NONE);
        q0.do_io(&mut done, 1, None, None).unwrap();
        assert_eq!(done[0].ret, 0);
        assert_eq!(h.join().unwrap().ret, 0);
    });
    drop(q0);
    b.remove_queue(1).unwrap();
    assert_eq!(b.queue(1).unwrap_err().kind(), ErrorKind::NotFound);
    let i = b.add_queue().unwrap();
    assert_eq!(i, 1);
    b.queue(i).unwrap();
}

#[test]
fn dropping_a_queue_waits_for_its_requests() {
    let file = TempFile::new("drain", &pattern(1 << 16, 5));
    let b = started(&file, 1);
    let mut region = b.alloc_mem_region(1 << 16).unwrap();
    b.map_mem_region(&region).unwrap();
    {
        let mut q = b.queue(0).unwrap();
        for i in 0..16 {
            q.read(
                i * 4096,
                &region,
                i as usize * 4096,
                4096,
                0,
                ReqFlags::NONE,
            );
        }
    }
    // The drop reaped every completion: the region is idle and filled.
    assert_eq!(region.bytes().unwrap(), &pattern(1 << 16, 5)[..]);
    let q = b.queue(0).unwrap();
    assert_eq!(q.outstanding(), 0);
}

#[test]
fn a_region_maps_into_two_instances() {
    let a_file = TempFile::new("two-a", &pattern(8192, 9));
    let b_file = TempFile::new("two-b", &vec![0; 8192]);
    let a = started(&a_file, 1);
    let b = started(&b_file, 1);
    let region = a.alloc_mem_region(8192).unwrap();
    a.map_mem_region(&region).unwrap();
    b.map_mem_region(&region).unwrap();
    let mut qa = a.queue(0).unwrap();
    let mut qb = b.queue(0).unwrap();
    let mut done = [Completion::default(); 1];
    qa.read(0, &region, 0, 8192, 0, ReqFlags::NONE);
    qa.do_io(&mut done, 1, None, None).unwrap();
    done[0].result().unwrap();
    qb.write(0, &region, 0, 8192, 0, ReqFlags::NONE);
    qb.do_io(&mut done, 1, None, None).unwrap();
    done[0].result().unwrap();
    assert_eq!(std::fs::read(&b_file.0).unwrap(), pattern(8192, 9));
    // Mapping twice into one instance is refused; unmapping allows it again.
    let e = b.map_mem_region(&region).unwrap_err();
    assert_eq!(e.errno(), libc::EINVAL);
    b.unmap_mem_region(&region);
    b.map_mem_region(&region).unwrap();
    drop((qa, qb));
    // Misaligned length.
    let align = a.get::<u64>("mem-region-alignment").unwrap() as usize;
    if align > 1 {
        let e = a.alloc_mem_region(align + 1).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    }
}

#[test]
fn poll_queues() {
    let file = TempFile::new("poll", &pattern(65536, 4));
    let b = Blkio::new("io_uring").unwrap();
    b.set("path", file.path()).unwrap();
    b.set("direct", true).unwrap();
    let b = b.connect().unwrap();
    b.set("num-poll-queues", 1).unwrap();
    let b = match b.start() {
        Ok(b) => b,
        Err(e) => {
            // The file system cannot poll (tmpfs, buffered files on most):
            // that much must be said clearly; the rest needs a device.
            assert_eq!(e.kind(), ErrorKind::InvalidArgument);
            assert_eq!(e.message(), "Poll queues not supported");
            eprintln!("poll_queues: skipped, {}", file.path());
            return;
        }
    };
    let mut region = b.alloc_mem_region(4096).unwrap();
    b.map_mem_region(&region).unwrap();
    let mut q = b.poll_queue(0).unwrap();
    assert_eq!(q.completion_fd().unwrap(), None);
    let mut done = [Completion::default(); 1];
    q.read(4096, &region, 0, 4096, 5, ReqFlags::NONE);
    // SAFETY: sigemptyset initialises the set.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid sigset_t.
    unsafe { libc::sigemptyset(&mut set) };
    let e = q.do_io(&mut done, 1, None, Some(&set)).unwrap_err();
    assert_eq!(
        (e.kind(), e.errno()),
        (ErrorKind::NotSupported, libc::ENOTSUP)
    );
    assert_eq!(q.do_io(&mut done, 1, None, None).unwrap(), 1);
    assert_eq!(done[0].user_data, 5);
    drop(q);
    // A file system may refuse polled I/O per request; if it took it, the
    // data is there.
    if done[0].ret != -libc::EOPNOTSUPP {
        assert_eq!(done[0].ret, 0);
        assert_eq!(region.bytes().unwrap(), &pattern(65536, 4)[4096..8192]);
    }
}

#[test]
fn zone_requests_on_a_regular_file() {
    use blkio::{Zone, ZoneOp};
    let file = TempFile::new("zones", &vec![0; 65536]);
    let b = started(&file, 1);
    let mut q = b.queue(0).unwrap();
    let mut zones = [Zone::default(); 4];
    // SAFETY: `zones` outlives the request, which completes below.
    unsafe { q.report_zones_raw(0, zones.as_mut_ptr(), 4, 1, ReqFlags::NONE) };
    q.zone(ZoneOp::Reset, 0, 2, ReqFlags::NONE);
    q.all_zones(ZoneOp::Finish, 3, ReqFlags::NONE);
    q.zone(ZoneOp::Open, 0, 4, ReqFlags::FUA);
    let mut done = [Completion::default(); 4];
    let mut got = Vec::new();
    while got.len() < 4 {
        let n = q.do_io(&mut done, 1, None, None).unwrap();
        got.extend(done[..n].iter().map(|c| (c.user_data, c.ret)));
    }
    got.sort();
    assert_eq!(
        got,
        [
            (1, -libc::ENOTSUP),
            (2, -libc::ENOTSUP),
            (3, -libc::ENOTSUP),
            (4, -libc::EINVAL)
        ]
    );
    assert_eq!(zones, [Zone::default(); 4]);
}

/// Whether `fd` becomes readable within `ms` milliseconds; a readable
/// eventfd is read (reset).
fn readable(fd: i32, ms: i32) -> bool {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd for the duration of the call.
    let ready = unsafe { libc::poll(&mut pfd, 1, ms) } == 1;
    if ready {
        let mut counter = 0u64;
        // SAFETY: an 8-byte read from an eventfd into a u64.
        let n = unsafe { libc::read(fd, (&mut counter as *mut u64).cast(), 8) };
        assert_eq!(n, 8);
        assert!(counter >= 1);
    }
    ready
}

/// The io_uring driver has the kernel signal the completion fd only once
/// the application asks for it: asked for while a completion is already
/// waiting in the ring, the fd is readable at once; asked for first, it
/// becomes readable when a request completes.
#[test]
fn completion_fd_asked_for_late_or_early() {
    let file = TempFile::new("fd", &pattern(1 << 16, 2));
    let b = started(&file, 2);
    let region = b.alloc_mem_region(4096).unwrap();
    b.map_mem_region(&region).unwrap();
    let mut done = [Completion::default(); 1];

    let mut late = b.queue(0).unwrap();
    late.read(0, &region, 0, 4096, 1, ReqFlags::NONE);
    // Submit only (no room for completions), then let the read finish.
    assert_eq!(late.do_io(&mut [], 0, None, None).unwrap(), 0);
    std::thread::sleep(Duration::from_millis(100));
    let fd = late.completion_fd().unwrap().unwrap();
    assert!(
        readable(fd, 5000),
        "a waiting completion makes the new fd readable"
    );
    assert_eq!(late.do_io(&mut done, 1, None, None).unwrap(), 1);
    assert_eq!((done[0].user_data, done[0].ret), (1, 0));
    assert!(!readable(fd, 0), "nothing in flight, nothing signalled");
    assert_eq!(late.completion_fd().unwrap(), Some(fd));
    drop(late);

    let mut early = b.queue(1).unwrap();
    let fd1 = early.completion_fd().unwrap().unwrap();
    assert_ne!(fd1, fd);
    assert!(!readable(fd1, 0));
    early.read(4096, &region, 0, 4096, 2, ReqFlags::NONE);
    assert_eq!(early.do_io(&mut [], 0, None, None).unwrap(), 0);
    assert!(readable(fd1, 5000), "the completion signals the fd");
    assert_eq!(early.do_io(&mut done, 1, None, None).unwrap(), 1);
    assert_eq!((done[0].user_data, done[0].ret), (2, 0));
}
