//! `cargo +nightly fuzz run proposal_body`: see crates/loopgate-fuzz.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| loopgate_fuzz::proposal_body(data));
