//! The audit log over HTTP: receipts that verify offline, tiles, entries
//! and proofs that agree with each other, access rules, and erasure that
//! leaves the log verifying.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use loopgate_core::audit::checkpoint::Checkpoint;
use loopgate_core::audit::merkle::{leaf_hash, root_of, verify_consistency, verify_inclusion};
use loopgate_core::audit::note::Verifier;
use loopgate_core::audit::tile::split_bundle;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::harness::{ADMIN_TOKEN, TestApp, spawn_app, spawn_with};

const ALLOW: &str = r#"@route("allow") permit(principal, action == Action::"score", resource);
@reviewers("ops") permit(principal, action == Action::"block", resource);"#;

async fn setup() -> (TestApp, String) {
    let app = spawn_app().await;
    let key = app.system("fraud-detector", "in_the_loop").await;
    assert_eq!(app.publish(ALLOW).await.status, StatusCode::CREATED);
    (app, key)
}

async fn verifier(app: &TestApp) -> Verifier {
    let key = app.call(Method::GET, "/v1/audit/pubkey", None, None).await;
    assert_eq!(key.status, StatusCode::OK);
    Verifier::parse(key.body.as_str().unwrap()).unwrap()
}

async fn issue(app: &TestApp) -> Checkpoint {
    let note = app
        .call(
            Method::POST,
            "/v1/audit/checkpoint",
            Some(ADMIN_TOKEN),
            None,
        )
        .await;
    assert_eq!(note.status, StatusCode::CREATED, "{}", note.body);
    Checkpoint::open(note.body.as_str().unwrap(), &verifier(app).await).unwrap()
}

fn b64(items: &Value) -> Vec<Vec<u8>> {
    items
        .as_array()
        .unwrap()
        .iter()
        .map(|h| BASE64.decode(h.as_str().unwrap()).unwrap())
        .collect()
}

async fn bytes(app: &TestApp, path: &str) -> (StatusCode, Vec<u8>) {
    let response = app
        .http
        .get(format!("{}{path}", app.base))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    (response.status(), response.bytes().await.unwrap().to_vec())
}

#[tokio::test]
async fn a_resolved_proposal_carries_a_receipt_that_verifies_offline() {
    let (app, key) = setup().await;
    let submitted = app
        .submit(&key, "score", json!({"score": 0.93}), json!({}))
        .await;
    assert_eq!(submitted.body["status"], "approved");
    let id = submitted.body["id"].as_str().unwrap().to_owned();
    let checkpoint = issue(&app).await;

    let read = app.get(&format!("/v1/proposals/{id}"), ADMIN_TOKEN).await;
    let receipt = &read.body["resolution"]["receipt"];
    assert_eq!(receipt["tree_size"], checkpoint.size);
    let opened = Checkpoint::open(
        receipt["checkpoint"].as_str().unwrap(),
        &verifier(&app).await,
    )
    .unwrap();
    let entry = receipt["entry"].as_str().unwrap();
    let index = receipt["index"].as_u64().unwrap();
    verify_inclusion(
        index,
        opened.size,
        &leaf_hash(entry.as_bytes()),
        &b64(&receipt["inclusion_proof"]),
        &opened.root,
    )
    .unwrap();
    let parsed: Value = serde_json::from_str(entry).unwrap();
    assert_eq!(parsed["type"], "proposal.resolved");
    assert_eq!(
        parsed["data"]["digest"], read.body["digest"],
        "the receipt binds the exact output"
    );
    assert!(
        !entry.contains("0.93"),
        "payloads never enter the log: {entry}"
    );

    let mut forged = entry.replace("approved", "rejected");
    forged.push(' ');
    assert!(
        verify_inclusion(
            index,
            opened.size,
            &leaf_hash(forged.as_bytes()),
            &b64(&receipt["inclusion_proof"]),
            &opened.root
        )
        .is_err()
    );
}

