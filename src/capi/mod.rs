//! The C API: the 43 functions of `blkio.h` (docs/contract/abi.md §1.2). This is the only
//! `extern "C"` code. Each function checks its pointer arguments (NULL is
//! answered with -EINVAL, or ignored by `void` functions), converts C
//! strings, calls the core, and turns an [`Error`] into a negative errno
//! plus the thread-local message.

mod error;

use std::ffi::{c_char, c_int, c_void, CStr};
use std::ptr;
use std::sync::{Mutex, MutexGuard};

use crate::core::instance::{Device, SetValue};
use crate::core::property::{PropType, Value};
use crate::core::queue::Queue;
use crate::core::region::MemRegion;
use crate::core::request::{Completion, Op, Request, Zone, ZoneOp};
use crate::core::Error;
use crate::drivers;

use error::{fail, invalid, status};

/// `struct blkio`: one instance. Control calls are serialised by the mutex;
/// queues are used without it (docs/contract/abi.md §5).
pub struct Blkio {
    device: Mutex<Box<dyn Device>>,
}

impl Blkio {
    fn lock(&self) -> MutexGuard<'_, Box<dyn Device>> {
        self.device.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Borrows the instance behind `b`, or returns `$null` from the function.
macro_rules! instance {
    ($b:expr) => {
        instance!($b, ())
    };
    ($b:expr, $null:expr) => {
        // SAFETY: a non-NULL `b` is an instance from blkio_create that the
        // application has not destroyed (API contract); shared access only,
        // the mutex serialises the calls.
        match unsafe { $b.as_ref() } {
            Some(b) => b.lock(),
            None => return $null,
        }
    };
}

/// Borrows the queue behind `q`, or returns `$null`.
macro_rules! queue {
    ($q:expr) => {
        queue!($q, ())
    };
    ($q:expr, $null:expr) => {
        // SAFETY: a non-NULL `q` is a handle from blkio_get_*queue that the
        // application has not removed or destroyed (API contract), used by
        // one thread at a time.
        match unsafe { $q.as_mut() } {
            Some(q) => q,
            None => return $null,
        }
    };
}

/// A NUL-terminated UTF-8 argument, or the failure to report.
///
/// # Safety
/// `s` is NULL or points to a NUL-terminated string.
unsafe fn utf8<'a>(s: *const c_char, what: &'static str) -> Result<&'a str, Error> {
    if s.is_null() {
        return Err(Error::invalid(match what {
            "name" => "name must be non-NULL",
            "driver" => "driver must be non-NULL",
            "path" => "value must be non-NULL",
            _ => "argument must be non-NULL",
        }));
    }
    // SAFETY: `s` is non-NULL and NUL-terminated (the caller's contract).
    unsafe { CStr::from_ptr(s) }.to_str().map_err(|_| {
        Error::invalid(match what {
            "name" => "Invalid property name",
            "driver" => "Invalid driver name",
            _ => "Invalid value string",
        })
    })
}

// ---------------------------------------------------------------------------
// Errors and lifecycle

/// The calling thread's message about the last failed call.
#[no_mangle]
pub extern "C" fn blkio_get_error_msg() -> *const c_char {
    error::msg_ptr()
}

/// Creates an instance of `driver` in the created state.
///
/// # Safety
/// `driver` is NULL or a NUL-terminated string; `bp` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn blkio_create(driver: *const c_char, bp: *mut *mut Blkio) -> c_int {
    if bp.is_null() {
        return invalid("bp must be non-NULL");
    }
    // SAFETY: `bp` is non-NULL and writable (the caller's contract).
    unsafe { *bp = ptr::null_mut() };
    // SAFETY: `driver` is NULL or NUL-terminated (the caller's contract).
    let name = match unsafe { utf8(driver, "driver") } {
        Ok(n) => n,
        Err(e) => return fail(e),
    };
    match drivers::create_named(name) {
        Ok(device) => {
            let instance = Box::into_raw(Box::new(Blkio {
                device: Mutex::new(device),
            }));
            // SAFETY: `bp` is non-NULL and writable (the caller's contract).
            unsafe { *bp = instance };
            0
        }
        Err(e) => fail(e),
    }
}

