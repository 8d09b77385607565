//! Assignment and delegation: each group mode (pool, round robin, least
//! loaded), "mine", the reservation, the return to the pool on the
//! injected clock, the next approver of a quorum, escalation into an
//! assigning group, away members and their delegates (tasks and
//! notifications), and the audit trail of each change.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::harness::{ADMIN_TOKEN, Response, TestApp, assert_unprocessable, spawn_app};

const MINUTE: Duration = Duration::from_secs(60);

async fn set_group(app: &TestApp, group: &str, body: Value) -> Response {
    app.call(
        Method::PUT,
        &format!("/v1/groups/{group}"),
        Some(ADMIN_TOKEN),
        Some(body),
    )
    .await
}

/// `fraud-detector` whose proposals go to `ops` under `policy`, and the
/// members `ann`, `bob` and `carol` of `ops` (their tokens, by name order).
async fn setup(policy: &str, assignment: &str) -> (TestApp, String, [String; 3]) {
    let app = spawn_app().await;
    let key = app.system("fraud-detector", "in_the_loop").await;
    let published = app.publish(policy).await;
    assert_eq!(published.status, StatusCode::CREATED, "{}", published.body);
    let ann = app.user("ann", &["reviewer"], &["ops"]).await;
    let bob = app.user("bob", &["reviewer"], &["ops"]).await;
    let carol = app.user("carol", &["reviewer"], &["ops"]).await;
    let set = set_group(&app, "ops", json!({"assignment": assignment})).await;
    assert_eq!(set.status, StatusCode::OK, "{}", set.body);
    (app, key, [ann, bob, carol])
}

const OPS: &str = r#"@reviewers("ops") permit(principal, action, resource);"#;

/// Submits a proposal; its task as the admin sees it.
async fn submit(app: &TestApp, key: &str) -> Value {
    let submitted = app
        .submit(key, "flag", json!({"fraud": true}), json!({}))
        .await;
    assert_eq!(submitted.status, StatusCode::CREATED, "{}", submitted.body);
    app.task_of(ADMIN_TOKEN, submitted.body["id"].as_str().unwrap())
        .await
}

async fn task(app: &TestApp, id: &Value) -> Value {
    let got = app
        .get(&format!("/v1/tasks/{}", id.as_str().unwrap()), ADMIN_TOKEN)
        .await;
    assert_eq!(got.status, StatusCode::OK, "{}", got.body);
    got.body
}

async fn mine(app: &TestApp, token: &str) -> Vec<String> {
    let page = app.get("/v1/tasks?mine=true", token).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    page.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_owned())
        .collect()
}

async fn claim(app: &TestApp, token: &str, task: &Value) -> Response {
    let path = format!("/v1/tasks/{}/claim", task["id"].as_str().unwrap());
    app.post(&path, token, json!({})).await
}

/// Every event row of a kind, as `data` values.
async fn events(app: &TestApp, kind: &str) -> Vec<Value> {
    app.app.store.settle_log().await.unwrap();
    let events = app.app.store.events_after(0, 10_000).await.unwrap();
    events
        .into_iter()
        .filter(|e| e.kind.as_str() == kind)
        .map(|e| e.data.to_value().unwrap())
        .collect()
}

