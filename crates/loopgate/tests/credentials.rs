//! `loopgate system key…` and `loopgate user token…|disable|enable` against
//! the real binary: issue with a name and expiry, list, revoke, disable.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test"
)]

mod common;

use common::{ADMIN, call, cli, start, system_key};
use serde_json::{Value, json};

#[tokio::test]
async fn keys_and_users_are_managed_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir.path().join("data"));
    let http = reqwest::Client::new();
    let first = system_key(&http, &server.base).await;

    let (ok, stdout, stderr) = cli(
        &server.base,
        &[
            "system",
            "key",
            "sys",
            "--name",
            "ci",
            "--expires-in",
            "P30D",
        ],
    );
    assert!(ok, "{stderr}");
    assert!(stdout.contains("(shown once, expires "), "{stdout}");
    let (ok, listed, _) = cli(&server.base, &["system", "keys", "sys"]);
    assert!(ok);
    let listed: Value = serde_json::from_str(&listed).unwrap();
    let ci = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|it| it["name"] == "ci")
        .unwrap()
        .clone();
    assert_eq!(ci["active"], true);
    assert!(
        !listed.to_string().contains("lgk_"),
        "no secret in the list"
    );

    // Revoking the first key refuses it at once.
    let first_id = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|it| it["name"] != "ci")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (ok, stdout, stderr) = cli(&server.base, &["system", "revoke-key", "sys", &first_id]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("is revoked"), "{stdout}");
    let url = format!("{}/v1/proposals", server.base);
    let (status, _) = call(&http, reqwest::Method::GET, url.clone(), &first, None)
        .await
        .unwrap();
    assert_eq!(status, 401);
    let (ok, _, stderr) = cli(&server.base, &["system", "revoke-key", "sys", "key_nope"]);
    assert!(!ok);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");

    // A user's token, then the user disabled and enabled.
    let (_, user) = call(
        &http,
        reqwest::Method::POST,
        format!("{}/v1/users", server.base),
        ADMIN,
        Some(json!({"username": "ann", "roles": ["reviewer"], "groups": ["ops"]})),
    )
    .await
    .unwrap();
    let id = user["id"].as_str().unwrap();
    let (ok, stdout, _) = cli(&server.base, &["user", "token", id, "--name", "laptop"]);
    assert!(ok);
    let token = stdout.split_whitespace().last().unwrap().to_owned();
    assert!(token.starts_with("lgt_"), "{stdout}");
    let (status, _) = call(&http, reqwest::Method::GET, url.clone(), &token, None)
        .await
        .unwrap();
    assert_eq!(status, 200);
    let (ok, stdout, _) = cli(&server.base, &["user", "disable", id]);
    assert!(ok && stdout.contains("is disabled"), "{stdout}");
    let (status, _) = call(&http, reqwest::Method::GET, url.clone(), &token, None)
        .await
        .unwrap();
    assert_eq!(status, 401);
    let (ok, _, _) = cli(&server.base, &["user", "enable", id]);
    assert!(ok);
    let (status, _) = call(&http, reqwest::Method::GET, url, &token, None)
        .await
        .unwrap();
    assert_eq!(status, 200);
    let (ok, tokens, _) = cli(&server.base, &["user", "tokens", id]);
    assert!(ok && tokens.contains("laptop"), "{tokens}");
}