/// Connects to the device (idempotent).
///
/// # Safety
/// `b` is NULL or an instance from `blkio_create`.
#[no_mangle]
pub unsafe extern "C" fn blkio_connect(b: *mut Blkio) -> c_int {
    let mut dev = instance!(b, invalid("b must be non-NULL"));
    status(dev.connect())
}

/// Starts the instance and creates its queues (idempotent).
///
/// # Safety
/// `b` is NULL or an instance from `blkio_create`.
#[no_mangle]
pub unsafe extern "C" fn blkio_start(b: *mut Blkio) -> c_int {
    let mut dev = instance!(b, invalid("b must be non-NULL"));
    status(dev.start())
}

/// Destroys `*bp` and sets it to NULL; NULL or `*bp == NULL` is a no-op.
///
/// # Safety
/// `bp` is NULL or points to NULL or to an instance from `blkio_create`.
#[no_mangle]
pub unsafe extern "C" fn blkio_destroy(bp: *mut *mut Blkio) {
    if bp.is_null() {
        return;
    }
    // SAFETY: `bp` is non-NULL and points to a readable and writable
    // pointer (the caller's contract).
    let b = unsafe { std::mem::replace(&mut *bp, ptr::null_mut()) };
    if b.is_null() {
        return;
    }
    // SAFETY: a non-NULL `*bp` came from Box::into_raw in blkio_create and
    // is destroyed once: the caller's pointer is NULL from now on.
    drop(unsafe { Box::from_raw(b) });
}

// ---------------------------------------------------------------------------
// Properties

/// # Safety
/// Pointers are NULL or valid; `name` is NUL-terminated.
unsafe fn get_value(
    b: *mut Blkio,
    name: *const c_char,
    ty: Option<PropType>,
) -> Result<Value, c_int> {
    let dev = instance!(b, Err(invalid("b must be non-NULL")));
    // SAFETY: `name` is NULL or NUL-terminated (the caller's contract).
    let name = unsafe { utf8(name, "name") }.map_err(fail)?;
    dev.get(name, ty).map_err(fail)
}

/// # Safety
/// Pointers are NULL or valid; `name` is NUL-terminated.
unsafe fn set_value(b: *mut Blkio, name: *const c_char, value: SetValue<'_>) -> c_int {
    let mut dev = instance!(b, invalid("b must be non-NULL"));
    // SAFETY: `name` is NULL or NUL-terminated (the caller's contract).
    match unsafe { utf8(name, "name") } {
        Ok(name) => status(dev.set(name, value)),
        Err(e) => fail(e),
    }
}

/// Stores a typed property value in `*value`.
///
/// # Safety
/// Pointers are NULL or valid; `name` is NUL-terminated.
unsafe fn get_typed<T>(
    b: *mut Blkio,
    name: *const c_char,
    value: *mut T,
    ty: PropType,
    conv: fn(&Value) -> T,
) -> c_int {
    if value.is_null() && !b.is_null() && !name.is_null() {
        return invalid("value must be non-NULL");
    }
    // SAFETY: the pointers are NULL or valid (the caller's contract).
    match unsafe { get_value(b, name, Some(ty)) } {
        Ok(v) => {
            // SAFETY: get_value succeeds only for a non-NULL `b` and `name`,
            // for which a NULL `value` was refused above; it is writable
            // (the caller's contract).
            unsafe { *value = conv(&v) };
            0
        }
        Err(e) => e,
    }
}

/// # Safety
/// `b` is NULL or an instance; `name` NULL or NUL-terminated; `value` NULL
/// or writable.
#[no_mangle]
pub unsafe extern "C" fn blkio_get_bool(
    b: *mut Blkio,
    name: *const c_char,
    value: *mut bool,
) -> c_int {
    // SAFETY: the caller's contract is get_typed's.
    unsafe { get_typed(b, name, value, PropType::Bool, Value::as_bool) }
}

/// # Safety
/// `b` is NULL or an instance; `name` NULL or NUL-terminated; `value` NULL
/// or writable.
#[no_mangle]
pub unsafe extern "C" fn blkio_get_int(
    b: *mut Blkio,
    name: *const c_char,
    value: *mut c_int,
) -> c_int {
    // SAFETY: the caller's contract is get_typed's.
    unsafe { get_typed(b, name, value, PropType::Int, Value::as_int) }
}

