//! Standing grants: scope, uses, expiry on the injected clock, revocation,
//! quorum, forbids before grants, systems apart, risk tiers, who sees them.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::harness::{ADMIN_TOKEN, Response, TestApp, spawn_app};

const MINUTE: Duration = Duration::from_secs(60);

const POLICY: &str = r#"
@id("cap") forbid(principal, action == Action::"pay", resource) when { context.amount > 1000 };
@id("tools") @reviewers("ops") @grantable("PT1H") permit(principal, action, resource);
"#;

async fn setup(policy: &str, tier: &str) -> (TestApp, String, String) {
    let app = spawn_app().await;
    let key = app.system_of_tier("agent", "in_the_loop", tier).await;
    let published = app.publish(policy).await;
    assert_eq!(published.status, StatusCode::CREATED, "{}", published.body);
    let ann = app.user("ann", &["reviewer"], &["ops"]).await;
    (app, key, ann)
}

/// Submits `pay` of `amount` to `to`, for the subject `acct-1`.
async fn pay(app: &TestApp, key: &str, to: &str, amount: u32) -> Value {
    let submitted = app
        .submit(key, "pay", json!({"to": to}), json!({"amount": amount}))
        .await;
    assert_eq!(submitted.status, StatusCode::CREATED, "{}", submitted.body);
    submitted.body
}

/// Decides the task of `proposal` with `decision`, adding the digest it shows.
async fn decide_on(app: &TestApp, token: &str, proposal: &Value, mut decision: Value) -> Response {
    let task = app.task_of(token, proposal["id"].as_str().unwrap()).await;
    decision["seen_digest"] = task["digest"].clone();
    let path = format!("/v1/tasks/{}/decision", task["id"].as_str().unwrap());
    app.post(&path, token, decision).await
}

/// Approves the task of `proposal` with `grant` (`null`: none).
async fn approve_with(app: &TestApp, token: &str, proposal: &Value, grant: Value) -> Value {
    let decided = decide_on(
        app,
        token,
        proposal,
        json!({"verdict": "approve", "grant": grant}),
    )
    .await;
    assert_eq!(decided.status, StatusCode::OK, "{}", decided.body);
    decided.body
}

/// Approves the task of `proposal` with `grant`; the new grant's id.
async fn grant_on(app: &TestApp, token: &str, proposal: &Value, grant: Value) -> String {
    approve_with(app, token, proposal, grant).await;
    let newest = &grants(app, token, "").await[0];
    assert_eq!(newest["proposal"], proposal["id"]);
    newest["id"].as_str().unwrap().to_owned()
}

async fn grants(app: &TestApp, token: &str, query: &str) -> Vec<Value> {
    let list = app.get(&format!("/v1/grants{query}"), token).await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.body);
    list.body["items"].as_array().unwrap().clone()
}

fn decided_by(proposal: &Value) -> (&str, &str) {
    (
        proposal["status"].as_str().unwrap(),
        proposal["resolution"]["decided_by"].as_str().unwrap_or("-"),
    )
}

/// Every event row so far, as text: kinds, subjects and data.
async fn all_events(app: &TestApp) -> String {
    app.app.store.settle_log().await.unwrap();
    let events = app.app.store.events_after(0, 10_000).await.unwrap();
    events
        .iter()
        .map(|it| format!("{} {:?} {}\n", it.kind.as_str(), it.subject, it.data))
        .collect()
}

async fn audit_kinds(app: &TestApp, proposal: &Value) -> String {
    let path = format!("/v1/proposals/{}/audit", proposal["id"].as_str().unwrap());
    app.get(&path, ADMIN_TOKEN).await.body.to_string()
}

