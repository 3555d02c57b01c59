//! Fuzz target: see `ratchetkit_fuzz::decrypt_spqr` in fuzz/src/lib.rs.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ratchetkit_fuzz::decrypt_spqr(data));
