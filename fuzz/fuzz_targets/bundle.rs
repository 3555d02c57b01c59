//! Fuzz target: see `ratchetkit_fuzz::bundle` in fuzz/src/lib.rs.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ratchetkit_fuzz::bundle(data));