#[tokio::test]
async fn a_grant_approves_the_same_call_until_its_uses_run_out() {
    let (app, key, ann) = setup(POLICY, "limited").await;
    let first = pay(&app, &key, "alice", 10).await;
    assert_eq!(first["status"], "pending");
    let task = app.task_of(&ann, first["id"].as_str().unwrap()).await;
    assert_eq!(task["grantable"], "1h");
    let decided = approve_with(
        &app,
        &ann,
        &first,
        json!({"for": "30m", "uses": 2, "scope": "same_output"}),
    )
    .await;
    assert_eq!(decided["proposal"]["status"], "approved");
    assert_eq!(
        decided["proposal"]["resolution"]["decisions"][0]["grant"],
        json!({"for": "30m", "uses": 2, "scope": "same_output"})
    );

    let live = grants(&app, &ann, "").await;
    assert_eq!(live.len(), 1, "{live:?}");
    let grant = &live[0];
    assert_eq!(grant["state"], "live");
    assert_eq!(grant["uses_left"], 2);
    assert_eq!(grant["granted_by"], json!(["ann"]));
    assert_eq!(grant["policies"], json!(["tools"]));
    assert_eq!(grant["proposal"], first["id"]);
    let id = grant["id"].as_str().unwrap().to_owned();

    // The same call: approved at once, by the grant.
    let second = pay(&app, &key, "alice", 10).await;
    assert_eq!(decided_by(&second), ("approved", "grant"));
    assert_eq!(second["resolution"]["grant_id"], id.as_str());
    let trail = audit_kinds(&app, &second).await;
    assert!(trail.contains("grant.used"), "{trail}");
    // Another output is not covered by `same_output`.
    let other = pay(&app, &key, "mallory", 10).await;
    assert_eq!(other["status"], "pending");
    // The second use is the last.
    assert_eq!(
        decided_by(&pay(&app, &key, "alice", 10).await),
        ("approved", "grant")
    );
    assert_eq!(pay(&app, &key, "alice", 10).await["status"], "pending");
    let all = grants(&app, &ann, "?state=all").await;
    assert_eq!(
        (&all[0]["state"], &all[0]["used"], &all[0]["uses_left"]),
        (&json!("used_up"), &json!(2), &json!(0))
    );
    assert!(grants(&app, &ann, "").await.is_empty());
    // A batch item may carry a grant too, checked like a single decision.
    let third = pay(&app, &key, "bob", 30).await;
    let task = app.task_of(&ann, third["id"].as_str().unwrap()).await;
    let item = |grant: Value| {
        json!({"items": [{"task_id": task["id"], "verdict": "approve",
        "seen_digest": task["digest"], "grant": grant}]})
    };
    let batch = app
        .post(
            "/v1/tasks/decisions",
            &ann,
            item(json!({"for": "2h", "scope": "same_output"})),
        )
        .await;
    assert_eq!(batch.body["items"][0]["status"], 403, "{}", batch.body);
    let batch = app
        .post(
            "/v1/tasks/decisions",
            &ann,
            item(json!({"for": "5m", "uses": 1, "scope": "same_output"})),
        )
        .await;
    assert_eq!(batch.body["items"][0]["status"], 200, "{}", batch.body);
    assert_eq!(
        decided_by(&pay(&app, &key, "bob", 30).await),
        ("approved", "grant")
    );
    assert_eq!(pay(&app, &key, "bob", 30).await["status"], "pending");
    // Analytics count approvals by grant apart from people's and policy's.
    let overview = app
        .get("/v1/analytics/overview?system=agent", ADMIN_TOKEN)
        .await;
    assert_eq!(overview.body["approved_by_grant"], 3, "{}", overview.body);
    assert_eq!(overview.body["by_decider"]["grant"], 3, "{}", overview.body);
    assert_eq!(overview.body["reviewed"], 2, "{}", overview.body);
    // The audit log names the grant, never the output.
    let made = audit_kinds(&app, &first).await;
    assert!(!made.contains("alice"), "{made}");
    let text = all_events(&app).await;
    assert!(text.contains("grant.created"), "{text}");
    assert!(!text.contains("alice"), "{text}");
}

#[tokio::test]
async fn a_grant_ends_on_time_and_at_once_when_revoked() {
    let (app, key, ann) = setup(POLICY, "limited").await;
    let first = pay(&app, &key, "alice", 10).await;
    approve_with(
        &app,
        &ann,
        &first,
        json!({"for": "30m", "scope": "same_subject"}),
    )
    .await;
    // `same_subject`: any output for the same subject and action.
    assert_eq!(
        decided_by(&pay(&app, &key, "bob", 20).await),
        ("approved", "grant")
    );
    app.advance(29 * MINUTE).await;
    assert_eq!(
        decided_by(&pay(&app, &key, "carol", 30).await),
        ("approved", "grant")
    );
    app.advance(MINUTE).await;
    assert_eq!(pay(&app, &key, "dave", 40).await["status"], "pending");
    let ended = grants(&app, ADMIN_TOKEN, "?state=all").await;
    assert_eq!(ended[0]["state"], "expired");
    assert!(all_events(&app).await.contains("grant.expired"));
    let expired_revoke = app
        .call(
            Method::DELETE,
            &format!("/v1/grants/{}", ended[0]["id"].as_str().unwrap()),
            Some(&ann),
            None,
        )
        .await;
    assert_eq!(expired_revoke.status, StatusCode::CONFLICT);

    // Revoked: the next call waits for review again.
    let next = pay(&app, &key, "erin", 50).await;
    let id = grant_on(
        &app,
        &ann,
        &next,
        json!({"for": "1h", "scope": "same_subject"}),
    )
    .await;
    let path = format!("/v1/grants/{id}");
    let revoked = app.call(Method::DELETE, &path, Some(&ann), None).await;
    assert_eq!(revoked.status, StatusCode::OK, "{}", revoked.body);
    assert_eq!(revoked.body["state"], "revoked");
    assert_eq!(revoked.body["revoked_by"], "user:ann");
    assert_eq!(pay(&app, &key, "frank", 60).await["status"], "pending");
    let again = app.call(Method::DELETE, &path, Some(&ann), None).await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{}", again.body);
    assert_eq!(again.body["code"], "already_decided");
}

