//! The audit export as an auditor gets it: export from a real server, verify
//! offline with the public key, and see every kind of tampering refused
//! with the place named.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test"
)]

use std::path::{Path, PathBuf};

use loopgate_core::audit::merkle::leaf_hash;
use loopgate_core::audit::tile::{push_bundle_entry, split_bundle};
use serde_json::json;

mod common;

use common::{ADMIN, call, cli, start, system_key};

struct Export {
    _dir: tempfile::TempDir,
    path: PathBuf,
    pubkey: String,
}

/// A log of 1,804 entries (8 bundles, a level-1 tile) with four or more checkpoints.
async fn export() -> Export {
    let dir = tempfile::tempdir().unwrap();
    let mut server = start(&dir.path().join("data"));
    let base = server.base.clone();
    let http = reqwest::Client::new();
    let post = reqwest::Method::POST;
    let key = system_key(&http, &base).await;
    for n in 0..600 {
        if n == 100 || n == 400 {
            let (status, _) = call(
                &http,
                post.clone(),
                format!("{base}/v1/audit/checkpoint"),
                ADMIN,
                None,
            )
            .await
            .unwrap();
            assert_eq!(status, 201);
        }
        let body = json!({"action": "a", "subject": {"type": "T", "id": format!("s{n}")}, "output": {"n": n}});
        let (status, _) = call(
            &http,
            post.clone(),
            format!("{base}/v1/proposals"),
            &key,
            Some(body),
        )
        .await
        .unwrap();
        assert_eq!(status, 201);
    }
    let (ok, _, stderr) = cli(&base, &["audit", "checkpoint", "--issue"]);
    assert!(ok, "{stderr}");
    let path = dir.path().join("export");
    let (ok, stdout, stderr) = cli(&base, &["audit", "export", "--out", path.to_str().unwrap()]);
    assert!(ok, "{stderr}");
    // Checkpoints come at 100 and 400, at the end, and on the 1 s interval.
    assert!(stdout.starts_with("exported 1804 entries, "), "{stdout}");
    // The key is public: `audit pubkey` needs no token.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_loopgate"))
        .args(["audit", "pubkey", "--server", &base])
        .env_remove("LOOPGATE_TOKEN")
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let pubkey = String::from_utf8(output.stdout).unwrap();
    let child = &mut server.child;
    child.kill().unwrap();
    child.wait().unwrap();
    Export {
        _dir: dir,
        path,
        pubkey: pubkey.trim().to_owned(),
    }
}

fn verify(dir: &Path, pubkey: &str) -> (bool, String) {
    let (ok, stdout, stderr) = cli(
        "http://127.0.0.1:9",
        &["audit", "verify", dir.to_str().unwrap(), "--pubkey", pubkey],
    );
    (ok, format!("{stdout}{stderr}"))
}

fn copy(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// A copy of the export with the first entry bundle rewritten by `edit`.
fn tampered(export: &Export, name: &str, edit: impl FnOnce(&mut Vec<Vec<u8>>)) -> PathBuf {
    let path = export.path.with_file_name(name);
    copy(&export.path, &path);
    let bundle_path = path.join("tile/entries/000");
    let bundle = std::fs::read(&bundle_path).unwrap();
    let mut entries: Vec<Vec<u8>> = split_bundle(&bundle)
        .unwrap()
        .into_iter()
        .map(<[u8]>::to_vec)
        .collect();
    edit(&mut entries);
    let mut rebuilt = Vec::new();
    for entry in &entries {
        push_bundle_entry(&mut rebuilt, entry).unwrap();
    }
    std::fs::write(bundle_path, rebuilt).unwrap();
    path
}

fn refused(export: &Export, dir: &Path, expected: &str) {
    let (ok, output) = verify(dir, &export.pubkey);
    assert!(!ok, "tampering went unnoticed: {output}");
    assert!(
        output.contains(expected),
        "expected `{expected}` in: {output}"
    );
    assert_eq!(output.lines().count(), 1, "{output}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_verifies_and_every_tampering_is_named() {
    let export = export().await;
    let (ok, output) = verify(&export.path, &export.pubkey);
    assert!(ok, "{output}");
    assert!(output.starts_with("verified: 1804 entries, "), "{output}");
    // The key may also be given as a file.
    let (ok, _) = verify(&export.path, export.path.join("pubkey").to_str().unwrap());
    assert!(ok);
    // An empty key (a failed `$(loopgate audit pubkey)`) is named as such.
    let (ok, output) = verify(&export.path, "");
    assert!(!ok);
    assert!(output.contains("the verifier key is empty"), "{output}");

    let changed = tampered(&export, "changed", |entries| {
        let text = String::from_utf8(entries[5].clone()).unwrap();
        entries[5] = text
            .replacen("\"time\":\"2", "\"time\":\"3", 1)
            .into_bytes();
    });
    refused(
        &export,
        &changed,
        "entry 5: its hash differs from the exported tile's: the entry was changed",
    );

    let deleted = tampered(&export, "deleted", |entries| drop(entries.remove(10)));
    refused(&export, &deleted, "entry 10: it says it is entry 11");

    let reordered = tampered(&export, "reordered", |entries| entries.swap(20, 21));
    refused(&export, &reordered, "entry 20: it says it is entry 21");

    let inserted = tampered(&export, "inserted", |entries| {
        let copy = entries[30].clone();
        entries.insert(30, copy);
    });
    refused(&export, &inserted, "entry 31: it says it is entry 30");

    // An attacker who also rewrites the leaf tile is caught by the checkpoints.
    let rewritten = tampered(&export, "rewritten", |entries| {
        let text = String::from_utf8(entries[40].clone()).unwrap();
        entries[40] = text
            .replacen("\"time\":\"2", "\"time\":\"3", 1)
            .into_bytes();
    });
    let mut leaves = std::fs::read(rewritten.join("tile/0/000")).unwrap();
    let bundle = std::fs::read(rewritten.join("tile/entries/000")).unwrap();
    let forged = leaf_hash(split_bundle(&bundle).unwrap()[40]);
    leaves[40 * 32..41 * 32].copy_from_slice(&forged);
    std::fs::write(rewritten.join("tile/0/000"), leaves).unwrap();
    refused(
        &export,
        &rewritten,
        "its root does not match the entries: an entry in ",
    );

    let truncated = export.path.with_file_name("truncated");
    copy(&export.path, &truncated);
    std::fs::remove_dir_all(truncated.join("tile/entries/007.p")).unwrap();
    refused(&export, &truncated, "entries 1792..1804 are missing");

    // Swap a checkpoint: another checkpoint's root under the first one's signature.
    let swapped = export.path.with_file_name("swapped");
    copy(&export.path, &swapped);
    let mut names: Vec<PathBuf> = std::fs::read_dir(swapped.join("checkpoints"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    let first = std::fs::read_to_string(&names[1]).unwrap();
    let second = std::fs::read_to_string(&names[2]).unwrap();
    let root_line = |note: &str| note.lines().nth(2).unwrap().to_owned();
    std::fs::write(
        &names[1],
        first.replace(&root_line(&first), &root_line(&second)),
    )
    .unwrap();
    let name = names[1].file_name().unwrap().to_string_lossy().into_owned();
    refused(
        &export,
        &swapped,
        &format!("checkpoint checkpoints/{name}: the signature by"),
    );

    // Another key does not vouch for this log.
    let other = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k";
    let (ok, output) = verify(&export.path, other);
    assert!(
        !ok && output.contains("has no signature by example.com/foo"),
        "{output}"
    );
}
