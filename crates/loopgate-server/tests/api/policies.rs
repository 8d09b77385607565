//! The policy lifecycle over HTTP: schema validation on publish, case files
//! that gate a publish, versions and rollback, shadow mode, replay of the
//! stored history, and `@max_auto` caps.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::harness::{ADMIN_TOKEN, TestApp, spawn_app};

const V1: &str = r#"@id("small") @route("allow") @reviewers("ops")
permit(principal == System::"fraud-detector", action == Action::"block_card", resource)
when { context has amount_minor && context.amount_minor < 500 };
@id("large") @reviewers("ops")
permit(principal == System::"fraud-detector", action == Action::"block_card", resource)
when { context has amount_minor && context.amount_minor >= 500 };"#;

/// Everything goes to review by `leads`.
const V2: &str = r#"@id("all") @reviewers("leads") @approvals("2")
permit(principal == System::"fraud-detector", action == Action::"block_card", resource);"#;

async fn setup() -> (TestApp, String) {
    let app = spawn_app().await;
    let key = app.system("fraud-detector", "in_the_loop").await;
    let shape = json!({"shape": {"actions": {"block_card": {"context": {"amount_minor": "Long"}}},
                                 "subject_attributes": {"country": "String"}}});
    let patched = app
        .call(
            Method::PATCH,
            "/v1/systems/fraud-detector",
            Some(ADMIN_TOKEN),
            Some(shape),
        )
        .await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.body);
    (app, key)
}

async fn submit(app: &TestApp, key: &str, amount: i64) -> Value {
    let response = app
        .submit(
            key,
            "block_card",
            json!({"block": true}),
            json!({"amount_minor": amount}),
        )
        .await;
    assert_eq!(response.status, StatusCode::CREATED, "{}", response.body);
    response.body
}

