//! A from-scratch reimplementation of libblkio 1.5 with the same C ABI.
//!
//! * [`capi`] — the `blkio_*` / `blkioq_*` functions of `blkio.h`.
//! * [`core`] — what every driver shares: instance states, properties,
//!   memory regions, queues and their backlogs.
//! * [`drivers`] — one folder per driver.

pub mod capi;
pub mod core;
pub mod drivers;
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;

#[cfg(test)]
mod header_check;
