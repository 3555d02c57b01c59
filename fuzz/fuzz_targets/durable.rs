//! Fuzz target: see `ratchetkit_fuzz::durable` in fuzz/src/lib.rs.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ratchetkit_fuzz::durable(data));
