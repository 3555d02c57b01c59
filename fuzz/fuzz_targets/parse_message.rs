//! Fuzz target: see `ratchetkit_fuzz::parse_message` in fuzz/src/lib.rs.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ratchetkit_fuzz::parse_message(data));
