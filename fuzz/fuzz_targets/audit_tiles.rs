//! `cargo +nightly fuzz run audit_tiles`: see crates/loopgate-fuzz.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| loopgate_fuzz::audit_tiles(data));
