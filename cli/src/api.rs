//! A thin, safe face of the public C API (`blkio_*` / `blkioq_*`), the
//! only way the `blkio` tool talks to the library. Every call goes through the exported `extern "C"` functions, so
//! the tool exercises exactly what a C program linked against libblkio
//! gets; no library logic is repeated here.

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::marker::PhantomData;
use std::os::fd::RawFd;
use std::ptr::{self, NonNull};

use blkio::capi::{self as c, Blkio};
use blkio::core::queue::Queue as RawQueue;
use blkio::core::region::MemRegion;

pub use blkio::core::request::Completion;

/// A failed call: the positive errno and `blkio_get_error_msg()`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    pub errno: i32,
    pub msg: String,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.msg)
    }
}

pub type Result<T> = std::result::Result<T, ApiError>;

/// The error of a call that returned `ret` < 0.
fn last_error(ret: c_int) -> ApiError {
    // SAFETY: blkio_get_error_msg returns this thread's NUL-terminated
    // buffer, valid until the next failing call on this thread.
    let msg = unsafe { CStr::from_ptr(c::blkio_get_error_msg()) };
    ApiError {
        errno: -ret,
        msg: msg.to_string_lossy().into_owned(),
    }
}

fn check(ret: c_int) -> Result<c_int> {
    if ret < 0 {
        Err(last_error(ret))
    } else {
        Ok(ret)
    }
}

/// A C string argument; an interior NUL is refused like the library
/// refuses invalid strings.
fn cstring(s: &str, what: &str) -> Result<CString> {
    CString::new(s).map_err(|_| ApiError {
        errno: libc::EINVAL,
        msg: format!("{what} must not contain a NUL byte"),
    })
}

/// The text of an errno, worded like the library's own OS errors.
pub fn strerror(errno: i32) -> String {
    std::io::Error::from_raw_os_error(errno).to_string()
}

/// What a failed completion reports: its message, else the errno's text.
pub fn completion_error(c: &Completion) -> String {
    if c.error_msg.is_null() {
        strerror(-c.ret)
    } else {
        // SAFETY: a non-NULL error_msg is a static NUL-terminated string
        // of the library.
        unsafe { CStr::from_ptr(c.error_msg) }
            .to_string_lossy()
            .into_owned()
    }
}

/// An instance (`struct blkio *`), destroyed on drop.
pub struct Instance {
    ptr: NonNull<Blkio>,
}

// SAFETY: the library serialises every control call on an instance with
// its own lock (docs/contract/abi.md §5), so the handle may be shared between threads.
unsafe impl Send for Instance {}
// SAFETY: as for Send.
unsafe impl Sync for Instance {}

impl Instance {
    pub fn create(driver: &str) -> Result<Self> {
        let name = cstring(driver, "driver")?;
        let mut b: *mut Blkio = ptr::null_mut();
        // SAFETY: valid string and out-pointer.
        check(unsafe { c::blkio_create(name.as_ptr(), &mut b) })?;
        Ok(Instance {
            ptr: NonNull::new(b).expect("blkio_create succeeded"),
        })
    }

    fn raw(&self) -> *mut Blkio {
        self.ptr.as_ptr()
    }

    pub fn connect(&self) -> Result<()> {
        // SAFETY: a live instance.
        check(unsafe { c::blkio_connect(self.raw()) }).map(drop)
    }

    pub fn start(&self) -> Result<()> {
        // SAFETY: a live instance.
        check(unsafe { c::blkio_start(self.raw()) }).map(drop)
    }

    /// Any property as a string (`blkio_get_str`).
    pub fn get_str(&self, name: &str) -> Result<String> {
        let name = cstring(name, "name")?;
        let mut value: *mut c_char = ptr::null_mut();
        // SAFETY: valid instance, string and out-pointer.
        check(unsafe { c::blkio_get_str(self.raw(), name.as_ptr(), &mut value) })?;
        // SAFETY: on success `value` is a malloc'ed NUL-terminated string
        // that we own and free here.
        unsafe {
            let s = CStr::from_ptr(value).to_string_lossy().into_owned();
            libc::free(value.cast());
            Ok(s)
        }
    }

