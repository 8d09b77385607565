//! Names the build for `loopgate --version`: the git commit it was built
//! from and the date, as `LOOPGATE_COMMIT` and `LOOPGATE_BUILD_DATE`.
//!
//! Outside a git checkout (a source tarball) the commit is `LOOPGATE_COMMIT`
//! from the environment, or `unknown`. The date honours `SOURCE_DATE_EPOCH`
//! (reproducible builds); otherwise it is the day this script ran, which
//! cargo repeats only when the commit changes.

#![allow(
    clippy::print_stdout,
    reason = "cargo reads a build script's instructions from its stdout"
)]

use std::path::PathBuf;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let output = Command::new("git").args(args).output().ok()?;
    if !output.status.success() {
        return None;
    }
    let text = String::from_utf8(output.stdout).ok()?;
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_owned())
}

/// The time of the build (the server reads time only through its clock;
/// this runs at build time).
#[expect(clippy::disallowed_methods, reason = "the build's own date")]
fn now() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc()
}

fn main() {
    println!("cargo::rerun-if-env-changed=LOOPGATE_COMMIT");
    println!("cargo::rerun-if-env-changed=SOURCE_DATE_EPOCH");
    // Build again when HEAD moves: HEAD itself (a checkout), the branch it
    // names (a commit), and packed refs.
    if let Some(dir) = git(&["rev-parse", "--absolute-git-dir"]) {
        let dir = PathBuf::from(dir);
        println!("cargo::rerun-if-changed={}", dir.join("HEAD").display());
        println!(
            "cargo::rerun-if-changed={}",
            dir.join("packed-refs").display()
        );
        if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
            let common = git(&["rev-parse", "--git-common-dir"])
                .map(PathBuf::from)
                .unwrap_or_else(|| dir.clone());
            let common = if common.is_absolute() {
                common
            } else {
                std::env::current_dir().unwrap_or_default().join(common)
            };
            println!("cargo::rerun-if-changed={}", common.join(branch).display());
        }
    }
    let commit = std::env::var("LOOPGATE_COMMIT")
        .ok()
        .filter(|it| !it.trim().is_empty())
        .or_else(|| git(&["rev-parse", "--short=12", "HEAD"]))
        .unwrap_or_else(|| "unknown".to_owned());
    let seconds = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|it| it.trim().parse::<i64>().ok());
    let date = match seconds {
        Some(seconds) => time::OffsetDateTime::from_unix_timestamp(seconds).ok(),
        None => Some(now()),
    }
    .map(|at| at.date().to_string())
    .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo::rustc-env=LOOPGATE_COMMIT={commit}");
    println!("cargo::rustc-env=LOOPGATE_BUILD_DATE={date}");
}
