//! Fuzz target: see `ratchetkit_fuzz::ffi` in fuzz/src/ffi.rs.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ratchetkit_fuzz::ffi::run(data));
