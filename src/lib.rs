//! A from-scratch reimplementation of libblkio 1.5 with the same C ABI.
//!
//! * [`capi`] — the `blkio_*` / `blkioq_*` functions of `blkio.h`.
//! * [`core`] — what every driver shares: instance states, properties,
//!   memory regions, queues and their backlogs.
//! * [`drivers`] — one folder per driver.

#![deny(missing_docs)]

// The internal layers are still reachable from outside the crate (the tool,
// the benchmark and some integration tests use them) until the public API
// replaces them; their items are documented where it helps, not by rule,
// and their docs may link to their private parts.
// This is the one place that allows it.
#[allow(missing_docs, rustdoc::private_intra_doc_links)]
pub mod capi;
#[allow(missing_docs, rustdoc::private_intra_doc_links)]
pub mod core;
#[allow(missing_docs, rustdoc::private_intra_doc_links)]
pub mod drivers;
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;

#[cfg(test)]
mod header_check;
