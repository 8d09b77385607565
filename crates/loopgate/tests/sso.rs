//! Single sign-on settings: what `serve` refuses, in a sentence.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    dead_code,
    reason = "tests"
)]

mod common;

use std::process::Command;

#[test]
fn bad_single_sign_on_settings_stop_serve_with_a_sentence() {
    let issuer = ("LOOPGATE_OIDC_ISSUER", "https://idp.example/realms/corp");
    let client = ("LOOPGATE_OIDC_CLIENT_ID", "loopgate");
    let roles = ("LOOPGATE_OIDC_ROLE_MAP", r#"{"lg-admins": ["admin"]}"#);
    let public = ("LOOPGATE_PUBLIC_URL", "https://loopgate.example");
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (vec![("LOOPGATE_PASSWORD_LOGIN", "false")], "password_login"),
        (vec![client], "oidc_issuer"),
        (
            vec![("LOOPGATE_OIDC_ISSUER", "http://idp.example"), client],
            "https",
        ),
        (vec![issuer], "oidc_client_id"),
        (vec![issuer, client, public], "oidc_role_map"),
        (
            vec![
                issuer,
                client,
                public,
                ("LOOPGATE_OIDC_ROLE_MAP", r#"{"x": ["root"]}"#),
            ],
            "not a role",
        ),
        (
            vec![issuer, client, public, ("LOOPGATE_OIDC_ROLE_MAP", "[1, 2]")],
            "JSON object",
        ),
        (
            vec![
                issuer,
                client,
                public,
                roles,
                ("LOOPGATE_OIDC_GROUP_MAP", r#"{"x": ["Fraud Team"]}"#),
            ],
            "not a group name",
        ),
        (vec![issuer, client, roles], "public_url"),
    ];
    for (env, says) in cases {
        let dir = tempfile::tempdir().unwrap();
        let output = Command::new(env!("CARGO_BIN_EXE_loopgate"))
            .args(["serve", "--bind", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path())
            .envs(env.iter().copied())
            .env("LOOPGATE_BOOTSTRAP_TOKEN", common::ADMIN)
            .output()
            .unwrap();
        assert!(!output.status.success(), "{env:?} was taken");
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert!(stderr.contains(says), "{env:?}: {stderr}");
    }
}
