//! [`Queue`]: submitting requests and reaping their [`Completion`]s.

use std::ffi::CStr;
use std::os::fd::RawFd;
use std::ptr::NonNull;
use std::sync::Arc;
use std::time::Duration;

use super::error::{Error, Result};
use super::instance::Inner;
use super::region::{MemRegion, Shared};
pub use crate::core::flags::ReqFlags;
use crate::core::queue::Queue as RawQueue;
use crate::core::request::{Completion as RawCompletion, Op, Request, ZoneOp as RawZoneOp};

/// One zone of a zoned device, as [`Queue::report_zones_raw`] fills it in
/// (the C API's `struct blkio_zone`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Zone {
    /// Byte offset of the zone's start.
    pub start: u64,
    /// Length in bytes.
    pub len: u64,
    /// Bytes that can be written (at most `len`).
    pub capacity: u64,
    /// Byte offset of the write pointer.
    pub write_pointer: u64,
    /// `BLKIO_ZONE_TYPE_*`: 1 conventional, 2 sequential write required,
    /// 3 sequential write preferred.
    pub zone_type: u8,
    /// `BLKIO_ZONE_STATE_*`: 1 empty, 2 implicitly open, 3 explicitly
    /// open, 4 closed, 0xd read-only, 0xe full, 0xf offline.
    pub zone_state: u8,
    /// Whether the zone recommends a reset (non-zero).
    pub reset: u8,
    /// Zero.
    pub reserved: [u8; 29],
}

// The same layout as the core's `struct blkio_zone`: the array is handed to
// the drivers as it is.
const _: () = {
    use crate::core::request::Zone as RawZone;
    assert!(std::mem::size_of::<Zone>() == std::mem::size_of::<RawZone>());
    assert!(std::mem::align_of::<Zone>() == std::mem::align_of::<RawZone>());
    assert!(
        std::mem::offset_of!(Zone, write_pointer) == std::mem::offset_of!(RawZone, write_pointer)
    );
    assert!(std::mem::offset_of!(Zone, zone_type) == std::mem::offset_of!(RawZone, zone_type));
    assert!(std::mem::offset_of!(Zone, reset) == std::mem::offset_of!(RawZone, reset));
};

/// A zone management operation ([`Queue::zone`], [`Queue::all_zones`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ZoneOp {
    /// Open the zone explicitly.
    Open,
    /// Close it.
    Close,
    /// Make it full.
    Finish,
    /// Reset its write pointer to its start.
    Reset,
}

impl ZoneOp {
    fn raw(self) -> RawZoneOp {
        match self {
            ZoneOp::Open => RawZoneOp::Open,
            ZoneOp::Close => RawZoneOp::Close,
            ZoneOp::Finish => RawZoneOp::Finish,
            ZoneOp::Reset => RawZoneOp::Reset,
        }
    }
}

/// The outcome of one request, returned by [`Queue::do_io`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Completion {
    /// The `user_data` the request was submitted with.
    pub user_data: usize,
    /// 0 on success, else a negative errno.
    pub ret: i32,
    /// What went wrong, when the library has more to say than the errno.
    pub error_msg: Option<&'static str>,
}

impl Completion {
    /// `Ok(())`, or the failure as an [`Error`] (its message is
    /// `error_msg`, else the errno's text).
    ///
    /// ```
    /// let c = blkio::Completion { user_data: 7, ret: -libc::EIO, error_msg: None };
    /// let e = c.result().unwrap_err();
    /// assert_eq!(e.kind(), blkio::ErrorKind::Io);
    /// assert_eq!(e.message(), "Input/output error (os error 5)");
    /// ```
    pub fn result(&self) -> Result<()> {
        if self.ret >= 0 {
            return Ok(());
        }
        let errno = -self.ret;
        Err(match self.error_msg {
            Some(msg) => Error::new(errno, msg),
            None => Error::new(errno, std::io::Error::from_raw_os_error(errno).to_string()),
        })
    }
}

/// What the queue keeps for a request in flight: the caller's `user_data`
/// and, for the safe functions, the region its buffer lies in (kept alive
/// until the completion is returned).
struct Slot {
    user_data: usize,
    region: Option<Arc<Shared>>,
}

/// Where the data of a read or write is: `len` bytes at `offset` of a
/// region, `len` bytes at a pointer, or the buffers of an iovec array.
enum Buffer<'r> {
    Region(&'r MemRegion, usize, usize),
    Raw(*mut u8, usize),
    Iov(&'r [libc::iovec]),
}

impl Buffer<'_> {
    fn op(write: bool, buf: *mut u8, len: usize) -> Op {
        if write {
            Op::Write {
                buf: buf.cast_const(),
                len,
            }
        } else {
            Op::Read { buf, len }
        }
    }
}

