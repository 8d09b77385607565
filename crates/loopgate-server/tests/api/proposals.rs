//! Submitting, reading, listing, cancelling and waiting for proposals.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::harness::{ADMIN_TOKEN, proposal, spawn_app};

const REVIEW_ALL: &str =
    r#"@id("review-all") @reviewers("analysts") permit(principal, action, resource);"#;

#[tokio::test]
async fn submit_routes_and_stores_a_proposal() {
    let app = spawn_app().await;
    let key = app.system("fraud-detector", "in_the_loop").await;
    assert_eq!(app.publish(REVIEW_ALL).await.status, StatusCode::CREATED);
    let body = json!({
        "action": "block_card",
        "subject": {"type": "Account", "id": "acct-8812", "attributes": {"country": "DE", "age_band": "35-44"}},
        "input": {"transaction_id": "tx-1", "amount_minor": 129900, "currency": "EUR"},
        "output": {"block": true, "reason_code": "velocity"},
        "confidence": 0.87,
        "explanation": {"summary": "5 transactions in 3 minutes", "features": {"velocity_5m": 5}},
        "model": {"name": "fraud-gbm", "version": "2026.11.2"},
        "context": {"amount_minor": 129900, "channel": "online"},
        "idempotency_key": "tx-1/block"
    });
    let created = app.post("/v1/proposals", &key, body).await;
    assert_eq!(created.status, StatusCode::CREATED);
    insta::assert_json_snapshot!("proposal_created", created.body, {".id" => "[id]", ".digest" => "[digest]"});
    let id = created.body["id"].as_str().unwrap();
    let read = app.get(&format!("/v1/proposals/{id}"), &key).await;
    assert_eq!(read.status, StatusCode::OK);
    assert_eq!(read.body, created.body);
}

#[tokio::test]
async fn idempotency_key_replays_or_conflicts() {
    let app = spawn_app().await;
    let key = app.system("fraud-detector", "in_the_loop").await;
    let mut body = proposal("block_card", json!({"block": true}), json!({}));
    body["idempotency_key"] = json!("tx-9/block");
    let first = app.post("/v1/proposals", &key, body.clone()).await;
    assert_eq!(first.status, StatusCode::CREATED);
    let again = app.post("/v1/proposals", &key, body.clone()).await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.body["id"], first.body["id"]);

    // The header works the same way, and the key is per system.
    let mut via_header = body.clone();
    via_header
        .as_object_mut()
        .unwrap()
        .remove("idempotency_key");
    let header = app
        .http
        .post(format!("{}/v1/proposals", app.base))
        .bearer_auth(&key)
        .header("Idempotency-Key", "tx-9/block")
        .json(&via_header)
        .send()
        .await
        .unwrap();
    assert_eq!(header.status(), StatusCode::OK);

    body["output"] = json!({"block": false});
    let conflict = app.post("/v1/proposals", &key, body).await;
    assert_eq!(conflict.status, StatusCode::CONFLICT);
    insta::assert_json_snapshot!("idempotency_conflict", conflict.body, {".existing_proposal" => "[id]", ".detail" => "[detail]"});
}

