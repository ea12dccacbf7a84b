//! Fuzz target: `blkio::fuzzing::nvme_zone_report` (see its documentation for the
//! input format).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| blkio::fuzzing::nvme_zone_report(data));
