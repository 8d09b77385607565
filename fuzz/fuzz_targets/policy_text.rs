//! `cargo +nightly fuzz run policy_text`: see crates/loopgate-fuzz.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| loopgate_fuzz::policy_text(data));
