//! Hostile input against the real binary: every route that accepts policy
//! text, case files, shapes or proposal contexts gets each hostile input and
//! must answer a clear 4xx; afterwards the same process still serves, and a
//! long-poll that was waiting all along is still answered.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test"
)]

use reqwest::Method;
use serde_json::{Value, json};

mod common;

use common::{ADMIN, call, start, system_key};

fn policy(condition: &str) -> String {
    format!("permit(principal, action, resource) when {{ {condition} }};")
}

/// Policy texts that aborted the server, or would have.
fn hostile_texts() -> Vec<(&'static str, String)> {
    vec![
        (
            "150 parentheses",
            policy(&format!("{}true{}", "(".repeat(150), ")".repeat(150))),
        ),
        (
            "200 nested sets",
            policy(&format!(
                "{}1{}.contains(1)",
                "[".repeat(200),
                "]".repeat(200)
            )),
        ),
        (
            "40 nested records",
            policy(&format!("{}1{} == 1", "{a: ".repeat(40), "}".repeat(40))),
        ),
        (
            "100,000 parentheses",
            policy(&format!(
                "{}true{}",
                "(".repeat(100_000),
                ")".repeat(100_000)
            )),
        ),
        (
            "a chain of 20,000 additions",
            policy(&format!("{} > 0", vec!["1"; 20_000].join(" + "))),
        ),
        (
            "1,000 nested ifs",
            policy(&format!(
                "{}true{}",
                "if true then ".repeat(1000),
                " else false".repeat(1000)
            )),
        ),
        (
            "a chain of 5,000 member accesses",
            policy(&format!("context{} == 1", ".a".repeat(5000))),
        ),
        (
            "over a megabyte",
            "permit(principal, action, resource);\n".repeat(40_000),
        ),
    ]
}

