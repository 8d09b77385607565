//! `loopgate webhook …` against the real binary and a real receiver.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test"
)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{call, cli, start_env, system_key};
use serde_json::json;

#[tokio::test]
async fn set_list_show_and_redeliver_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    // The receiver is on loopback, which webhooks may reach only when allowed.
    let server = start_env(
        &dir.path().join("data"),
        &[],
        &[("LOOPGATE_WEBHOOK_ALLOW_PRIVATE", "127.0.0.1/32")],
    );
    let http = reqwest::Client::new();
    let key = system_key(&http, &server.base).await;

    let got: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen = got.clone();
    let receiver = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: axum::http::HeaderMap| {
            let seen = seen.clone();
            async move {
                let id = headers["webhook-id"].to_str().unwrap().to_owned();
                seen.lock().unwrap().push(id);
                axum::http::StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, receiver).await.unwrap() });

    let (ok, stdout, stderr) = cli(&server.base, &["webhook", "set", "sys", "--url", &url]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("signing secret"), "{stdout}");
    assert!(stdout.contains("whsec_"), "{stdout}");

    let proposal = json!({"action": "flag", "subject": {"type": "Account", "id": "a"},
                          "input": {}, "output": {"flag": true}});
    let (status, _) = call(
        &http,
        reqwest::Method::POST,
        format!("{}/v1/proposals", server.base),
        &key,
        Some(proposal),
    )
    .await
    .unwrap();
    assert_eq!(status, 201);
    let mut listed = String::new();
    for _ in 0..200 {
        listed = cli(&server.base, &["webhook", "deliveries", "sys"]).1;
        if listed.contains("delivered") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(listed.contains("task.created"), "{listed}");
    assert!(listed.contains("delivered"), "{listed}");
    let id = listed.split_whitespace().next().unwrap().to_owned();
    assert_eq!(*got.lock().unwrap(), vec![id.clone()]);

    let (ok, stdout, stderr) = cli(&server.base, &["webhook", "redeliver", "sys", &id]);
    assert!(ok, "{stderr}");
    assert!(
        stdout.starts_with(&format!("{id} queued again")),
        "{stdout}"
    );
    for _ in 0..200 {
        if got.lock().unwrap().len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(got.lock().unwrap().clone(), [id.clone(), id.clone()]);
    // The dispatcher records an attempt after the receiver has answered it.
    let mut shown = serde_json::Value::Null;
    for _ in 0..200 {
        let (ok, stdout, _) = cli(&server.base, &["webhook", "delivery", "sys", &id]);
        assert!(ok);
        shown = serde_json::from_str(&stdout).unwrap();
        if shown["history"].as_array().map(Vec::len) == Some(2) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(
        shown["history"].as_array().map(Vec::len),
        Some(2),
        "{shown}"
    );

    // Bad input: one sentence and a non-zero exit.
    let (ok, _, stderr) = cli(
        &server.base,
        &["webhook", "set", "sys", "--url", "not a url"],
    );
    assert!(!ok);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("`url` must be an absolute http(s) URL"),
        "{stderr}"
    );
    let (ok, stdout, _) = cli(&server.base, &["webhook", "remove", "sys"]);
    assert!(ok);
    assert_eq!(stdout.trim(), "webhook of `sys` removed");
    let (ok, _, stderr) = cli(&server.base, &["webhook", "show", "sys"]);
    assert!(!ok);
    assert!(stderr.contains("system `sys` has no webhook"), "{stderr}");
    drop(server);
}