    pub fn get_u64(&self, name: &str) -> Result<u64> {
        let name = cstring(name, "name")?;
        let mut v = 0u64;
        // SAFETY: valid instance, string and out-pointer.
        check(unsafe { c::blkio_get_uint64(self.raw(), name.as_ptr(), &mut v) })?;
        Ok(v)
    }

    pub fn get_int(&self, name: &str) -> Result<i32> {
        let name = cstring(name, "name")?;
        let mut v: c_int = 0;
        // SAFETY: valid instance, string and out-pointer.
        check(unsafe { c::blkio_get_int(self.raw(), name.as_ptr(), &mut v) })?;
        Ok(v)
    }

    pub fn get_bool(&self, name: &str) -> Result<bool> {
        let name = cstring(name, "name")?;
        let mut v = false;
        // SAFETY: valid instance, string and out-pointer.
        check(unsafe { c::blkio_get_bool(self.raw(), name.as_ptr(), &mut v) })?;
        Ok(v)
    }

    /// Any property from its string form (`blkio_set_str`).
    pub fn set_str(&self, name: &str, value: &str) -> Result<()> {
        let name = cstring(name, "name")?;
        let value = cstring(value, "value")?;
        // SAFETY: valid instance and strings.
        check(unsafe { c::blkio_set_str(self.raw(), name.as_ptr(), value.as_ptr()) }).map(drop)
    }

    /// A new memory region of `len` bytes (not yet mapped).
    pub fn alloc_region(&self, len: usize) -> Result<Region<'_>> {
        let mut raw = MemRegion {
            addr: ptr::null_mut(),
            len: 0,
            iova: 0,
            fd_offset: 0,
            fd: -1,
            flags: 0,
        };
        // SAFETY: valid instance and out-pointer.
        check(unsafe { c::blkio_alloc_mem_region(self.raw(), &mut raw, len) })?;
        Ok(Region { owner: self, raw })
    }

    /// Maps `region` (of this or another instance) for I/O by this
    /// instance; unmapped when the mapping is dropped.
    pub fn map<'a>(&'a self, region: &'a Region<'_>) -> Result<Mapping<'a>> {
        // SAFETY: valid instance and region description.
        check(unsafe { c::blkio_map_mem_region(self.raw(), &region.raw) })?;
        Ok(Mapping {
            instance: self,
            raw: region.raw,
        })
    }

    /// Regular queue `index`. Take one handle per index.
    pub fn queue(&self, index: i32) -> Option<Queue<'_>> {
        // SAFETY: a live instance.
        let q = unsafe { c::blkio_get_queue(self.raw(), index) };
        Queue::new(q)
    }

    /// Poll queue `index`. Take one handle per index.
    pub fn poll_queue(&self, index: i32) -> Option<Queue<'_>> {
        // SAFETY: a live instance.
        let q = unsafe { c::blkio_get_poll_queue(self.raw(), index) };
        Queue::new(q)
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let mut b = self.raw();
        // SAFETY: our instance; every borrow (queues, regions) has ended.
        unsafe { c::blkio_destroy(&mut b) };
    }
}

/// A memory region allocated by an instance, freed on drop.
pub struct Region<'a> {
    owner: &'a Instance,
    raw: MemRegion,
}

// SAFETY: the region is plain shared memory; freeing goes through the
// owner's locked control path. Threads use disjoint parts of it.
unsafe impl Send for Region<'_> {}
// SAFETY: as for Send.
unsafe impl Sync for Region<'_> {}

impl Region<'_> {
    pub fn as_ptr(&self) -> *mut u8 {
        self.raw.addr.cast()
    }

    pub fn len(&self) -> usize {
        self.raw.len
    }

    /// The region's bytes. The caller must not hold this while requests
    /// that write into the region are in flight.
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: `len` bytes mapped at `addr` for the region's lifetime;
        // `&mut self` excludes other slices made by this method.
        unsafe { std::slice::from_raw_parts_mut(self.as_ptr(), self.len()) }
    }
}

impl Drop for Region<'_> {
    fn drop(&mut self) {
        // SAFETY: allocated by `owner`, which outlives the region; every
        // mapping borrowed the region and has been dropped.
        unsafe { c::blkio_free_mem_region(self.owner.raw(), &self.raw) };
    }
}