/// # Safety
/// `b` is NULL or an instance; `name` NULL or NUL-terminated; `value` NULL
/// or writable.
#[no_mangle]
pub unsafe extern "C" fn blkio_get_uint64(
    b: *mut Blkio,
    name: *const c_char,
    value: *mut u64,
) -> c_int {
    // SAFETY: the caller's contract is get_typed's.
    unsafe { get_typed(b, name, value, PropType::Uint64, Value::as_u64) }
}

/// Reads any property as a string the caller frees with `free(3)`.
///
/// # Safety
/// `b` is NULL or an instance; `name` NULL or NUL-terminated; `value` NULL
/// or writable.
#[no_mangle]
pub unsafe extern "C" fn blkio_get_str(
    b: *mut Blkio,
    name: *const c_char,
    value: *mut *mut c_char,
) -> c_int {
    if value.is_null() && !b.is_null() && !name.is_null() {
        return invalid("value must be non-NULL");
    }
    // SAFETY: the pointers are NULL or valid (the caller's contract).
    let s = match unsafe { get_value(b, name, None) } {
        Ok(v) => v.into_string(),
        Err(e) => return e,
    };
    let Ok(c) = std::ffi::CString::new(s) else {
        return invalid("property value contains a NUL byte");
    };
    // SAFETY: `c` is a NUL-terminated string alive for the call.
    let dup = unsafe { libc::strdup(c.as_ptr()) };
    if dup.is_null() {
        return fail(Error::from_errno(libc::ENOMEM));
    }
    // SAFETY: `value` is non-NULL (get_value succeeded, so `b` and `name`
    // were non-NULL and a NULL `value` was refused above) and writable.
    unsafe { *value = dup };
    0
}

/// # Safety
/// `b` is NULL or an instance; `name` NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn blkio_set_bool(b: *mut Blkio, name: *const c_char, value: bool) -> c_int {
    // SAFETY: the caller's contract is set_value's.
    unsafe { set_value(b, name, SetValue::Typed(Value::Bool(value))) }
}

/// # Safety
/// `b` is NULL or an instance; `name` NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn blkio_set_int(b: *mut Blkio, name: *const c_char, value: c_int) -> c_int {
    // SAFETY: the caller's contract is set_value's.
    unsafe { set_value(b, name, SetValue::Typed(Value::Int(value))) }
}

/// # Safety
/// `b` is NULL or an instance; `name` NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn blkio_set_uint64(b: *mut Blkio, name: *const c_char, value: u64) -> c_int {
    // SAFETY: the caller's contract is set_value's.
    unsafe { set_value(b, name, SetValue::Typed(Value::Uint64(value))) }
}

/// Sets any property from its string form.
///
/// # Safety
/// `b` is NULL or an instance; `name` and `value` NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn blkio_set_str(
    b: *mut Blkio,
    name: *const c_char,
    value: *const c_char,
) -> c_int {
    if b.is_null() {
        return invalid("b must be non-NULL");
    }
    // SAFETY: `name` is NULL or NUL-terminated (the caller's contract).
    if let Err(e) = unsafe { utf8(name, "name") } {
        return fail(e);
    }
    // SAFETY: `value` is NULL or NUL-terminated (the caller's contract).
    match unsafe { utf8(value, "path") } {
        // SAFETY: the caller's contract is set_value's.
        Ok(v) => unsafe { set_value(b, name, SetValue::Str(v)) },
        Err(e) => fail(e),
    }
}

// ---------------------------------------------------------------------------
// Memory regions

/// # Safety
/// `b` is NULL or an instance; `region` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn blkio_alloc_mem_region(
    b: *mut Blkio,
    region: *mut MemRegion,
    len: usize,
) -> c_int {
    let mut dev = instance!(b, invalid("b must be non-NULL"));
    if region.is_null() {
        return invalid("region must be non-NULL");
    }
    match dev.alloc_mem_region(len) {
        Ok(r) => {
            // SAFETY: `region` is non-NULL and writable (the caller's
            // contract).
            unsafe { *region = r };
            0
        }
        Err(e) => fail(e),
    }
}

