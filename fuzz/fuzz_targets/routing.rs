//! `cargo +nightly fuzz run routing`: see crates/loopgate-fuzz.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| loopgate_fuzz::routing(data));