/// A queue of a started instance ([`Blkio::queue`](super::Blkio::queue)):
/// requests are submitted to it and complete through [`Queue::do_io`].
///
/// Submitting never fails: a request the library refuses (bad flags, a
/// buffer outside its region, ...) completes with a negative errno like
/// any other. Every request produces exactly one [`Completion`].
///
/// A queue is used by one thread at a time (it is `Send`, not `Sync`);
/// different queues of one instance can be used from different threads.
///
/// Dropping the handle waits for the requests still in flight, for as
/// long as the device keeps completing them. When the queue is broken, or
/// 10 s pass without a completion, it gives up on them: their completions
/// are never returned, the [`MemRegion`]s they use stay allocated and
/// mapped (their instance too) for the rest of the process, with
/// [`MemRegion::bytes`] refusing, and the queue index keeps its handle
/// ([`Blkio::queue`](super::Blkio::queue) refuses it), so nothing the
/// device may still write is reused. Buffers of the `unsafe` functions
/// given up on must stay valid at least until the instance is dropped.
pub struct Queue<'a> {
    raw: NonNull<RawQueue>,
    inner: &'a Inner,
    key: (bool, i32),
    slots: Vec<Slot>,
    free: Vec<usize>,
    scratch: Vec<RawCompletion>,
    outstanding: usize,
}

// SAFETY: the raw queue is owned by the instance, which outlives the
// handle ('a), and is used only through this handle (one per queue, see
// Blkio::queue); a queue may be used from any one thread at a time.
unsafe impl Send for Queue<'_> {}

impl<'a> Queue<'a> {
    pub(crate) fn new(inner: &'a Inner, raw: NonNull<RawQueue>, key: (bool, i32)) -> Self {
        Queue {
            raw,
            inner,
            key,
            slots: Vec::new(),
            free: Vec::new(),
            scratch: Vec::new(),
            outstanding: 0,
        }
    }

    fn raw(&mut self) -> &mut RawQueue {
        // SAFETY: the queue lives in its instance's slot until the
        // instance is dropped or the queue removed; the borrow 'a keeps
        // the instance, and Blkio::remove_queue refuses a queue with a
        // handle. This handle is the only one (Blkio::take_queue).
        unsafe { self.raw.as_mut() }
    }

    /// Records a request; returns the `user_data` the core sees.
    fn slot(&mut self, user_data: usize, region: Option<Arc<Shared>>) -> usize {
        self.outstanding += 1;
        if let Some(r) = &region {
            r.begin();
        }
        let slot = Slot { user_data, region };
        match self.free.pop() {
            Some(i) => {
                self.slots[i] = slot;
                i
            }
            None => {
                self.slots.push(slot);
                self.slots.len() - 1
            }
        }
    }

    /// Requests submitted whose completion has not been returned yet.
    pub fn outstanding(&self) -> usize {
        self.outstanding
    }

    /// Reads `len` bytes from the device at byte `start` into
    /// `region[offset..offset + len]`.
    ///
    /// The region is kept alive until the completion is returned, and
    /// [`MemRegion::bytes`] refuses until then. A range outside the
    /// region completes with `-EINVAL`.
    ///
    /// ```
    /// # let path = std::env::temp_dir().join(format!("blkio-doc-{}", std::process::id()));
    /// # std::fs::write(&path, b"hello, world".repeat(1000)).unwrap();
    /// use blkio::{Blkio, Completion, ReqFlags};
    ///
    /// let b = Blkio::new("io_uring")?;
    /// b.set("path", path.to_str().unwrap())?;
    /// let b = b.connect()?.start()?;
    /// let mut region = b.alloc_mem_region(4096)?;
    /// b.map_mem_region(&region)?;
    /// let mut q = b.queue(0)?;
    /// q.read(0, &region, 0, 512, 42, ReqFlags::NONE);
    /// let mut done = [Completion::default(); 1];
    /// assert_eq!(q.do_io(&mut done, 1, None, None)?, 1);
    /// assert_eq!((done[0].user_data, done[0].ret), (42, 0));
    /// assert_eq!(&region.bytes()?[..12], b"hello, world");
    /// # std::fs::remove_file(&path).unwrap();
    /// # Ok::<(), blkio::Error>(())
    /// ```
    pub fn read(
        &mut self,
        start: u64,
        region: &MemRegion,
        offset: usize,
        len: usize,
        user_data: usize,
        flags: ReqFlags,
    ) {
        let buf = Buffer::Region(region, offset, len);
        // SAFETY: a region buffer needs nothing of the caller.
        unsafe { self.transfer(false, start, buf, user_data, flags) }
    }