#[tokio::test]
async fn round_robin_reserves_each_task_for_one_member_until_it_returns() {
    let (app, key, [ann, bob, carol]) = setup(OPS, "round_robin").await;
    let mut tasks = Vec::new();
    for _ in 0..4 {
        tasks.push(submit(&app, &key).await);
    }
    let assignees: Vec<&str> = tasks
        .iter()
        .map(|t| t["assignee"].as_str().unwrap())
        .collect();
    assert_eq!(assignees, ["ann", "bob", "carol", "ann"]);
    assert!(tasks[0]["return_at"].is_string(), "{}", tasks[0]);
    // `task.created` names the assignee.
    let created = events(&app, "task.created").await;
    assert_eq!(created[1]["assignee"], "bob", "{created:?}");

    // "Mine": what is reserved for me (and what I claimed).
    assert_eq!(
        mine(&app, &ann).await,
        [
            tasks[0]["id"].as_str().unwrap(),
            tasks[3]["id"].as_str().unwrap()
        ]
    );
    // Reserved: another member can neither claim nor decide it.
    let taken = claim(&app, &bob, &tasks[0]).await;
    assert_eq!(taken.status, StatusCode::CONFLICT, "{}", taken.body);
    assert_eq!(taken.body["code"], "task_assigned");
    assert_eq!(taken.body["assignee"], "ann");
    let decided = app.decide(&carol, &tasks[0], "approve").await;
    assert_eq!(decided.body["code"], "task_assigned", "{}", decided.body);

    // Opening (claiming) makes it hers for good; bob's stays unopened.
    let opened = claim(&app, &ann, &tasks[0]).await;
    assert_eq!(opened.status, StatusCode::OK, "{}", opened.body);
    assert_eq!(opened.body["assignee"], "ann");
    assert!(opened.body["return_at"].is_null(), "{}", opened.body);
    app.advance(29 * MINUTE).await;
    assert_eq!(task(&app, &tasks[1]["id"]).await["assignee"], "bob");
    app.advance(MINUTE).await;
    let returned = task(&app, &tasks[1]["id"]).await;
    assert!(returned["assignee"].is_null(), "{returned}");
    let events_returned = events(&app, "task.returned").await;
    assert_eq!(
        events_returned.len(),
        3,
        "bob's, carol's and ann's second: {events_returned:?}"
    );
    assert_eq!(events_returned[0]["from"], "bob");
    assert_eq!(events_returned[0]["reason"], "not_opened");
    // Back in the pool: anyone in the group takes it.
    assert_eq!(claim(&app, &carol, &tasks[1]).await.status, StatusCode::OK);
    // Ann's opened task is still hers (her lease lapsed; the reservation did not).
    assert_eq!(task(&app, &tasks[0]["id"]).await["assignee"], "ann");
    assert_eq!(
        claim(&app, &bob, &tasks[0]).await.body["code"],
        "task_assigned"
    );

    // An assignee who releases gives the task back.
    let next = submit(&app, &key).await;
    assert_eq!(next["assignee"], "bob", "after ann's turn");
    assert_eq!(claim(&app, &bob, &next).await.status, StatusCode::OK);
    let path = format!("/v1/tasks/{}/release", next["id"].as_str().unwrap());
    let released = app.post(&path, &bob, json!({})).await;
    assert_eq!(released.status, StatusCode::OK, "{}", released.body);
    assert!(released.body["assignee"].is_null());
    let returned = events(&app, "task.returned").await;
    assert_eq!(returned[3]["reason"], "released", "{returned:?}");
    // The assignee decides their own.
    let decided = app.decide(&ann, &tasks[0], "approve").await;
    assert_eq!(decided.status, StatusCode::OK, "{}", decided.body);
}

#[tokio::test]
async fn least_loaded_goes_to_the_member_with_the_fewest_open_tasks() {
    let (app, key, [ann, bob, _carol]) = setup(OPS, "pool").await;
    // In the pool, ann claims two and bob one.
    let pooled: Vec<Value> = [
        submit(&app, &key).await,
        submit(&app, &key).await,
        submit(&app, &key).await,
    ]
    .into();
    assert!(pooled[0]["assignee"].is_null(), "the pool assigns nobody");
    claim(&app, &ann, &pooled[0]).await;
    claim(&app, &ann, &pooled[1]).await;
    claim(&app, &bob, &pooled[2]).await;
    let set = set_group(
        &app,
        "ops",
        json!({"assignment": "least_loaded", "return_after": "PT10M"}),
    )
    .await;
    assert_eq!(set.body["assignment"], "least_loaded", "{}", set.body);
    assert_eq!(set.body["return_after"], "10m");
    assert_eq!(set.body["members"], json!(["ann", "bob", "carol"]));
    let picks = [
        submit(&app, &key).await["assignee"].clone(),
        submit(&app, &key).await["assignee"].clone(),
        submit(&app, &key).await["assignee"].clone(),
    ];
    // carol (0), then bob (1) and carol (1) tie: by name.
    assert_eq!(picks, [json!("carol"), json!("bob"), json!("carol")]);
    // Unopened for 10 minutes: back to the pool.
    app.advance(10 * MINUTE).await;
    assert_eq!(events(&app, "task.returned").await.len(), 3);
    let audited = events(&app, "group.updated").await;
    assert_eq!(audited.len(), 2);
    assert_eq!(audited[1]["return_after_ms"], 600_000);
}

