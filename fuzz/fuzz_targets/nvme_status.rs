//! Fuzz target: `blkio::fuzzing::nvme_status` (see its documentation for the
//! input format).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| blkio::fuzzing::nvme_status(data));