    /// Writes `region[offset..offset + len]` to the device at byte
    /// `start`; as [`Queue::read`].
    pub fn write(
        &mut self,
        start: u64,
        region: &MemRegion,
        offset: usize,
        len: usize,
        user_data: usize,
        flags: ReqFlags,
    ) {
        let buf = Buffer::Region(region, offset, len);
        // SAFETY: a region buffer needs nothing of the caller.
        unsafe { self.transfer(true, start, buf, user_data, flags) }
    }

    /// Reads into `len` bytes at `buf` (`blkioq_read`).
    ///
    /// # Safety
    /// `buf` is valid for writes of `len` bytes and is neither read nor
    /// written by anything else, nor freed, until this request's
    /// completion has been returned by [`Queue::do_io`]. Drivers that need
    /// mapped memory (`needs-mem-regions`) want it inside a mapped
    /// [`MemRegion`].
    pub unsafe fn read_raw(
        &mut self,
        start: u64,
        buf: *mut u8,
        len: usize,
        user_data: usize,
        flags: ReqFlags,
    ) {
        // SAFETY: this function's contract.
        unsafe { self.transfer(false, start, Buffer::Raw(buf, len), user_data, flags) }
    }

    /// Writes `len` bytes from `buf` (`blkioq_write`).
    ///
    /// # Safety
    /// `buf` is valid for reads of `len` bytes and is not written nor
    /// freed until this request's completion has been returned by
    /// [`Queue::do_io`].
    pub unsafe fn write_raw(
        &mut self,
        start: u64,
        buf: *const u8,
        len: usize,
        user_data: usize,
        flags: ReqFlags,
    ) {
        let buf = Buffer::Raw(buf.cast_mut(), len);
        // SAFETY: this function's contract; a write only reads the buffer.
        unsafe { self.transfer(true, start, buf, user_data, flags) }
    }

    /// Reads into the buffers of `iov` (`blkioq_readv`).
    ///
    /// # Safety
    /// `iov`, and every buffer it lists, stay valid and otherwise unused
    /// until this request's completion has been returned by
    /// [`Queue::do_io`] (as for [`Queue::read_raw`]).
    pub unsafe fn readv_raw(
        &mut self,
        start: u64,
        iov: &[libc::iovec],
        user_data: usize,
        flags: ReqFlags,
    ) {
        // SAFETY: this function's contract.
        unsafe { self.transfer(false, start, Buffer::Iov(iov), user_data, flags) }
    }

    /// Writes the buffers of `iov` (`blkioq_writev`).
    ///
    /// # Safety
    /// As [`Queue::readv_raw`]; the buffers are only read.
    pub unsafe fn writev_raw(
        &mut self,
        start: u64,
        iov: &[libc::iovec],
        user_data: usize,
        flags: ReqFlags,
    ) {
        // SAFETY: this function's contract.
        unsafe { self.transfer(true, start, Buffer::Iov(iov), user_data, flags) }
    }

    /// The one path of the reads and writes: records the request (a
    /// region buffer keeps its region alive) and submits it, or completes
    /// it at once with `-EINVAL` when its buffer is refused (a range
    /// outside the region, more iovecs than an `i32` counts).
    ///
    /// # Safety
    /// A [`Buffer::Raw`] or [`Buffer::Iov`] follows the contract of
    /// [`Queue::read_raw`] / [`Queue::readv_raw`] (for a write, the
    /// buffers are only read).
    unsafe fn transfer(
        &mut self,
        write: bool,
        start: u64,
        buf: Buffer<'_>,
        user_data: usize,
        flags: ReqFlags,
    ) {
        let (op, ud) = match buf {
            Buffer::Region(region, offset, len) => {
                if offset.checked_add(len).is_none_or(|end| end > region.len()) {
                    let ud = self.slot(user_data, None);
                    let msg = c"buffer lies outside the memory region";
                    return self.raw().fail(ud, libc::EINVAL, Some(msg));
                }
                let ud = self.slot(user_data, Some(region.shared().clone()));
                // SAFETY: `offset` is within the region (checked above).
                let buf = unsafe { region.as_ptr().add(offset) };
                (Buffer::op(write, buf, len), ud)
            }
            Buffer::Raw(buf, len) => (Buffer::op(write, buf, len), self.slot(user_data, None)),
            Buffer::Iov(iov) => {
                let ud = self.slot(user_data, None);
                let Ok(iovcnt) = u32::try_from(iov.len()) else {
                    let msg = c"iovcnt must be non-negative and fit in a signed 32-bit integer";
                    return self.raw().fail(ud, libc::EINVAL, Some(msg));
                };
                let iov = iov.as_ptr();
                let op = if write {
                    Op::Writev { iov, iovcnt }
                } else {
                    Op::Readv { iov, iovcnt }
                };
                (op, ud)
            }
        };
        // SAFETY: a region buffer lies in the region, which the slot keeps
        // alive until the completion is returned (MemRegion::bytes*
        // refuse while the request is in flight); the others are this
        // function's contract.
        unsafe { self.submit(op, start, ud, flags) };
    }