#[tokio::test]
async fn entries_tiles_checkpoints_and_proofs_agree() {
    let (app, key) = setup().await;
    for n in 0..40 {
        app.submit(&key, "score", json!({"n": n}), json!({})).await;
    }
    let first = issue(&app).await;
    for n in 0..30 {
        app.submit(&key, "block", json!({"n": n}), json!({})).await;
    }
    let second = issue(&app).await;
    assert!(second.size > first.size && second.time >= first.time);

    let listed = app
        .get(
            &format!("/v1/audit/entries?start=0&end={}", second.size),
            ADMIN_TOKEN,
        )
        .await;
    let entries: Vec<String> = listed.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["entry"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(entries.len() as u64, second.size);
    assert_eq!(root_of(&entries), second.root);
    assert_eq!(root_of(&entries[..first.size as usize]), first.root);

    let width = second.size.min(256);
    let (status, tile) = bytes(&app, &format!("/v1/audit/tile/0/000.p/{width}")).await;
    assert_eq!(status, StatusCode::OK);
    let leaves: Vec<u8> = entries[..width as usize]
        .iter()
        .flat_map(|e| leaf_hash(e.as_bytes()))
        .collect();
    assert_eq!(tile, leaves);
    let (status, bundle) = bytes(&app, &format!("/v1/audit/tile/entries/000.p/{width}")).await;
    assert_eq!(status, StatusCode::OK);
    let bundled: Vec<&[u8]> = split_bundle(&bundle).unwrap();
    assert_eq!(bundled.len() as u64, width);
    assert_eq!(bundled[3], entries[3].as_bytes());
    let (status, _) = bytes(&app, "/v1/audit/tile/0/000").await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "the full tile does not exist yet"
    );

    let proof = app
        .get(
            &format!(
                "/v1/audit/proof/consistency?from={}&to={}",
                first.size, second.size
            ),
            ADMIN_TOKEN,
        )
        .await;
    verify_consistency(
        first.size,
        second.size,
        &first.root,
        &second.root,
        &b64(&proof.body["proof"]),
    )
    .unwrap();
    let inclusion = app
        .get("/v1/audit/proof/inclusion?index=7", ADMIN_TOKEN)
        .await;
    assert_eq!(inclusion.body["size"], second.size);
    verify_inclusion(
        7,
        second.size,
        &leaf_hash(entries[7].as_bytes()),
        &b64(&inclusion.body["proof"]),
        &second.root,
    )
    .unwrap();

    let checkpoints = app.get("/v1/audit/checkpoints", ADMIN_TOKEN).await;
    let sizes: Vec<u64> = checkpoints.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["size"].as_u64().unwrap())
        .collect();
    assert!(sizes.contains(&first.size) && sizes.contains(&second.size));

    for bad in [
        "/v1/audit/proof/consistency?from=0".to_owned(),
        "/v1/audit/entries?start=-1&end=2".to_owned(),
        "/v1/audit/checkpoints?after=9223372036854775808".to_owned(),
        "/v1/audit/proof/inclusion?index=x".to_owned(),
    ] {
        let refused = app.get(&bad, ADMIN_TOKEN).await;
        assert_eq!(
            refused.body["code"], "validation_failed",
            "{bad}: {}",
            refused.body
        );
        assert_eq!(refused.content_type, "application/problem+json");
    }
    // What the log does not hold yet is not found.
    for missing in [
        format!("/v1/audit/proof/inclusion?index={}", second.size),
        format!("/v1/audit/proof/consistency?from=1&to={}", second.size + 10),
        format!("/v1/audit/proof/consistency?from={}&to=1", second.size),
    ] {
        let refused = app.get(&missing, ADMIN_TOKEN).await;
        assert_eq!(
            refused.status,
            StatusCode::NOT_FOUND,
            "{missing}: {}",
            refused.body
        );
        assert_eq!(refused.content_type, "application/problem+json");
    }
    // A range is at most 1000 entries and ends at the log's end.
    for (range, at_least, at_most) in [
        ("start=5&end=2", 0, 0),
        ("start=0&end=5000", second.size, 1000),
        ("start=1000000000&end=1000000005", 0, 0),
    ] {
        let page = app
            .get(&format!("/v1/audit/entries?{range}"), ADMIN_TOKEN)
            .await;
        assert_eq!(page.status, StatusCode::OK, "{range}: {}", page.body);
        let n = page.body["items"].as_array().unwrap().len() as u64;
        assert!((at_least..=at_most).contains(&n), "{range}: {n}");
    }
    for bad in [
        "/v1/audit/tile/0/1",
        "/v1/audit/tile/9/000",
        "/v1/audit/tile/0/x000/000",
    ] {
        assert_eq!(
            app.get(bad, ADMIN_TOKEN).await.status,
            StatusCode::NOT_FOUND,
            "{bad}"
        );
    }
}

#[tokio::test]
async fn audit_reads_need_an_auditor_unless_the_log_is_public() {
    let (app, _key) = setup().await;
    issue(&app).await;
    let reviewer = app.user("rita", &["reviewer"], &["ops"]).await;
    let auditor = app.user("audrey", &["auditor"], &[]).await;
    assert_eq!(
        app.get("/v1/audit/checkpoint", &reviewer).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.get("/v1/audit/checkpoint", &auditor).await.status,
        StatusCode::OK
    );
    let anonymous = app
        .call(Method::GET, "/v1/audit/checkpoint", None, None)
        .await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    let refused = app
        .call(Method::POST, "/v1/audit/checkpoint", Some(&reviewer), None)
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);

    let public = spawn_with(|config| config.audit_public = true).await;
    issue(&public).await;
    let open = public
        .call(Method::GET, "/v1/audit/checkpoint", None, None)
        .await;
    assert_eq!(open.status, StatusCode::OK);
    assert_eq!(open.content_type, "text/plain; charset=utf-8");
}

