//! Audit log figures on the real SQLite store (`cargo bench -p loopgate-store`):
//!
//! - sequencer: queued events → entries, tiles and tree head, durable, in
//!   the batches the server uses (entries/s);
//! - inclusion proofs read from the tiles of a large tree (p50/p99).
//!
//! `LOOPGATE_BENCH_EVENTS` (default 300,000) and `LOOPGATE_BENCH_TREE`
//! (default 10,000,000) set the sizes.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    reason = "benchmark"
)]

use std::time::Instant;

use loopgate_core::audit::entry::canonical_data;
use loopgate_core::audit::tile::TileBuilder;
use loopgate_core::audit::{Hash, leaf_hash};
use loopgate_store::Store;
use loopgate_store::sql::SqlStore;
use rusqlite::{Connection, params};
use serde_json::json;

fn size(var: &str, default: u64) -> u64 {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn digest(n: u64, salt: u64) -> String {
    format!(
        "sha256:{:064x}",
        u128::from(n) * 1_000_003 + u128::from(salt)
    )
}

/// Queues `n` events shaped like the core loop's: submitted, routed, task.created.
fn queue_events(path: &std::path::Path, n: u64) {
    let mut conn = Connection::open(path).unwrap();
    let tx = conn.transaction().unwrap();
    {
        let mut insert = tx
            .prepare(
                "INSERT INTO events (time, actor, type, subject, data) VALUES (?1, ?2, ?3, ?4, ?5)",
            )
            .unwrap();
        for i in 0..n {
            let proposal = format!("prp_01JBENCH{:016}", i / 3);
            let (actor, type_, data) = match i % 3 {
                0 => (
                    "system:fraud-detector",
                    "proposal.submitted",
                    json!({
                    "proposal": proposal, "system": "fraud-detector", "action": "block_card",
                    "digest": digest(i, 1), "subject": digest(i, 2), "input": digest(i, 3), "output": digest(i, 4)}),
                ),
                1 => (
                    "loopgate",
                    "proposal.routed",
                    json!({
                    "proposal": proposal, "route": "review", "policy_version": "615f6b5e126fd4ff",
                    "matched_policies": ["fraud-large-amount"]}),
                ),
                _ => (
                    "loopgate",
                    "task.created",
                    json!({
                    "proposal": proposal, "task": format!("tsk_01JBENCH{i:016}"), "group": "fraud-analysts",
                    "level": 0, "state": "open", "kind": "gate"}),
                ),
            };
            let time = 1_795_000_000_000 + i64::try_from(i).unwrap();
            insert
                .execute(params![time, actor, type_, proposal, canonical_data(&data)])
                .unwrap();
        }
    }
    tx.commit().unwrap();
}

async fn sequencer(dir: &std::path::Path) {
    let n = size("LOOPGATE_BENCH_EVENTS", 300_000);
    let path = dir.join("sequencer.db");
    drop(SqlStore::open(&path).unwrap());
    queue_events(&path, n);
    let store = SqlStore::open(&path).unwrap();
    let batch = u32::try_from(size("LOOPGATE_BENCH_BATCH", 4096)).unwrap();
    let started = Instant::now();
    let mut total = 0;
    loop {
        let step = store.sequence(batch).await.unwrap();
        total += step.appended;
        if step.appended == 0 {
            break;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    assert_eq!(total, n);
    println!(
        "sequencer: {n} events → entries, tiles, tree head in {seconds:.2} s = {:.0} entries/s (durable batches of {batch})",
        n as f64 / seconds
    );
}

/// Writes the tiles and head of a tree of `n` leaves straight into a store's
/// tables (no entries: proofs read only tiles), as the sequencer would.
fn build_tree(path: &std::path::Path, n: u64) -> Hash {
    let mut conn = Connection::open(path).unwrap();
    let tx = conn.transaction().unwrap();
    let mut builder = TileBuilder::default();
    {
        let mut upsert = tx
            .prepare("INSERT INTO audit_tiles (level, idx, data) VALUES (?1, ?2, ?3) ON CONFLICT (level, idx) DO UPDATE SET data = excluded.data")
            .unwrap();
        for i in 0..n {
            builder.append(leaf_hash(&i.to_be_bytes()));
            if i % 65_536 == 65_535 {
                for (level, index, bytes) in builder.take_dirty() {
                    upsert
                        .execute(params![level, i64::try_from(index).unwrap(), bytes])
                        .unwrap();
                }
            }
        }
        for (level, index, bytes) in builder.take_dirty() {
            upsert
                .execute(params![level, i64::try_from(index).unwrap(), bytes])
                .unwrap();
        }
        tx.execute(
            "INSERT INTO audit_head (id, size, root) VALUES (0, ?1, ?2)",
            params![i64::try_from(n).unwrap(), builder.root().to_vec()],
        )
        .unwrap();
    }
    tx.commit().unwrap();
    builder.root()
}

async fn proofs(dir: &std::path::Path) {
    let n = size("LOOPGATE_BENCH_TREE", 10_000_000);
    let path = dir.join("proofs.db");
    drop(SqlStore::open(&path).unwrap());
    let started = Instant::now();
    let root = build_tree(&path, n);
    println!(
        "built a tree of {n} leaves in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let store = SqlStore::open(&path).unwrap();
    let mut histogram = hdrhistogram::Histogram::<u64>::new(3).unwrap();
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    for round in 0..20_000 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let index = state % n;
        let started = Instant::now();
        let proof = store.inclusion_proofs(vec![index], n).await.unwrap();
        let micros = u64::try_from(started.elapsed().as_micros()).unwrap();
        if round >= 1000 {
            histogram.record(micros).unwrap();
        }
        if round % 5000 == 0 {
            let leaf = leaf_hash(&index.to_be_bytes());
            loopgate_core::audit::merkle::verify_inclusion(index, n, &leaf, &proof[0], &root)
                .unwrap();
        }
    }
    println!(
        "inclusion proof at {n} leaves (store read, random index): p50 {} µs, p99 {} µs, max {} µs",
        histogram.value_at_quantile(0.5),
        histogram.value_at_quantile(0.99),
        histogram.max()
    );
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        sequencer(dir.path()).await;
        if size("LOOPGATE_BENCH_TREE", 1) > 0 {
            proofs(dir.path()).await;
        }
    });
}
