//! The CLI as a user runs it: exit codes and one-sentence errors.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test"
)]

use std::process::Command;

fn loopgate(args: &[&str]) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_loopgate"))
        .args(args)
        .env_remove("LOOPGATE_TOKEN")
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

#[test]
fn policy_validate_checks_the_demo_policies() {
    let demo = concat!(env!("CARGO_MANIFEST_DIR"), "/demo/policies.cedar");
    let (ok, stdout, _) = loopgate(&["policy", "validate", demo]);
    assert!(ok);
    assert!(stdout.starts_with("valid: 13 policies"), "{stdout}");
    assert!(stdout.contains("fraud-large-amount"));
}

#[test]
fn a_bad_policy_is_one_sentence_and_a_non_zero_exit() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.cedar");
    std::fs::write(&path, "@sla(\"soon\") permit(principal, action, resource);").unwrap();
    let (ok, _, stderr) = loopgate(&["policy", "validate", path.to_str().unwrap()]);
    assert!(!ok);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("annotation `@sla` must be an ISO 8601 duration"),
        "{stderr}"
    );
}

#[test]
fn remote_commands_without_a_token_or_server_say_so() {
    let (ok, _, stderr) = loopgate(&["review", "list"]);
    assert!(!ok);
    assert!(stderr.starts_with("error: no token"), "{stderr}");
    let (ok, _, stderr) = loopgate(&[
        "review",
        "list",
        "--server",
        "http://127.0.0.1:9",
        "--token",
        "x",
    ]);
    assert!(!ok);
    assert!(
        stderr.contains("cannot reach http://127.0.0.1:9"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

#[test]
fn a_bad_configuration_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("loopgate.toml");
    std::fs::write(&path, "bind = 5").unwrap();
    let (ok, _, stderr) = loopgate(&["--config", path.to_str().unwrap(), "review", "list"]);
    assert!(!ok);
    assert!(stderr.contains("loopgate.toml` is not valid"), "{stderr}");
}