/// Frees a region from `blkio_alloc_mem_region`; anything else is ignored.
///
/// # Safety
/// `b` is NULL or an instance; `region` NULL or readable.
#[no_mangle]
pub unsafe extern "C" fn blkio_free_mem_region(b: *mut Blkio, region: *const MemRegion) {
    let mut dev = instance!(b);
    // SAFETY: `region` is NULL or readable (the caller's contract).
    if let Some(r) = unsafe { region.as_ref() } {
        dev.free_mem_region(r);
    }
}

/// # Safety
/// `b` is NULL or an instance; `region` NULL or readable.
#[no_mangle]
pub unsafe extern "C" fn blkio_map_mem_region(b: *mut Blkio, region: *const MemRegion) -> c_int {
    let mut dev = instance!(b, invalid("b must be non-NULL"));
    // SAFETY: `region` is NULL or readable (the caller's contract).
    match unsafe { region.as_ref() } {
        Some(r) => status(dev.map_mem_region(r)),
        None => invalid("region must be non-NULL"),
    }
}

/// # Safety
/// `b` is NULL or an instance; `region` NULL or readable.
#[no_mangle]
pub unsafe extern "C" fn blkio_unmap_mem_region(b: *mut Blkio, region: *const MemRegion) {
    let mut dev = instance!(b);
    // SAFETY: `region` is NULL or readable (the caller's contract).
    if let Some(r) = unsafe { region.as_ref() } {
        dev.unmap_mem_region(r);
    }
}

// ---------------------------------------------------------------------------
// Queues

/// # Safety
/// `b` is NULL or an instance.
#[no_mangle]
pub unsafe extern "C" fn blkio_get_queue(b: *mut Blkio, index: c_int) -> *mut Queue {
    let dev = instance!(b, ptr::null_mut());
    dev.queue(false, index)
        .map_or(ptr::null_mut(), |q| q.as_ptr())
}

/// # Safety
/// `b` is NULL or an instance.
#[no_mangle]
pub unsafe extern "C" fn blkio_get_poll_queue(b: *mut Blkio, index: c_int) -> *mut Queue {
    let dev = instance!(b, ptr::null_mut());
    dev.queue(true, index)
        .map_or(ptr::null_mut(), |q| q.as_ptr())
}

/// # Safety
/// `b` is NULL or an instance.
#[no_mangle]
pub unsafe extern "C" fn blkio_add_queue(b: *mut Blkio) -> c_int {
    let mut dev = instance!(b, invalid("b must be non-NULL"));
    dev.add_queue(false).unwrap_or_else(fail)
}

/// # Safety
/// `b` is NULL or an instance.
#[no_mangle]
pub unsafe extern "C" fn blkio_add_poll_queue(b: *mut Blkio) -> c_int {
    let mut dev = instance!(b, invalid("b must be non-NULL"));
    dev.add_queue(true).unwrap_or_else(fail)
}

/// # Safety
/// `b` is NULL or an instance.
#[no_mangle]
pub unsafe extern "C" fn blkio_remove_queue(b: *mut Blkio, index: c_int) -> c_int {
    let mut dev = instance!(b, invalid("b must be non-NULL"));
    status(dev.remove_queue(false, index))
}

/// # Safety
/// `b` is NULL or an instance.
#[no_mangle]
pub unsafe extern "C" fn blkio_remove_poll_queue(b: *mut Blkio, index: c_int) -> c_int {
    let mut dev = instance!(b, invalid("b must be non-NULL"));
    status(dev.remove_queue(true, index))
}

// ---------------------------------------------------------------------------
// Requests

/// Queues a request on `q`.
///
/// # Safety
/// The buffers `op` points to stay valid until completion
/// ([`Queue::submit`]'s contract).
#[inline]
unsafe fn submit(q: &mut Queue, op: Op, start: u64, user_data: *mut c_void, flags: u32) {
    // SAFETY: this function's contract is Queue::submit's.
    unsafe {
        q.submit(Request {
            op,
            start,
            user_data: user_data as usize,
            flags,
        })
    };
}

/// A zone management request (`all`: every zone, `start` 0).
fn submit_zone(
    q: &mut Queue,
    op: ZoneOp,
    all: bool,
    start: u64,
    user_data: *mut c_void,
    flags: u32,
) {
    // SAFETY: a zone management request points to no buffer.
    unsafe { submit(q, Op::ZoneMgmt { op, all }, start, user_data, flags) };
}