#[tokio::test]
async fn a_forbid_beats_a_grant_and_a_grant_stays_in_its_system() {
    let (app, key, ann) = setup(POLICY, "limited").await;
    let other_key = app
        .system_of_tier("other-agent", "in_the_loop", "limited")
        .await;
    let first = pay(&app, &key, "alice", 10).await;
    approve_with(
        &app,
        &ann,
        &first,
        json!({"for": "1h", "scope": "same_subject"}),
    )
    .await;
    // Over the forbid's limit: denied by policy, the grant never consulted.
    let big = pay(&app, &key, "alice", 5000).await;
    assert_eq!(decided_by(&big), ("rejected", "policy"));
    assert!(!audit_kinds(&app, &big).await.contains("grant.used"));
    // The same action and subject from another system waits for review.
    let elsewhere = pay(&app, &other_key, "alice", 10).await;
    assert_eq!(elsewhere["status"], "pending");
    // A grant stands in for the policies it was given under: a stricter
    // policy that now matches sends the proposal to review.
    let stricter = format!(
        "{POLICY}\n@id(\"big\") @reviewers(\"ops\") @approvals(\"2\") permit(principal, action, resource) when {{ context.amount > 100 }};"
    );
    assert_eq!(app.publish(&stricter).await.status, StatusCode::CREATED);
    assert_eq!(pay(&app, &key, "alice", 500).await["status"], "pending");
    assert_eq!(
        decided_by(&pay(&app, &key, "alice", 50).await),
        ("approved", "grant")
    );
    // A policy that drops `@grantable` ends every grant's effect.
    let strict = POLICY.replace(r#"@grantable("PT1H") "#, "");
    assert_eq!(app.publish(&strict).await.status, StatusCode::CREATED);
    assert_eq!(pay(&app, &key, "alice", 10).await["status"], "pending");
}

#[tokio::test]
async fn a_grant_needs_every_approval_of_the_quorum() {
    let policy = r#"@id("pair") @reviewers("ops") @approvals("2") @grantable("PT2H") permit(principal, action, resource);"#;
    let (app, key, ann) = setup(policy, "minimal").await;
    let bob = app.user("bob", &["reviewer"], &["ops"]).await;
    let offer =
        |minutes: u32| json!({"for": format!("{minutes}m"), "uses": 5, "scope": "same_subject"});
    // Ann offers, Bob approves without: approved, no grant.
    let first = pay(&app, &key, "alice", 10).await;
    approve_with(&app, &ann, &first, offer(90)).await;
    let decided = approve_with(&app, &bob, &first, Value::Null).await;
    assert_eq!(decided["proposal"]["status"], "approved");
    assert!(grants(&app, &ann, "").await.is_empty());
    // Both offer: the narrowest terms.
    let second = pay(&app, &key, "alice", 20).await;
    assert_eq!(second["status"], "pending");
    approve_with(&app, &ann, &second, offer(90)).await;
    approve_with(&app, &bob, &second, offer(30)).await;
    let made = grants(&app, &ann, "").await;
    assert_eq!(made.len(), 1);
    assert_eq!(made[0]["granted_by"], json!(["ann", "bob"]));
    let expires = made[0]["expires_at"].as_str().unwrap();
    let created = made[0]["created_at"].as_str().unwrap();
    assert_ne!(expires, created);
    assert_eq!(
        decided_by(&pay(&app, &key, "zed", 1).await),
        ("approved", "grant")
    );
    app.advance(30 * MINUTE).await;
    assert_eq!(pay(&app, &key, "zed", 1).await["status"], "pending");
}

#[tokio::test]
async fn grants_are_refused_where_the_policy_or_the_risk_tier_says_no() {
    let (app, key, ann) = setup(POLICY, "high").await;
    let offer = |grant: Value| json!({"verdict": "approve", "grant": grant});
    let ten_minutes = json!({"for": "10m", "scope": "same_output"});
    let first = pay(&app, &key, "alice", 10).await;
    let task = app.task_of(&ann, first["id"].as_str().unwrap()).await;
    assert!(task.get("grantable").is_none(), "{task}");
    assert!(
        task["grant_refused"].as_str().unwrap().contains("high"),
        "{task}"
    );
    let refused = decide_on(&app, &ann, &first, offer(ten_minutes.clone())).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
    insta::assert_json_snapshot!("grant_refused_on_high_risk", refused.body, {".instance" => "[instance]"});
    let path = format!("/v1/proposals/{}", first["id"].as_str().unwrap());
    let unchanged = app.get(&path, ADMIN_TOKEN).await;
    assert_eq!(
        unchanged.body["status"], "pending",
        "a refused grant records nothing"
    );

    // The policy says so explicitly: allowed, within its duration.
    let high = POLICY.replace(
        r#"@grantable("PT1H")"#,
        r#"@grantable("PT1H") @grantable_risk("high")"#,
    );
    assert_eq!(app.publish(&high).await.status, StatusCode::CREATED);
    let second = pay(&app, &key, "alice", 10).await;
    let too_long = json!({"for": "2h", "scope": "same_output"});
    let refused = decide_on(&app, &ann, &second, offer(too_long)).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
    let detail = refused.body["detail"].as_str().unwrap();
    assert!(detail.contains("at most 1h"), "{detail}");
    for bad in [
        offer(json!({"for": "soon", "scope": "same_output"})),
        offer(json!({"for": "10m", "scope": "everything"})),
        offer(json!({"for": "10m", "uses": 0, "scope": "same_output"})),
        json!({"verdict": "reject", "grant": ten_minutes}),
    ] {
        let refused = decide_on(&app, &ann, &second, bad.clone()).await;
        assert!(refused.status.is_client_error(), "{bad}: {}", refused.body);
    }
    approve_with(
        &app,
        &ann,
        &second,
        json!({"for": "1h", "scope": "same_output"}),
    )
    .await;
    assert_eq!(
        decided_by(&pay(&app, &key, "alice", 10).await),
        ("approved", "grant")
    );

    // Without `@grantable`: refused.
    let plain = POLICY.replace(r#"@grantable("PT1H") "#, "");
    assert_eq!(app.publish(&plain).await.status, StatusCode::CREATED);
    let third = pay(&app, &key, "bob", 10).await;
    let refused = decide_on(&app, &ann, &third, offer(ten_minutes)).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
    let detail = refused.body["detail"].as_str().unwrap();
    assert!(detail.contains("@grantable"), "{detail}");
    // Bad annotations are refused when published.
    for bad in [
        r#"@grantable("forever") permit(principal, action, resource);"#,
        r#"@grantable("P90D") permit(principal, action, resource);"#,
        r#"@route("allow") @grantable("PT1H") permit(principal, action, resource);"#,
        r#"@grantable_risk("high") permit(principal, action, resource);"#,
        r#"@grantable("PT1H") @grantable_risk("extreme") permit(principal, action, resource);"#,
    ] {
        let published = app.publish(bad).await;
        assert_eq!(published.status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
    }
}

#[tokio::test]
async fn grants_are_seen_and_revoked_by_their_group_and_admins() {
    let (app, key, ann) = setup(POLICY, "limited").await;
    let first = pay(&app, &key, "alice", 10).await;
    let id = grant_on(
        &app,
        &ann,
        &first,
        json!({"for": "1h", "scope": "same_output"}),
    )
    .await;
    let path = format!("/v1/grants/{id}");
    let outsider = app.user("olga", &["reviewer"], &["legal"]).await;
    let auditor = app.user("audrey", &["auditor"], &[]).await;
    assert!(grants(&app, &outsider, "").await.is_empty());
    assert_eq!(
        app.get(&path, &outsider).await.status,
        StatusCode::NOT_FOUND
    );
    let outsider_revokes = app.call(Method::DELETE, &path, Some(&outsider), None).await;
    assert_eq!(outsider_revokes.status, StatusCode::NOT_FOUND);
    assert_eq!(grants(&app, &auditor, "?system=agent").await.len(), 1);
    assert!(grants(&app, &auditor, "?system=other").await.is_empty());
    let auditor_revokes = app.call(Method::DELETE, &path, Some(&auditor), None).await;
    assert_eq!(auditor_revokes.status, StatusCode::FORBIDDEN);
    assert_eq!(app.get(&path, &key).await.status, StatusCode::FORBIDDEN);
    for bad in [
        "/v1/grants?state=dead",
        "/v1/grants?system=NOT%20A%20SYSTEM",
        "/v1/grants?limit=0",
    ] {
        assert_eq!(
            app.get(bad, ADMIN_TOKEN).await.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{bad}"
        );
    }
    assert_eq!(
        app.get("/v1/grants/gnt_nope", ADMIN_TOKEN).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.get("/v1/grants/../etc", ADMIN_TOKEN).await.status,
        StatusCode::NOT_FOUND
    );
    let revoked = app
        .call(Method::DELETE, &path, Some(ADMIN_TOKEN), None)
        .await;
    assert_eq!(revoked.status, StatusCode::OK, "{}", revoked.body);
    assert_eq!(revoked.body["revoked_by"], "user:admin");
}
