//! Limits that answer instead of falling over, and the headers every
//! response carries: out-of-range numbers are 4xx, `/metrics` can require
//! a token, and the server keeps serving after each.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;

use crate::harness::{ADMIN_TOKEN, TestApp, spawn_app, spawn_with};

#[tokio::test]
async fn numbers_out_of_range_are_refused_with_a_4xx() {
    let app = spawn_app().await;
    for path in [
        "/v1/audit/tile/entries/x999/999/999",
        "/v1/audit/tile/0/x999/999/999/999/999",
        "/v1/audit/tile/entries/x018/446/744/073/709/551/615",
        "/v1/audit/tile/0/x072/057/594/037/927/935.p/255",
        "/v1/audit/tile/entries/x072/057/594/037/927/935",
        "/v1/audit/entries?start=9223372036854775808&end=9223372036854775809",
        "/v1/audit/entries?start=18446744073709551615&end=18446744073709551615",
        "/v1/audit/entries?start=0&end=18446744073709551616",
        "/v1/audit/proof/inclusion?index=0&size=18446744073709551615",
        "/v1/audit/proof/inclusion?index=9223372036854775808&size=9223372036854775809",
        "/v1/audit/proof/consistency?from=1&to=9223372036854775808",
        "/v1/audit/checkpoints?after=18446744073709551615",
        "/v1/proposals?limit=4294967296",
        "/v1/proposals?cursor=c99999999999999999999",
        "/v1/events?after=9223372036854775808",
        // Durations: huge, negative, not a number, overlong ISO 8601.
        "/v1/proposals/prp_x?wait=1e308s",
        "/v1/proposals/prp_x?wait=-1s",
        "/v1/proposals/prp_x?wait=NaN",
        "/v1/proposals/prp_x?wait=P99999999999999999999999D",
        "/v1/analytics/overview?system=s&since=infd",
        "/v1/analytics/overview?system=s&since=1e400d",
        "/v1/analytics/overview?system=s&since=PT99999999999999999999S",
    ] {
        let response = app.get(path, ADMIN_TOKEN).await;
        assert!(
            response.status.is_client_error() || response.status == StatusCode::OK,
            "{path}: {} {}",
            response.status,
            response.body
        );
        assert_ne!(response.body["code"], "internal", "{path}");
    }
    assert_eq!(
        app.get("/healthz", ADMIN_TOKEN).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn every_response_carries_the_security_headers() {
    let app = spawn_app().await;
    for (path, token) in [
        ("/healthz", None),
        ("/v1/proposals", Some(ADMIN_TOKEN)),
        ("/v1/proposals", None),
        ("/v1/nothing-here", Some(ADMIN_TOKEN)),
        ("/openapi.json", None),
        ("/ui/login", None),
    ] {
        let mut request = app.http.get(format!("{}{path}", app.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        let headers = response.headers();
        assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(headers["x-frame-options"], "DENY", "{path}");
        assert_eq!(headers["referrer-policy"], "same-origin", "{path}");
        assert_eq!(headers["cache-control"], "no-store", "{path}");
        assert!(
            headers["content-security-policy"]
                .to_str()
                .unwrap()
                .contains("frame-ancestors 'none'"),
            "{path}"
        );
        if response.status() == StatusCode::UNAUTHORIZED {
            assert!(headers.contains_key("www-authenticate"), "{path}");
        }
    }
}

#[tokio::test]
async fn metrics_can_require_a_token() {
    let app = spawn_with(|config| config.metrics_token = Some("metrics-secret-123".into())).await;
    let bare = app
        .http
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(bare.status(), StatusCode::UNAUTHORIZED);
    let wrong = app.get("/metrics", ADMIN_TOKEN).await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    let right = app
        .http
        .get(format!("{}/metrics", app.base))
        .bearer_auth("metrics-secret-123")
        .send()
        .await
        .unwrap();
    assert_eq!(right.status(), StatusCode::OK);
    let open = spawn_app().await;
    let anyone = open
        .http
        .get(format!("{}/metrics", open.base))
        .send()
        .await
        .unwrap();
    assert_eq!(anyone.status(), StatusCode::OK);
}

/// Opens a connection that sends half a request's headers and stalls.
async fn stalled(app: &TestApp) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt as _;
    let addr = app.base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: loopgate\r\n")
        .await
        .unwrap();
    stream
}

/// Whether the server closed the connection (within `wait`).
async fn closed(stream: &mut tokio::net::TcpStream, wait: Duration) -> bool {
    use tokio::io::AsyncReadExt as _;
    let mut buffer = [0_u8; 1024];
    matches!(
        tokio::time::timeout(wait, stream.read(&mut buffer)).await,
        Ok(Ok(0) | Err(_))
    ) || matches!(
        tokio::time::timeout(wait, stream.read(&mut buffer)).await,
        Ok(Ok(0) | Err(_))
    )
}

#[tokio::test]
async fn slow_clients_do_not_stop_the_server_and_are_cut_off() {
    let app = spawn_with(|config| config.header_read_timeout = Duration::from_secs(1)).await;
    let mut slow = Vec::new();
    for _ in 0..200 {
        slow.push(stalled(&app).await);
    }
    let started = Instant::now();
    assert_eq!(
        app.get("/healthz", ADMIN_TOKEN).await.status,
        StatusCode::OK
    );
    assert!(started.elapsed() < Duration::from_secs(5), "healthz waited");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    for stream in &mut slow[..5] {
        assert!(
            closed(stream, Duration::from_secs(2)).await,
            "a stalled client was kept"
        );
    }
}

#[tokio::test]
async fn a_request_over_its_deadline_is_answered_503() {
    let app = spawn_with(|config| config.request_timeout = Duration::from_millis(300)).await;
    let (key, _) = app.ops_review().await;
    let submitted = app.submit(&key, "block", json!({}), json!({})).await;
    let id = submitted.body["id"].as_str().unwrap();
    let waited = app.get(&format!("/v1/proposals/{id}?wait=5s"), &key).await;
    assert_eq!(
        waited.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        waited.body
    );
    assert_eq!(waited.body["code"], "unavailable");
}

#[tokio::test]
async fn a_client_stalled_mid_headers_does_not_hold_up_shutdown() {
    let app = spawn_with(|config| {
        config.header_read_timeout = Duration::from_secs(60);
        config.shutdown_grace = Duration::from_millis(500);
    })
    .await;
    let _stalled = stalled(&app).await;
    let started = Instant::now();
    app.shut_down().await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "shutdown took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_crashed_writer_fails_readyz_and_ends_serve_with_an_error() {
    let app = spawn_app().await;
    assert_eq!(app.get("/readyz", ADMIN_TOKEN).await.status, StatusCode::OK);
    app.app.store.crash_writer_for_tests().await;
    let ready = app.get("/readyz", ADMIN_TOKEN).await;
    assert_eq!(
        ready.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        ready.body
    );
    // A write is refused; the server may already have stopped accepting
    // (serve ends once it sees the writer stopped): then it cannot connect.
    let write = app
        .http
        .post(format!("{}/v1/users", app.base))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"username": "x", "roles": []}))
        .send()
        .await;
    if let Ok(write) = write {
        assert_eq!(write.status(), StatusCode::SERVICE_UNAVAILABLE);
    }
    assert!(app.served(Duration::from_secs(10)).await.is_err());
}

