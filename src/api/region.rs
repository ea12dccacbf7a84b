//! [`MemRegion`]: request buffers the device can reach.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use super::error::{Error, Result};
use super::instance::Inner;
use crate::core::region::MemRegion as RawRegion;

/// A memory region allocated by [`Blkio::alloc_mem_region`]
/// (shared memory the device can reach, aligned as the driver needs).
///
/// The region is unmapped from every instance it was mapped into and
/// freed when the handle is dropped and the last request using it has
/// completed: requests submitted with [`Queue::read`] and
/// [`Queue::write`] keep it alive until their completion is returned.
///
/// Its bytes are reached safely with [`MemRegion::bytes`] and
/// [`MemRegion::bytes_mut`], which refuse while requests on the region are
/// in flight, or with [`MemRegion::as_ptr`] under the caller's own rules.
///
/// [`Blkio::alloc_mem_region`]: super::Blkio::alloc_mem_region
/// [`Queue::read`]: super::Queue::read
/// [`Queue::write`]: super::Queue::write
pub struct MemRegion {
    shared: Arc<Shared>,
}

/// The region itself, kept alive by the handle and by requests in flight.
pub(crate) struct Shared {
    owner: Arc<Inner>,
    raw: RawRegion,
    /// Instances the region is mapped into.
    mapped: Mutex<Vec<Arc<Inner>>>,
    /// Requests submitted through the safe API and not yet completed.
    in_flight: AtomicUsize,
}

impl Shared {
    /// One more request in flight on the region.
    pub(crate) fn begin(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
    }

    /// A request on the region completed (its completion was returned).
    pub(crate) fn end(&self) {
        self.in_flight.fetch_sub(1, Ordering::Release);
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        let mapped = std::mem::take(self.mapped.get_mut().unwrap_or_else(|e| e.into_inner()));
        for instance in mapped {
            instance.lock().unmap_mem_region(&self.raw);
        }
        self.owner.lock().free_mem_region(&self.raw);
    }
}

impl MemRegion {
    pub(crate) fn new(owner: Arc<Inner>, raw: RawRegion) -> Self {
        MemRegion {
            shared: Arc::new(Shared {
                owner,
                raw,
                mapped: Mutex::new(Vec::new()),
                in_flight: AtomicUsize::new(0),
            }),
        }
    }

    pub(crate) fn raw(&self) -> &RawRegion {
        &self.shared.raw
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    fn mapped(&self) -> std::sync::MutexGuard<'_, Vec<Arc<Inner>>> {
        self.shared.mapped.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn mapped_into(&self, instance: Arc<Inner>) {
        self.mapped().push(instance);
    }

    pub(crate) fn unmapped_from(&self, instance: &Arc<Inner>) {
        self.mapped().retain(|i| !Arc::ptr_eq(i, instance));
    }

    /// The region's length in bytes.
    pub fn len(&self) -> usize {
        self.shared.raw.len
    }

    /// Whether the region is empty (never true: regions have a length).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The start of the region, valid for [`MemRegion::len`] bytes as long
    /// as the region exists. For the raw request functions
    /// ([`Queue::read_raw`](super::Queue::read_raw) ...).
    pub fn as_ptr(&self) -> *mut u8 {
        self.shared.raw.addr.cast()
    }

    /// The region's file descriptor (a memfd) and the offset of the region
    /// in it, for sharing the memory with another process.
    pub fn fd(&self) -> (std::os::fd::RawFd, i64) {
        (self.shared.raw.fd, self.shared.raw.fd_offset)
    }

    fn check_idle(&self) -> Result<()> {
        match self.shared.in_flight.load(Ordering::Acquire) {
            0 => Ok(()),
            n => Err(Error::new(
                libc::EBUSY,
                format!("{n} requests on the memory region are in flight"),
            )),
        }
    }

    /// The region's bytes, to read what a request read into it. Fails with
    /// [`ErrorKind::WrongState`](super::ErrorKind::WrongState) while a
    /// request submitted with [`Queue::read`](super::Queue::read) or
    /// [`Queue::write`](super::Queue::write) on the region is in flight
    /// (the exclusive borrow keeps new ones out while the slice lives).
    pub fn bytes(&mut self) -> Result<&[u8]> {
        self.check_idle()?;
        // SAFETY: `len` bytes are mapped at `addr` while the region exists;
        // no request of the safe API is in flight on them, and none can be
        // submitted while `self` is borrowed exclusively.
        Ok(unsafe { std::slice::from_raw_parts(self.as_ptr(), self.len()) })
    }

    /// The region's bytes, to fill a buffer before writing it; fails as
    /// [`MemRegion::bytes`] does.
    pub fn bytes_mut(&mut self) -> Result<&mut [u8]> {
        self.check_idle()?;
        // SAFETY: as in `bytes`; the exclusive borrow of `self` makes the
        // slice the only access through this handle.
        Ok(unsafe { std::slice::from_raw_parts_mut(self.as_ptr(), self.len()) })
    }
}

impl std::fmt::Debug for MemRegion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemRegion")
            .field("addr", &self.as_ptr())
            .field("len", &self.len())
            .finish()
    }
}