/// A vectored request; a negative `iovcnt` completes with -EINVAL before
/// the flags are looked at (docs/contract/requests.md §1).
///
/// # Safety
/// `iov` and the buffers it lists stay valid until completion.
unsafe fn submit_vectored(
    q: &mut Queue,
    write: bool,
    start: u64,
    iov: *const libc::iovec,
    iovcnt: c_int,
    user_data: *mut c_void,
    flags: u32,
) {
    let Ok(iovcnt) = u32::try_from(iovcnt) else {
        return q.fail(
            user_data as usize,
            libc::EINVAL,
            Some(c"iovcnt must be non-negative and fit in a signed 32-bit integer"),
        );
    };
    let op = if write {
        Op::Writev { iov, iovcnt }
    } else {
        Op::Readv { iov, iovcnt }
    };
    // SAFETY: this function's contract is Queue::submit's.
    unsafe { submit(q, op, start, user_data, flags) };
}

/// # Safety
/// `q` is NULL or a live queue handle; `buf` stays valid until completion.
#[no_mangle]
pub unsafe extern "C" fn blkioq_read(
    q: *mut Queue,
    start: u64,
    buf: *mut c_void,
    len: usize,
    user_data: *mut c_void,
    flags: u32,
) {
    let q = queue!(q);
    // SAFETY: `buf` stays valid until completion (the caller's contract).
    unsafe { q.read(start, buf.cast(), len, user_data as usize, flags) };
}

/// # Safety
/// `q` is NULL or a live queue handle; `buf` stays valid until completion.
#[no_mangle]
pub unsafe extern "C" fn blkioq_write(
    q: *mut Queue,
    start: u64,
    buf: *const c_void,
    len: usize,
    user_data: *mut c_void,
    flags: u32,
) {
    let q = queue!(q);
    // SAFETY: `buf` stays valid until completion (the caller's contract).
    unsafe { q.write(start, buf.cast(), len, user_data as usize, flags) };
}

/// # Safety
/// `q` is NULL or a live queue handle; `iovec` and its buffers stay valid
/// until completion.
#[no_mangle]
pub unsafe extern "C" fn blkioq_readv(
    q: *mut Queue,
    start: u64,
    iovec: *const libc::iovec,
    iovcnt: c_int,
    user_data: *mut c_void,
    flags: u32,
) {
    let q = queue!(q);
    // SAFETY: `iovec` and its buffers stay valid until completion (the
    // caller's contract).
    unsafe { submit_vectored(q, false, start, iovec, iovcnt, user_data, flags) };
}

/// # Safety
/// `q` is NULL or a live queue handle; `iovec` and its buffers stay valid
/// until completion.
#[no_mangle]
pub unsafe extern "C" fn blkioq_writev(
    q: *mut Queue,
    start: u64,
    iovec: *mut libc::iovec,
    iovcnt: c_int,
    user_data: *mut c_void,
    flags: u32,
) {
    let q = queue!(q);
    // SAFETY: `iovec` and its buffers stay valid until completion (the
    // caller's contract).
    unsafe { submit_vectored(q, true, start, iovec, iovcnt, user_data, flags) };
}

/// # Safety
/// `q` is NULL or a live queue handle.
#[no_mangle]
pub unsafe extern "C" fn blkioq_write_zeroes(
    q: *mut Queue,
    start: u64,
    len: u64,
    user_data: *mut c_void,
    flags: u32,
) {
    let q = queue!(q);
    // SAFETY: the request points to no buffer.
    unsafe { submit(q, Op::WriteZeroes { len }, start, user_data, flags) };
}

/// # Safety
/// `q` is NULL or a live queue handle.
#[no_mangle]
pub unsafe extern "C" fn blkioq_discard(
    q: *mut Queue,
    start: u64,
    len: u64,
    user_data: *mut c_void,
    flags: u32,
) {
    let q = queue!(q);
    // SAFETY: the request points to no buffer.
    unsafe { submit(q, Op::Discard { len }, start, user_data, flags) };
}

/// # Safety
/// `q` is NULL or a live queue handle.
#[no_mangle]
pub unsafe extern "C" fn blkioq_flush(q: *mut Queue, user_data: *mut c_void, flags: u32) {
    let q = queue!(q);
    // SAFETY: the request points to no buffer.
    unsafe { submit(q, Op::Flush, 0, user_data, flags) };
}