#[tokio::test]
async fn long_poll_returns_the_moment_a_decision_lands() {
    let app = spawn_app().await;
    let key = app.system("fraud-detector", "in_the_loop").await;
    let rita = app.user("rita", &["reviewer"], &["reviewers"]).await;
    let submitted = app
        .submit(&key, "block_card", json!({"block": true}), json!({}))
        .await;
    let id = submitted.body["id"].as_str().unwrap().to_owned();

    // A wait that runs out returns the pending state.
    let pending = app
        .get(&format!("/v1/proposals/{id}?wait=50ms"), &key)
        .await;
    assert_eq!(pending.body["status"], "pending");

    let base = app.base.clone();
    let waiter_key = key.clone();
    let waiter_id = id.clone();
    let waiter = tokio::spawn(async move {
        let client = reqwest::Client::new();
        let response = client
            .get(format!("{base}/v1/proposals/{waiter_id}?wait=30s"))
            .bearer_auth(waiter_key)
            .send()
            .await
            .unwrap();
        response.json::<serde_json::Value>().await.unwrap()
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let task = app.task_of(&rita, &id).await;
    assert_eq!(
        app.decide(&rita, &task, "approve").await.status,
        StatusCode::OK
    );
    let resolved = tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(resolved["status"], "approved");
    assert_eq!(resolved["resolution"]["decided_by"], "reviewers");
    assert_eq!(resolved["resolution"]["decisions"][0]["reviewer"], "rita");
}

#[tokio::test]
async fn submit_with_wait_blocks_until_resolved() {
    let app = spawn_app().await;
    let key = app.system("fraud-detector", "in_the_loop").await;
    let rita = app.user("rita", &["reviewer"], &["reviewers"]).await;
    let base = app.base.clone();
    let body = proposal("block_card", json!({"block": true}), json!({}));
    let waiter = tokio::spawn(async move {
        let client = reqwest::Client::new();
        let response = client
            .post(format!("{base}/v1/proposals?wait=30s"))
            .bearer_auth(key)
            .json(&body)
            .send()
            .await
            .unwrap();
        (
            response.status(),
            response.json::<serde_json::Value>().await.unwrap(),
        )
    });
    let task = loop {
        let tasks = app.tasks(&rita).await;
        if let Some(task) = tasks.into_iter().next() {
            break task;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(
        app.decide(&rita, &task, "reject").await.status,
        StatusCode::OK
    );
    let (status, resolved) = tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(resolved["status"], "rejected");
}

#[tokio::test]
async fn list_pages_with_a_stable_cursor_and_filters() {
    let app = spawn_app().await;
    let key = app.system("fraud-detector", "in_the_loop").await;
    let other = app.system("lead-scorer", "automated").await;
    let auditor = app.user("audrey", &["auditor"], &[]).await;
    for i in 0..7 {
        app.submit(&key, &format!("act-{i}"), json!({"i": i}), json!({}))
            .await;
    }
    app.submit(&other, "score", json!({}), json!({})).await;
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/proposals?system=fraud-detector&limit=3&cursor={c}"),
            None => "/v1/proposals?system=fraud-detector&limit=3".to_owned(),
        };
        let page = app.get(&path, &auditor).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        for item in page.body["items"].as_array().unwrap() {
            seen.push(item["action"].as_str().unwrap().to_owned());
        }
        match page.body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(
        seen,
        [
            "act-6", "act-5", "act-4", "act-3", "act-2", "act-1", "act-0"
        ]
    );
    let approved = app.get("/v1/proposals?status=approved", &auditor).await;
    assert_eq!(approved.body["items"].as_array().unwrap().len(), 1);
    // A system key lists only its own proposals.
    let own = app.get("/v1/proposals", &other).await;
    assert_eq!(own.body["items"].as_array().unwrap().len(), 1);
    let foreign = app.get("/v1/proposals?system=fraud-detector", &other).await;
    assert_eq!(foreign.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn cancel_withdraws_a_pending_proposal_once() {
    let app = spawn_app().await;
    let key = app.system("fraud-detector", "in_the_loop").await;
    let other = app.system("other", "in_the_loop").await;
    let rita = app.user("rita", &["reviewer"], &["reviewers"]).await;
    let submitted = app
        .submit(&key, "block_card", json!({"block": true}), json!({}))
        .await;
    let id = submitted.body["id"].as_str().unwrap();
    let task = app.task_of(&rita, id).await;
    let foreign = app
        .post(&format!("/v1/proposals/{id}/cancel"), &other, json!({}))
        .await;
    assert_eq!(foreign.status, StatusCode::NOT_FOUND);
    let cancelled = app
        .post(&format!("/v1/proposals/{id}/cancel"), &key, json!({}))
        .await;
    assert_eq!(cancelled.status, StatusCode::OK);
    assert_eq!(cancelled.body["status"], "cancelled");
    assert_eq!(cancelled.body["resolution"]["decided_by"], "system");
    let again = app
        .post(&format!("/v1/proposals/{id}/cancel"), &key, json!({}))
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert_eq!(again.body["code"], "already_decided");
    let late = app.decide(&rita, &task, "approve").await;
    assert_eq!(late.status, StatusCode::CONFLICT);
    assert!(app.tasks(&rita).await.is_empty());
}

#[tokio::test]
async fn a_system_key_sees_only_its_own_proposals() {
    let app = spawn_app().await;
    let key = app.system("fraud-detector", "in_the_loop").await;
    let other = app.system("other", "in_the_loop").await;
    let submitted = app.submit(&key, "block_card", json!({}), json!({})).await;
    let id = submitted.body["id"].as_str().unwrap();
    assert_eq!(
        app.get(&format!("/v1/proposals/{id}"), &other).await.status,
        StatusCode::NOT_FOUND
    );
    let named = app.post("/v1/proposals", &key, json!({"system": "other", "action": "a", "subject": {"type": "T", "id": "1"}, "output": {}})).await;
    assert_eq!(named.status, StatusCode::FORBIDDEN);
    // An admin may submit for any system with a personal token.
    let by_admin = app.call(Method::POST, "/v1/proposals", Some(ADMIN_TOKEN), Some(json!({"system": "other", "action": "a", "subject": {"type": "T", "id": "1"}, "output": {}}))).await;
    assert_eq!(by_admin.status, StatusCode::CREATED, "{}", by_admin.body);
}
