//! `loopgate report …` (the analytics figures of a system and period) and
//! `loopgate export labels` (the decided proposals as JSONL or CSV).

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, Subcommand, ValueEnum};
use loopgate_proto as proto;

use crate::cli::Remote;
use crate::config::FileConfig;

/// Which proposals a report or export covers.
#[derive(Debug, Args)]
pub(crate) struct Scope {
    /// System id.
    #[arg(long)]
    pub(crate) system: String,
    /// The period up to now: `30d`, `12h`, `P7D`.
    #[arg(long, default_value = "30d")]
    since: String,
    /// Only this action.
    #[arg(long)]
    action: Option<String>,
    #[command(flatten)]
    pub(crate) remote: Remote,
}

impl Scope {
    pub(crate) fn query(&self) -> Vec<(&'static str, String)> {
        let mut query = vec![
            ("system", self.system.clone()),
            ("since", self.since.clone()),
        ];
        if let Some(action) = &self.action {
            query.push(("action", action.clone()));
        }
        query
    }
}

#[derive(Debug, Subcommand)]
pub(crate) enum ReportCommand {
    /// Volumes, override rate, decision times, deadline breaches, queue depth.
    Overview {
        #[command(flatten)]
        scope: Scope,
        /// Print the whole report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Calibration of confidence against human verdicts (ECE, Brier, bins).
    Calibration {
        #[command(flatten)]
        scope: Scope,
        /// Print the whole report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// The error rate of auto-approvals estimated from QA samples.
    Qa {
        #[command(flatten)]
        scope: Scope,
        /// Plan the sampling rate for this half-width of the interval.
        #[arg(long, default_value_t = 0.01)]
        half_width: f64,
        /// Print the whole report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// The lowest confidence threshold that keeps auto-approval's error under a target.
    Thresholds {
        #[command(flatten)]
        scope: Scope,
        /// Target error rate.
        #[arg(long, default_value_t = 0.01)]
        target: f64,
        /// Print the whole report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Fairness across the values of a subject attribute.
    Fairness {
        #[command(flatten)]
        scope: Scope,
        /// The subject attribute to group by.
        #[arg(long)]
        attribute: String,
        /// Groups smaller than this are not compared.
        #[arg(long, default_value_t = 30)]
        min_group: u64,
        /// Print the whole report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// One HTML file for auditors: inventory, oversight measures, figures,
    /// the audit log verified here, mapped to EU AI Act and NIST AI RMF.
    Evidence(crate::evidence::EvidenceArgs),
    /// Reviewer agreement (κ, α), diligence, and items to adjudicate.
    Agreement {
        #[command(flatten)]
        scope: Scope,
        /// Print the whole report as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum ExportCommand {
    /// Decided proposals with input, AI output, confidence, final output,
    /// verdicts, rationales, labels and subject attributes, for retraining.
    Labels {
        #[command(flatten)]
        scope: Scope,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Jsonl)]
        format: Format,
        /// Output file (`-` for stdout).
        #[arg(long, default_value = "-")]
        out: PathBuf,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum Format {
    /// One JSON object per line.
    Jsonl,
    /// One row per proposal; nested values as JSON text.
    Csv,
    /// The CSV's columns as a Parquet file (confidence as a double, modified
    /// as a boolean), in row groups of 10,000.
    Parquet,
}

fn pct(value: Option<f64>) -> String {
    value.map_or_else(|| "—".to_owned(), |v| format!("{:.1}%", v * 100.0))
}

fn num(value: Option<f64>) -> String {
    value.map_or_else(|| "—".to_owned(), |v| format!("{v:.3}"))
}

pub(crate) async fn report(file: &FileConfig, command: ReportCommand) -> anyhow::Result<()> {
    match command {
        ReportCommand::Evidence(args) => return crate::evidence::run(file, args).await,
        ReportCommand::Overview { scope, json } => {
            let client = file.client(&scope.remote)?;
            let r: proto::Overview = client.analytics("overview", &scope.query()).await?;
            if json {
                return crate::commands::print_json(&r);
            }
            out!(
                "{} from {} to {}",
                r.window.system,
                r.window.from,
                r.window.to
            );
            out!("  proposals        {}", r.proposals);
            out!(
                "  by grant         {} (approved without review)",
                r.approved_by_grant
            );
            out!(
                "  reviewed         {} (override rate {})",
                r.reviewed,
                pct(r.override_rate)
            );
            let secs = |ms: Option<u64>| {
                ms.map_or_else(|| "—".to_owned(), |m| format!("{:.1}s", m as f64 / 1000.0))
            };
            out!(
                "  time to decision p50 {}, p90 {}",
                secs(r.decision_time_p50_ms),
                secs(r.decision_time_p90_ms)
            );
            out!(
                "  deadline breaches {}, escalations {}",
                r.sla_breaches,
                r.escalations
            );
            out!("  by route  {:?}", r.by_route);
            out!("  by status {:?}", r.by_status);
        }
        ReportCommand::Calibration { scope, json } => {
            let client = file.client(&scope.remote)?;
            let r: proto::CalibrationReport =
                client.analytics("calibration", &scope.query()).await?;
            if json {
                return crate::commands::print_json(&r);
            }
            out!(
                "{} judged items: ECE {}, MCE {}, Brier {}",
                r.n,
                num(r.ece),
                num(r.mce),
                num(r.brier)
            );
            out!(
                "  {:<11} {:>6} {:>10} {:>9}",
                "confidence",
                "items",
                "stated",
                "right"
            );
            for b in r.bins.iter().filter(|b| 0 < b.n) {
                out!(
                    "  {:.1}–{:.1}     {:>6} {:>10} {:>9}",
                    b.lower,
                    b.upper,
                    b.n,
                    num(b.mean_confidence),
                    pct(b.accuracy)
                );
            }
        }
        ReportCommand::Qa {
            scope,
            half_width,
            json,
        } => {
            let client = file.client(&scope.remote)?;
            let mut query = scope.query();
            query.push(("half_width", half_width.to_string()));
            let r: proto::QaReport = client.analytics("qa", &query).await?;
            if json {
                return crate::commands::print_json(&r);
            }
            out!(
                "{} auto-approved; {} QA samples reviewed, {} wrong",
                r.auto_approved,
                r.sampled,
                r.errors
            );
            let interval = r.interval.map_or_else(String::new, |[lo, hi]| {
                format!(" ({}–{})", pct(Some(lo)), pct(Some(hi)))
            });
            out!("  estimated error rate {}{interval}", pct(r.error_rate));
            if let Some(rate) = r.sampling_rate_needed {
                out!(
                    "  to know it within ±{:.1} points, sample {} of auto-approvals",
                    half_width * 100.0,
                    pct(Some(rate))
                );
            }
        }
        ReportCommand::Thresholds {
            scope,
            target,
            json,
        } => {
            let client = file.client(&scope.remote)?;
            let mut query = scope.query();
            query.push(("target", target.to_string()));
            let r: proto::ThresholdReport = client.analytics("thresholds", &query).await?;
            if json {
                return crate::commands::print_json(&r);
            }
            match &r.recommended {
                Some(p) => out!(
                    "auto-approve at confidence ≥ {:.3}: error ≤ {} at {:.0}% confidence, {} of reviews saved",
                    p.threshold,
                    pct(Some(target)),
                    (1.0 - r.alpha) * 100.0,
                    pct(Some(p.workload_saved))
                ),
                None => out!(
                    "no threshold keeps the error under {} yet ({} judged items)",
                    pct(Some(target)),
                    r.n
                ),
            }
        }
        ReportCommand::Fairness {
            scope,
            attribute,
            min_group,
            json,
        } => {
            let client = file.client(&scope.remote)?;
            let mut query = scope.query();
            query.push(("attribute", attribute));
            query.push(("min_group", min_group.to_string()));
            let r: proto::FairnessReport = client.analytics("fairness", &query).await?;
            if json {
                return crate::commands::print_json(&r);
            }
            out!(
                "by {} (AI positive at confidence ≥ {})",
                r.attribute,
                r.threshold
            );
            out!(
                "  {:<16} {:>6} {:>9} {:>7} {:>7} {:>10}",
                "group",
                "n",
                "AI pos.",
                "TPR",
                "FPR",
                "approved"
            );
            for (g, h) in r.ai.groups.iter().zip(&r.reviewers.groups) {
                let small = if g.too_small { "  (too small)" } else { "" };
                out!(
                    "  {:<16} {:>6} {:>9} {:>7} {:>7} {:>10}{small}",
                    g.group,
                    g.n,
                    num(g.selection_rate),
                    num(g.tpr),
                    num(g.fpr),
                    num(h.selection_rate)
                );
            }
            out!(
                "  AI: parity difference {}, ratio {}, equalized odds difference {}",
                num(r.ai.demographic_parity_difference),
                num(r.ai.demographic_parity_ratio),
                num(r.ai.equalized_odds_difference)
            );
            out!(
                "  reviewers: approval parity difference {}, ratio {}",
                num(r.reviewers.demographic_parity_difference),
                num(r.reviewers.demographic_parity_ratio)
            );
        }
        ReportCommand::Agreement { scope, json } => {
            let client = file.client(&scope.remote)?;
            let r: proto::AgreementReport = client.analytics("agreement", &scope.query()).await?;
            if json {
                return crate::commands::print_json(&r);
            }
            out!(
                "{} items decided by several reviewers: Fleiss' κ {}, Krippendorff's α {}",
                r.multiply_reviewed,
                num(r.fleiss_kappa),
                num(r.krippendorff_alpha)
            );
            for p in &r.pairs {
                out!("  {} / {}: κ {} over {} items", p.a, p.b, num(p.kappa), p.n);
            }
            for v in &r.reviewers {
                let flag = if v.rubber_stamp {
                    "  RUBBER STAMP?"
                } else {
                    ""
                };
                out!(
                    "  {:<12} {:>5} decisions, approves {}, agrees with peers {}{flag}",
                    v.reviewer,
                    v.decisions,
                    pct(v.approve_rate),
                    pct(v.peer_agreement)
                );
            }
            for id in &r.disagreements {
                out!("  to adjudicate: {id}");
            }
        }
    }
    Ok(())
}

/// The columns of the CSV and Parquet exports, in order.
const COLUMNS: [&str; 16] = [
    "proposal",
    "system",
    "action",
    "created_at",
    "confidence",
    "status",
    "decided_by",
    "modified",
    "verdicts",
    "reviewers",
    "rationales",
    "input",
    "ai_output",
    "output",
    "labels",
    "attributes",
];

/// A record as the flat columns of [`COLUMNS`]: nested values as JSON text,
/// several decisions joined with `|`; confidence and modified as text too
/// (the Parquet writer types them).
fn flat(r: &proto::LabelRecord) -> anyhow::Result<[String; 16]> {
    let join = |f: &dyn Fn(&proto::LabelDecision) -> String| {
        r.decisions.iter().map(f).collect::<Vec<_>>().join("|")
    };
    let labels: Vec<&serde_json::Value> = r
        .decisions
        .iter()
        .filter_map(|d| d.labels.as_ref())
        .collect();
    Ok([
        r.proposal.clone(),
        r.system.clone(),
        r.action.clone(),
        r.created_at.clone(),
        r.confidence.map(|c| c.to_string()).unwrap_or_default(),
        crate::commands::json_name(&r.status),
        r.decided_by
            .as_ref()
            .map(crate::commands::json_name)
            .unwrap_or_default(),
        r.modified.to_string(),
        join(&|d| crate::commands::json_name(&d.verdict)),
        join(&|d| d.reviewer.clone()),
        join(&|d| d.rationale.clone().unwrap_or_default()),
        serde_json::to_string(&r.input)?,
        serde_json::to_string(&r.ai_output)?,
        serde_json::to_string(&r.output)?,
        serde_json::to_string(&labels)?,
        serde_json::to_string(&r.attributes)?,
    ])
}

/// A CSV cell. A cell a spreadsheet would run as a formula (beginning with
/// `=`, `+`, `-`, `@`, a tab or a carriage return: OWASP's rule) is
/// neutralised with a leading `'`, and quoted.
fn csv_field(text: &str) -> String {
    let formula = text.starts_with(['=', '+', '-', '@', '\t', '\r']);
    if formula {
        format!("\"'{}\"", text.replace('"', "\"\""))
    } else if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}

fn csv_row(r: &proto::LabelRecord) -> anyhow::Result<String> {
    Ok(flat(r)?
        .iter()
        .map(|f| csv_field(f))
        .collect::<Vec<_>>()
        .join(","))
}

/// Rows per Parquet row group (and per batch held in memory).
const PARQUET_ROWS: usize = 10_000;

/// Writes records to a Parquet file a row group at a time.
struct ParquetSink {
    writer: parquet::arrow::ArrowWriter<std::fs::File>,
    schema: std::sync::Arc<arrow_schema::Schema>,
    rows: Vec<proto::LabelRecord>,
}

impl ParquetSink {
    fn create(file: std::fs::File) -> anyhow::Result<ParquetSink> {
        use arrow_schema::{DataType, Field, Schema};
        let fields: Vec<Field> = COLUMNS
            .iter()
            .map(|name| match *name {
                "confidence" => Field::new(*name, DataType::Float64, true),
                "modified" => Field::new(*name, DataType::Boolean, false),
                "decided_by" => Field::new(*name, DataType::Utf8, true),
                _ => Field::new(*name, DataType::Utf8, false),
            })
            .collect();
        let schema = std::sync::Arc::new(Schema::new(fields));
        let props = parquet::file::properties::WriterProperties::builder()
            .set_max_row_group_row_count(Some(PARQUET_ROWS))
            .build();
        let writer = parquet::arrow::ArrowWriter::try_new(file, schema.clone(), Some(props))?;
        Ok(ParquetSink {
            writer,
            schema,
            rows: Vec::with_capacity(PARQUET_ROWS),
        })
    }

    fn push(&mut self, record: proto::LabelRecord) -> anyhow::Result<()> {
        self.rows.push(record);
        if self.rows.len() == PARQUET_ROWS {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> anyhow::Result<()> {
        use arrow_array::{ArrayRef, BooleanArray, Float64Array, RecordBatch, StringArray};
        if self.rows.is_empty() {
            return Ok(());
        }
        let flats = self
            .rows
            .iter()
            .map(flat)
            .collect::<anyhow::Result<Vec<_>>>()?;
        let columns: Vec<ArrayRef> = COLUMNS
            .iter()
            .enumerate()
            .map(|(i, name)| -> ArrayRef {
                match *name {
                    "confidence" => std::sync::Arc::new(Float64Array::from_iter(
                        self.rows.iter().map(|r| r.confidence),
                    )),
                    "modified" => std::sync::Arc::new(BooleanArray::from_iter(
                        self.rows.iter().map(|r| Some(r.modified)),
                    )),
                    "decided_by" => std::sync::Arc::new(StringArray::from_iter(
                        flats
                            .iter()
                            .map(|f| (!f[i].is_empty()).then_some(f[i].as_str())),
                    )),
                    _ => std::sync::Arc::new(StringArray::from_iter_values(
                        flats.iter().map(|f| f[i].as_str()),
                    )),
                }
            })
            .collect();
        let batch = RecordBatch::try_new(self.schema.clone(), columns)?;
        self.writer.write(&batch)?;
        self.rows.clear();
        Ok(())
    }

    fn finish(mut self) -> anyhow::Result<()> {
        self.flush()?;
        self.writer.close()?;
        Ok(())
    }
}

pub(crate) async fn export(file: &FileConfig, command: ExportCommand) -> anyhow::Result<()> {
    let ExportCommand::Labels { scope, format, out } = command;
    let client = file.client(&scope.remote)?;
    let to_stdout = out.as_os_str() == "-";
    let mut sink: Box<dyn std::io::Write> = if to_stdout {
        if let Format::Parquet = format {
            anyhow::bail!("Parquet is a binary file format: name a file with --out");
        }
        Box::new(std::io::BufWriter::new(std::io::stdout().lock()))
    } else {
        let created = std::fs::File::create(&out)
            .with_context(|| format!("cannot create `{}`", out.display()))?;
        if let Format::Parquet = format {
            return export_parquet(&client, &scope, created, &out).await;
        }
        Box::new(std::io::BufWriter::new(created))
    };
    if let Format::Csv = format {
        writeln!(sink, "{}", COLUMNS.join(","))?;
    }
    let n = each_record(&client, &scope, "cannot write the export", |record| {
        let line = match format {
            Format::Csv => csv_row(&record)?,
            _ => serde_json::to_string(&record)?,
        };
        writeln!(sink, "{line}")?;
        Ok(())
    })
    .await?;
    sink.flush()?;
    if !to_stdout {
        eprintln!("{n} labeled proposals written to {}", out.display());
    }
    Ok(())
}

async fn export_parquet(
    client: &loopgate_client::Client,
    scope: &Scope,
    file: std::fs::File,
    out: &std::path::Path,
) -> anyhow::Result<()> {
    let mut sink = ParquetSink::create(file)?;
    let n = each_record(client, scope, "cannot write the Parquet file", |record| {
        sink.push(record)
    })
    .await?;
    sink.finish().context("cannot finish the Parquet file")?;
    eprintln!("{n} labeled proposals written to {}", out.display());
    Ok(())
}

/// Streams the export into `write`; a write error stops the stream and is
/// returned under `what`. Returns how many records there were.
async fn each_record(
    client: &loopgate_client::Client,
    scope: &Scope,
    what: &'static str,
    mut write: impl FnMut(proto::LabelRecord) -> anyhow::Result<()>,
) -> anyhow::Result<u64> {
    let mut failed: Option<anyhow::Error> = None;
    let n = client
        .export_labels(&scope.query(), |record| {
            write(record).map_err(|error| {
                failed = Some(error);
                loopgate_client::ClientError::Transport("writing the export failed".to_owned())
            })
        })
        .await;
    match failed {
        Some(error) => Err(error.context(what)),
        None => Ok(n?),
    }
}

#[cfg(test)]
mod tests {
    use super::csv_field;

    #[test]
    fn csv_cells_that_a_spreadsheet_would_run_are_neutralised() {
        assert_eq!(csv_field("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        for cell in ["+1", "-1+2", "@SUM(A1)", "\tx", "\rx"] {
            assert!(csv_field(cell).starts_with("\"'"), "{cell}");
        }
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
    }
}