/// # Safety
/// `q` is NULL or a live queue handle; `zones` has room for `nr_zones`
/// entries and stays valid until completion.
#[no_mangle]
pub unsafe extern "C" fn blkioq_report_zones(
    q: *mut Queue,
    offset: u64,
    zones: *mut Zone,
    nr_zones: u32,
    user_data: *mut c_void,
    flags: u32,
) {
    let q = queue!(q);
    // SAFETY: `zones` has room for `nr_zones` entries and stays valid until
    // completion (the caller's contract).
    unsafe {
        submit(
            q,
            Op::ReportZones { zones, nr_zones },
            offset,
            user_data,
            flags,
        )
    };
}

/// # Safety
/// `q` is NULL or a live queue handle.
#[no_mangle]
pub unsafe extern "C" fn blkioq_close_zone(
    q: *mut Queue,
    offset: u64,
    user_data: *mut c_void,
    flags: u32,
) {
    submit_zone(queue!(q), ZoneOp::Close, false, offset, user_data, flags);
}

/// # Safety
/// `q` is NULL or a live queue handle.
#[no_mangle]
pub unsafe extern "C" fn blkioq_finish_zone(
    q: *mut Queue,
    offset: u64,
    user_data: *mut c_void,
    flags: u32,
) {
    submit_zone(queue!(q), ZoneOp::Finish, false, offset, user_data, flags);
}

/// # Safety
/// `q` is NULL or a live queue handle.
#[no_mangle]
pub unsafe extern "C" fn blkioq_open_zone(
    q: *mut Queue,
    offset: u64,
    user_data: *mut c_void,
    flags: u32,
) {
    submit_zone(queue!(q), ZoneOp::Open, false, offset, user_data, flags);
}

/// # Safety
/// `q` is NULL or a live queue handle.
#[no_mangle]
pub unsafe extern "C" fn blkioq_reset_zone(
    q: *mut Queue,
    offset: u64,
    user_data: *mut c_void,
    flags: u32,
) {
    submit_zone(queue!(q), ZoneOp::Reset, false, offset, user_data, flags);
}

/// # Safety
/// `q` is NULL or a live queue handle.
#[no_mangle]
pub unsafe extern "C" fn blkioq_close_all_zones(q: *mut Queue, user_data: *mut c_void, flags: u32) {
    submit_zone(queue!(q), ZoneOp::Close, true, 0, user_data, flags);
}

/// # Safety
/// `q` is NULL or a live queue handle.
#[no_mangle]
pub unsafe extern "C" fn blkioq_finish_all_zones(
    q: *mut Queue,
    user_data: *mut c_void,
    flags: u32,
) {
    submit_zone(queue!(q), ZoneOp::Finish, true, 0, user_data, flags);
}

/// # Safety
/// `q` is NULL or a live queue handle.
#[no_mangle]
pub unsafe extern "C" fn blkioq_open_all_zones(q: *mut Queue, user_data: *mut c_void, flags: u32) {
    submit_zone(queue!(q), ZoneOp::Open, true, 0, user_data, flags);
}

/// # Safety
/// `q` is NULL or a live queue handle.
#[no_mangle]
pub unsafe extern "C" fn blkioq_reset_all_zones(q: *mut Queue, user_data: *mut c_void, flags: u32) {
    submit_zone(queue!(q), ZoneOp::Reset, true, 0, user_data, flags);
}

// ---------------------------------------------------------------------------
// Completion

/// `blkioq_do_io*`. The usual call (a queue, no timeout, no signal mask,
/// `0 <= min <= max`, completions unless `max` is 0) goes straight to the
/// queue, whose return value is the call's; everything else takes
/// [`do_io_checked`], which runs the checks in their documented order.
///
/// # Safety
/// Pointers are NULL or valid; `completions` has room for `max` entries.
#[inline(always)]
unsafe fn do_io(
    q: *mut Queue,
    completions: *mut Completion,
    min: c_int,
    max: c_int,
    timeout: *mut libc::timespec,
    sig: *const libc::sigset_t,
) -> c_int {
    if !q.is_null() && timeout.is_null() && sig.is_null() && 0 <= min && min <= max {
        // SAFETY: a non-NULL `q` is a live queue handle used by one thread
        // at a time (the API contract, as in `queue!`).
        let q = unsafe { &mut *q };
        if !completions.is_null() {
            // SAFETY: a non-NULL `completions` has room for `max` (>= 0)
            // entries the caller does not otherwise use during the call
            // (the caller's contract).
            let out = unsafe { std::slice::from_raw_parts_mut(completions, max as usize) };
            return q.do_io_reporting(out, min as usize, fail);
        }
        if max == 0 {
            return q.do_io_reporting_none(min as usize, fail);
        }
    }
    // SAFETY: this function's contract is do_io_checked's.
    unsafe { do_io_checked(q, completions, min, max, timeout, sig) }
}