#[tokio::test]
async fn erasure_drops_the_payload_and_the_log_still_verifies() {
    let (app, key) = setup().await;
    let reviewer = app.user("rita", &["reviewer"], &["ops"]).await;
    let submitted = app
        .submit(&key, "block", json!({"card": "4111-secret"}), json!({}))
        .await;
    let id = submitted.body["id"].as_str().unwrap().to_owned();
    let reason = json!({"reason": "subject asked (ticket 42)"});
    let early = app
        .post(
            &format!("/v1/proposals/{id}/erase"),
            ADMIN_TOKEN,
            reason.clone(),
        )
        .await;
    assert_eq!(early.status, StatusCode::CONFLICT);
    assert_eq!(early.body["code"], "still_pending");
    let task = app.task_of(&reviewer, &id).await;
    assert_eq!(
        app.decide(&reviewer, &task, "approve").await.status,
        StatusCode::OK
    );
    let before = issue(&app).await;
    let trail = app
        .get(&format!("/v1/proposals/{id}/audit"), &reviewer)
        .await;
    assert!(trail.body["salt"].is_string());
    let types: Vec<&str> = trail.body["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            serde_json::from_str::<Value>(e["entry"].as_str().unwrap()).unwrap()["type"]
                .as_str()
                .unwrap()
                .to_owned()
                .leak() as &str
        })
        .collect();
    assert_eq!(
        types,
        [
            "proposal.submitted",
            "proposal.routed",
            "task.created",
            "decision.recorded",
            "proposal.resolved"
        ]
    );
    assert!(
        trail.body["entries"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["inclusion_proof"].is_array())
    );

    let forbidden = app
        .post(
            &format!("/v1/proposals/{id}/erase"),
            &reviewer,
            reason.clone(),
        )
        .await;
    assert_eq!(forbidden.status, StatusCode::FORBIDDEN);
    let erased = app
        .post(&format!("/v1/proposals/{id}/erase"), ADMIN_TOKEN, reason)
        .await;
    assert_eq!(erased.status, StatusCode::OK, "{}", erased.body);
    assert_eq!(erased.body["output"], Value::Null);
    assert!(erased.body["erased_at"].is_string());
    assert!(!erased.body.to_string().contains("4111"));

    let after = issue(&app).await;
    let proof = app
        .get(
            &format!(
                "/v1/audit/proof/consistency?from={}&to={}",
                before.size, after.size
            ),
            ADMIN_TOKEN,
        )
        .await;
    verify_consistency(
        before.size,
        after.size,
        &before.root,
        &after.root,
        &b64(&proof.body["proof"]),
    )
    .unwrap();
    let trail = app
        .get(&format!("/v1/proposals/{id}/audit"), &reviewer)
        .await;
    assert_eq!(trail.body["salt"], Value::Null);
    let last = trail.body["entries"].as_array().unwrap().last().unwrap()["entry"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        last.contains("proposal.erased") && !last.contains("ticket 42"),
        "{last}"
    );
}

#[tokio::test]
async fn retention_erases_settled_payloads_when_it_runs_out() {
    let (app, key) = setup().await;
    let call = |body: Value| {
        app.call(
            Method::PATCH,
            "/v1/systems/fraud-detector",
            Some(ADMIN_TOKEN),
            Some(body),
        )
    };
    let bad = call(json!({"retention": "soon"})).await;
    assert_eq!(bad.body["code"], "validation_failed");
    let set = call(json!({"retention": "P1D"})).await;
    assert_eq!(set.status, StatusCode::OK, "{}", set.body);
    assert_eq!(set.body["retention"], "PT86400S");

    let settled = app
        .submit(&key, "score", json!({"score": 0.5}), json!({}))
        .await;
    let pending = app
        .submit(&key, "block", json!({"card": "x"}), json!({}))
        .await;
    app.advance(std::time::Duration::from_secs(2 * 86_400))
        .await;
    let id = settled.body["id"].as_str().unwrap();
    let read = app.get(&format!("/v1/proposals/{id}"), ADMIN_TOKEN).await;
    assert!(read.body["erased_at"].is_string(), "{}", read.body);
    assert_eq!(read.body["output"], Value::Null);
    let pending_id = pending.body["id"].as_str().unwrap();
    let kept = app
        .get(&format!("/v1/proposals/{pending_id}"), ADMIN_TOKEN)
        .await;
    assert!(
        kept.body.get("erased_at").is_none(),
        "only settled proposals are erased"
    );

    let off = call(json!({"retention": "off"})).await;
    assert!(off.body.get("retention").is_none(), "{}", off.body);
}