#[tokio::test]
async fn streams_long_polls_and_submissions_are_capped_per_credential_and_system() {
    let app = spawn_with(|config| {
        config.max_streams_per_credential = 2;
        config.max_waits_per_credential = 1;
        config.submit_rate = Some(3);
    })
    .await;
    let (key, ann) = app.ops_review().await;
    let stream = |token: &str| {
        app.http
            .get(format!("{}/v1/events", app.base))
            .bearer_auth(token.to_owned())
            .send()
    };
    let first = stream(&ann).await.unwrap();
    let second = stream(&ann).await.unwrap();
    assert_eq!(second.status(), StatusCode::OK);
    let third = stream(&ann).await.unwrap();
    assert_eq!(third.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(third.headers().contains_key("retry-after"));
    assert_eq!(
        stream(ADMIN_TOKEN).await.unwrap().status(),
        StatusCode::OK,
        "per credential"
    );
    drop(first);
    let mut again = StatusCode::TOO_MANY_REQUESTS;
    for _ in 0..50 {
        again = stream(&ann).await.unwrap().status();
        if again == StatusCode::OK {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        again,
        StatusCode::OK,
        "a closed stream gives its place back"
    );

    let submitted = app.submit(&key, "block", json!({}), json!({})).await;
    assert_eq!(submitted.status, StatusCode::CREATED, "{}", submitted.body);
    let id = submitted.body["id"].as_str().unwrap().to_owned();
    let waiting = {
        let (http, url, key) = (
            app.http.clone(),
            format!("{}/v1/proposals/{id}?wait=2s", app.base),
            key.clone(),
        );
        tokio::spawn(async move {
            http.get(url)
                .bearer_auth(key)
                .send()
                .await
                .unwrap()
                .status()
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let second_wait = app.get(&format!("/v1/proposals/{id}?wait=2s"), &key).await;
    assert_eq!(
        second_wait.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        second_wait.body
    );
    assert_eq!(waiting.await.unwrap(), StatusCode::OK);

    // Three a second per system (one was used above).
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(app.submit(&key, "block", json!({}), json!({})).await.status);
    }
    assert!(
        statuses.contains(&StatusCode::TOO_MANY_REQUESTS),
        "{statuses:?}"
    );
    assert_eq!(
        app.get("/healthz", ADMIN_TOKEN).await.status,
        StatusCode::OK
    );
    // Operators see limits being hit.
    let metrics = app.call(reqwest::Method::GET, "/metrics", None, None).await;
    let text = metrics.body.as_str().unwrap();
    let line = text
        .lines()
        .find(|line| line.starts_with("loopgate_limited_responses_total{status=\"429\"}"))
        .unwrap();
    assert_ne!(line.rsplit(' ').next(), Some("0"), "{line}");
}

#[tokio::test]
async fn the_kill_switch_is_read_inside_the_write_transaction() {
    let app = spawn_app().await;
    let key = app.system("shop", "in_the_loop").await;
    // The server's cache knows the system as active.
    assert_eq!(
        app.submit(&key, "a", json!({}), json!({})).await.status,
        StatusCode::CREATED
    );
    let patch = loopgate_store::SystemPatch {
        status: Some(loopgate_core::SystemStatus::Paused),
        ..Default::default()
    };
    let id = loopgate_core::SystemId::parse("shop").unwrap();
    app.app
        .store
        .update_system(&id, patch, "test", app.app.clock.now())
        .await
        .unwrap();
    let after = app.submit(&key, "a", json!({}), json!({})).await;
    assert_eq!(after.body["status"], "rejected", "{}", after.body);
    assert_eq!(
        after.body["resolution"]["decided_by"], "kill_switch",
        "{}",
        after.body
    );
}

#[tokio::test]
async fn a_replay_is_answered_while_nothing_can_be_written() {
    let app = spawn_app().await;
    let key = app.system("shop", "in_the_loop").await;
    let mut body = crate::harness::proposal("a", json!({"x": 1}), json!({}));
    body["idempotency_key"] = json!("order-1");
    let first = app.post("/v1/proposals", &key, body.clone()).await;
    assert_eq!(first.status, StatusCode::CREATED);
    // As on a full disk: the writer runs, and every write fails. (A crashed
    // writer would also do, but the server then shuts down within 250 ms.)
    app.app.store.fail_writes_for_tests(true);
    let replay = app.post("/v1/proposals", &key, body.clone()).await;
    assert_eq!(replay.status, StatusCode::OK, "{}", replay.body);
    assert_eq!(replay.body["id"], first.body["id"]);
    body["output"] = json!({"x": 2});
    let conflict = app.post("/v1/proposals", &key, body.clone()).await;
    assert_eq!(conflict.status, StatusCode::CONFLICT, "{}", conflict.body);
    body["idempotency_key"] = json!("order-2");
    let new = app.post("/v1/proposals", &key, body.clone()).await;
    assert_eq!(new.status, StatusCode::SERVICE_UNAVAILABLE, "{}", new.body);
    app.app.store.fail_writes_for_tests(false);
    let later = app.post("/v1/proposals", &key, body).await;
    assert_eq!(later.status, StatusCode::CREATED, "{}", later.body);
}

#[tokio::test]
async fn an_idle_kept_alive_connection_is_closed_after_the_header_deadline() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let app = spawn_with(|config| config.header_read_timeout = Duration::from_millis(500)).await;
    let addr = app.base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: loopgate\r\n\r\n")
        .await
        .unwrap();
    let mut buffer = [0_u8; 4096];
    let read = stream.read(&mut buffer).await.unwrap();
    assert!(buffer[..read].starts_with(b"HTTP/1.1 200"));
    // Kept alive, then idle: closed once the next request's headers are late.
    assert!(closed(&mut stream, Duration::from_secs(3)).await);
}

#[tokio::test]
async fn a_request_sent_on_a_kept_alive_connection_during_shutdown_is_answered() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let app = spawn_with(|config| config.shutdown_grace = Duration::from_secs(6)).await;
    let addr = app.base.trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let request = b"GET /healthz HTTP/1.1\r\nHost: loopgate\r\n\r\n";
    stream.write_all(request).await.unwrap();
    let mut buffer = [0_u8; 4096];
    let read = stream.read(&mut buffer).await.unwrap();
    assert!(buffer[..read].starts_with(b"HTTP/1.1 200"));
    let stopping = tokio::spawn(app.shut_down());
    tokio::time::sleep(Duration::from_millis(50)).await;
    stream.write_all(request).await.unwrap();
    let read = stream.read(&mut buffer).await.unwrap();
    let answer = String::from_utf8_lossy(&buffer[..read]).to_lowercase();
    assert!(answer.starts_with("http/1.1 503"), "{answer}");
    assert!(answer.contains("connection: close"), "{answer}");
    stopping.await.unwrap().unwrap();
}