/// A region mapped into an instance, unmapped on drop.
pub struct Mapping<'a> {
    instance: &'a Instance,
    raw: MemRegion,
}

impl Drop for Mapping<'_> {
    fn drop(&mut self) {
        // SAFETY: mapped into `instance`, which outlives the mapping.
        unsafe { c::blkio_unmap_mem_region(self.instance.raw(), &self.raw) };
    }
}

/// A queue (`struct blkioq *`) of an instance. Buffers handed to requests
/// must stay valid until their completion is returned by [`Queue::do_io`].
pub struct Queue<'a> {
    ptr: NonNull<RawQueue>,
    _instance: PhantomData<&'a Instance>,
}

// SAFETY: a queue may be used by any one thread at a time (docs/contract/abi.md §5); the
// handle is not Clone, so only its holder uses it.
unsafe impl Send for Queue<'_> {}

impl Queue<'_> {
    fn new(q: *mut RawQueue) -> Option<Self> {
        Some(Queue {
            ptr: NonNull::new(q)?,
            _instance: PhantomData,
        })
    }

    fn raw(&mut self) -> *mut RawQueue {
        self.ptr.as_ptr()
    }

    #[inline]
    pub fn read(&mut self, start: u64, buf: *mut u8, len: usize, user_data: usize, flags: u32) {
        // SAFETY: a live queue; the buffer contract is the caller's.
        unsafe {
            c::blkioq_read(
                self.raw(),
                start,
                buf.cast(),
                len,
                user_data as *mut c_void,
                flags,
            )
        }
    }

    #[inline]
    pub fn write(&mut self, start: u64, buf: *const u8, len: usize, user_data: usize, flags: u32) {
        // SAFETY: a live queue; the buffer contract is the caller's.
        unsafe {
            c::blkioq_write(
                self.raw(),
                start,
                buf.cast(),
                len,
                user_data as *mut c_void,
                flags,
            )
        }
    }

    #[inline]
    pub fn write_zeroes(&mut self, start: u64, len: u64, user_data: usize, flags: u32) {
        // SAFETY: a live queue.
        unsafe { c::blkioq_write_zeroes(self.raw(), start, len, user_data as *mut c_void, flags) }
    }

    #[inline]
    pub fn flush(&mut self, user_data: usize) {
        // SAFETY: a live queue.
        unsafe { c::blkioq_flush(self.raw(), user_data as *mut c_void, 0) }
    }

    /// `blkioq_do_io(q, out, min, out.len(), NULL)`.
    #[inline]
    pub fn do_io(&mut self, out: &mut [Completion], min: usize) -> Result<usize> {
        let max = out.len().min(c_int::MAX as usize) as c_int;
        // SAFETY: `out` has room for `max` completions.
        let n = unsafe {
            c::blkioq_do_io(
                self.raw(),
                out.as_mut_ptr(),
                min as c_int,
                max,
                ptr::null_mut(),
            )
        };
        check(n).map(|n| n as usize)
    }

    /// The completion fd; `None` for queues without one (poll queues).
    pub fn completion_fd(&mut self) -> Option<RawFd> {
        // SAFETY: a live queue.
        let fd = unsafe { c::blkioq_get_completion_fd(self.raw()) };
        (fd >= 0).then_some(fd)
    }

    /// `blkioq_set_completion_fd_enabled`: virtio-blk queues start with
    /// completion notifications off; event-driven callers turn them on.
    pub fn set_completion_fd_enabled(&mut self, enabled: bool) {
        // SAFETY: a live queue.
        unsafe { c::blkioq_set_completion_fd_enabled(self.raw(), enabled) };
    }
}

/// Waits until `fd` (a completion eventfd) is readable, then resets it.
/// Resetting before the next `blkioq_do_io` loses no wake-up: a completion
/// that arrives later signals the fd again.
pub fn wait_readable(fd: RawFd) {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd; an 8-byte read into a u64 from an eventfd.
    unsafe {
        libc::poll(&mut pfd, 1, -1);
        let mut v = 0u64;
        libc::read(fd, (&mut v as *mut u64).cast(), 8);
    }
}

/// A zeroed completion array of `n` entries.
pub fn completions(n: usize) -> Vec<Completion> {
    vec![Completion::new(0, 0, None); n]
}
