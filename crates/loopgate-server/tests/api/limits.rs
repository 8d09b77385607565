//! Limits that answer instead of falling over, and the headers every
//! response carries: out-of-range numbers are 4xx, `/metrics` can require
//! a token, and the server keeps serving after each.

use reqwest::StatusCode;

use crate::harness::{ADMIN_TOKEN, spawn_app, spawn_with};

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
