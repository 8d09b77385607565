//! Data-driven routing over HTTP: policy text + proposal → route, matched
//! policies and the first state, as the API records them.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::spawn_app;

const POLICIES: &str = r#"
@id("fraud-auto") @route("allow") @sample("0")
permit(principal == System::"fraud-detector", action == Action::"block_card", resource)
when { context has amount_minor && context.amount_minor < 50000 && context.confidence.greaterThanOrEqual(decimal("0.9")) };
@id("fraud-large") @reviewers("fraud-analysts") @sla("PT4H")
permit(principal == System::"fraud-detector", action == Action::"block_card", resource)
when { context has amount_minor && context.amount_minor >= 50000 };
@id("fraud-unsure") @reviewers("fraud-analysts") @approvals("2")
permit(principal == System::"fraud-detector", action == Action::"block_card", resource)
when { context.confidence.lessThan(decimal("0.5")) };
@id("germany-only") forbid(principal, action == Action::"block_card", resource)
when { resource.attributes has country && resource.attributes.country == "XX" };
"#;

#[tokio::test]
async fn routes_recorded_on_proposals() {
    let app = spawn_app().await;
    let key = app.system("fraud-detector", "in_the_loop").await;
    assert_eq!(app.publish(POLICIES).await.status, StatusCode::CREATED);
    // (amount, confidence, country) → "route status [matched] task-approvals"
    let cases = [
        (1000, 0.95, "DE", "allow approved [fraud-auto]"),
        (90000, 0.95, "DE", "review pending [fraud-large]"),
        (
            90000,
            0.3,
            "DE",
            "review pending [fraud-large, fraud-unsure]",
        ),
        (1000, 0.7, "DE", "review pending []"),
        (1000, 0.95, "XX", "deny rejected [germany-only]"),
    ];
    let mut actual = Vec::new();
    for (amount, confidence, country, _) in cases {
        let body = json!({
            "action": "block_card",
            "subject": {"type": "Account", "id": "a", "attributes": {"country": country}},
            "output": {"block": true},
            "confidence": confidence,
            "context": {"amount_minor": amount},
        });
        let response = app.post("/v1/proposals", &key, body).await;
        assert_eq!(response.status, StatusCode::CREATED, "{}", response.body);
        let matched: Vec<&str> = response.body["matched_policies"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        let line = format!(
            "{} {} [{}]",
            s(&response.body["route"]),
            s(&response.body["status"]),
            matched.join(", ")
        );
        actual.push(line);
    }
    let expected: Vec<&str> = cases.iter().map(|c| c.3).collect();
    assert_eq!(actual, expected);
}

fn s(value: &Value) -> &str {
    value.as_str().unwrap_or_default()
}
