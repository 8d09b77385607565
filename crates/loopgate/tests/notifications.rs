//! `loopgate group notify`, `loopgate user contact|notify` and
//! `loopgate notifications` against the real binary; bad notification
//! settings stop `serve` with a sentence.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test"
)]

mod common;

use std::process::Command;

use common::{cli, start_env};

#[tokio::test]
async fn groups_and_people_are_set_up_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_env(
        &dir.path().join("data"),
        &[],
        &[
            ("LOOPGATE_SMTP_URL", "smtp://127.0.0.1:9"),
            ("LOOPGATE_PUBLIC_URL", "https://lg.example"),
        ],
    );
    let base = &server.base;

    let (ok, stdout, stderr) = cli(
        base,
        &[
            "group",
            "notify",
            "ops",
            "--email",
            "ops@example.com,oncall@example.com",
            "--slack-channel",
            "C0123",
            "--events",
            "task.created,task.sla_warning",
        ],
    );
    assert!(ok, "{stderr}");
    let set: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(set["email"].as_array().unwrap().len(), 2);
    assert_eq!(
        set["events"],
        serde_json::json!(["task.created", "task.sla_warning"])
    );
    // Only what is given changes.
    let (ok, stdout, stderr) = cli(base, &["group", "notify", "ops", "--slack-channel", ""]);
    assert!(ok, "{stderr}");
    let shown: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert!(shown.get("slack_channel").is_none(), "{shown}");
    assert_eq!(shown["email"].as_array().unwrap().len(), 2);
    assert_eq!(shown["events"].as_array().unwrap().len(), 2);

    let (ok, _, stderr) = cli(
        base,
        &["group", "notify", "ops", "--email", "not an address"],
    );
    assert!(!ok);
    assert!(stderr.contains("not an email address"), "{stderr}");

    let (ok, stdout, stderr) = cli(
        base,
        &[
            "user",
            "create",
            "ann",
            "--roles",
            "reviewer",
            "--groups",
            "ops",
            "--email",
            "ann@example.com",
            "--slack-user-id",
            "UANN",
        ],
    );
    assert!(ok, "{stderr}");
    let ann: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let id = ann["id"].as_str().unwrap();
    assert_eq!(ann["slack_user_id"], "UANN");
    let (ok, stdout, stderr) = cli(
        base,
        &[
            "user",
            "notify",
            id,
            "--email",
            "digest:30",
            "--slack",
            "off",
        ],
    );
    assert!(ok, "{stderr}");
    let ann: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        ann["notify"]["email"],
        serde_json::json!({"mode": "digest", "every_minutes": 30})
    );
    assert_eq!(ann["notify"]["slack"]["mode"], "off");
    let (ok, _, stderr) = cli(base, &["user", "notify", id, "--email", "sometimes"]);
    assert!(!ok);
    assert!(stderr.contains("not a choice"), "{stderr}");
    let (ok, stdout, stderr) = cli(base, &["user", "contact", id, "--email", ""]);
    assert!(ok, "{stderr}");
    assert!(!stdout.contains("ann@example.com"), "{stdout}");

    let (ok, stdout, stderr) = cli(base, &["notifications", "list", "--state", "pending"]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("\"items\""), "{stdout}");
    let (ok, _, stderr) = cli(base, &["notifications", "list", "--state", "lost"]);
    assert!(!ok);
    assert!(stderr.contains("pending, delivered or failed"), "{stderr}");
}

#[test]
fn bad_notification_settings_stop_serve_with_a_sentence() {
    for (key, value, says) in [
        ("LOOPGATE_SLA_WARNING_SHARE", "2", "sla_warning_share"),
        ("LOOPGATE_PUBLIC_URL", "loopgate.example", "public_url"),
        ("LOOPGATE_SMTP_URL", "ftp://mail.example", "smtp_url"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let output = Command::new(env!("CARGO_BIN_EXE_loopgate"))
            .args(["serve", "--bind", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path())
            .env(key, value)
            .env("LOOPGATE_BOOTSTRAP_TOKEN", common::ADMIN)
            .output()
            .unwrap();
        assert!(!output.status.success(), "{key}={value} was taken");
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert!(stderr.contains(says), "{key}: {stderr}");
    }
}
