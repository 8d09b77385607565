//! The gate fails closed over HTTP: the number rule, declared shapes,
//! erroring policies counted restrictively and reported everywhere, and
//! hostile policy text refused with a 4xx while the server keeps serving.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::harness::{ADMIN_TOKEN, TestApp, proposal, spawn_app, spawn_with};

/// The issue's policy set: a limit beside an allow.
const LIMIT: &str = r#"@id("deny-big") forbid(principal, action == Action::"refund", resource)
when { context has amount_minor && context.amount_minor > 100000 };
@id("refunds") @route("allow") permit(principal, action == Action::"refund", resource);"#;

/// Submits a raw JSON body (numbers exactly as written).
async fn submit_text(app: &TestApp, key: &str, context: &str) -> crate::harness::Response {
    let body = format!(
        r#"{{"action": "refund", "subject": {{"type": "Account", "id": "acct-1", "attributes": {{}}}},
            "input": {{}}, "output": {{"refund": true}}, "context": {context}}}"#
    );
    app.raw(Method::POST, "/v1/proposals", key, body.into_bytes())
        .await
}

#[tokio::test]
async fn a_limit_holds_however_the_number_is_written() {
    let app = spawn_app().await;
    let key = app.system("shop", "in_the_loop").await;
    assert_eq!(app.publish(LIMIT).await.status, StatusCode::CREATED);
    for amount in ["5000000", "5000000.0", "5e6", "5E+6", "50000000e-1"] {
        let response = submit_text(&app, &key, &format!(r#"{{"amount_minor": {amount}}}"#)).await;
        assert_eq!(response.status, StatusCode::CREATED, "{}", response.body);
        assert_eq!(response.body["status"], "rejected", "{amount}");
        assert_eq!(
            response.body["matched_policies"],
            json!(["deny-big"]),
            "{amount}"
        );
    }
    let small = submit_text(&app, &key, r#"{"amount_minor": 99999.0}"#).await;
    assert_eq!(small.body["status"], "approved", "{}", small.body);
}

#[tokio::test]
async fn numbers_that_would_be_rounded_are_refused_naming_the_field() {
    let app = spawn_app().await;
    let key = app.system("shop", "in_the_loop").await;
    for (context, field, problem) in [
        (
            r#"{"rate": 0.12345}"#,
            "context.rate",
            "more than 4 fractional digits",
        ),
        (
            r#"{"a": {"b": [1, 100000.00000000001]}}"#,
            "context.a.b[1]",
            "more than 4 fractional digits",
        ),
        (
            r#"{"big": 9223372036854775808}"#,
            "context.big",
            "beyond the numbers",
        ),
        (r#"{"big": 1e300}"#, "context.big", "beyond the numbers"),
        (
            r#"{"big": 9007199254740993.0}"#,
            "context.big",
            "significant digits",
        ),
    ] {
        let response = submit_text(&app, &key, context).await;
        assert_eq!(
            response.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{context}: {}",
            response.body
        );
        assert_eq!(response.body["code"], "invalid_context");
        assert_eq!(response.body["field"], field, "{}", response.body);
        let detail = response.body["detail"].as_str().unwrap();
        assert!(detail.contains(problem), "{detail}");
    }
    // Nothing was stored.
    let listed = app.get("/v1/proposals", ADMIN_TOKEN).await;
    assert_eq!(listed.body["items"], json!([]), "{}", listed.body);
}

async fn with_shape(app: &TestApp, shape: Value) -> String {
    let key = app.system("shop", "in_the_loop").await;
    let patched = app
        .call(
            Method::PATCH,
            "/v1/systems/shop",
            Some(ADMIN_TOKEN),
            Some(json!({"shape": shape})),
        )
        .await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.body);
    key
}

#[tokio::test]
async fn declared_shapes_are_enforced_and_coerce_numbers() {
    let app = spawn_app().await;
    let key = with_shape(
        &app,
        json!({"actions": {"refund": {"context": {
            "amount_minor": {"type": "Long", "required": true},
            "rate": "decimal"
        }}}, "subject_attributes": {"country": "String"}}),
    )
    .await;
    let wrong = submit_text(&app, &key, r#"{"amount_minor": "5000000"}"#).await;
    assert_eq!(
        wrong.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        wrong.body
    );
    insta::assert_json_snapshot!(wrong.body, @r#"
    {
      "type": "/docs/errors#invalid_context",
      "title": "context cannot be routed on",
      "status": 422,
      "code": "invalid_context",
      "detail": "`context.amount_minor` must be a whole number (Long) as the declared shape says, not text",
      "help": "numbers are whole (Long) or have at most 4 fractional digits (decimal); `GET /v1/systems` shows each declared shape; see /docs/policies#numbers-and-shapes",
      "field": "context.amount_minor",
      "expected": "Long"
    }
    "#);
    let missing = submit_text(&app, &key, r#"{"rate": 1}"#).await;
    assert_eq!(
        missing.body["field"], "context.amount_minor",
        "{}",
        missing.body
    );
    assert!(
        missing.body["detail"]
            .as_str()
            .unwrap()
            .contains("required")
    );
    let attribute = app
        .post(
            "/v1/proposals",
            &key,
            json!({"action": "refund", "subject": {"type": "A", "id": "a", "attributes": {"country": 49}},
                   "input": {}, "output": {}, "context": {"amount_minor": 1}}),
        )
        .await;
    assert_eq!(
        attribute.body["field"], "subject.attributes.country",
        "{}",
        attribute.body
    );
    let good = submit_text(&app, &key, r#"{"amount_minor": 5e3, "rate": 2}"#).await;
    assert_eq!(good.status, StatusCode::CREATED, "{}", good.body);

    // An undeclared action passes, until shapes are required.
    let other = app
        .post(
            "/v1/proposals",
            &key,
            proposal("other", json!({}), json!({"x": 1})),
        )
        .await;
    assert_eq!(other.status, StatusCode::CREATED, "{}", other.body);
    let strict = spawn_with(|config| config.require_shapes = true).await;
    let key = with_shape(&strict, json!({"actions": {"refund": {}}})).await;
    let refused = strict
        .post(
            "/v1/proposals",
            &key,
            proposal("other", json!({}), json!({})),
        )
        .await;
    assert_eq!(
        refused.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        refused.body
    );
    assert_eq!(refused.body["field"], "action");
    let declared = strict
        .post(
            "/v1/proposals",
            &key,
            proposal("refund", json!({}), json!({})),
        )
        .await;
    assert_eq!(declared.status, StatusCode::CREATED, "{}", declared.body);
}

#[tokio::test]
async fn an_erroring_policy_counts_restrictively_and_is_reported() {
    let app = spawn_app().await;
    let key = app.system("shop", "in_the_loop").await;
    let text = r#"@id("deny-big") forbid(principal, action == Action::"refund", resource)
when { context.amount_minor > 100000 };
@id("refunds") @route("allow") permit(principal, action == Action::"refund", resource);"#;
    assert_eq!(app.publish(text).await.status, StatusCode::CREATED);
    // A string where the policy compares a Long: Cedar skips the forbid, loopgate denies.
    let response = submit_text(&app, &key, r#"{"amount_minor": "5000000"}"#).await;
    assert_eq!(response.status, StatusCode::CREATED, "{}", response.body);
    assert_eq!(response.body["status"], "rejected");
    assert_eq!(response.body["matched_policies"], json!(["deny-big"]));
    let errors = &response.body["policy_errors"];
    assert_eq!(errors[0]["policy"], "deny-big", "{errors}");
    assert_eq!(errors[0]["kind"], "type_error", "{errors}");
    let message = errors[0]["message"].as_str().unwrap();
    assert!(message.contains("expected long, got string"), "{message}");
    assert!(message.contains("line 2"), "{message}");
    // A proposal without errors carries no `policy_errors`.
    let plain = submit_text(&app, &key, r#"{"amount_minor": 5}"#).await;
    assert_eq!(plain.body["status"], "approved", "{}", plain.body);
    assert!(plain.body.get("policy_errors").is_none(), "{}", plain.body);

    // The routed event carries the policy and kind, and the message only as a salted hash.
    let id = response.body["id"].as_str().unwrap();
    let audit = app
        .get(&format!("/v1/proposals/{id}/audit"), ADMIN_TOKEN)
        .await;
    assert_eq!(audit.status, StatusCode::OK, "{}", audit.body);
    let text = audit.body.to_string();
    assert!(text.contains("policy_errors"), "{text}");
    assert!(text.contains("type_error"), "{text}");
    assert!(!text.contains("expected long"), "{text}");

    // Metrics count it per policy.
    let metrics = app
        .http
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(
            r#"loopgate_policy_errors_total{set="live",policy="deny-big",kind="type_error"} 1"#
        ),
        "{metrics}"
    );

    // Policy tests and replay report it too.
    let tested = app
        .post(
            "/v1/policies/test",
            ADMIN_TOKEN,
            json!({"text": text_of(&app).await, "cases": r#"[
              {"name": "a string amount", "system": "shop", "action": "refund", "context": {"amount_minor": "x"}, "expect": {"route": "deny"}},
              {"name": "too precise", "system": "shop", "action": "refund", "context": {"amount_minor": 0.123456}, "expect": {"route": "refused"}}
            ]"#}),
        )
        .await;
    assert_eq!(tested.status, StatusCode::OK, "{}", tested.body);
    assert_eq!(tested.body["failed"], 0, "{}", tested.body);
    assert_eq!(
        tested.body["cases"][0]["policy_errors"][0]["policy"],
        "deny-big"
    );
    assert!(
        tested.body["cases"][1]["refused"]
            .as_str()
            .unwrap()
            .contains("context.amount_minor")
    );
    let replayed = app
        .post(
            "/v1/policies/replay",
            ADMIN_TOKEN,
            json!({"text": text_of(&app).await, "since": "1d"}),
        )
        .await;
    assert_eq!(replayed.status, StatusCode::OK, "{}", replayed.body);
    assert_eq!(
        replayed.body["policy_errors"][0]["policy"], "deny-big",
        "{}",
        replayed.body
    );
    assert_eq!(
        replayed.body["policy_errors"][0]["count"], 1,
        "{}",
        replayed.body
    );
}

/// The live version's text.
async fn text_of(app: &TestApp) -> String {
    let versions = app.get("/v1/policies", ADMIN_TOKEN).await;
    let live = versions.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|it| it["active"] == true)
        .unwrap()
        .clone();
    live["text"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn the_shadow_version_reports_its_errors() {
    let app = spawn_app().await;
    let key = app.system("shop", "in_the_loop").await;
    assert_eq!(app.publish(LIMIT).await.status, StatusCode::CREATED);
    let shadow =
        r#"@id("strict") forbid(principal, action, resource) when { context.amount_minor > 10 };"#;
    let published = app
        .post(
            "/v1/policies",
            ADMIN_TOKEN,
            json!({"text": shadow, "mode": "shadow"}),
        )
        .await;
    assert_eq!(published.status, StatusCode::CREATED, "{}", published.body);
    let response = submit_text(&app, &key, r#"{"note": "no amount"}"#).await;
    assert_eq!(response.body["status"], "approved", "{}", response.body);
    let report = app.get("/v1/policies/shadow", ADMIN_TOKEN).await;
    assert_eq!(
        report.body["policy_errors"][0]["policy"], "strict",
        "{}",
        report.body
    );
    assert_eq!(
        report.body["policy_errors"][0]["count"], 1,
        "{}",
        report.body
    );
}

#[tokio::test]
async fn hostile_policy_text_is_refused_and_the_server_keeps_serving() {
    let app = spawn_with(|config| config.max_policy_bytes = 64 * 1024).await;
    let deep = |open: &str, close: &str, n: usize| {
        format!(
            "permit(principal, action, resource) when {{ {}true{} }};",
            open.repeat(n),
            close.repeat(n)
        )
    };
    let chain = format!(
        "permit(principal, action, resource) when {{ {} }};",
        vec!["1"; 5000].join(" + ")
    );
    let hostile = [
        deep("(", ")", 150),
        deep("[", "]", 200),
        deep("(", ")", 100_000),
        chain,
        "permit(principal, action, resource);".repeat(3000),
    ];
    for text in &hostile {
        for (path, body) in [
            ("/v1/policies/validate", json!({"text": text})),
            ("/v1/policies", json!({"text": text})),
            ("/v1/policies/test", json!({"text": text, "cases": "[]"})),
            ("/v1/policies/replay", json!({"text": text, "since": "1d"})),
        ] {
            let response = app.post(path, ADMIN_TOKEN, body).await;
            let code = response.body["code"].as_str().unwrap_or_default();
            assert!(
                ["policy_invalid", "payload_too_large"].contains(&code),
                "{path}: {} {}",
                response.status,
                response.body
            );
        }
    }
    let health = app.get("/healthz", ADMIN_TOKEN).await;
    assert_eq!(health.status, StatusCode::OK);
    assert_eq!(app.publish(LIMIT).await.status, StatusCode::CREATED);
}