/// Case files for `POST /v1/policies/test`.
fn hostile_cases() -> Vec<(&'static str, String)> {
    let aliases = "a: &a [x, x, x, x, x, x, x, x, x]\n".to_owned()
        + "b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
        + "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\n"
        + "d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
        + "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]\n"
        + "f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]\n"
        + "g: [*f, *f, *f, *f, *f, *f, *f, *f, *f]\n";
    vec![
        ("deep YAML", "[".repeat(100_000)),
        (
            "deep JSON",
            format!("{}{}", "[".repeat(50_000), "]".repeat(50_000)),
        ),
        ("a YAML alias bomb", aliases),
        ("deep YAML maps", "a: ".repeat(20_000)),
        ("over a megabyte", "# x\n".repeat(300_000)),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_input_gets_a_4xx_and_the_server_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = start(dir.path());
    let base = server.base.clone();
    let http = reqwest::Client::new();
    let key = system_key(&http, &base).await;

    // A proposal whose submitter waits throughout.
    let (status, pending) = call(
        &http,
        Method::POST,
        format!("{base}/v1/proposals"),
        &key,
        Some(json!({"action": "act", "subject": {"type": "A", "id": "a"}, "input": {}, "output": {}})),
    )
    .await
    .unwrap();
    assert_eq!(status, 201, "{pending}");
    let id = pending["id"].as_str().unwrap().to_owned();
    let waiter = {
        let (http, base, key, id) = (http.clone(), base.clone(), key.clone(), id.clone());
        tokio::spawn(async move {
            http.get(format!("{base}/v1/proposals/{id}?wait=60s"))
                .bearer_auth(&key)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        })
    };

    let mut refused = 0;
    let mut expect_4xx = |what: String, status: u16, body: &Value| {
        assert!((400..500).contains(&status), "{what}: {status} {body}");
        assert!(body["code"].is_string(), "{what}: {body}");
        refused += 1;
    };
    for (what, text) in hostile_texts() {
        for (path, body) in [
            ("/v1/policies/validate", json!({"text": text})),
            ("/v1/policies", json!({"text": text})),
            ("/v1/policies/test", json!({"text": text, "cases": "[]"})),
            ("/v1/policies/replay", json!({"text": text, "since": "1d"})),
        ] {
            let (status, body) = call(
                &http,
                Method::POST,
                format!("{base}{path}"),
                ADMIN,
                Some(body),
            )
            .await
            .unwrap_or_else(|e| panic!("{what} to {path}: the server did not answer: {e}"));
            expect_4xx(format!("{what} to {path}"), status, &body);
        }
    }
    for (what, cases) in hostile_cases() {
        let body = json!({"text": "permit(principal, action, resource);", "cases": cases});
        let (status, body) = call(
            &http,
            Method::POST,
            format!("{base}/v1/policies/test"),
            ADMIN,
            Some(body),
        )
        .await
        .unwrap_or_else(|e| panic!("{what}: the server did not answer: {e}"));
        expect_4xx(format!("case file: {what}"), status, &body);
    }
    let deep_shape = json!({"actions": {"act": {"context": {"x": format!("{}Long{}", "Set<".repeat(1000), ">".repeat(1000))}}}});
    let nested = (0..70).fold(json!("Long"), |inner, _| json!({"x": inner}));
    for (what, shape) in [
        ("a deep type", deep_shape),
        ("70 levels of JSON", json!({"actions": nested})),
        (
            "a number as a type",
            json!({"actions": {"act": {"context": {"x": 5}}}}),
        ),
    ] {
        let (status, body) = call(
            &http,
            Method::PATCH,
            format!("{base}/v1/systems/sys"),
            ADMIN,
            Some(json!({"shape": shape})),
        )
        .await
        .unwrap();
        expect_4xx(format!("shape: {what}"), status, &body);
    }
    let deep_context = (0..70).fold(json!(1), |inner, _| json!([inner]));
    for (what, context) in [
        ("0.12345", r#"{"x": 0.12345}"#.to_owned()),
        ("1e400", r#"{"x": 1e400}"#.to_owned()),
        (
            "beyond 64 bits",
            r#"{"x": 99999999999999999999999999}"#.to_owned(),
        ),
        (
            "rounded by a float",
            r#"{"x": 100000.00000000001}"#.to_owned(),
        ),
        ("70 levels", json!({"x": deep_context}).to_string()),
    ] {
        let body = format!(
            r#"{{"action": "act", "subject": {{"type": "A", "id": "a"}}, "input": {{}}, "output": {{}}, "context": {context}}}"#
        );
        let response = http
            .post(format!("{base}/v1/proposals"))
            .bearer_auth(&key)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap();
        expect_4xx(format!("context: {what}"), status, &body);
    }
    // Grant offers and the grant list: sizes, types and numbers that do
    // not fit are refused before any work.
    let (_, tasks) = call(&http, Method::GET, format!("{base}/v1/tasks"), ADMIN, None)
        .await
        .unwrap();
    let task = tasks["items"][0]["id"].as_str().unwrap().to_owned();
    let digest = pending["digest"].clone();
    for (what, grant) in [
        (
            "a duration that is not one",
            json!({"for": "soon", "scope": "same_output"}),
        ),
        (
            "100 years",
            json!({"for": "36500d", "scope": "same_output"}),
        ),
        (
            "a 100 KB duration",
            json!({"for": "9".repeat(100_000), "scope": "same_output"}),
        ),
        (
            "uses beyond 32 bits",
            json!({"for": "1h", "uses": 1_u64 << 40, "scope": "same_output"}),
        ),
        (
            "negative uses",
            json!({"for": "1h", "uses": -1, "scope": "same_output"}),
        ),
        ("a number as a scope", json!({"for": "1h", "scope": 7})),
        (
            "an unknown field",
            json!({"for": "1h", "scope": "same_output", "forever": true}),
        ),
    ] {
        let body = json!({"verdict": "approve", "seen_digest": digest, "grant": grant});
        let (status, body) = call(
            &http,
            Method::POST,
            format!("{base}/v1/tasks/{task}/decision"),
            ADMIN,
            Some(body),
        )
        .await
        .unwrap_or_else(|e| panic!("grant: {what}: the server did not answer: {e}"));
        expect_4xx(format!("grant: {what}"), status, &body);
        // A refusal quotes what it refused briefly, never at length.
        assert!(body.to_string().len() < 2_000, "grant: {what}: {body}");
    }
    for path in [
        format!("/v1/grants/gnt_{}", "A".repeat(10_000)),
        format!("/v1/grants?state={}", "x".repeat(10_000)),
        "/v1/grants?limit=99999999999".to_owned(),
        "/v1/grants?system=..%2F..".to_owned(),
        // Path segments that are not UTF-8: a problem response on every route.
        "/v1/tasks/%ff%fe".to_owned(),
        "/v1/grants/%c3%28".to_owned(),
        "/v1/groups/%ff".to_owned(),
        "/v1/proposals/%80/audit".to_owned(),
        "/v1/users/%ff/tokens".to_owned(),
        "/v1/policies/%ff".to_owned(),
    ] {
        let (status, body) = call(&http, Method::GET, format!("{base}{path}"), ADMIN, None)
            .await
            .unwrap();
        expect_4xx(
            format!("GET {}", &path[..path.len().min(40)]),
            status,
            &body,
        );
    }
    assert!(40 < refused, "{refused}");

    // The same process still serves, and its waiter is answered.
    assert!(
        server.child.try_wait().unwrap().is_none(),
        "the server exited"
    );
    let (status, _) = call(&http, Method::GET, format!("{base}/healthz"), ADMIN, None)
        .await
        .unwrap();
    assert_eq!(status, 200);
    let (status, body) = call(
        &http,
        Method::POST,
        format!("{base}/v1/proposals/{id}/cancel"),
        &key,
        None,
    )
    .await
    .unwrap();
    assert_eq!(status, 200, "{body}");
    let answered = waiter.await.unwrap();
    assert_eq!(answered["status"], "cancelled", "{answered}");
}

/// Resident memory of a process, in KiB (Linux).
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_thousand_failed_logins_leave_memory_bounded() {
    use futures::StreamExt as _;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("loopgate.toml");
    std::fs::write(
        &config,
        "login_table_entries = 200\ntrusted_proxy_header = \"x-forwarded-for\"\n",
    )
    .unwrap();
    let server = common::start_env(
        &dir.path().join("data"),
        &[],
        &[("LOOPGATE_CONFIG", config.to_str().unwrap())],
    );
    let http = reqwest::Client::new();
    let form = http
        .get(format!("{}/ui/login", server.base))
        .send()
        .await
        .unwrap();
    let cookie = form.headers()["set-cookie"].to_str().unwrap().to_owned();
    let cookie = cookie.split(';').next().unwrap().to_owned();
    let csrf = cookie.split_once('=').unwrap().1.to_owned();
    let before = rss_kib(server.child.id());
    let statuses: Vec<u16> = futures::stream::iter(0..5_000_u32)
        .map(|n| {
            let (http, base, cookie, csrf) = (
                http.clone(),
                server.base.clone(),
                cookie.clone(),
                csrf.clone(),
            );
            async move {
                // Every client from its own address; every other name oversized.
                let username = match n % 2 {
                    0 => format!("{n:0>64}"),
                    _ => "x".repeat(20_000),
                };
                let address = format!("10.{}.{}.{}", n >> 16 & 255, n >> 8 & 255, n & 255);
                http.post(format!("{base}/ui/login"))
                    .header("cookie", cookie)
                    .header("x-forwarded-for", address)
                    .form(&[
                        ("_csrf", csrf.as_str()),
                        ("username", &username),
                        ("password", "guess"),
                    ])
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    let after = rss_kib(server.child.id());
    let count = |s: u16| statuses.iter().filter(|it| **it == s).count();
    eprintln!(
        "RSS {before} KiB before, {after} KiB after; 401: {}, 413: {}, 503: {}",
        count(401),
        count(413),
        count(503)
    );
    for status in [401, 413, 503] {
        assert!(
            statuses.contains(&status),
            "{status} expected among the answers"
        );
    }
    assert!(
        statuses.iter().all(|s| [401, 413, 503].contains(s)),
        "{statuses:?}"
    );
    // The table holds at most 200 entries; argon2's 19 MiB per worker is
    // given back. Generous: allocators keep some of what they had.
    assert!(
        after < before + 64 * 1024,
        "resident memory grew from {before} KiB to {after} KiB"
    );
    let health = http
        .get(format!("{}/healthz", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
}
