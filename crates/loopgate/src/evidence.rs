//! `loopgate report evidence`: one self-contained HTML file for auditors:
//! the system's inventory entry, the oversight measures in force, the
//! feedback figures with charts, and the audit log verified offline, each
//! mapped to the EU AI Act and NIST AI RMF items it evidences.

use std::path::PathBuf;

use anyhow::Context as _;
use askama::Template;
use clap::Args;
use loopgate_proto as proto;

use crate::config::FileConfig;
use crate::report::Scope;

#[derive(Debug, Args)]
pub(crate) struct EvidenceArgs {
    #[command(flatten)]
    pub(crate) scope: Scope,
    /// Subject attributes to analyse for fairness (repeat for several).
    #[arg(long)]
    attribute: Vec<String>,
    /// The log's verifier key (or a file holding it) to check against;
    /// without it the server's own key is used, and the report says so.
    #[arg(long)]
    pubkey: Option<String>,
    /// Where to write the HTML.
    #[arg(long)]
    out: PathBuf,
}

/// The audit log's state as verified here.
struct AuditCheck {
    checkpoint: String,
    key: String,
    key_pinned: bool,
    outcome: Result<String, String>,
}

#[derive(Template)]
#[template(path = "evidence.html")]
struct Evidence {
    generated_at: String,
    version: &'static str,
    system: proto::System,
    overview: proto::Overview,
    calibration: proto::CalibrationReport,
    qa: proto::QaReport,
    thresholds: proto::ThresholdReport,
    agreement: proto::AgreementReport,
    fairness: Vec<proto::FairnessReport>,
    live: Option<proto::PolicyVersion>,
    activations: Vec<proto::PolicyActivation>,
    grants: Vec<proto::Grant>,
    audit: AuditCheck,
    daily_svg: String,
    reliability_svg: String,
    curve_svg: String,
}

impl Evidence {
    /// A share as a percentage, or a dash.
    fn pct(&self, value: &Option<f64>) -> String {
        value.map_or_else(|| "—".to_owned(), |v| format!("{:.1}%", v * 100.0))
    }

    /// A figure to three decimals, or a dash.
    fn num(&self, value: &Option<f64>) -> String {
        value.map_or_else(|| "—".to_owned(), |v| format!("{v:.3}"))
    }

    /// An enum's wire name.
    fn name(&self, value: &impl serde::Serialize) -> String {
        crate::commands::json_name(value)
    }

    /// Milliseconds as seconds, or a dash.
    fn secs(&self, value: &Option<u64>) -> String {
        value.map_or_else(
            || "—".to_owned(),
            |ms| format!("{:.1} s", ms as f64 / 1000.0),
        )
    }
}

pub(crate) async fn run(file: &FileConfig, args: EvidenceArgs) -> anyhow::Result<()> {
    let client = file.client(&args.scope.remote)?;
    let query = args.scope.query();
    let system = client
        .systems()
        .await?
        .items
        .into_iter()
        .find(|s| s.id == args.scope.system)
        .with_context(|| format!("there is no system `{}`", args.scope.system))?;
    let overview: proto::Overview = client.analytics("overview", &query).await?;
    let calibration: proto::CalibrationReport = client.analytics("calibration", &query).await?;
    let qa: proto::QaReport = client.analytics("qa", &query).await?;
    let thresholds: proto::ThresholdReport = client.analytics("thresholds", &query).await?;
    let agreement: proto::AgreementReport = client.analytics("agreement", &query).await?;
    let mut fairness = Vec::new();
    for attribute in &args.attribute {
        let mut q = query.clone();
        q.push(("attribute", attribute.clone()));
        fairness.push(client.analytics("fairness", &q).await?);
    }
    let policies = client.policies().await?.items;
    let live = policies.into_iter().find(|p| p.active);
    let activations = client.policy_activations().await?;
    let grants = client.grants(Some(&args.scope.system), true).await?.items;

    // The audit log: export it and verify every entry, tile and checkpoint here.
    let server_key = client.audit_pubkey().await?;
    let key = args.pubkey.clone().unwrap_or_else(|| server_key.clone());
    let verifier = crate::audit::read_key(&key)?;
    let dir = tempfile::tempdir().context("cannot make a temporary folder for the audit export")?;
    let outcome = match crate::audit::export(&client, dir.path()).await {
        Ok(_) => crate::audit::verify_dir(dir.path(), &verifier)
            .map(|s| {
                format!(
                    "verified: {} entries, {} checkpoints, every hash tile rebuilt and every signature checked",
                    s.entries, s.checkpoints
                )
            })
            .map_err(|e| format!("{e:#}")),
        Err(error) => Err(format!("{error:#}")),
    };
    let audit = AuditCheck {
        checkpoint: client.audit_checkpoint().await.unwrap_or_default(),
        key: verifier.to_text(),
        key_pinned: args.pubkey.is_some(),
        outcome,
    };

    let page = Evidence {
        generated_at: overview.window.to.clone(),
        version: env!("CARGO_PKG_VERSION"),
        daily_svg: loopgate_server::charts::daily(&overview.daily),
        reliability_svg: loopgate_server::charts::reliability(&calibration.bins),
        curve_svg: loopgate_server::charts::threshold_curve(&thresholds),
        system,
        overview,
        calibration,
        qa,
        thresholds,
        agreement,
        fairness,
        live,
        activations,
        grants,
        audit,
    };
    let html = page.render().context("cannot render the report")?;
    std::fs::write(&args.out, html)
        .with_context(|| format!("cannot write `{}`", args.out.display()))?;
    eprintln!(
        "evidence pack for `{}` written to {}{}",
        page.system.id,
        args.out.display(),
        match &page.audit.outcome {
            Ok(_) => String::new(),
            Err(_) => " (the audit log did NOT verify; see the report)".to_owned(),
        }
    );
    Ok(())
}
