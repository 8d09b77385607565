//! `cargo +nightly fuzz run signed_note`: see crates/loopgate-fuzz.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| loopgate_fuzz::signed_note(data));