    /// Hands a request to the core: reads and writes through its quick
    /// paths (`blkioq_read` / `blkioq_write`), the rest through
    /// [`RawQueue::submit`].
    ///
    /// # Safety
    /// Every buffer `op` points to follows [`RawQueue::submit`]'s contract.
    unsafe fn submit(&mut self, op: Op, start: u64, ud: usize, flags: ReqFlags) {
        let flags = flags.bits();
        let raw = self.raw();
        // SAFETY: this function's contract.
        unsafe {
            match op {
                Op::Read { buf, len } => raw.read(start, buf, len, ud, flags),
                Op::Write { buf, len } => raw.write(start, buf, len, ud, flags),
                op => raw.submit(Request {
                    op,
                    start,
                    user_data: ud,
                    flags,
                }),
            }
        }
    }

    /// Writes `len` zero bytes at `start` (`blkioq_write_zeroes`).
    pub fn write_zeroes(&mut self, start: u64, len: u64, user_data: usize, flags: ReqFlags) {
        let ud = self.slot(user_data, None);
        // SAFETY: the request points to no buffer.
        unsafe { self.submit(Op::WriteZeroes { len }, start, ud, flags) };
    }

    /// Discards `len` bytes at `start` (`blkioq_discard`).
    pub fn discard(&mut self, start: u64, len: u64, user_data: usize, flags: ReqFlags) {
        let ud = self.slot(user_data, None);
        // SAFETY: the request points to no buffer.
        unsafe { self.submit(Op::Discard { len }, start, ud, flags) };
    }

    /// Makes completed writes durable (`blkioq_flush`).
    pub fn flush(&mut self, user_data: usize, flags: ReqFlags) {
        let ud = self.slot(user_data, None);
        // SAFETY: the request points to no buffer.
        unsafe { self.submit(Op::Flush, 0, ud, flags) };
    }

    /// Fills up to `nr_zones` entries at `zones` with the zones from the
    /// one containing byte `offset` on (`blkioq_report_zones`); drivers
    /// without zoned devices complete it with `-ENOTSUP`.
    ///
    /// # Safety
    /// `zones` is valid for writes of `nr_zones` entries and otherwise
    /// unused until this request's completion has been returned by
    /// [`Queue::do_io`].
    pub unsafe fn report_zones_raw(
        &mut self,
        offset: u64,
        zones: *mut Zone,
        nr_zones: u32,
        user_data: usize,
        flags: ReqFlags,
    ) {
        let ud = self.slot(user_data, None);
        let op = Op::ReportZones {
            zones: zones.cast(),
            nr_zones,
        };
        // SAFETY: this function's contract; `Zone` has the core's layout
        // (checked at compile time above).
        unsafe { self.submit(op, offset, ud, flags) };
    }

    /// Applies `op` to the zone at byte `offset` (`blkioq_open_zone`, ...).
    pub fn zone(&mut self, op: ZoneOp, offset: u64, user_data: usize, flags: ReqFlags) {
        self.zone_mgmt(op, false, offset, user_data, flags)
    }

    /// Applies `op` to every zone (`blkioq_open_all_zones`, ...).
    pub fn all_zones(&mut self, op: ZoneOp, user_data: usize, flags: ReqFlags) {
        self.zone_mgmt(op, true, 0, user_data, flags)
    }

    fn zone_mgmt(&mut self, op: ZoneOp, all: bool, offset: u64, user_data: usize, flags: ReqFlags) {
        let ud = self.slot(user_data, None);
        let op = Op::ZoneMgmt { op: op.raw(), all };
        // SAFETY: the request points to no buffer.
        unsafe { self.submit(op, offset, ud, flags) };
    }

