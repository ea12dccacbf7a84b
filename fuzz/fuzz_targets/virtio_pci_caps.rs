//! Fuzz target: `blkio::fuzzing::virtio_pci_caps` (see its documentation
//! for the input format).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| blkio::fuzzing::virtio_pci_caps(data));
