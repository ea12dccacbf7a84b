//! Fuzz target: `blkio::fuzzing::c_api` (see its documentation for the
//! input format).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| blkio::fuzzing::c_api(data));
