//! `loopgate review batch`, `respond`, `approve --grant-for`, `grants`,
//! `revoke-grant`, `list --mine`, `group assign` and `user away` against
//! the real binary.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    dead_code,
    reason = "tests"
)]

mod common;

use std::process::Command;

use common::{ADMIN, Server, call, start, system_key};
use reqwest::Method;
use serde_json::{Value, json};

/// The CLI as `token`: (success, stdout, stderr).
fn as_user(base: &str, token: &str, args: &[&str]) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_loopgate"))
        .args(args)
        .env("LOOPGATE_SERVER", base)
        .env("LOOPGATE_TOKEN", token)
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

/// Every task goes to the group `ops`.
const OPS: &str = "@reviewers(\"ops\") permit(principal, action, resource);";

/// A server whose proposals `policy` routes, its system key, and `rita`
/// of `ops` (returns her token).
async fn served(dir: &std::path::Path, policy: &str) -> (Server, reqwest::Client, String, String) {
    let server = start(&dir.join("data"));
    let base = server.base.clone();
    let http = reqwest::Client::new();
    let key = system_key(&http, &base).await;
    let policy = json!({"text": policy});
    let (status, body) = call(
        &http,
        Method::POST,
        format!("{base}/v1/policies"),
        ADMIN,
        Some(policy),
    )
    .await
    .unwrap();
    assert_eq!(status, 201, "{body}");
    let rita = json!({"username": "rita", "roles": ["reviewer"], "groups": ["ops"]});
    let (status, user) = call(
        &http,
        Method::POST,
        format!("{base}/v1/users"),
        ADMIN,
        Some(rita),
    )
    .await
    .unwrap();
    assert_eq!(status, 201, "{user}");
    let id = user["id"].as_str().unwrap();
    let (status, token) = call(
        &http,
        Method::POST,
        format!("{base}/v1/users/{id}/tokens"),
        ADMIN,
        Some(json!({})),
    )
    .await
    .unwrap();
    assert_eq!(status, 201, "{token}");
    let token = token["secret"].as_str().unwrap().to_owned();
    (server, http, key, token)
}

/// Submits a `refund` of order `o-{n}` as the system; the stored proposal.
async fn submit(http: &reqwest::Client, base: &str, key: &str, n: u32) -> Value {
    let proposal = json!({"action": "refund", "subject": {"type": "Order", "id": format!("o-{n}")}, "output": {"n": n}});
    let (status, body) = call(
        http,
        Method::POST,
        format!("{base}/v1/proposals"),
        key,
        Some(proposal),
    )
    .await
    .unwrap();
    assert_eq!(status, 201, "{body}");
    body
}

