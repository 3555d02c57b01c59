//! Fuzz target: see `ratchetkit_fuzz::decrypt` in fuzz/src/lib.rs.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ratchetkit_fuzz::decrypt(3, data));
