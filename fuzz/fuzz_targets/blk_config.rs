//! Fuzz target: `blkio::fuzzing::blk_config` (see its documentation for the
//! input format).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| blkio::fuzzing::blk_config(data));
