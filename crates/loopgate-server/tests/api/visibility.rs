//! Each role sees what it may: blind review holds in every response that
//! carries a proposal until it is decided, and a reviewer reads only the
//! proposals a task of one of their groups is or was on.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::harness::{ADMIN_TOKEN, TestApp, spawn_app};

const SECRET: &str = "secret-finding";

/// Whether a body shows the model's answer.
fn shows_answer(body: &Value) -> bool {
    body.to_string().contains(SECRET) || body.to_string().contains("\"confidence\":0.8")
}

async fn listed(app: &TestApp, token: &str) -> Vec<Value> {
    let page = app.get("/v1/proposals", token).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    page.body["items"].as_array().unwrap().clone()
}

/// Every route that returns a proposal's data, as `reader` calls it.
async fn reads(app: &TestApp, token: &str, id: &str) -> Vec<(String, StatusCode, Value)> {
    let mut out = Vec::new();
    for path in [
        format!("/v1/proposals/{id}"),
        format!("/v1/proposals/{id}?wait=1ms"),
        format!("/v1/proposals/{id}/audit"),
    ] {
        let response = app.get(&path, token).await;
        out.push((path, response.status, response.body));
    }
    let items = listed(app, token).await;
    let item = items.into_iter().find(|it| it["id"] == id);
    out.push((
        "/v1/proposals".to_owned(),
        if item.is_some() {
            StatusCode::OK
        } else {
            StatusCode::NOT_FOUND
        },
        item.unwrap_or(Value::Null),
    ));
    out
}

#[tokio::test]
async fn blind_review_holds_in_every_response_until_decided() {
    let app = spawn_app().await;
    let key = app.system("diagnosis", "in_the_loop").await;
    let published = app
        .publish(
            r#"@reviewers("clinicians") @blind("true") @approvals("2") permit(principal, action, resource);"#,
        )
        .await;
    assert_eq!(published.status, StatusCode::CREATED, "{}", published.body);
    let ann = app.user("ann", &["reviewer"], &["clinicians"]).await;
    let bob = app.user("bob", &["reviewer"], &["clinicians"]).await;
    let auditor = app.user("audrey", &["auditor"], &[]).await;
    let submitted = app
        .submit(&key, "suggest", json!({"finding": SECRET}), json!({}))
        .await;
    assert!(shows_answer(&submitted.body), "the system sees its own");
    let id = submitted.body["id"].as_str().unwrap().to_owned();

    for (route, status, body) in reads(&app, &ann, &id).await {
        assert_eq!(status, StatusCode::OK, "{route}: {body}");
        assert!(!shows_answer(&body), "{route} leaks: {body}");
    }
    for (route, status, body) in reads(&app, &auditor, &id).await {
        assert_eq!(status, StatusCode::OK, "{route}");
        if !route.ends_with("/audit") {
            assert!(shows_answer(&body), "{route}: auditors see all");
        }
    }

    // The first of two approvals: the response does not show the answer.
    let task = app.task_of(&ann, &id).await;
    let first = app.decide(&ann, &task, "approve").await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    assert_eq!(first.body["proposal"]["status"], "pending");
    assert!(!shows_answer(&first.body), "{}", first.body);
    for (route, _, body) in reads(&app, &ann, &id).await {
        assert!(!shows_answer(&body), "{route} leaks after one approval");
    }

    // Decided: now the reviewers see what the model said.
    let task = app.task_of(&bob, &id).await;
    let second = app.decide(&bob, &task, "approve").await;
    assert_eq!(second.body["proposal"]["status"], "approved");
    assert!(shows_answer(&second.body["proposal"]));
    let after = app.get(&format!("/v1/proposals/{id}"), &ann).await;
    assert!(shows_answer(&after.body));
}

#[tokio::test]
async fn reviewers_read_only_their_groups_proposals() {
    let app = spawn_app().await;
    let key = app.system("fraud-detector", "in_the_loop").await;
    let published = app
        .publish(
            r#"@reviewers("ops") permit(principal, action == Action::"block_card", resource);
               @reviewers("risk") permit(principal, action == Action::"close_account", resource);"#,
        )
        .await;
    assert_eq!(published.status, StatusCode::CREATED, "{}", published.body);
    let ann = app.user("ann", &["reviewer"], &["ops"]).await;
    let other_key = app.system("other", "in_the_loop").await;
    let ops = app
        .submit(&key, "block_card", json!({"block": true}), json!({}))
        .await;
    let risk = app
        .submit(&key, "close_account", json!({"close": true}), json!({}))
        .await;
    let other = app
        .submit(
            &other_key,
            "close_account",
            json!({"close": true}),
            json!({}),
        )
        .await;
    let ops_id = ops.body["id"].as_str().unwrap();
    for id in [ops_id, risk.body["id"].as_str().unwrap()] {
        assert_eq!(
            app.get(&format!("/v1/proposals/{id}"), ADMIN_TOKEN)
                .await
                .status,
            StatusCode::OK
        );
    }
    for (route, status, _) in reads(&app, &ann, ops_id).await {
        assert_eq!(status, StatusCode::OK, "{route}");
    }
    for id in [
        risk.body["id"].as_str().unwrap(),
        other.body["id"].as_str().unwrap(),
    ] {
        for (route, status, body) in reads(&app, &ann, id).await {
            assert_eq!(status, StatusCode::NOT_FOUND, "{route}: {body}");
        }
    }
    let ids: Vec<Value> = listed(&app, &ann)
        .await
        .into_iter()
        .map(|it| it["id"].clone())
        .collect();
    assert_eq!(ids, vec![json!(ops_id)]);
    // A system reads its own proposals only, and another's does not exist.
    let foreign = app
        .call(
            Method::GET,
            &format!("/v1/proposals/{ops_id}/audit"),
            Some(&other_key),
            None,
        )
        .await;
    assert_eq!(foreign.status, StatusCode::NOT_FOUND);
}