    /// Submits the queued requests and returns completions into `out`: at
    /// least `min` of them (waiting if need be), at most `out.len()`
    /// (capped at `i32::MAX`).
    ///
    /// With `timeout`, a wait that runs out fails with
    /// [`ErrorKind::TimedOut`](super::ErrorKind::TimedOut); with
    /// `sigmask`, the wait runs with that signal mask and a signal fails
    /// it with [`ErrorKind::Interrupted`](super::ErrorKind::Interrupted)
    /// (not on poll queues: [`ErrorKind::NotSupported`](super::ErrorKind::NotSupported)).
    /// A failed call returns no completions; they come with a later call.
    /// `min` above the requests still outstanding fails with
    /// [`ErrorKind::InvalidArgument`](super::ErrorKind::InvalidArgument).
    pub fn do_io(
        &mut self,
        out: &mut [Completion],
        min: usize,
        timeout: Option<Duration>,
        sigmask: Option<&libc::sigset_t>,
    ) -> Result<usize> {
        let max = out.len().min(i32::MAX as usize);
        if min > max {
            return Err(Error::new(
                libc::EINVAL,
                "min_completions must be less than or equal to max_completions",
            ));
        }
        if self.scratch.len() < max {
            self.scratch
                .resize(max, RawCompletion::new(0, 0, None::<&'static CStr>));
        }
        let mut ts = timeout.map(|d| libc::timespec {
            tv_sec: d.as_secs().min(libc::time_t::MAX as u64) as libc::time_t,
            tv_nsec: d.subsec_nanos() as libc::c_long,
        });
        let mut scratch = std::mem::take(&mut self.scratch);
        let result = self
            .raw()
            .do_io(&mut scratch[..max], min, ts.as_mut(), sigmask);
        let n = match result {
            Ok(n) => n,
            Err(e) => {
                self.scratch = scratch;
                return Err(e.into());
            }
        };
        for (c, o) in scratch[..n].iter().zip(out.iter_mut()) {
            *o = self.complete(c);
        }
        self.scratch = scratch;
        Ok(n)
    }

    /// Turns a completion of the core into the caller's, releasing its slot.
    fn complete(&mut self, c: &RawCompletion) -> Completion {
        let index = c.user_data as usize;
        let slot = std::mem::replace(
            &mut self.slots[index],
            Slot {
                user_data: 0,
                region: None,
            },
        );
        self.free.push(index);
        self.outstanding -= 1;
        if let Some(r) = slot.region {
            r.end();
        }
        let error_msg = if c.error_msg.is_null() {
            None
        } else {
            // SAFETY: completion messages are static NUL-terminated strings
            // of the library (Completion::new takes a &'static CStr).
            unsafe { CStr::from_ptr(c.error_msg) }.to_str().ok()
        };
        Completion {
            user_data: slot.user_data,
            ret: c.ret,
            error_msg,
        }
    }

    /// The queue's completion eventfd (readable when completions may be
    /// waiting; read it to reset it, then call [`Queue::do_io`]), or
    /// `None` for poll queues. Valid while the handle lives.
    ///
    /// The io_uring drivers have the kernel signal the fd only from the
    /// first call on (a queue whose application waits in `do_io` saves a
    /// signal per completion); completions already waiting then make it
    /// readable at once. That first call can fail (the kernel refused to
    /// register the fd with the ring).
    pub fn completion_fd(&mut self) -> Result<Option<RawFd>> {
        match self.raw().completion_fd()? {
            fd if fd >= 0 => Ok(Some(fd)),
            _ => Ok(None),
        }
    }

    /// Turns completion fd notifications on or off (a hint; virtio-blk
    /// queues start with them off, io_uring queues on). Turning them on
    /// makes the fd readable if completions are already waiting.
    pub fn set_completion_fd_enabled(&mut self, enabled: bool) {
        self.raw().set_completion_fd_enabled(enabled)
    }
}

/// How long dropping a [`Queue`] waits for the next completion of its
/// requests in flight before it gives up on the device (as long as a
/// vhost-user back-end gets to answer a message).
const DROP_WAIT: Duration = Duration::from_secs(10);

impl Drop for Queue<'_> {
    fn drop(&mut self) {
        // Requests in flight may still use their buffers: wait for them
        // while the device keeps completing them.
        let mut out = vec![Completion::default(); self.outstanding.min(1024)];
        while self.outstanding > 0 {
            if self.do_io(&mut out, 1, Some(DROP_WAIT), None).is_err() {
                // The queue is broken, or the device has completed nothing
                // for DROP_WAIT: keep the regions alive forever and the
                // queue marked in use, so nothing they point to is freed
                // or reused while the device may still touch it.
                std::mem::forget(std::mem::take(&mut self.slots));
                return;
            }
        }
        self.inner.release(self.key);
    }
}

impl std::fmt::Debug for Queue<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue")
            .field("poll", &self.key.0)
            .field("index", &self.key.1)
            .field("outstanding", &self.outstanding)
            .finish()
    }
}
