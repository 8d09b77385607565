//! Review: quorum, separation of duties, edits, leases, escalation and
//! timeouts on the injected clock, the kill switch, the oversight modes.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::{ADMIN_TOKEN, TestApp, spawn_app};

const HOUR: Duration = Duration::from_secs(3600);

async fn setup(policy: &str) -> (TestApp, String) {
    let app = spawn_app().await;
    let key = app.system("fraud-detector", "in_the_loop").await;
    let published = app.publish(policy).await;
    assert_eq!(published.status, StatusCode::CREATED, "{}", published.body);
    (app, key)
}

fn id(response: &Value) -> String {
    response["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn quorum_needs_distinct_reviewers_and_ends_once() {
    let (app, key) =
        setup(r#"@reviewers("clinicians") @approvals("2") permit(principal, action, resource);"#)
            .await;
    let ann = app.user("ann", &["reviewer"], &["clinicians"]).await;
    let bob = app.user("bob", &["reviewer"], &["clinicians"]).await;
    let cid = app.user("cid", &["reviewer"], &["clinicians"]).await;
    let proposal = app
        .submit(&key, "diagnose", json!({"finding": "pneumonia"}), json!({}))
        .await;
    let task = app.task_of(&ann, &id(&proposal.body)).await;
    assert_eq!(task["required"], 2);

    let first = app.decide(&ann, &task, "approve").await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    assert_eq!(first.body["proposal"]["status"], "pending");
    assert_eq!(first.body["task"]["approvals"], 1);
    let twice = app.decide(&ann, &task, "approve").await;
    assert_eq!(twice.status, StatusCode::CONFLICT);
    assert_eq!(twice.body["code"], "already_decided");

    let second = app.decide(&bob, &task, "approve").await;
    assert_eq!(second.body["proposal"]["status"], "approved");
    assert_eq!(second.body["task"]["state"], "done");
    insta::assert_json_snapshot!("decision_resolved", second.body, {
        ".task.id" => "[id]", ".task.proposal_id" => "[id]", ".proposal.id" => "[id]",
        // Digests are salted per proposal, so they differ on every run.
        ".**.digest" => "[digest]",
    });
    let late = app.decide(&cid, &task, "reject").await;
    assert_eq!(late.status, StatusCode::CONFLICT);
    insta::assert_json_snapshot!("already_decided", late.body);
}

#[tokio::test]
async fn one_reject_rejects() {
    let (app, key) =
        setup(r#"@reviewers("clinicians") @approvals("3") permit(principal, action, resource);"#)
            .await;
    let ann = app.user("ann", &["reviewer"], &["clinicians"]).await;
    let proposal = app.submit(&key, "diagnose", json!({}), json!({})).await;
    let task = app.task_of(&ann, &id(&proposal.body)).await;
    let rejected = app.decide(&ann, &task, "reject").await;
    assert_eq!(rejected.body["proposal"]["status"], "rejected");
    assert_eq!(
        rejected.body["proposal"]["resolution"]["decided_by"],
        "reviewers"
    );
}

#[tokio::test]
async fn a_principal_may_not_approve_what_it_submitted() {
    let (app, _key) = setup(r#"@reviewers("ops") permit(principal, action, resource);"#).await;
    let carol = app.user("carol", &["admin", "reviewer"], &["ops"]).await;
    let body = json!({"system": "fraud-detector", "action": "a", "subject": {"type": "T", "id": "1"}, "output": {}});
    let proposal = app.post("/v1/proposals", &carol, body).await;
    let task = app.task_of(&carol, &id(&proposal.body)).await;
    let own = app.decide(&carol, &task, "approve").await;
    assert_eq!(own.status, StatusCode::FORBIDDEN);
    insta::assert_json_snapshot!("self_approval", own.body);
}

#[tokio::test]
async fn modify_makes_a_new_digest_and_stale_decisions_are_refused() {
    let (app, key) =
        setup(r#"@reviewers("leads") @approvals("2") permit(principal, action, resource);"#).await;
    let ann = app.user("ann", &["reviewer"], &["leads"]).await;
    let bob = app.user("bob", &["reviewer"], &["leads"]).await;
    let proposal = app
        .submit(
            &key,
            "mcp:crm/issue_refund",
            json!({"amount_minor": 5000}),
            json!({}),
        )
        .await;
    let task = app.task_of(&ann, &id(&proposal.body)).await;
    let body = json!({"verdict": "modify", "rationale": "half is enough", "output": {"amount_minor": 2500}, "seen_digest": task["digest"]});
    let modified = app
        .post(
            &format!("/v1/tasks/{}/decision", task["id"].as_str().unwrap()),
            &ann,
            body,
        )
        .await;
    assert_eq!(modified.status, StatusCode::OK, "{}", modified.body);
    let new_digest = modified.body["proposal"]["digest"].clone();
    assert_ne!(new_digest, task["digest"]);
    assert_eq!(
        modified.body["proposal"]["output"],
        json!({"amount_minor": 2500})
    );

    let stale = app.decide(&bob, &task, "approve").await;
    assert_eq!(stale.status, StatusCode::CONFLICT);
    assert_eq!(stale.body["current_digest"], new_digest);
    insta::assert_json_snapshot!("stale_digest", stale.body, {".detail" => "[detail]", ".current_digest" => "[digest]"});

    let fresh = app.task_of(&bob, &id(&proposal.body)).await;
    let approved = app.decide(&bob, &fresh, "approve").await;
    assert_eq!(approved.body["proposal"]["status"], "approved");
    let resolution = &approved.body["proposal"]["resolution"];
    assert_eq!(resolution["modified"], true);
    assert_eq!(resolution["output"], json!({"amount_minor": 2500}));
    assert_eq!(resolution["digest"], new_digest);
}

#[tokio::test]
async fn leases_keep_two_reviewers_off_one_task() {
    let (app, key) = setup(r#"@reviewers("ops") permit(principal, action, resource);"#).await;
    let ann = app.user("ann", &["reviewer"], &["ops"]).await;
    let bob = app.user("bob", &["reviewer"], &["ops"]).await;
    let proposal = app.submit(&key, "a", json!({}), json!({})).await;
    let task = app.task_of(&ann, &id(&proposal.body)).await;
    let task_id = task["id"].as_str().unwrap();
    let claimed = app
        .post(&format!("/v1/tasks/{task_id}/claim"), &ann, json!({}))
        .await;
    assert_eq!(claimed.status, StatusCode::OK);
    assert_eq!(claimed.body["state"], "claimed");
    assert_eq!(claimed.body["claimed_by"], "ann");
    let held = app
        .post(&format!("/v1/tasks/{task_id}/claim"), &bob, json!({}))
        .await;
    assert_eq!(held.status, StatusCode::CONFLICT);
    insta::assert_json_snapshot!("lease_held", held.body, {".detail" => "[detail]", ".lease_expires_at" => "[time]"});
    assert_eq!(
        app.decide(&bob, &task, "approve").await.status,
        StatusCode::CONFLICT
    );
    // The queue does not offer a claimed task.
    assert!(app.tasks(&bob).await.is_empty());
    assert_eq!(
        app.post(&format!("/v1/tasks/{task_id}/release"), &bob, json!({}))
            .await
            .status,
        StatusCode::CONFLICT
    );
    assert_eq!(
        app.post(&format!("/v1/tasks/{task_id}/release"), &ann, json!({}))
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        app.decide(&bob, &task, "approve").await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn lapsed_leases_return_to_the_queue() {
    let (app, key) = setup(r#"@reviewers("ops") permit(principal, action, resource);"#).await;
    let ann = app.user("ann", &["reviewer"], &["ops"]).await;
    let bob = app.user("bob", &["reviewer"], &["ops"]).await;
    let proposal = app.submit(&key, "a", json!({}), json!({})).await;
    let task = app.task_of(&ann, &id(&proposal.body)).await;
    app.post(
        &format!("/v1/tasks/{}/claim", task["id"].as_str().unwrap()),
        &ann,
        json!({}),
    )
    .await;
    app.advance(Duration::from_secs(301)).await;
    let back = app.task_of(&bob, &id(&proposal.body)).await;
    assert_eq!(back["state"], "open");
    assert_eq!(
        app.decide(&bob, &back, "approve").await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn deadlines_escalate_then_fail_closed() {
    let policy = r#"@reviewers("analysts") @sla("PT4H") @escalate_to("leads") permit(principal, action, resource);"#;
    let (app, key) = setup(policy).await;
    let analyst = app.user("ann", &["reviewer"], &["analysts"]).await;
    let lead = app.user("lou", &["reviewer"], &["leads"]).await;
    let proposal = app.submit(&key, "block_card", json!({}), json!({})).await;
    let proposal_id = id(&proposal.body);
    let task = app.task_of(&analyst, &proposal_id).await;
    assert_eq!(task["due_at"], "2026-11-18T15:06:40.000Z");

    assert_eq!(app.advance(HOUR).await, 0);
    assert_eq!(app.advance(3 * HOUR).await, 1);
    assert!(app.tasks(&analyst).await.is_empty());
    let escalated = app.task_of(&lead, &proposal_id).await;
    assert_eq!(
        (escalated["group"].as_str(), escalated["level"].as_u64()),
        (Some("leads"), Some(1))
    );

    assert_eq!(app.advance(4 * HOUR).await, 1);
    let resolved = app.get(&format!("/v1/proposals/{proposal_id}"), &key).await;
    assert_eq!(resolved.body["status"], "rejected");
    assert_eq!(resolved.body["resolution"]["decided_by"], "timeout");
    let expired = app
        .get(
            &format!("/v1/tasks/{}", task["id"].as_str().unwrap()),
            &lead,
        )
        .await;
    assert_eq!(expired.body["state"], "expired");
    let metrics = app.call(reqwest::Method::GET, "/metrics", None, None).await;
    let text = metrics.body.as_str().unwrap();
    assert!(
        text.contains("loopgate_resolutions_total{outcome=\"rejected\"} 1"),
        "{text}"
    );
}

#[tokio::test]
async fn on_timeout_approve_and_manual_escalation() {
    let policy = r#"@reviewers("analysts") @sla("PT1H") @escalate_to("leads") @on_timeout("approve") permit(principal, action, resource);"#;
    let (app, key) = setup(policy).await;
    let analyst = app.user("ann", &["reviewer"], &["analysts"]).await;
    let lead = app.user("lou", &["reviewer"], &["leads"]).await;
    let proposal = app.submit(&key, "a", json!({}), json!({})).await;
    let task = app.task_of(&analyst, &id(&proposal.body)).await;
    let escalated = app.decide(&analyst, &task, "escalate").await;
    assert_eq!(escalated.status, StatusCode::OK, "{}", escalated.body);
    assert_eq!(escalated.body["task"]["group"], "leads");
    let at_lead = app.task_of(&lead, &id(&proposal.body)).await;
    let nowhere = app.decide(&lead, &at_lead, "escalate").await;
    assert_eq!(nowhere.status, StatusCode::UNPROCESSABLE_ENTITY);
    app.advance(2 * HOUR).await;
    let resolved = app
        .get(&format!("/v1/proposals/{}", id(&proposal.body)), &key)
        .await;
    assert_eq!(resolved.body["status"], "approved");
    assert_eq!(resolved.body["resolution"]["decided_by"], "timeout");
}

#[tokio::test]
async fn deadlines_survive_a_restart_of_the_worker() {
    // The schedule is the `due_at` column: a fresh run of the worker finds it.
    let (app, key) =
        setup(r#"@reviewers("analysts") @sla("PT1M") permit(principal, action, resource);"#).await;
    let proposal = app.submit(&key, "a", json!({}), json!({})).await;
    app.clock.advance(Duration::from_secs(120));
    assert_eq!(loopgate_server::timers::run_due(&app.app).await.unwrap(), 1);
    let resolved = app
        .get(&format!("/v1/proposals/{}", id(&proposal.body)), &key)
        .await;
    assert_eq!(resolved.body["status"], "rejected");
}

#[tokio::test]
async fn kill_switch_rejects_new_proposals_and_keeps_reviews_decidable() {
    let (app, key) = setup(r#"@reviewers("ops") permit(principal, action, resource);"#).await;
    let ann = app.user("ann", &["reviewer"], &["ops"]).await;
    let before = app.submit(&key, "a", json!({}), json!({})).await;
    let paused = app
        .call(
            reqwest::Method::PATCH,
            "/v1/systems/fraud-detector",
            Some(ADMIN_TOKEN),
            Some(json!({"status": "paused"})),
        )
        .await;
    assert_eq!(paused.body["status"], "paused");
    let during = app.submit(&key, "a", json!({}), json!({})).await;
    assert_eq!(during.status, StatusCode::CREATED);
    assert_eq!(during.body["status"], "rejected");
    assert_eq!(during.body["resolution"]["decided_by"], "kill_switch");
    let task = app.task_of(&ann, &id(&before.body)).await;
    assert_eq!(
        app.decide(&ann, &task, "approve").await.body["proposal"]["status"],
        "approved"
    );
    app.call(
        reqwest::Method::PATCH,
        "/v1/systems/fraud-detector",
        Some(ADMIN_TOKEN),
        Some(json!({"status": "active"})),
    )
    .await;
    assert_eq!(
        app.submit(&key, "a", json!({}), json!({})).await.body["status"],
        "pending"
    );
}

#[tokio::test]
async fn on_the_loop_goes_ahead_and_a_later_rejection_overrides() {
    let app = spawn_app().await;
    let key = app.system("content-moderator", "on_the_loop").await;
    app.publish(r#"@reviewers("moderators") permit(principal, action, resource);"#)
        .await;
    let mia = app.user("mia", &["reviewer"], &["moderators"]).await;
    let proposal = app
        .submit(&key, "remove_post", json!({"remove": true}), json!({}))
        .await;
    assert_eq!(proposal.body["status"], "approved");
    assert_eq!(proposal.body["resolution"]["decided_by"], "policy");
    let task = app.task_of(&mia, &id(&proposal.body)).await;
    assert_eq!(task["kind"], "post_hoc");
    let overridden = app.decide(&mia, &task, "reject").await;
    assert_eq!(overridden.body["proposal"]["status"], "approved");
    assert_eq!(overridden.body["proposal"]["overridden"], true);
}

#[tokio::test]
async fn automated_systems_skip_review_except_qa_samples() {
    let app = spawn_app().await;
    let key = app.system("lead-scorer", "automated").await;
    let ops = app.user("oli", &["reviewer"], &["sales-ops"]).await;
    app.publish(r#"@route("allow") @sample("1") @reviewers("sales-ops") permit(principal, action == Action::"sampled", resource);"#).await;
    let unsampled = app
        .submit(&key, "score_lead", json!({"score": 80}), json!({}))
        .await;
    assert_eq!(unsampled.body["status"], "approved");
    assert_eq!(
        unsampled.body["route"], "review",
        "no policy matched: the default route"
    );
    let sampled = app
        .submit(&key, "sampled", json!({"score": 80}), json!({}))
        .await;
    assert_eq!(sampled.body["route"], "allow");
    let tasks = app.tasks(&ops).await;
    assert_eq!(tasks.len(), 1);
    assert_eq!(tasks[0]["kind"], "qa_sample");
    assert_eq!(tasks[0]["proposal_id"], sampled.body["id"]);
}

#[tokio::test]
async fn forbid_denies() {
    let (app, key) = setup(
        r#"
@id("limit") forbid(principal, action == Action::"refund", resource) when { context.amount_minor > 100000 };
@route("allow") permit(principal, action, resource);
"#,
    )
    .await;
    let denied = app
        .submit(&key, "refund", json!({}), json!({"amount_minor": 150000}))
        .await;
    assert_eq!(denied.body["status"], "rejected");
    assert_eq!(denied.body["route"], "deny");
    assert_eq!(denied.body["matched_policies"], json!(["limit"]));
    let allowed = app
        .submit(&key, "refund", json!({}), json!({"amount_minor": 100}))
        .await;
    assert_eq!(allowed.body["status"], "approved");
}

#[tokio::test]
async fn fifty_reviewers_racing_produce_exactly_one_outcome() {
    let (app, key) = setup(r#"@reviewers("crowd") permit(principal, action, resource);"#).await;
    let mut tokens = Vec::new();
    for i in 0..50 {
        tokens.push(app.user(&format!("r{i}"), &["reviewer"], &["crowd"]).await);
    }
    let proposal = app.submit(&key, "a", json!({}), json!({})).await;
    let task = app.task_of(&tokens[0], &id(&proposal.body)).await;
    let mut handles = Vec::new();
    for (i, token) in tokens.iter().enumerate() {
        let (base, token, task) = (app.base.clone(), token.clone(), task.clone());
        handles.push(tokio::spawn(async move {
            let verdict = if i % 2 == 0 { "approve" } else { "reject" };
            let body = json!({"verdict": verdict, "seen_digest": task["digest"]});
            let url = format!("{base}/v1/tasks/{}/decision", task["id"].as_str().unwrap());
            let response = reqwest::Client::new()
                .post(url)
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
                .unwrap();
            response.status()
        }));
    }
    let mut n_ok = 0;
    for handle in handles {
        match handle.await.unwrap() {
            StatusCode::OK => n_ok += 1,
            StatusCode::CONFLICT => (),
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(n_ok, 1);
    let resolved = app
        .get(&format!("/v1/proposals/{}", id(&proposal.body)), &key)
        .await;
    assert_eq!(
        resolved.body["resolution"]["decisions"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn roles_are_checked_on_every_route() {
    let (app, key) = setup(r#"@reviewers("ops") permit(principal, action, resource);"#).await;
    let reviewer = app.user("rev", &["reviewer"], &["ops"]).await;
    let auditor = app.user("aud", &["auditor"], &[]).await;
    let author = app.user("pa", &["policy_author"], &[]).await;
    let outsider = app.user("out", &["reviewer"], &["elsewhere"]).await;
    let proposal = app.submit(&key, "a", json!({}), json!({})).await;
    let task = app.task_of(&reviewer, &id(&proposal.body)).await;
    let task_id = task["id"].as_str().unwrap();
    let system = json!({"id": "x", "name": "x", "risk_tier": "minimal", "oversight": "automated"});
    let policy = json!({"text": "permit(principal, action, resource);"});
    // (token, method, path, body, expected status)
    let cases: Vec<(&str, &str, String, Option<Value>, u16)> = vec![
        (&key, "GET", "/v1/tasks".into(), None, 403),
        (
            &key,
            "POST",
            "/v1/systems".into(),
            Some(system.clone()),
            403,
        ),
        (
            &key,
            "POST",
            format!("/v1/tasks/{task_id}/claim"),
            None,
            403,
        ),
        (
            &reviewer,
            "POST",
            "/v1/systems".into(),
            Some(system.clone()),
            403,
        ),
        (
            &reviewer,
            "POST",
            "/v1/policies".into(),
            Some(policy.clone()),
            403,
        ),
        (&reviewer, "GET", "/v1/users".into(), None, 403),
        (
            &reviewer,
            "POST",
            "/v1/proposals".into(),
            Some(
                json!({"system": "fraud-detector", "action": "a", "subject": {"type": "T", "id": "1"}, "output": {}}),
            ),
            403,
        ),
        (
            &auditor,
            "POST",
            format!("/v1/tasks/{task_id}/decision"),
            Some(json!({"verdict": "approve", "seen_digest": task["digest"]})),
            403,
        ),
        (&auditor, "GET", "/v1/proposals".into(), None, 200),
        (&auditor, "GET", "/v1/tasks".into(), None, 200),
        (&auditor, "GET", "/v1/systems".into(), None, 200),
        (
            &auditor,
            "PATCH",
            "/v1/systems/fraud-detector".into(),
            Some(json!({"status": "paused"})),
            403,
        ),
        (
            &author,
            "POST",
            "/v1/policies/validate".into(),
            Some(policy.clone()),
            200,
        ),
        (&author, "GET", "/v1/proposals".into(), None, 403),
        (&reviewer, "GET", "/v1/proposals".into(), None, 200),
        (ADMIN_TOKEN, "GET", "/v1/users".into(), None, 200),
        (&outsider, "GET", format!("/v1/tasks/{task_id}"), None, 404),
        (&reviewer, "GET", format!("/v1/tasks/{task_id}"), None, 200),
        (&auditor, "GET", format!("/v1/tasks/{task_id}"), None, 200),
    ];
    for (token, method, path, body, expected) in cases {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let response = app.call(method.clone(), &path, Some(token), body).await;
        assert_eq!(
            response.status.as_u16(),
            expected,
            "{method} {path}: {}",
            response.body
        );
    }
}

#[tokio::test]
async fn blind_review_hides_the_models_answer_from_reviewers() {
    let (app, key) =
        setup(r#"@reviewers("ops") @blind("true") permit(principal, action, resource);"#).await;
    let ann = app.user("ann", &["reviewer"], &["ops"]).await;
    let auditor = app.user("aud", &["auditor"], &[]).await;
    let proposal = app
        .submit(&key, "a", json!({"verdict": "spam"}), json!({}))
        .await;
    let path = format!("/v1/proposals/{}", id(&proposal.body));
    let seen = app.get(&path, &ann).await;
    assert_eq!(
        (seen.body["output"].clone(), seen.body["confidence"].clone()),
        (Value::Null, Value::Null)
    );
    assert_eq!(
        app.get(&path, &auditor).await.body["output"],
        json!({"verdict": "spam"})
    );
    let task = app.task_of(&ann, &id(&proposal.body)).await;
    assert_eq!(task["blind"], true);
    let decided = app.decide(&ann, &task, "approve").await;
    assert_eq!(decided.body["proposal"]["status"], "approved");
    assert_eq!(
        app.get(&path, &ann).await.body["output"],
        json!({"verdict": "spam"}),
        "shown once decided"
    );
}

#[tokio::test]
async fn policies_load_from_a_directory_at_start() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("a.cedar"),
        r#"@id("a") @route("allow") permit(principal, action == Action::"go", resource);"#,
    )
    .unwrap();
    std::fs::write(
        dir.path().join("b.cedar"),
        r#"@id("b") forbid(principal, action == Action::"stop", resource);"#,
    )
    .unwrap();
    std::fs::write(dir.path().join("notes.txt"), "not a policy").unwrap();
    let policies = dir.path().to_path_buf();
    let app = crate::harness::spawn_with(move |config| config.policies = Some(policies)).await;
    let key = app.system("fraud-detector", "in_the_loop").await;
    assert_eq!(
        app.submit(&key, "go", json!({}), json!({})).await.body["status"],
        "approved"
    );
    let stopped = app.submit(&key, "stop", json!({}), json!({})).await;
    assert_eq!(
        (
            stopped.body["status"].as_str(),
            stopped.body["matched_policies"].clone()
        ),
        (Some("rejected"), json!(["b"]))
    );
    let versions = app.get("/v1/policies", ADMIN_TOKEN).await;
    assert_eq!(versions.body["items"][0]["created_by"], "loopgate");
}

#[tokio::test]
async fn a_policy_can_require_a_rationale_with_every_decision() {
    let (app, key) =
        setup(r#"@reviewers("ops") @rationale("required") permit(principal, action, resource);"#)
            .await;
    let reviewer = app.user("rev", &["reviewer"], &["ops"]).await;
    let proposal = app.submit(&key, "a", json!({}), json!({})).await;
    let task = app.task_of(&reviewer, &id(&proposal.body)).await;
    assert_eq!(task["rationale_required"], true);
    let path = format!("/v1/tasks/{}/decision", task["id"].as_str().unwrap());
    for rationale in [json!(null), json!("  ")] {
        let body =
            json!({"verdict": "approve", "rationale": rationale, "seen_digest": task["digest"]});
        let refused = app.post(&path, &reviewer, body).await;
        assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(refused.body["code"], "validation_failed");
        assert_eq!(
            refused.body["detail"],
            "this task's policy requires a `rationale` with every decision"
        );
    }
    let decided = app.decide(&reviewer, &task, "approve").await;
    assert_eq!(decided.status, StatusCode::OK, "{}", decided.body);
}

#[tokio::test]
async fn a_batch_decides_each_item_on_its_own() {
    let app = spawn_app().await;
    let (key, ann) = app.ops_review().await;
    let bob = app.user("bob", &["reviewer"], &["ops"]).await;
    let outsider = app.user("olga", &["reviewer"], &["legal"]).await;
    let mut ids = Vec::new();
    for n in 0..4 {
        let submitted = app
            .submit(&key, "block_card", json!({"n": n}), json!({}))
            .await;
        ids.push(submitted.body["id"].as_str().unwrap().to_owned());
    }
    let tasks: Vec<Value> = {
        let mut tasks = Vec::new();
        for id in &ids {
            tasks.push(app.task_of(&ann, id).await);
        }
        tasks
    };
    // Bob holds the last one.
    let claim = app
        .post(
            &format!("/v1/tasks/{}/claim", tasks[3]["id"].as_str().unwrap()),
            &bob,
            json!({}),
        )
        .await;
    assert_eq!(claim.status, StatusCode::OK, "{}", claim.body);

    let item = |task: &Value, verdict: &str| json!({"task_id": task["id"], "verdict": verdict, "rationale": "seen together", "seen_digest": task["digest"]});
    let stale = json!({"task_id": tasks[2]["id"], "verdict": "approve", "seen_digest": format!("sha256:{}", "0".repeat(64))});
    let unknown = json!({"task_id": "tsk_01JD0000000000000000000000", "verdict": "approve", "seen_digest": tasks[0]["digest"]});
    let body = json!({"items": [
        item(&tasks[0], "approve"),
        item(&tasks[1], "reject"),
        stale,
        item(&tasks[3], "approve"),
        unknown,
        item(&tasks[0], "approve"),
    ]});
    let batch = app.post("/v1/tasks/decisions", &ann, body.clone()).await;
    assert_eq!(batch.status, StatusCode::OK, "{}", batch.body);
    let items = batch.body["items"].as_array().unwrap();
    let statuses: Vec<u64> = items
        .iter()
        .map(|it| it["status"].as_u64().unwrap())
        .collect();
    // approve, reject, stale digest, lease held by bob, unknown task, a
    // second decision on the first (already decided).
    assert_eq!(
        statuses,
        vec![200, 200, 409, 409, 404, 409],
        "{}",
        batch.body
    );
    assert_eq!(items[0]["decision"]["proposal"]["status"], "approved");
    assert_eq!(items[1]["decision"]["proposal"]["status"], "rejected");
    assert_eq!(items[2]["error"]["code"], "stale_digest");
    assert_eq!(items[3]["error"]["code"], "lease_held");
    assert!(items[2].get("decision").is_none());
    for (n, expected) in [
        (0, "approved"),
        (1, "rejected"),
        (2, "pending"),
        (3, "pending"),
    ] {
        let read = app
            .get(&format!("/v1/proposals/{}", ids[n]), ADMIN_TOKEN)
            .await;
        assert_eq!(read.body["status"], expected, "{n}");
    }

    // A reviewer outside the group gets a refusal per item, not a batch refusal.
    let outside = app
        .post(
            "/v1/tasks/decisions",
            &outsider,
            json!({"items": [item(&tasks[2], "approve")]}),
        )
        .await;
    assert_eq!(outside.status, StatusCode::OK);
    assert_eq!(outside.body["items"][0]["status"], 403);
    // A system key is no reviewer; empty and oversized batches are refused whole.
    let system = app.post("/v1/tasks/decisions", &key, body).await;
    assert_eq!(system.status, StatusCode::FORBIDDEN);
    let empty = app
        .post("/v1/tasks/decisions", &ann, json!({"items": []}))
        .await;
    assert_eq!(empty.status, StatusCode::UNPROCESSABLE_ENTITY);
    let many: Vec<Value> = (0..101).map(|_| item(&tasks[2], "approve")).collect();
    let oversized = app
        .post("/v1/tasks/decisions", &ann, json!({"items": many}))
        .await;
    assert_eq!(oversized.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        oversized.body["detail"]
            .as_str()
            .unwrap()
            .contains("1 to 100")
    );
}

#[tokio::test]
async fn a_proposals_comment_thread_is_for_its_reviewers_and_auditors() {
    let app = spawn_app().await;
    let (key, ann) = app.ops_review().await;
    let outsider = app.user("olga", &["reviewer"], &["legal"]).await;
    let auditor = app.user("aud", &["auditor"], &[]).await;
    let submitted = app
        .submit(&key, "block_card", json!({"card": "4111"}), json!({}))
        .await;
    let id = submitted.body["id"].as_str().unwrap().to_owned();
    let path = format!("/v1/proposals/{id}/comments");

    let added = app
        .post(
            &path,
            &ann,
            json!({"body": "the merchant is on the watch list"}),
        )
        .await;
    assert_eq!(added.status, StatusCode::CREATED, "{}", added.body);
    assert!(added.body["id"].as_str().unwrap().starts_with("cmt_"));
    assert_eq!(added.body["author"], "user:ann");
    let second = app
        .post(&path, ADMIN_TOKEN, json!({"body": "agreed"}))
        .await;
    assert_eq!(second.status, StatusCode::CREATED, "{}", second.body);

    let read = app.get(&path, &auditor).await;
    assert_eq!(read.status, StatusCode::OK, "{}", read.body);
    let bodies: Vec<&str> = read.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["body"].as_str().unwrap())
        .collect();
    assert_eq!(bodies, ["the merchant is on the watch list", "agreed"]);

    // Not theirs to read or write.
    assert_eq!(
        app.get(&path, &outsider).await.status,
        StatusCode::NOT_FOUND
    );
    let outside = app.post(&path, &outsider, json!({"body": "hi"})).await;
    assert_eq!(outside.status, StatusCode::NOT_FOUND);
    assert_eq!(app.get(&path, &key).await.status, StatusCode::FORBIDDEN);
    let auditor_writes = app.post(&path, &auditor, json!({"body": "hi"})).await;
    assert_eq!(auditor_writes.status, StatusCode::FORBIDDEN);
    // Bounded.
    let empty = app.post(&path, &ann, json!({"body": "  "})).await;
    assert_eq!(empty.status, StatusCode::UNPROCESSABLE_ENTITY);
    let long = app
        .post(&path, &ann, json!({"body": "x".repeat(10_001)}))
        .await;
    assert_eq!(long.status, StatusCode::UNPROCESSABLE_ENTITY);

    // The audit log has the comment's hash, never its words.
    let audit = app
        .get(&format!("/v1/proposals/{id}/audit"), ADMIN_TOKEN)
        .await;
    let text = audit.body.to_string();
    assert!(text.contains("comment.added"), "{text}");
    assert!(!text.contains("watch list"), "{text}");

    // Erasing the proposal's payload erases the words.
    let task = app.task_of(&ann, &id).await;
    assert_eq!(
        app.decide(&ann, &task, "approve").await.status,
        StatusCode::OK
    );
    let erased = app
        .post(
            &format!("/v1/proposals/{id}/erase"),
            ADMIN_TOKEN,
            json!({"reason": "asked"}),
        )
        .await;
    assert!(erased.status.is_success(), "{}", erased.body);
    let after = app.get(&path, ADMIN_TOKEN).await;
    assert!(after.body["items"][0]["body"].is_null(), "{}", after.body);
    assert_eq!(after.body["items"][0]["author"], "user:ann");
}