/// The argument checks of docs/contract/abi.md §6.15, in order, then the core.
///
/// # Safety
/// Pointers are NULL or valid; `completions` has room for `max` entries.
#[cold]
#[inline(never)]
unsafe fn do_io_checked(
    q: *mut Queue,
    completions: *mut Completion,
    min: c_int,
    max: c_int,
    timeout: *mut libc::timespec,
    sig: *const libc::sigset_t,
) -> c_int {
    let q = queue!(q, invalid("q must be non-NULL"));
    // SAFETY: `timeout` is NULL or valid (the caller's contract).
    if let Some(ts) = unsafe { timeout.as_ref() } {
        if ts.tv_sec < 0 {
            return invalid("tv_sec cannot be negative");
        }
        if !(0..1_000_000_000).contains(&ts.tv_nsec) {
            return invalid("tv_nsec must be less than one second");
        }
    }
    if min < 0 {
        return invalid("min_completions cannot be negative");
    }
    if max < 0 {
        return invalid("max_completions cannot be negative");
    }
    if min > max {
        return invalid("min_completions must be less than or equal to max_completions");
    }
    let out: &mut [Completion] = if completions.is_null() {
        if max > 0 {
            return invalid("max_completions must be 0 when completions is NULL");
        }
        &mut []
    } else {
        // SAFETY: a non-NULL `completions` has room for `max` (checked
        // non-negative above) entries the caller does not otherwise use
        // during the call (the caller's contract).
        unsafe { std::slice::from_raw_parts_mut(completions, max as usize) }
    };
    // SAFETY: `timeout` and `sig` are NULL or valid (the caller's contract).
    let (timeout, sig) = unsafe { (timeout.as_mut(), sig.as_ref()) };
    match q.do_io(out, min as usize, timeout, sig) {
        Ok(n) => n as c_int,
        Err(e) => fail(e),
    }
}

/// # Safety
/// `q` is NULL or a live queue handle; `completions` has room for
/// `max_completions` entries; `timeout` is NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn blkioq_do_io(
    q: *mut Queue,
    completions: *mut Completion,
    min_completions: c_int,
    max_completions: c_int,
    timeout: *mut libc::timespec,
) -> c_int {
    // SAFETY: the caller's contract is do_io's (no signal set).
    unsafe {
        do_io(
            q,
            completions,
            min_completions,
            max_completions,
            timeout,
            ptr::null(),
        )
    }
}

/// # Safety
/// As `blkioq_do_io`; `sig` is NULL or a valid signal set.
#[no_mangle]
pub unsafe extern "C" fn blkioq_do_io_interruptible(
    q: *mut Queue,
    completions: *mut Completion,
    min_completions: c_int,
    max_completions: c_int,
    timeout: *mut libc::timespec,
    sig: *const libc::sigset_t,
) -> c_int {
    // SAFETY: the caller's contract is do_io's.
    unsafe {
        do_io(
            q,
            completions,
            min_completions,
            max_completions,
            timeout,
            sig,
        )
    }
}

/// # Safety
/// `q` is NULL or a live queue handle.
#[no_mangle]
pub unsafe extern "C" fn blkioq_get_completion_fd(q: *mut Queue) -> c_int {
    let q = queue!(q, invalid("q must be non-NULL"));
    q.completion_fd().unwrap_or_else(fail)
}

/// # Safety
/// `q` is NULL or a live queue handle.
#[no_mangle]
pub unsafe extern "C" fn blkioq_set_completion_fd_enabled(q: *mut Queue, enable: bool) {
    let q = queue!(q);
    q.set_completion_fd_enabled(enable);
}
