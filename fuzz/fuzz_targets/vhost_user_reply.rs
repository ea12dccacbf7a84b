//! Fuzz target: `blkio::fuzzing::vhost_user_reply` (see its documentation
//! for the input format).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| blkio::fuzzing::vhost_user_reply(data));
