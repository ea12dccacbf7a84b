//! Fuzz target: `blkio::fuzzing::split_ring` (see its documentation for the
//! input format).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| blkio::fuzzing::split_ring(data));
