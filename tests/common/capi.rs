//! The C API as a C program sees it: the types of `blkio.h` and the
//! functions these tests call, linked from the library (the integration
//! tests reach the library only through its exported symbols and its
//! public Rust API).

#![allow(dead_code)]

use std::ffi::{c_char, c_int, c_void, CStr};

/// `struct blkio` (opaque).
pub enum Blkio {}
/// `struct blkioq` (opaque).
pub enum Queue {}

/// `struct blkio_mem_region`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct MemRegion {
    pub addr: *mut c_void,
    pub len: usize,
    pub iova: u64,
    pub fd_offset: i64,
    pub fd: c_int,
    pub flags: u32,
}

/// `struct blkio_completion`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Completion {
    pub user_data: *mut c_void,
    pub error_msg: *const c_char,
    pub ret: c_int,
    pub reserved_: [u8; 12],
}

impl Completion {
    /// A completion with these fields (for initialising arrays).
    pub fn new(user_data: usize, ret: i32, msg: Option<&'static CStr>) -> Self {
        Completion {
            user_data: user_data as *mut c_void,
            error_msg: msg.map_or(std::ptr::null(), CStr::as_ptr),
            ret,
            reserved_: [0; 12],
        }
    }
}

extern "C" {
    pub fn blkio_get_error_msg() -> *const c_char;
    pub fn blkio_create(driver: *const c_char, bp: *mut *mut Blkio) -> c_int;
    pub fn blkio_connect(b: *mut Blkio) -> c_int;
    pub fn blkio_start(b: *mut Blkio) -> c_int;
    pub fn blkio_destroy(bp: *mut *mut Blkio);
    pub fn blkio_get_bool(b: *mut Blkio, name: *const c_char, value: *mut bool) -> c_int;
    pub fn blkio_get_int(b: *mut Blkio, name: *const c_char, value: *mut c_int) -> c_int;
    pub fn blkio_get_uint64(b: *mut Blkio, name: *const c_char, value: *mut u64) -> c_int;
    pub fn blkio_set_bool(b: *mut Blkio, name: *const c_char, value: bool) -> c_int;
    pub fn blkio_set_int(b: *mut Blkio, name: *const c_char, value: c_int) -> c_int;
    pub fn blkio_set_str(b: *mut Blkio, name: *const c_char, value: *const c_char) -> c_int;
    pub fn blkio_alloc_mem_region(b: *mut Blkio, region: *mut MemRegion, len: usize) -> c_int;
    pub fn blkio_free_mem_region(b: *mut Blkio, region: *const MemRegion);
    pub fn blkio_map_mem_region(b: *mut Blkio, region: *const MemRegion) -> c_int;
    pub fn blkio_unmap_mem_region(b: *mut Blkio, region: *const MemRegion);
    pub fn blkio_get_queue(b: *mut Blkio, index: c_int) -> *mut Queue;
    pub fn blkio_get_poll_queue(b: *mut Blkio, index: c_int) -> *mut Queue;
    pub fn blkio_add_queue(b: *mut Blkio) -> c_int;
    pub fn blkioq_read(
        q: *mut Queue,
        start: u64,
        buf: *mut c_void,
        len: usize,
        user_data: *mut c_void,
        flags: u32,
    );
    pub fn blkioq_write(
        q: *mut Queue,
        start: u64,
        buf: *const c_void,
        len: usize,
        user_data: *mut c_void,
        flags: u32,
    );
    pub fn blkioq_write_zeroes(
        q: *mut Queue,
        start: u64,
        len: u64,
        user_data: *mut c_void,
        flags: u32,
    );
    pub fn blkioq_discard(q: *mut Queue, start: u64, len: u64, user_data: *mut c_void, flags: u32);
    pub fn blkioq_flush(q: *mut Queue, user_data: *mut c_void, flags: u32);
    pub fn blkioq_reset_zone(q: *mut Queue, offset: u64, user_data: *mut c_void, flags: u32);
    pub fn blkioq_do_io(
        q: *mut Queue,
        completions: *mut Completion,
        min_completions: c_int,
        max_completions: c_int,
        timeout: *mut libc::timespec,
    ) -> c_int;
    pub fn blkioq_do_io_interruptible(
        q: *mut Queue,
        completions: *mut Completion,
        min_completions: c_int,
        max_completions: c_int,
        timeout: *mut libc::timespec,
        sig: *const libc::sigset_t,
    ) -> c_int;
    pub fn blkioq_get_completion_fd(q: *mut Queue) -> c_int;
}