#[tokio::test]
async fn publishing_checks_the_schema_and_the_cases() {
    let (app, _) = setup().await;
    let schema = app.get("/v1/policies/schema", ADMIN_TOKEN).await;
    assert_eq!(schema.status, StatusCode::OK);
    let text = schema.body["text"].as_str().unwrap();
    assert!(text.contains(r#"action "block_card" appliesTo"#), "{text}");
    assert!(text.contains(r#""amount_minor"?: Long"#), "{text}");

    // A typo in an attribute is refused with the policy, the line and a suggestion.
    let typo = V1.replace("context.amount_minor < 500", "context.amount_minr < 500");
    let refused = app.publish(&typo).await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(refused.body["code"], "policy_invalid");
    let detail = refused.body["detail"].as_str().unwrap();
    assert!(detail.starts_with("policy `small`:"), "{detail}");
    assert!(detail.contains("line 3"), "{detail}");
    assert!(detail.contains("amount_minor"), "{detail}");

    // Validation reports lint warnings without publishing.
    let checked = app
        .post("/v1/policies/validate", ADMIN_TOKEN, json!({"text": V2}))
        .await;
    assert_eq!(checked.status, StatusCode::OK, "{}", checked.body);
    let warnings = checked.body["warnings"].to_string();
    assert!(
        warnings.contains("group `leads` has no members"),
        "{warnings}"
    );

    // A failing case refuses the publish and says which.
    let cases = "cases:\n  - name: small is automatic\n    system: fraud-detector\n    action: block_card\n    context: {amount_minor: 100}\n    expect: {route: review}\n";
    let refused = app
        .post(
            "/v1/policies",
            ADMIN_TOKEN,
            json!({"text": V1, "cases": cases}),
        )
        .await;
    assert_eq!(
        refused.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        refused.body
    );
    assert_eq!(
        refused.body["tests"]["cases"][0]["failures"][0],
        "expected route `review`, got `allow`"
    );
    assert_eq!(
        refused.body["tests"]["cases"][0]["matched"],
        json!(["small"])
    );

    // A bad case file names the line.
    let bad = app
        .post(
            "/v1/policies/test",
            ADMIN_TOKEN,
            json!({"text": V1, "cases": "cases:\n  - system: x\n    acton: y\n"}),
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        bad.body["detail"].as_str().unwrap().contains("line 3"),
        "{}",
        bad.body
    );

    let cases = cases.replace("route: review", "route: allow");
    let published = app
        .post(
            "/v1/policies",
            ADMIN_TOKEN,
            json!({"text": V1, "cases": cases}),
        )
        .await;
    assert_eq!(published.status, StatusCode::CREATED, "{}", published.body);
    assert_eq!(published.body["active"], true);
}

#[tokio::test]
async fn versions_roll_back_and_every_activation_is_audited() {
    let (app, key) = setup().await;
    let v1 = app.publish(V1).await.body["version"]
        .as_str()
        .unwrap()
        .to_owned();
    let v2 = app.publish(V2).await.body["version"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(submit(&app, &key, 100).await["route"], "review");

    let got = app.get(&format!("/v1/policies/{v1}"), ADMIN_TOKEN).await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(
        (got.body["text"].as_str(), got.body["active"].as_bool()),
        (Some(V1), Some(false))
    );
    let missing = app.get("/v1/policies/0000", ADMIN_TOKEN).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);

    let rollback = app
        .post(
            &format!("/v1/policies/{v1}/activate"),
            ADMIN_TOKEN,
            json!({"reason": "v2 sends everything to review"}),
        )
        .await;
    assert_eq!(rollback.status, StatusCode::OK, "{}", rollback.body);
    assert_eq!(rollback.body["active"], true);
    assert_eq!(submit(&app, &key, 100).await["route"], "allow");

    let history = app.get("/v1/policies/activations", ADMIN_TOKEN).await;
    assert_eq!(history.body[0]["version"], v1.as_str());
    assert_eq!(history.body[0]["reason"], "v2 sends everything to review");
    assert_eq!(history.body[0]["actor"], "user:admin");
    assert_eq!(history.body[1]["version"], v2.as_str());
    let entries = app
        .get("/v1/audit/entries?start=0&end=1000", ADMIN_TOKEN)
        .await;
    let log = entries.body.to_string();
    assert!(log.contains("policy.activated"), "{log}");
}

#[tokio::test]
async fn shadow_versions_record_disagreements_and_change_nothing() {
    let (app, key) = setup().await;
    app.publish(V1).await;
    let shadow = app
        .post(
            "/v1/policies",
            ADMIN_TOKEN,
            json!({"text": V2, "mode": "shadow", "description": "try v2"}),
        )
        .await;
    assert_eq!(shadow.status, StatusCode::CREATED, "{}", shadow.body);
    assert_eq!(
        (
            shadow.body["active"].as_bool(),
            shadow.body["shadow"].as_bool()
        ),
        (Some(false), Some(true))
    );

    let small = submit(&app, &key, 100).await;
    assert_eq!(small["route"], "allow", "the live version decides");
    let large = submit(&app, &key, 900).await;
    assert_eq!(large["route"], "review");

    let report = app.get("/v1/policies/shadow", ADMIN_TOKEN).await;
    assert_eq!(report.status, StatusCode::OK);
    assert_eq!(report.body["evaluated"], 2);
    // allow → review for the small one; the large one changes group (ops → leads).
    assert_eq!(report.body["disagreements"], 2, "{}", report.body);
    let recent = report.body["recent"].as_array().unwrap();
    assert!(
        recent
            .iter()
            .any(|it| it["proposal_id"] == small["id"] && it["shadow_route"] == "review")
    );

    let stopped = app
        .call(
            Method::DELETE,
            "/v1/policies/shadow",
            Some(ADMIN_TOKEN),
            Some(json!({"reason": "seen enough"})),
        )
        .await;
    assert_eq!(stopped.status, StatusCode::NO_CONTENT);
    assert_eq!(
        app.get("/v1/policies/shadow", ADMIN_TOKEN).await.body["version"],
        Value::Null
    );
}

#[tokio::test]
async fn replay_reports_what_a_draft_would_change() {
    let (app, key) = setup().await;
    app.publish(V1).await;
    let lead = app.user("lena", &["reviewer"], &["ops"]).await;
    let mut rejected = 0;
    for amount in [100, 200, 900, 950] {
        let proposal = submit(&app, &key, amount).await;
        if proposal["route"] == "review" && rejected == 0 {
            let task = app.task_of(&lead, proposal["id"].as_str().unwrap()).await;
            assert_eq!(
                app.decide(&lead, &task, "reject").await.status,
                StatusCode::OK
            );
            rejected += 1;
        }
    }
    // The draft allows everything.
    let draft = r#"@id("everything") @route("allow") permit(principal, action, resource);"#;
    let report = app
        .post(
            "/v1/policies/replay",
            ADMIN_TOKEN,
            json!({"text": draft, "since": "1d"}),
        )
        .await;
    assert_eq!(report.status, StatusCode::OK, "{}", report.body);
    assert_eq!(report.body["replayed"], 4);
    assert_eq!(report.body["unchanged"], 2);
    assert_eq!(report.body["transitions"][0]["from"], "review");
    assert_eq!(report.body["transitions"][0]["to"], "allow");
    assert_eq!(report.body["transitions"][0]["count"], 2);
    assert_eq!(
        report.body["workload"],
        json!([{"group": "ops", "added": 0, "removed": 2}])
    );
    assert_eq!(report.body["rejected_now_allowed"], 1);

    // Streamed: progress lines, then the report.
    let streamed = app
        .http
        .post(format!("{}/v1/policies/replay?stream=true", app.base))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"text": draft, "since": "P1D"}))
        .send()
        .await
        .unwrap();
    assert_eq!(streamed.headers()["content-type"], "application/x-ndjson");
    let text = streamed.text().await.unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        lines.first().unwrap()["progress"],
        json!({"done": 4, "total": 4})
    );
    assert_eq!(lines.last().unwrap()["report"]["replayed"], 4);

    let bad = app
        .post(
            "/v1/policies/replay",
            ADMIN_TOKEN,
            json!({"text": draft, "since": "a while"}),
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn max_auto_sends_allows_beyond_the_cap_to_review() {
    let (app, key) = setup().await;
    let capped = r#"@id("capped") @route("allow") @max_auto("3/h") @reviewers("ops")
permit(principal == System::"fraud-detector", action == Action::"block_card", resource);"#;
    assert_eq!(app.publish(capped).await.status, StatusCode::CREATED);
    let mut routes = Vec::new();
    for _ in 0..5 {
        let proposal = submit(&app, &key, 100).await;
        routes.push(format!("{} {}", proposal["route"], proposal["status"]));
    }
    assert_eq!(
        routes,
        [
            r#""allow" "approved""#,
            r#""allow" "approved""#,
            r#""allow" "approved""#,
            r#""review" "pending""#,
            r#""review" "pending""#,
        ]
    );
    // The next hour has room again.
    app.advance(std::time::Duration::from_secs(3_600)).await;
    assert_eq!(submit(&app, &key, 100).await["route"], "allow");
}

/// An empty text is a valid policy set, but publishing it live sends every
/// proposal to the default route: the answer says so.
#[tokio::test]
async fn an_empty_policy_text_is_published_with_a_warning() {
    let app = spawn_app().await;
    let published = app.publish("// nothing yet\n").await;
    assert_eq!(published.status, StatusCode::CREATED, "{}", published.body);
    let warnings = published.body["warnings"].as_array().unwrap();
    assert!(
        warnings.iter().any(|it| it["message"]
            .as_str()
            .unwrap()
            .starts_with("the text holds no policy")),
        "{}",
        published.body
    );
}