#[tokio::test]
async fn a_quorum_goes_to_the_next_approver_and_escalation_assigns_in_the_new_group() {
    let policy = r#"@reviewers("ops") @approvals("2") @sla("PT1H") @escalate_to("leads")
                    permit(principal, action, resource);"#;
    let (app, key, [ann, _bob, _carol]) = setup(policy, "round_robin").await;
    let first = submit(&app, &key).await;
    assert_eq!(first["assignee"], "ann");
    let decided = app.decide(&ann, &first, "approve").await;
    assert_eq!(decided.status, StatusCode::OK, "{}", decided.body);
    // Not settled: the next member who has not decided gets it.
    assert_eq!(decided.body["task"]["assignee"], "bob", "{}", decided.body);
    let assigned = events(&app, "task.assigned").await;
    assert_eq!(assigned.len(), 1);
    assert_eq!(assigned[0]["assignee"], "bob");

    // Escalated into `leads`, which assigns to the least loaded lead.
    let lea = app.user("lea", &["reviewer"], &["leads"]).await;
    app.user("lou", &["reviewer"], &["leads"]).await;
    set_group(&app, "leads", json!({"assignment": "least_loaded"})).await;
    app.advance(60 * MINUTE).await;
    let escalated = task(&app, &first["id"]).await;
    assert_eq!(escalated["group"], "leads");
    assert_eq!(escalated["assignee"], "lea", "{escalated}");
    assert_eq!(mine(&app, &lea).await, [first["id"].as_str().unwrap()]);
    let event = events(&app, "task.escalated").await;
    assert_eq!(event[0]["assignee"], "lea");
}

