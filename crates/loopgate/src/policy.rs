//! `loopgate policy …`: validate, test, publish (live or shadow), list,
//! show, diff, activate/rollback, schema, replay, shadow.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::Subcommand;
use loopgate_core::Route;
use loopgate_core::routing::cases;
use loopgate_core::routing::diff::diff;
use loopgate_core::routing::{Defaults, Policies, ReviewPlan};
use loopgate_proto as proto;

use crate::cli::{Remote, Remote0};
use crate::config::FileConfig;

#[derive(Debug, Subcommand)]
pub(crate) enum PolicyCommand {
    /// Check a Cedar file or directory locally, without a server.
    Validate {
        /// File or directory of `*.cedar` files.
        path: PathBuf,
        /// Also check it on the server: schema errors and lint warnings.
        #[arg(long)]
        lint: bool,
        #[command(flatten)]
        remote: Remote,
    },
    /// Run a case file (YAML or JSON) against policies; exit 1 when a case fails.
    Test {
        /// File or directory of `*.cedar` files.
        policies: PathBuf,
        /// Case file.
        cases: PathBuf,
        /// Run on the server, with the registered systems' risk tiers and oversight modes.
        #[arg(long)]
        remote_run: bool,
        #[command(flatten)]
        remote: Remote,
    },
    /// Publish a Cedar file or directory as the new live (or shadow) version.
    Publish {
        /// File or directory of `*.cedar` files.
        path: PathBuf,
        /// Why this version.
        #[arg(long, default_value = "")]
        description: String,
        /// Evaluate beside the live version without changing any outcome.
        #[arg(long)]
        shadow: bool,
        /// A case file that must pass first.
        #[arg(long)]
        tests: Option<PathBuf>,
        #[command(flatten)]
        remote: Remote,
    },
    /// List published versions.
    List(Remote0),
    /// Print one version's text.
    Show {
        /// Version hash.
        version: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// Policy-level differences: each side a version hash or a file.
    Diff {
        /// Older: version or file.
        from: String,
        /// Newer: version or file.
        to: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// Make a stored version live again (rollback) or promote a shadow.
    Activate {
        /// Version hash.
        version: String,
        /// Why (kept in the audit log).
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// Who activated which version, when and why.
    History(Remote0),
    /// Print the Cedar schema generated from the systems' declarations.
    Schema(Remote0),
    /// Route the stored proposals of a period under a draft and report what would change.
    Replay {
        /// Draft: file or directory of `*.cedar` files.
        draft: PathBuf,
        /// How far back: `30d`, `12h`, `P7D`.
        #[arg(long, default_value = "30d")]
        since: String,
        /// Example proposal ids per change.
        #[arg(long, default_value_t = 5)]
        examples: u32,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        remote: Remote,
    },
    /// What the shadow version disagreed on; `--stop` ends it.
    Shadow {
        /// End shadow evaluation, with this reason.
        #[arg(long, value_name = "REASON")]
        stop: Option<String>,
        #[command(flatten)]
        remote: Remote,
    },
}

pub(crate) async fn run(file: &FileConfig, command: PolicyCommand) -> anyhow::Result<()> {
    match command {
        PolicyCommand::Validate { path, lint, remote } => {
            let text = read(&path)?;
            let policies = parse(&path, &text)?;
            out!(
                "valid: {} policies, version {}",
                policies.ids().len(),
                policies.version()
            );
            for id in policies.ids() {
                out!("  {id}");
            }
            if lint {
                let body = publish_body(text, String::new());
                let checked = file.client(&remote)?.validate_policy(&body).await?;
                for finding in &checked.errors {
                    out!("error: {}: {}", finding.policy, finding.message);
                }
                for finding in &checked.warnings {
                    out!("warning: {}: {}", finding.policy, finding.message);
                }
                if !checked.errors.is_empty() {
                    anyhow::bail!("{} schema errors", checked.errors.len());
                }
            }
            Ok(())
        }
        PolicyCommand::Test {
            policies,
            cases: case_path,
            remote_run,
            remote,
        } => {
            let text = read(&policies)?;
            let case_text = std::fs::read_to_string(&case_path)
                .with_context(|| format!("cannot read `{}`", case_path.display()))?;
            let report = if remote_run {
                let body = proto::TestPolicies {
                    text: Some(text),
                    cases: case_text,
                };
                file.client(&remote)?.test_policies(&body).await?
            } else {
                local_test(&policies, &text, &case_path, &case_text)?
            };
            for case in &report.cases {
                if case.passed {
                    out!("ok    {}", case.name);
                } else {
                    out!("FAIL  {}", case.name);
                    for failure in &case.failures {
                        out!("      {failure}");
                    }
                    out!("      matched: [{}]", case.matched.join(", "));
                }
                if let Some(refused) = &case.refused {
                    out!("      refused: {refused}");
                }
                for error in &case.policy_errors {
                    out!(
                        "      policy `{}` failed to evaluate ({}; counted restrictively): {}",
                        error.policy,
                        error.kind,
                        error.message
                    );
                }
            }
            out!("{} passed, {} failed", report.passed, report.failed);
            if report.failed > 0 {
                anyhow::bail!("{} of {} cases failed", report.failed, report.cases.len());
            }
            Ok(())
        }
        PolicyCommand::Publish {
            path,
            description,
            shadow,
            tests,
            remote,
        } => {
            let text = read(&path)?;
            let mut body = publish_body(text, description);
            if shadow {
                body.mode = Some(proto::PolicyMode::Shadow);
            }
            if let Some(tests) = tests {
                body.cases = Some(
                    std::fs::read_to_string(&tests)
                        .with_context(|| format!("cannot read `{}`", tests.display()))?,
                );
            }
            let published = file.client(&remote)?.publish_policy(&body).await?;
            let state = if published.shadow {
                "running in shadow"
            } else {
                "now live"
            };
            out!(
                "published version {} ({} policies), {state}",
                published.version,
                published.policy_ids.len()
            );
            for finding in &published.warnings {
                out!("warning: {}: {}", finding.policy, finding.message);
            }
            Ok(())
        }
        PolicyCommand::List(args) => {
            for version in file.client(&args.remote)?.policies().await?.items {
                let state = match (version.active, version.shadow) {
                    (true, _) => "live",
                    (_, true) => "shadow",
                    _ => "",
                };
                out!(
                    "{:>4} {:<18} {:<6} {:<24} {}",
                    version.seq,
                    version.version,
                    state,
                    version.created_at,
                    version.description
                );
            }
            Ok(())
        }
        PolicyCommand::Show { version, remote } => {
            let version = file.client(&remote)?.policy(&version).await?;
            out!("{}", version.text.trim_end());
            Ok(())
        }
        PolicyCommand::Diff { from, to, remote } => {
            let from = side(file, &remote, &from).await?;
            let to = side(file, &remote, &to).await?;
            let d = diff(&from, &to);
            for id in &d.added {
                out!("added    {id}");
            }
            for id in &d.removed {
                out!("removed  {id}");
            }
            for changed in &d.changed {
                out!("changed  {}", changed.id);
            }
            out!(
                "{} added, {} removed, {} changed, {} unchanged",
                d.added.len(),
                d.removed.len(),
                d.changed.len(),
                d.unchanged
            );
            for changed in &d.changed {
                out!("\n{}", changed.diff.trim_end());
            }
            Ok(())
        }
        PolicyCommand::Activate {
            version,
            reason,
            remote,
        } => {
            let body = proto::ActivatePolicy { reason, mode: None };
            let active = file
                .client(&remote)?
                .activate_policy(&version, &body)
                .await?;
            out!("version {} is live", active.version);
            Ok(())
        }
        PolicyCommand::History(args) => {
            for it in file.client(&args.remote)?.policy_activations().await? {
                out!(
                    "{:<24} {:<18} {:<10} {:<20} {}",
                    it.at,
                    it.version,
                    it.mode,
                    it.actor,
                    it.reason
                );
            }
            Ok(())
        }
        PolicyCommand::Schema(args) => {
            let schema = file.client(&args.remote)?.policy_schema().await?;
            out!("{}", schema.text.trim_end());
            for note in &schema.notes {
                out!("// note: {note}");
            }
            Ok(())
        }
        PolicyCommand::Replay {
            draft,
            since,
            examples,
            json,
            remote,
        } => {
            let text = read(&draft)?;
            parse(&draft, &text)?;
            let body = proto::ReplayPolicies {
                text,
                since,
                examples: Some(examples),
            };
            let bar = indicatif::ProgressBar::new(0);
            if let Ok(style) = indicatif::ProgressStyle::with_template(
                "{bar:40} {pos}/{len} proposals ({per_sec}, {eta} left)",
            ) {
                bar.set_style(style);
            }
            let report = file
                .client(&remote)?
                .replay_policies(&body, |done, total| {
                    bar.set_length(total);
                    bar.set_position(done);
                })
                .await;
            bar.finish_and_clear();
            let report = report?;
            if json {
                out!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print_replay(&report);
            }
            Ok(())
        }
        PolicyCommand::Shadow { stop, remote } => {
            let client = file.client(&remote)?;
            if let Some(reason) = stop {
                client.stop_shadow(&reason).await?;
                out!("shadow evaluation stopped");
                return Ok(());
            }
            let report = client.shadow_report().await?;
            let Some(version) = &report.version else {
                out!(
                    "no shadow version runs; publish one with `loopgate policy publish FILE --shadow`"
                );
                return Ok(());
            };
            out!(
                "shadow {version} beside live {} since {}",
                report.live_version.as_deref().unwrap_or("none"),
                report.since.as_deref().unwrap_or("?")
            );
            out!(
                "{} proposals evaluated, {} disagreements",
                report.evaluated,
                report.disagreements
            );
            print_transitions(&report.transitions);
            for it in &report.recent {
                out!(
                    "  {} {} → {} (live [{}], shadow [{}])",
                    it.proposal_id,
                    it.live_route,
                    it.shadow_route,
                    it.live_matched.join(", "),
                    it.shadow_matched.join(", ")
                );
            }
            print_policy_errors(&report.policy_errors);
            Ok(())
        }
    }
}

fn read(path: &Path) -> anyhow::Result<String> {
    Ok(loopgate_server::config::read_policies(path)?)
}

fn parse(path: &Path, text: &str) -> anyhow::Result<Policies> {
    Policies::parse(text).with_context(|| format!("`{}` is not a valid policy set", path.display()))
}

fn publish_body(text: String, description: String) -> proto::PublishPolicy {
    proto::PublishPolicy {
        text,
        description,
        mode: None,
        cases: None,
    }
}

/// A diff side: a readable path, else a version on the server.
async fn side(file: &FileConfig, remote: &Remote, name: &str) -> anyhow::Result<Policies> {
    let path = Path::new(name);
    let text = if path.exists() {
        read(path)?
    } else {
        file.client(remote)?.policy(name).await?.text
    };
    Policies::parse(&text).with_context(|| format!("`{name}` is not a valid policy set"))
}

fn local_test(
    path: &Path,
    text: &str,
    case_path: &Path,
    case_text: &str,
) -> anyhow::Result<proto::PolicyTestReport> {
    let policies = parse(path, text)?;
    let file = cases::parse(case_text)
        .map_err(|error| anyhow::anyhow!("`{}`: {error}", case_path.display()))?;
    let defaults = Defaults {
        route: Route::Review,
        review: ReviewPlan::default_review(),
    };
    let results = cases::run(&policies, &file, &defaults, |_| None);
    Ok(loopgate_server::policy_reports::test_report(
        policies.version(),
        results,
    ))
}

fn print_transitions(transitions: &[proto::RouteTransition]) {
    for t in transitions {
        let name = |route: proto::Route| match route {
            proto::Route::Allow => "allow",
            proto::Route::Deny => "deny",
            proto::Route::Review => "review",
        };
        out!(
            "  {:>6} → {:<6} {:>8}   e.g. {}",
            name(t.from),
            name(t.to),
            t.count,
            t.examples.join(", ")
        );
    }
}

fn print_replay(report: &proto::ReplayReport) {
    out!(
        "replayed {} proposals since {} under draft {} ({} skipped: payload erased)",
        report.replayed,
        report.since,
        report.version,
        report.skipped_erased
    );
    let changed = report.replayed.saturating_sub(report.unchanged);
    out!(
        "{} unchanged, {changed} would route differently",
        report.unchanged
    );
    print_transitions(&report.transitions);
    if !report.workload.is_empty() {
        out!("review workload:");
        for group in &report.workload {
            out!("  {:<24} +{} −{}", group.group, group.added, group.removed);
        }
    }
    out!(
        "people rejected {} proposals the draft would allow; approved {} it would deny",
        report.rejected_now_allowed,
        report.approved_now_denied
    );
    if 0 < report.refused {
        out!(
            "{} proposals would be refused today (their context breaks the number rule or a declared shape)",
            report.refused
        );
    }
    print_policy_errors(&report.policy_errors);
}

/// Policies that failed to evaluate, each counted restrictively.
fn print_policy_errors(errors: &[proto::PolicyErrorCount]) {
    for error in errors {
        out!(
            "policy `{}` failed to evaluate on {} proposals (counted restrictively), e.g. {}: {}",
            error.policy,
            error.count,
            error.examples.join(", "),
            error.message
        );
    }
}
