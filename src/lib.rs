//! A from-scratch reimplementation of libblkio 1.5: a C library
//! (`libblkio.so.1`, the `blkio_*` / `blkioq_*` functions of `blkio.h`) and
//! this safe Rust API over the same code.
//!
//! # Guide
//!
//! An instance of a driver goes through three states, each its own type:
//! [`Blkio<Created>`] (set what to open), [`Blkio<Connected>`] (the device
//! is open: read its properties, set queue counts) and [`Blkio<Started>`]
//! (queues exist: do I/O). Requests go to a [`Queue`]; their buffers live in
//! a [`MemRegion`] the instance allocates and maps; [`Queue::do_io`] submits
//! them and returns one [`Completion`] per request.
//!
//! ```
//! use blkio::{Blkio, Completion, ReqFlags};
//!
//! # let dir = std::env::temp_dir();
//! let path = dir.join(format!("blkio-guide-{}", std::process::id()));
//! std::fs::write(&path, vec![0u8; 1 << 20]).unwrap();
//!
//! // create: pick a driver and say what to open
//! let b = Blkio::new("io_uring")?;
//! b.set("path", path.to_str().unwrap())?;
//!
//! // connect: the device's properties are now known
//! let b = b.connect()?;
//! let capacity: u64 = b.get("capacity")?;
//! assert_eq!(capacity, 1 << 20);
//! b.set("num-queues", 1)?;
//!
//! // start: queues exist
//! let b = b.start()?;
//!
//! // map: buffers the device can reach
//! let mut region = b.alloc_mem_region(8192)?;
//! b.map_mem_region(&region)?;
//! region.bytes_mut()?[..4096].fill(0xab);
//!
//! // submit: write the first half of the region, then read it back into
//! // the second half
//! let mut q = b.queue(0)?;
//! let mut done = [Completion::default(); 2];
//! q.write(4096, &region, 0, 4096, 1, ReqFlags::FUA);
//! q.do_io(&mut done, 1, None, None)?;
//! q.read(4096, &region, 4096, 4096, 2, ReqFlags::NONE);
//!
//! // complete: wait for the read, check its outcome
//! let n = q.do_io(&mut done, 1, Some(std::time::Duration::from_secs(5)), None)?;
//! assert_eq!(n, 1);
//! done[0].result()?;
//! assert_eq!(done[0].user_data, 2);
//! assert!(region.bytes()?[4096..].iter().all(|&x| x == 0xab));
//! # drop(q);
//! # std::fs::remove_file(&path).unwrap();
//! # Ok::<(), blkio::Error>(())
//! ```
//!
//! Errors are [`Error`]s: a stable [`ErrorKind`], the errno the C API
//! would return, and its message. A request never fails when submitted: a
//! bad one completes with a negative errno in its [`Completion`].
//!
//! Requests with buffers outside a [`MemRegion`] use the `unsafe`
//! functions ([`Queue::read_raw`], ...), whose `# Safety` sections say what
//! the caller promises. `examples/copy.rs` and `examples/event_loop.rs`
//! (an event loop on the completion fd) show complete programs.
//!
//! # The C API
//!
//! The same library built as `libblkio.so.1` exports the 43 `blkio_*` /
//! `blkioq_*` functions of `blkio.h`; they and this API share one
//! implementation of every rule (instance states, property checks,
//! request checks, the completion algorithm).

#![deny(missing_docs)]

// The internal layers are private to the crate: the public face is the
// Rust API (re-exported below) and the exported C functions. Their items
// are documented where it helps, not by rule (`cargo doc
// --document-private-items` shows them); this is the one place that says so.
mod api;
#[allow(missing_docs, rustdoc::private_intra_doc_links)]
pub(crate) mod capi;
#[allow(missing_docs, rustdoc::private_intra_doc_links)]
pub(crate) mod core;
#[allow(missing_docs, rustdoc::private_intra_doc_links)]
pub(crate) mod drivers;
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;

#[cfg(test)]
mod header_check;

pub use api::*;
