//! What loopgate writes is its owner's only: the data directory is 0700;
//! the database, its WAL, the audit key, backups and exports are 0600.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test"
)]
#![cfg(unix)]

mod common;

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use common::{call, cli, start, system_key};
use serde_json::json;

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

#[tokio::test]
async fn files_are_the_owners_only_after_first_start() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let server = start(&data);
    let http = reqwest::Client::new();
    let key = system_key(&http, &server.base).await;
    let body =
        json!({"action": "a", "subject": {"type": "T", "id": "1"}, "input": {}, "output": {}});
    let url = format!("{}/v1/proposals", server.base);
    let (status, answer) = call(&http, reqwest::Method::POST, url, &key, Some(body))
        .await
        .unwrap();
    assert_eq!(status, 201, "{answer}");

    assert_eq!(mode(&data), 0o700);
    for file in ["loopgate.db", "loopgate.db-wal", "audit-signing-key"] {
        assert_eq!(mode(&data.join(file)), 0o600, "{file}");
    }
    let backup = root.path().join("backup.db");
    let (ok, _, stderr) = cli(
        &server.base,
        &[
            "backup",
            "--data-dir",
            data.to_str().unwrap(),
            "--out",
            backup.to_str().unwrap(),
        ],
    );
    assert!(ok, "{stderr}");
    assert_eq!(mode(&backup), 0o600);
    let export = root.path().join("export");
    let (ok, _, stderr) = cli(
        &server.base,
        &["audit", "export", "--out", export.to_str().unwrap()],
    );
    assert!(ok, "{stderr}");
    assert_eq!(mode(&export), 0o700);
    assert_eq!(mode(&export.join("checkpoint")), 0o600);
}
