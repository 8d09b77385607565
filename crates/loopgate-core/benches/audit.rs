//! Offline verification speed on one core (`cargo bench -p loopgate-core`):
//! the streaming verifier over realistic entries with a checkpoint every
//! 100,000 entries and every completed tile rebuilt, as `loopgate audit
//! verify` does it (files aside).
#![allow(clippy::unwrap_used, reason = "benchmark")]

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use loopgate_core::Timestamp;
use loopgate_core::audit::checkpoint::Checkpoint;
use loopgate_core::audit::entry::{canonical_data, encode};
use loopgate_core::audit::leaf_hash;
use loopgate_core::audit::note::Signer;
use loopgate_core::audit::tile::TileBuilder;
use loopgate_core::audit::verify::LogVerifier;
use serde_json::json;

const N: u64 = 200_000;

fn entries() -> Vec<Vec<u8>> {
    (0..N)
        .map(|i| {
            let data = canonical_data(&json!({
                "proposal": format!("prp_01JBENCH{:016}", i / 5), "task": format!("tsk_01JBENCH{i:016}"),
                "verdict": "approve", "level": 0,
                "digest": format!("sha256:{:064x}", i), "seen_digest": format!("sha256:{:064x}", i + 1)}));
            encode(i, "2026-11-25T10:00:00.000Z", "user:rita", "decision.recorded", Some("prp_01JBENCH"), &data)
        })
        .collect()
}

fn verify(c: &mut Criterion) {
    let entries = entries();
    let signer = Signer::new("bench.example/log", [3; 32]).unwrap();
    let mut tree = TileBuilder::default();
    let mut notes = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        tree.append(leaf_hash(entry));
        let size = i as u64 + 1;
        if size.is_multiple_of(100_000) || size == N {
            let checkpoint = Checkpoint {
                origin: "bench.example/log".into(),
                size,
                root: tree.root(),
                time: Timestamp::from_millis(0),
            };
            notes.push((format!("{size}"), checkpoint.sign(&signer).unwrap()));
        }
    }
    let verifier = signer.verifier();
    let average = entries.iter().map(Vec::len).sum::<usize>() / entries.len();
    let mut group = c.benchmark_group(format!("audit verify ({average}-byte entries)"));
    group.throughput(Throughput::Elements(N));
    group.sample_size(10);
    group.bench_function("entries", |b| {
        b.iter(|| {
            let mut log = LogVerifier::new(&verifier, notes.clone()).unwrap();
            for entry in &entries {
                log.push(entry, None).unwrap();
                if log.size().is_multiple_of(256) {
                    std::hint::black_box(log.completed_tiles());
                }
            }
            log.finish().unwrap()
        });
    });
    group.finish();
}

criterion_group!(benches, verify);
criterion_main!(benches);
