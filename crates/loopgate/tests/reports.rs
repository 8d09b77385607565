//! The auditor's reports from the command line against a real server: the
//! figures, the labeled export, and the evidence pack with the audit log
//! verified.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test"
)]

use serde_json::{Value, json};

mod common;

use common::{ADMIN, call, cli, start, system_key};

#[tokio::test]
async fn reports_exports_and_the_evidence_pack() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir.path().join("data"));
    let base = server.base.clone();
    let http = reqwest::Client::new();
    let post = reqwest::Method::POST;
    let key = system_key(&http, &base).await;
    // Admins are reviewers of every group they are in: make one in the default group.
    let (status, user) = call(
        &http,
        post.clone(),
        format!("{base}/v1/users"),
        ADMIN,
        Some(json!({"username": "rita", "roles": ["reviewer"], "groups": ["reviewers"]})),
    )
    .await
    .unwrap();
    assert_eq!(status, 201, "{user}");
    let (_, token) = call(
        &http,
        post.clone(),
        format!("{base}/v1/users/{}/tokens", user["id"].as_str().unwrap()),
        ADMIN,
        None,
    )
    .await
    .unwrap();
    let rita = token["secret"].as_str().unwrap().to_owned();
    for n in 0..6 {
        let body = json!({"action": "a", "subject": {"type": "T", "id": format!("s{n}"), "attributes": {"band": if n % 2 == 0 { "x" } else { "y" }}},
                          "output": {"n": n}, "confidence": 0.5 + n as f64 / 20.0});
        let (status, proposal) = call(
            &http,
            post.clone(),
            format!("{base}/v1/proposals"),
            &key,
            Some(body),
        )
        .await
        .unwrap();
        assert_eq!(status, 201, "{proposal}");
    }
    let (_, tasks) = call(
        &http,
        reqwest::Method::GET,
        format!("{base}/v1/tasks"),
        &rita,
        None,
    )
    .await
    .unwrap();
    for (i, task) in tasks["items"].as_array().unwrap().iter().enumerate() {
        let verdict = if i == 0 { "reject" } else { "approve" };
        let body =
            json!({"verdict": verdict, "rationale": "checked", "seen_digest": task["digest"]});
        let (status, _) = call(
            &http,
            post.clone(),
            format!("{base}/v1/tasks/{}/decision", task["id"].as_str().unwrap()),
            &rita,
            Some(body),
        )
        .await
        .unwrap();
        assert_eq!(status, 200);
    }
    let system = "sys";

    let (ok, stdout, stderr) = cli(&base, &["report", "overview", "--system", system]);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("reviewed         6 (override rate 16.7%)"),
        "{stdout}"
    );
    let (ok, stdout, stderr) = cli(
        &base,
        &["report", "calibration", "--system", system, "--json"],
    );
    assert!(ok, "{stderr}");
    let calibration: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(calibration["n"], 6);
    let (ok, stdout, _) = cli(
        &base,
        &[
            "report",
            "fairness",
            "--system",
            system,
            "--attribute",
            "band",
            "--min-group",
            "1",
        ],
    );
    assert!(ok);
    assert!(stdout.contains("by band"), "{stdout}");
    let (ok, _, stderr) = cli(&base, &["report", "overview", "--system", "nope"]);
    assert!(!ok);
    assert!(stderr.contains("system `nope` does not exist"), "{stderr}");

    let csv = dir.path().join("labels.csv");
    let (ok, _, stderr) = cli(
        &base,
        &[
            "export",
            "labels",
            "--system",
            system,
            "--format",
            "csv",
            "--out",
            csv.to_str().unwrap(),
        ],
    );
    assert!(ok, "{stderr}");
    assert!(stderr.contains("6 labeled proposals written"), "{stderr}");
    let text = std::fs::read_to_string(&csv).unwrap();
    assert_eq!(text.lines().count(), 7, "a header and 6 rows");
    assert!(text.starts_with("proposal,system,action,created_at,confidence,status"));
    let (ok, stdout, _) = cli(&base, &["export", "labels", "--system", system]);
    assert!(ok);
    let first: Value = serde_json::from_str(stdout.lines().next().unwrap()).unwrap();
    assert_eq!(first["decisions"][0]["rationale"], "checked");

    let parquet = dir.path().join("labels.parquet");
    let (ok, _, stderr) = cli(
        &base,
        &[
            "export",
            "labels",
            "--system",
            system,
            "--format",
            "parquet",
            "--out",
            parquet.to_str().unwrap(),
        ],
    );
    assert!(ok, "{stderr}");
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
        std::fs::File::open(&parquet).unwrap(),
    )
    .unwrap();
    let columns: Vec<String> = reader
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    assert_eq!(
        columns[..5],
        ["proposal", "system", "action", "created_at", "confidence"]
    );
    let rows: usize = reader
        .build()
        .unwrap()
        .map(|batch| batch.unwrap().num_rows())
        .sum();
    assert_eq!(rows, 6);
    let (ok, _, stderr) = cli(
        &base,
        &[
            "export", "labels", "--system", system, "--format", "parquet",
        ],
    );
    assert!(!ok);
    assert!(
        stderr.contains("Parquet is a binary file format: name a file with --out"),
        "{stderr}"
    );

    let (_, pubkey, _) = cli(&base, &["audit", "pubkey"]);
    let out = dir.path().join("evidence.html");
    let (ok, _, stderr) = cli(
        &base,
        &[
            "report",
            "evidence",
            "--system",
            system,
            "--attribute",
            "band",
            "--pubkey",
            pubkey.trim(),
            "--out",
            out.to_str().unwrap(),
        ],
    );
    assert!(ok, "{stderr}");
    let html = std::fs::read_to_string(&out).unwrap();
    for expected in [
        "Art. 12",
        "Art. 14",
        "Art. 19",
        "Art. 26",
        "GOVERN 3.2",
        "MAP 3.5",
        "MEASURE 2.11",
        "MEASURE 3.3",
        "MANAGE 2.4",
        "MANAGE 4.1",
        "class=\"ok\">Audit log verified:",
        "(given to this command)",
        "By band",
    ] {
        assert!(
            html.contains(expected),
            "{expected} missing from the evidence pack"
        );
    }
    // Another log's key: the pack says this log did not verify.
    let other_dir = tempfile::tempdir().unwrap();
    let other_server = start(&other_dir.path().join("data"));
    let (_, other, _) = cli(&other_server.base, &["audit", "pubkey"]);
    drop(other_server);
    let other = other.trim();
    let (ok, _, stderr) = cli(
        &base,
        &[
            "report",
            "evidence",
            "--system",
            system,
            "--pubkey",
            other,
            "--out",
            out.to_str().unwrap(),
        ],
    );
    assert!(ok, "{stderr}");
    assert!(stderr.contains("the audit log did NOT verify"), "{stderr}");
    drop(server);
}