#[tokio::test]
async fn an_away_member_s_tasks_go_to_their_delegate() {
    let (app, key, [ann, bob, _carol]) = setup(OPS, "round_robin").await;
    let ann_id = app.user_id("ann").await;
    // Users set their own absence and stand-in.
    let away = app
        .call(
            Method::PATCH,
            &format!("/v1/users/{ann_id}"),
            Some(&ann),
            Some(json!({"away_until": "2026-11-20T00:00:00Z", "delegate": "carol"})),
        )
        .await;
    assert_eq!(away.status, StatusCode::OK, "{}", away.body);
    assert_eq!(away.body["delegate"], "carol");
    assert_eq!(away.body["away_until"], "2026-11-20T00:00:00.000Z");
    let picks = [
        submit(&app, &key).await,
        submit(&app, &key).await,
        submit(&app, &key).await,
    ];
    // Ann's turn goes to carol; then bob's and carol's own.
    let shown: Vec<(Value, Value)> = picks
        .iter()
        .map(|t| (t["assignee"].clone(), t["delegated_from"].clone()))
        .collect();
    assert_eq!(
        shown,
        [
            (json!("carol"), json!("ann")),
            (json!("bob"), Value::Null),
            (json!("carol"), Value::Null)
        ]
    );
    let created = events(&app, "task.created").await;
    assert_eq!(created[0]["delegated_from"], "ann");
    let set = events(&app, "user.away_set").await;
    assert_eq!(set[0]["delegate"], "carol", "{set:?}");

    // A delegate must be another user who can sign in; nobody else may set it.
    let patch = |token: String, body: Value| {
        let (app, path) = (&app, format!("/v1/users/{ann_id}"));
        async move {
            app.call(Method::PATCH, &path, Some(&token), Some(body))
                .await
        }
    };
    let refusals = [
        (
            ann.clone(),
            json!({"delegate": "nobody"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            ann.clone(),
            json!({"delegate": "ann"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            ann.clone(),
            json!({"away_until": "next week"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            ann.clone(),
            json!({"away_until": "2028-01-01T00:00:00Z"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            bob.clone(),
            json!({"delegate": "bob"}),
            StatusCode::FORBIDDEN,
        ),
        (
            ann.clone(),
            json!({"delegate": "x".repeat(100_000)}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            ann.clone(),
            json!({"away_until": "9".repeat(100_000)}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
    ];
    for (token, body, status) in refusals {
        let refused = patch(token, body.clone()).await;
        assert_eq!(refused.status, status, "{body}: {}", refused.body);
        assert_eq!(refused.content_type, "application/problem+json");
        // The refusal never echoes what it refused at length.
        assert!(refused.body.to_string().len() < 2_000, "{}", refused.body);
    }

    // Back (an empty `away_until`): her turn is hers again.
    let back = patch(ann.clone(), json!({"away_until": ""})).await;
    assert_eq!(back.status, StatusCode::OK, "{}", back.body);
    assert!(back.body["away_until"].is_null());
    assert_eq!(submit(&app, &key).await["assignee"], "ann");
}

#[tokio::test]
async fn groups_are_listed_and_only_admins_change_them() {
    let (app, _key, [ann, _bob, _carol]) = setup(OPS, "round_robin").await;
    app.user("lea", &["reviewer"], &["leads"]).await;
    let all = app.get("/v1/groups", ADMIN_TOKEN).await;
    assert_eq!(all.status, StatusCode::OK, "{}", all.body);
    let names: Vec<&str> = all.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["group"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["leads", "ops"]);
    assert_eq!(all.body["items"][0]["assignment"], "pool");
    assert_eq!(all.body["items"][0]["return_after"], "30m");
    // A reviewer sees their own groups.
    let own = app.get("/v1/groups", &ann).await;
    assert_eq!(own.body["items"].as_array().unwrap().len(), 1);
    assert_eq!(
        app.get("/v1/groups/leads", &ann).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.get("/v1/groups/ops", &ann).await.body["assignment"],
        "round_robin"
    );
    let forbidden = app
        .call(
            Method::PUT,
            "/v1/groups/ops",
            Some(&ann),
            Some(json!({"assignment": "pool"})),
        )
        .await;
    assert_eq!(forbidden.status, StatusCode::FORBIDDEN);
    for body in [
        json!({"assignment": "random"}),
        json!({"assignment": "pool", "return_after": "10s"}),
        json!({"assignment": "pool", "return_after": "P30D"}),
        json!({"assignment": "pool", "return_after": "soon"}),
        json!({"assignment": "pool", "extra": 1}),
        json!({"assignment": 7}),
        json!({"assignment": "pool", "return_after": "9".repeat(100_000)}),
    ] {
        let refused = set_group(&app, "ops", body.clone()).await;
        assert_unprocessable(&refused, &body);
        assert!(refused.body.to_string().len() < 2_000, "{}", refused.body);
    }
    let bad_name = set_group(&app, "Not%20A%20Group", json!({"assignment": "pool"})).await;
    assert_eq!(bad_name.status, StatusCode::UNPROCESSABLE_ENTITY);
    let long = format!("/v1/groups/{}", "a".repeat(10_000));
    let long = app
        .call(
            Method::PUT,
            &long,
            Some(ADMIN_TOKEN),
            Some(json!({"assignment": "pool"})),
        )
        .await;
    assert_eq!(long.status, StatusCode::UNPROCESSABLE_ENTITY);
    // And the server still serves.
    assert_eq!(
        app.get("/v1/groups", ADMIN_TOKEN).await.status,
        StatusCode::OK
    );
}