#[tokio::test]
async fn a_reviewer_decides_several_tasks_and_answers_one_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let (server, http, key, token) = served(dir.path(), OPS).await;
    let base = server.base.clone();
    let mut proposals = Vec::new();
    for n in 0..4 {
        let body = submit(&http, &base, &key, n).await;
        proposals.push(body["id"].as_str().unwrap().to_owned());
    }
    let (_, tasks) = call(&http, Method::GET, format!("{base}/v1/tasks"), &token, None)
        .await
        .unwrap();
    let task_of = |proposal: &str| -> String {
        tasks["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["proposal_id"] == proposal)
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let (first, second, third) = (
        task_of(&proposals[0]),
        task_of(&proposals[1]),
        task_of(&proposals[2]),
    );

    let (ok, stdout, stderr) = as_user(
        &base,
        &token,
        &[
            "review",
            "batch",
            "--verdict",
            "approve",
            &first,
            &second,
            "-r",
            "same pattern",
        ],
    );
    assert!(ok, "{stderr}");
    let answer: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(answer["items"][0]["status"], 200);
    assert_eq!(
        answer["items"][1]["decision"]["proposal"]["status"],
        "approved"
    );
    // A task decided already fails alone, with a sentence and a non-zero exit.
    let (ok, stdout, stderr) = as_user(
        &base,
        &token,
        &["review", "batch", "--verdict", "reject", &first, &third],
    );
    assert!(!ok);
    assert!(stderr.contains("1 of 2 could not be decided"), "{stderr}");
    let answer: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        answer["items"][1]["decision"]["proposal"]["status"],
        "rejected"
    );

    let fourth = task_of(&proposals[3]);
    let (ok, stdout, stderr) = as_user(
        &base,
        &token,
        &[
            "review",
            "respond",
            &fourth,
            "--message",
            "send the invoice",
        ],
    );
    assert!(ok, "{stderr}");
    assert!(stdout.contains("is returned"), "{stdout}");
    let (_, read) = call(
        &http,
        Method::GET,
        format!("{base}/v1/proposals/{}", proposals[3]),
        &key,
        None,
    )
    .await
    .unwrap();
    assert_eq!(read["resolution"]["message"], "send the invoice");
    let (ok, _, stderr) = as_user(
        &base,
        &token,
        &["review", "batch", "--verdict", "escalate", &fourth],
    );
    assert!(!ok);
    assert!(
        stderr.contains("approve") && stderr.contains("reject"),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_reviewer_gives_lists_and_revokes_a_grant_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let policy = "@reviewers(\"ops\") @grantable(\"PT1H\") @grantable_risk(\"unacceptable\") permit(principal, action, resource);";
    let (server, http, key, token) = served(dir.path(), policy).await;
    let base = server.base.clone();
    let submit = || submit(&http, &base, &key, 1);
    let first = submit().await;
    let (_, tasks) = call(&http, Method::GET, format!("{base}/v1/tasks"), &token, None)
        .await
        .unwrap();
    let task = tasks["items"][0]["id"].as_str().unwrap().to_owned();
    // Longer than the policy allows: a sentence, a non-zero exit, nothing decided.
    let (ok, _, stderr) = as_user(
        &base,
        &token,
        &["review", "approve", &task, "--grant-for", "2h"],
    );
    assert!(!ok);
    assert!(stderr.contains("at most 1h"), "{stderr}");
    let (ok, stdout, stderr) = as_user(
        &base,
        &token,
        &[
            "review",
            "approve",
            &task,
            "--grant-for",
            "30m",
            "--grant-uses",
            "5",
        ],
    );
    assert!(ok, "{stderr}");
    assert!(stdout.contains("is approved"), "{stdout} {}", first["id"]);
    let second = submit().await;
    assert_eq!(second["resolution"]["decided_by"], "grant");

    let (ok, stdout, stderr) = as_user(&base, &token, &["review", "grants"]);
    assert!(ok, "{stderr}");
    let listed: Value = serde_json::from_str(&stdout).unwrap();
    let grant = listed["items"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(listed["items"][0]["uses_left"], 4);
    let (ok, stdout, stderr) = as_user(&base, &token, &["review", "revoke-grant", &grant]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("approved 1 proposal"), "{stdout}");
    assert_eq!(submit().await["status"], "pending");
    let (ok, _, stderr) = as_user(&base, &token, &["review", "revoke-grant", &grant]);
    assert!(!ok);
    assert!(stderr.contains("already revoked"), "{stderr}");
}

#[tokio::test]
async fn groups_assign_and_users_go_away_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let (server, http, key, token) = served(dir.path(), OPS).await;
    let base = server.base.clone();
    let (ok, stdout, stderr) = as_user(
        &base,
        ADMIN,
        &[
            "group",
            "assign",
            "ops",
            "--mode",
            "round_robin",
            "--return-after",
            "1h",
        ],
    );
    assert!(ok, "{stderr}");
    let group: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(group["assignment"], "round_robin");
    assert_eq!(group["return_after"], "1h");
    assert_eq!(group["members"], json!(["rita"]));
    // A bad duration: a sentence and a non-zero exit.
    let (ok, _, stderr) = as_user(
        &base,
        ADMIN,
        &[
            "group",
            "assign",
            "ops",
            "--mode",
            "pool",
            "--return-after",
            "soon",
        ],
    );
    assert!(!ok);
    assert!(
        stderr.contains("`return_after` must be between 1m and 7d"),
        "{stderr}"
    );
    // Rita is the only member: the task is hers, under `--mine`.
    submit(&http, &base, &key, 1).await;
    let (ok, stdout, stderr) = as_user(&base, &token, &["review", "list", "--mine"]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("assigned to rita"), "{stdout}");
    let (ok, stdout, _) = as_user(&base, &token, &["group", "list"]);
    assert!(ok);
    assert!(stdout.contains("\"round_robin\""), "{stdout}");

    // Rita sets her own absence; a stand-in who is not a user is refused.
    let (_, users) = call(&http, Method::GET, format!("{base}/v1/users"), ADMIN, None)
        .await
        .unwrap();
    let rita = users["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["username"] == "rita")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (ok, _, stderr) = as_user(
        &base,
        &token,
        &["user", "away", &rita, "--delegate", "nobody"],
    );
    assert!(!ok);
    assert!(stderr.contains("is not a user"), "{stderr}");
    let (ok, _, stderr) = as_user(&base, &token, &["user", "away", &rita]);
    assert!(!ok);
    assert!(stderr.contains("--until"), "{stderr}");
    let until = "2099-01-01T00:00:00Z";
    let (ok, _, stderr) = as_user(&base, &token, &["user", "away", &rita, "--until", until]);
    assert!(!ok, "more than a year ahead");
    assert!(stderr.contains("within a year"), "{stderr}");
    #[expect(
        clippy::disallowed_methods,
        reason = "the binary under test runs on the real clock"
    )]
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let soon = loopgate_core::Timestamp::from_millis(i64::try_from(now.as_millis()).unwrap())
        .plus(std::time::Duration::from_secs(3 * 86_400))
        .to_rfc3339();
    let (ok, stdout, stderr) = as_user(&base, &token, &["user", "away", &rita, "--until", &soon]);
    assert!(ok, "{stderr}");
    let user: Value = serde_json::from_str(&stdout).unwrap();
    assert!(user["away_until"].is_string(), "{user}");
    // Away, with nobody to stand in: the next task stays in the pool.
    let next = submit(&http, &base, &key, 2).await;
    let (_, task) = call(&http, Method::GET, format!("{base}/v1/tasks"), ADMIN, None)
        .await
        .unwrap();
    let task = task["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["proposal_id"] == next["id"])
        .cloned()
        .unwrap();
    assert!(task["assignee"].is_null(), "{task}");
}
