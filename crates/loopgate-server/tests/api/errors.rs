//! Every error code as a snapshot, and bad input that must never be a 500.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::harness::{ADMIN_TOKEN, proposal, spawn_app, spawn_with};

#[tokio::test]
async fn error_bodies() {
    let app = spawn_app().await;
    let key = app.system("fraud-detector", "in_the_loop").await;
    let reviewer = app.user("rev", &["reviewer"], &["ops"]).await;

    let none = app.call(Method::GET, "/v1/tasks", None, None).await;
    assert_eq!(none.status, StatusCode::UNAUTHORIZED);
    assert_eq!(none.content_type, "application/problem+json");
    insta::assert_json_snapshot!("unauthenticated", none.body);
    let unknown = app.get("/v1/tasks", "lgt_nope").await;
    insta::assert_json_snapshot!("unauthenticated_unknown_token", unknown.body);

    let forbidden = app
        .post(
            "/v1/systems",
            &reviewer,
            json!({"id": "x", "name": "x", "risk_tier": "minimal", "oversight": "automated"}),
        )
        .await;
    insta::assert_json_snapshot!("forbidden", forbidden.body);

    let route = app.get("/v1/nothing-here", &reviewer).await;
    insta::assert_json_snapshot!("not_found_route", route.body);
    let missing = app
        .get("/v1/proposals/prp_01J000000000000000000000", &reviewer)
        .await;
    insta::assert_json_snapshot!("not_found_proposal", missing.body);
    let bad_id = app.get("/v1/proposals/..%2F..%2Fetc", &reviewer).await;
    assert_eq!(bad_id.status, StatusCode::NOT_FOUND);

    let exists = app.post("/v1/systems", ADMIN_TOKEN, json!({"id": "fraud-detector", "name": "x", "risk_tier": "minimal", "oversight": "automated"})).await;
    insta::assert_json_snapshot!("already_exists", exists.body);

    let invalid = app
        .post(
            "/v1/policies",
            ADMIN_TOKEN,
            json!({"text": "permit(principal, action resource);"}),
        )
        .await;
    assert_eq!(invalid.status, StatusCode::UNPROCESSABLE_ENTITY);
    insta::assert_json_snapshot!("policy_invalid_syntax", invalid.body);
    let annotation = app
        .post(
            "/v1/policies",
            ADMIN_TOKEN,
            json!({"text": "@id(\"p\") @approvals(\"many\") permit(principal, action, resource);"}),
        )
        .await;
    insta::assert_json_snapshot!("policy_invalid_annotation", annotation.body);
    // The live version is untouched.
    let versions = app.get("/v1/policies", ADMIN_TOKEN).await;
    assert_eq!(versions.body["items"].as_array().unwrap().len(), 0);

    let malformed = app
        .raw(
            Method::POST,
            "/v1/proposals",
            &key,
            b"{\"action\": ".to_vec(),
        )
        .await;
    insta::assert_json_snapshot!("malformed_json", malformed.body);
    let wrong_type = app
        .post(
            "/v1/proposals",
            &key,
            json!({"action": 5, "subject": {"type": "T", "id": "1"}, "output": {}}),
        )
        .await;
    insta::assert_json_snapshot!("wrong_type", wrong_type.body);
    let unknown_field = app
        .post(
            "/v1/proposals",
            &key,
            json!({"action": "a", "subject": {"type": "T", "id": "1"}, "output": {}, "outptu": {}}),
        )
        .await;
    insta::assert_json_snapshot!("unknown_field", unknown_field.body);
    let confidence = app.post("/v1/proposals", &key, json!({"action": "a", "subject": {"type": "T", "id": "1"}, "output": {}, "confidence": 1.5})).await;
    insta::assert_json_snapshot!("confidence_out_of_range", confidence.body);
    let cursor = app.get("/v1/proposals?cursor=zzz", &reviewer).await;
    insta::assert_json_snapshot!("bad_cursor", cursor.body);
    // Formats are what `openapi.json` says, no more and no less.
    for (path, status) in [
        (
            "/v1/proposals?cursor=c%2B1",
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        ("/v1/proposals?cursor=c12", StatusCode::OK),
        ("/v1/proposals?limit=0", StatusCode::UNPROCESSABLE_ENTITY),
        (
            "/v1/proposals/prp_x?wait=1h",
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "/v1/proposals/prp_x?wait=",
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        ("/v1/proposals/prp_x?wait=999999999m", StatusCode::NOT_FOUND),
        ("/v1/proposals/prp_x?wait=PT1.5S", StatusCode::NOT_FOUND),
    ] {
        let response = app.get(path, &reviewer).await;
        assert_eq!(response.status, status, "{path}: {}", response.body);
    }
    // A body is an object: an array is not read into fields by position.
    let array = app
        .raw(
            Method::POST,
            "/v1/users",
            ADMIN_TOKEN,
            b"[\"x\", []]".to_vec(),
        )
        .await;
    assert_eq!(
        array.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        array.body
    );
    let not_a_task = app.get("/v1/notifications?task=null", ADMIN_TOKEN).await;
    assert_eq!(
        not_a_task.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        not_a_task.body
    );
    let wait = app.get("/v1/proposals?wait=forever", &reviewer).await;
    assert_eq!(wait.status, StatusCode::UNPROCESSABLE_ENTITY);
    let state = app.get("/v1/tasks?state=sleeping", &reviewer).await;
    assert_eq!(state.status, StatusCode::UNPROCESSABLE_ENTITY);
    let digest = app
        .post(
            "/v1/tasks/tsk_1/decision",
            &reviewer,
            json!({"verdict": "approve", "seen_digest": "md5:x"}),
        )
        .await;
    assert_eq!(digest.status, StatusCode::UNPROCESSABLE_ENTITY);
    let method = app
        .call(Method::DELETE, "/v1/proposals", Some(&reviewer), None)
        .await;
    assert_eq!(method.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(method.content_type, "application/problem+json");
    // The body says what the status says.
    assert_eq!(
        (
            &method.body["status"],
            &method.body["code"],
            &method.body["type"]
        ),
        (
            &json!(405),
            &json!("method_not_allowed"),
            &json!("/docs/errors#method_not_allowed")
        )
    );
}

#[tokio::test]
async fn oversized_and_too_deep_bodies_are_refused_before_parsing() {
    let app = spawn_with(|config| config.max_body_bytes = 4096).await;
    let key = app.system("fraud-detector", "in_the_loop").await;
    let mut big = proposal("a", json!({"blob": "x".repeat(8192)}), json!({}));
    big["idempotency_key"] = json!("big");
    let too_large = app.post("/v1/proposals", &key, big).await;
    assert_eq!(too_large.status, StatusCode::PAYLOAD_TOO_LARGE);
    insta::assert_json_snapshot!("payload_too_large", too_large.body);

    let deep = format!(
        "{{\"action\": \"a\", \"subject\": {{\"type\": \"T\", \"id\": \"1\"}}, \"output\": {}1{}}}",
        "[".repeat(100),
        "]".repeat(100)
    );
    let too_deep = app
        .raw(Method::POST, "/v1/proposals", &key, deep.into_bytes())
        .await;
    insta::assert_json_snapshot!("too_deep", too_deep.body);
    // Nothing was written.
    let listed = app.get("/v1/proposals", ADMIN_TOKEN).await;
    assert_eq!(listed.body["items"].as_array().unwrap().len(), 0);
}

/// PostgreSQL's text cannot hold U+0000: a subject attribute holding it
/// used to fail the decision (500) on that store, and with it the writer's
/// health, while SQLite took it. Both stores refuse it at the door.
#[tokio::test]
async fn text_holding_nul_is_refused_and_the_server_still_serves() {
    let app = spawn_app().await;
    let key = app.system("fraud-detector", "in_the_loop").await;
    let mut sent = proposal("a", json!({}), json!({}));
    sent["subject"]["attributes"]["country"] = json!("D\u{0}E");
    let refused = app.post("/v1/proposals", &key, sent).await;
    assert_eq!(
        refused.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        refused.body
    );
    assert_eq!(refused.body["code"], "validation_failed");
    assert_eq!(refused.body["detail"], "text must not contain U+0000 (NUL)");

    // A decision's rationale, and a filter in the query string.
    let submitted = app.submit(&key, "a", json!({}), json!({})).await;
    assert_eq!(submitted.status, StatusCode::CREATED, "{}", submitted.body);
    let reviewer = app.user("rita", &["reviewer"], &["reviewers"]).await;
    let task = app
        .task_of(&reviewer, submitted.body["id"].as_str().unwrap())
        .await;
    let decision =
        json!({"verdict": "approve", "rationale": "fine\u{0}", "seen_digest": task["digest"]});
    let path = format!("/v1/tasks/{}/decision", task["id"].as_str().unwrap());
    let refused = app.post(&path, &reviewer, decision).await;
    assert_eq!(
        refused.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        refused.body
    );
    for query in [
        "/v1/proposals?action=a%00",
        "/v1/tasks?group=reviewers%00",
        "/v1/groups/reviewers%00",
        "/v1/groups/reviewers%00/notifications",
    ] {
        let refused = app.get(query, ADMIN_TOKEN).await;
        assert_eq!(
            refused.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{query}: {}",
            refused.body
        );
        assert_eq!(
            refused.body["detail"],
            "the address: text must not contain U+0000 (NUL)"
        );
    }
    // `%2500` is the text `%00`, no NUL: an action of that name, none stored.
    let listed = app.get("/v1/proposals?action=a%2500", ADMIN_TOKEN).await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.body);

    // The document says it: every string a request may carry that is not
    // narrowed otherwise has a pattern without NUL.
    let document = app.get("/openapi.json", ADMIN_TOKEN).await.body;
    let no_nul = json!("^[^\\x00]*$");
    assert_eq!(
        document["components"]["schemas"]["Subject"]["properties"]["id"]["pattern"],
        no_nul
    );
    let mut unpatterned = Vec::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            for parameter in operation["parameters"].as_array().into_iter().flatten() {
                let schema = &parameter["schema"];
                if schema["type"] == "string"
                    && schema.get("pattern").is_none()
                    && schema.get("enum").is_none()
                {
                    unpatterned.push(format!("{method} {path} {}", parameter["name"]));
                }
            }
        }
    }
    assert!(unpatterned.is_empty(), "{unpatterned:?}");

    // Nothing failed inside: the server is ready, and the task is decided.
    let ready = app.call(Method::GET, "/readyz", None, None).await;
    assert_eq!(ready.status, StatusCode::OK, "{}", ready.body);
    let decided = app.decide(&reviewer, &task, "approve").await;
    assert_eq!(decided.status, StatusCode::OK, "{}", decided.body);
    let listed = app.get("/v1/proposals", ADMIN_TOKEN).await;
    assert_eq!(listed.body["items"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn health_metrics_and_openapi() {
    let app = spawn_app().await;
    let health = app.call(Method::GET, "/healthz", None, None).await;
    assert_eq!(health.status, StatusCode::OK);
    let ready = app.call(Method::GET, "/readyz", None, None).await;
    assert_eq!(ready.status, StatusCode::OK);
    let key = app.system("fraud-detector", "in_the_loop").await;
    app.submit(&key, "a", json!({}), json!({})).await;
    let metrics = app.call(Method::GET, "/metrics", None, None).await;
    let text = metrics.body.as_str().unwrap();
    assert!(
        text.contains("loopgate_proposals_total{route=\"review\",status=\"pending\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("loopgate_queue_depth{group=\"reviewers\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("loopgate_decision_duration_seconds_bucket"),
        "{text}"
    );
    // Every answered write is timed: its wait for a writer, and its run.
    for name in [
        "loopgate_db_write_wait_seconds",
        "loopgate_db_write_seconds",
    ] {
        let count = |suffix: &str| -> u64 {
            let prefix = format!("{name}{suffix} ");
            let line = text.lines().find(|line| line.starts_with(&prefix));
            line.and_then(|line| line[prefix.len()..].parse().ok())
                .unwrap_or_else(|| panic!("no {prefix}in {text}"))
        };
        assert!(count("_count") >= 1, "{text}");
        assert_eq!(count("_bucket{le=\"+Inf\"}"), count("_count"), "{text}");
        assert!(count("_bucket{le=\"1\"}") <= count("_count"), "{text}");
    }

    let openapi = app.call(Method::GET, "/openapi.json", None, None).await;
    assert_eq!(openapi.body["openapi"], "3.1.0");
    // Generated clients name their methods by operation id: each is unique.
    let mut ids: Vec<&str> = openapi.body["paths"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|item| item.as_object().unwrap().values())
        .map(|operation| operation["operationId"].as_str().unwrap())
        .collect();
    let all = ids.len();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), all, "operation ids repeat: {ids:?}");
    insta::assert_json_snapshot!("openapi", openapi.body);
}

/// A problem's `type` leads to its section of the errors reference, which
/// the server serves itself, without a credential; so it does the rest of
/// the reference, and a name it does not know is a plain 404 page.
#[tokio::test]
async fn problem_types_resolve_on_the_server_that_answered() {
    let app = spawn_app().await;
    let none = app.call(Method::GET, "/v1/tasks", None, None).await;
    let link = none.body["type"].as_str().unwrap().to_owned();
    let (page, anchor) = link.split_once('#').unwrap();
    assert_eq!((page, anchor), ("/docs/errors", "unauthenticated"));
    let fetch = |path: String| {
        let http = app.http.clone();
        let url = format!("{}{path}", app.base);
        async move {
            let response = http.get(url).send().await.unwrap();
            let status = response.status();
            let kind = response.headers()["content-type"]
                .to_str()
                .unwrap()
                .to_owned();
            (status, kind, response.text().await.unwrap())
        }
    };
    let (status, kind, html) = fetch(page.to_owned()).await;
    assert_eq!(
        (status, kind.as_str()),
        (StatusCode::OK, "text/html; charset=utf-8")
    );
    assert!(html.contains(&format!("id=\"{anchor}\"")), "{html}");
    for path in [
        "/docs",
        "/docs/api",
        "/docs/policies.md",
        "/docs/operations",
    ] {
        let (status, _, html) = fetch(path.to_owned()).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert!(
            !html.contains("href=\"docs/"),
            "{path} links to a file path"
        );
    }
    let (status, kind, _) = fetch("/docs/img/analytics-dashboard.png".to_owned()).await;
    assert_eq!((status, kind.as_str()), (StatusCode::OK, "image/png"));
    for hostile in [
        "/docs/nope",
        "/docs/..%2fCargo.toml",
        "/docs/img/..%2f..%2fREADME.md",
        "/docs/%ff%fe",
    ] {
        let (status, _, _) = fetch(hostile.to_owned()).await;
        assert!(status.is_client_error(), "{hostile}: {status}");
    }
    // Still serving.
    assert_eq!(
        app.get("/v1/tasks", ADMIN_TOKEN).await.status,
        StatusCode::OK
    );
}
