//! Tidy checks, run with the tests: docs cover every error code and route,
//! every module says what it is for, no test is skipped, and no SQL binds
//! a bare limit.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test"
)]

use std::path::{Path, PathBuf};

use loopgate_proto::ErrorCode;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_error_code_has_a_section_in_docs() {
    let docs = read("docs/errors.md");
    for code in ErrorCode::ALL {
        assert!(
            docs.contains(&format!("\n## {}\n", code.as_str())),
            "docs/errors.md lacks a section for `{}`",
            code.as_str()
        );
        assert_eq!(ErrorCode::from_str_code(code.as_str()), Some(*code));
    }
}

#[test]
fn every_module_starts_with_a_doc_comment_and_no_test_is_skipped() {
    let mut files = Vec::new();
    rust_files(&root().join("crates"), &mut files);
    assert!(20 < files.len());
    let ignore = ["#[", "ignore]"].concat();
    let should_panic = ["#[", "should_panic"].concat();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(
            text.starts_with("//!"),
            "{} does not start with a `//!` comment",
            file.display()
        );
        assert!(!text.contains(&ignore), "{} skips a test", file.display());
        assert!(
            !text.contains(&should_panic),
            "{} uses should_panic",
            file.display()
        );
        for (n, line) in text.lines().enumerate() {
            assert!(
                !line.ends_with(' '),
                "{}:{} has trailing whitespace",
                file.display(),
                n + 1
            );
        }
    }
}

#[test]
fn every_routed_path_is_in_the_openapi_document_and_back() {
    let router = read("crates/loopgate-server/src/http/mod.rs");
    let mut routed: Vec<String> = router
        .split(".route(")
        .skip(1)
        .filter_map(|rest| rest.trim_start().strip_prefix('"')?.split('"').next())
        .filter(|path| !matches!(*path, "/" | "/openapi.json"))
        // axum's catch-all `{*path}` is OpenAPI's `{path}`.
        .map(|path| path.replace("{*", "{"))
        .collect();
    routed.sort();
    let snapshot = read("crates/loopgate-server/tests/api/snapshots/api__errors__openapi.snap");
    let json = snapshot.splitn(3, "---").nth(2).unwrap();
    let document: serde_json::Value = serde_json::from_str(json).unwrap();
    let mut documented: Vec<String> = document["paths"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    documented.sort();
    assert_eq!(routed, documented);
}

#[test]
fn every_environment_variable_is_documented() {
    let readme = read("README.md");
    let mut files = Vec::new();
    rust_files(&root().join("crates/loopgate/src"), &mut files);
    let sources: String = files
        .iter()
        .map(|path| std::fs::read_to_string(path).unwrap())
        .collect();
    for chunk in sources.split("\"LOOPGATE_").skip(1) {
        let name = format!("LOOPGATE_{}", chunk.split('"').next().unwrap());
        assert!(readme.contains(&name), "README.md does not document {name}");
    }
}

#[test]
fn every_audit_event_type_is_documented() {
    let audit = read("docs/audit.md");
    for kind in loopgate_core::EventKind::ALL {
        assert!(
            audit.contains(&format!("`{kind}`")),
            "event type `{kind}` is not in docs/audit.md"
        );
    }
}

/// SQLite plans a statement again on every execution when its `LIMIT` is a
/// bare parameter (see `loopgate-store`'s `db.rs`).
#[test]
fn no_statement_binds_a_bare_limit() {
    let mut files = Vec::new();
    rust_files(&root().join("crates"), &mut files);
    let bare = [["LIMIT", " ?"].concat(), ["OFFSET", " ?"].concat()];
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for (n, line) in text.lines().enumerate() {
            assert!(
                !bare.iter().any(|it| line.contains(it.as_str())) || file.ends_with("db.rs"),
                "{}:{}: write `LIMIT CAST(?N AS BIGINT)`",
                file.display(),
                n + 1
            );
        }
    }
}

/// The systemd unit in deploy/ runs loopgate as its own user with a
/// read-only system, and `systemd-analyze verify` finds nothing to say about
/// it where systemd is installed (the check then runs on the built binary).
#[test]
fn the_systemd_unit_is_hardened_and_verifies() {
    let unit = read("deploy/loopgate.service");
    for line in [
        "User=loopgate",
        "ExecStart=/usr/local/bin/loopgate serve --config /etc/loopgate/loopgate.toml",
        "StateDirectory=loopgate",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "CapabilityBoundingSet=",
        "SystemCallFilter=@system-service",
    ] {
        assert!(
            unit.lines().any(|it| it == line),
            "deploy/loopgate.service lacks `{line}`"
        );
    }
    let users = read("deploy/loopgate.sysusers");
    assert!(users.lines().any(|it| it.starts_with("u loopgate ")));
    let analyze = Path::new("/usr/bin/systemd-analyze");
    if !analyze.exists() {
        eprintln!("systemd-analyze is not installed: the unit's syntax was not verified");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("loopgate.service");
    let unit = unit.replace("/usr/local/bin/loopgate", env!("CARGO_BIN_EXE_loopgate"));
    std::fs::write(&path, unit).unwrap();
    let output = std::process::Command::new(analyze)
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    // Only lines about this unit count (the host's own units may warn).
    let about_it: Vec<&str> = stderr
        .lines()
        .filter(|line| line.contains("loopgate.service"))
        .collect();
    assert!(output.status.success() && about_it.is_empty(), "{stderr}");
}
