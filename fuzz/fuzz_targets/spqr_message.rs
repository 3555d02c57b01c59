//! Fuzz target: see `ratchetkit_fuzz::spqr_message` in fuzz/src/lib.rs.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ratchetkit_fuzz::spqr_message(data));
