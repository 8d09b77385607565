//! Replays every committed fuzz corpus (`fuzz/corpus/<target>/*`) through its
//! harness on stable Rust: each input once, so that every finding of a
//! fuzzing run stays a regression test and CI stays fast.
#![allow(clippy::unwrap_used, clippy::panic, reason = "tests")]

use std::path::Path;

#[test]
fn every_committed_corpus_input_passes_its_harness() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus");
    let mut replayed = 0;
    for (name, harness) in loopgate_fuzz::targets() {
        let dir = root.join(name);
        let entries = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("no corpus for `{name}` at {}: {e}", dir.display()));
        let mut n = 0;
        for entry in entries {
            let path = entry.unwrap().path();
            let bytes = std::fs::read(&path).unwrap();
            let outcome = std::panic::catch_unwind(|| harness(&bytes));
            assert!(outcome.is_ok(), "{name}: {} fails", path.display());
            n += 1;
        }
        assert!(0 < n, "the corpus of `{name}` is empty");
        replayed += n;
    }
    assert!(0 < replayed);
}
