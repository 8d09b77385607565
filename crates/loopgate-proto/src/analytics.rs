//! `/v1/analytics/*`: the feedback and oversight figures. A figure that has
//! no value for the data is `null`, never NaN (docs/analytics.md).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
#[cfg(feature = "openapi")]
use utoipa::ToSchema;

/// What a report covers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct AnalyticsWindow {
    /// System id.
    pub system: String,
    /// Only this action.
    pub action: Option<String>,
    /// Proposals created at or after (RFC 3339).
    pub from: String,
    /// Proposals created before (RFC 3339).
    pub to: String,
}

/// `GET /v1/analytics/overview`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct Overview {
    /// What it covers.
    pub window: AnalyticsWindow,
    /// Proposals submitted.
    pub proposals: u64,
    /// By route: allow, deny, review.
    pub by_route: BTreeMap<String, u64>,
    /// By status: pending, approved, rejected, cancelled.
    pub by_status: BTreeMap<String, u64>,
    /// Resolved proposals by who settled them.
    pub by_decider: BTreeMap<String, u64>,
    /// Proposals a standing grant approved without review (`by_decider`'s
    /// `grant`): neither reviewed by people nor automated by policy.
    #[serde(default)]
    pub approved_by_grant: u64,
    /// Proposals with at least one human decision.
    pub reviewed: u64,
    /// Of those, the ones where people rejected or modified the AI's output.
    pub overridden: u64,
    /// overridden / reviewed.
    pub override_rate: Option<f64>,
    /// Submission to resolution by people, median, milliseconds (from
    /// time buckets of two significant digits: within 10%).
    pub decision_time_p50_ms: Option<u64>,
    /// The same, 90th percentile.
    pub decision_time_p90_ms: Option<u64>,
    /// Tasks decided after their deadline, or expired.
    pub sla_breaches: u64,
    /// Tasks that were escalated at least once.
    pub escalations: u64,
    /// Per UTC day: submitted, resolved, and review tasks still open at its end.
    pub daily: Vec<DayCounts>,
}

/// One day of the overview.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct DayCounts {
    /// `YYYY-MM-DD`.
    pub day: String,
    /// Proposals submitted that day.
    pub submitted: u64,
    /// Proposals resolved that day.
    pub resolved: u64,
    /// Review tasks open at the end of the day (queue depth).
    pub open_at_end: u64,
}

/// `GET /v1/analytics/calibration`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct CalibrationReport {
    /// What it covers.
    pub window: AnalyticsWindow,
    /// Reviewed items with a confidence.
    pub n: u64,
    /// Expected calibration error.
    pub ece: Option<f64>,
    /// Maximum calibration error.
    pub mce: Option<f64>,
    /// Brier score.
    pub brier: Option<f64>,
    /// Reliability bins.
    pub bins: Vec<CalibrationBin>,
}

/// One reliability bin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct CalibrationBin {
    /// Lower edge (exclusive, except 0).
    pub lower: f64,
    /// Upper edge (inclusive).
    pub upper: f64,
    /// Items.
    pub n: u64,
    /// Mean confidence.
    pub mean_confidence: Option<f64>,
    /// Share the AI got right (approved unchanged).
    pub accuracy: Option<f64>,
}

/// `GET /v1/analytics/qa`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct QaReport {
    /// What it covers.
    pub window: AnalyticsWindow,
    /// Proposals approved by policy without review.
    pub auto_approved: u64,
    /// QA samples reviewed.
    pub sampled: u64,
    /// Samples people rejected or modified.
    pub errors: u64,
    /// Inverse-probability weighted error rate of auto-approved items.
    pub error_rate: Option<f64>,
    /// Kish's effective sample size.
    pub effective_n: Option<f64>,
    /// Interval at level 1 − alpha: `[low, high]`.
    pub interval: Option<[f64; 2]>,
    /// The half-width asked for.
    pub half_width: f64,
    /// The sampling rate that would reach it over this many auto-approvals.
    pub sampling_rate_needed: Option<f64>,
}

/// One point of the threshold curve.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct ThresholdPoint {
    /// Auto-approve at confidence ≥ this.
    pub threshold: f64,
    /// Reviewed items that would have been automated.
    pub automated: u64,
    /// Of those, judged wrong.
    pub errors: u64,
    /// errors / automated.
    pub error_rate: Option<f64>,
    /// Upper confidence bound of the error rate.
    pub upper_bound: Option<f64>,
    /// Share of review work saved.
    pub workload_saved: f64,
}

/// `GET /v1/analytics/thresholds`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct ThresholdReport {
    /// What it covers.
    pub window: AnalyticsWindow,
    /// Target error rate.
    pub target: f64,
    /// 1 − level of the bound.
    pub alpha: f64,
    /// Reviewed items with a confidence.
    pub n: u64,
    /// One point per confidence thousandth where reviewed items fall, highest first.
    pub curve: Vec<ThresholdPoint>,
    /// The lowest threshold within the target.
    pub recommended: Option<ThresholdPoint>,
}

/// One group of a fairness table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct GroupFigures {
    /// Attribute value.
    pub group: String,
    /// Items.
    pub n: u64,
    /// Share predicted positive.
    pub selection_rate: Option<f64>,
    /// Share positive in the reference.
    pub base_rate: Option<f64>,
    /// True positive rate.
    pub tpr: Option<f64>,
    /// False positive rate.
    pub fpr: Option<f64>,
    /// Below the minimum group size: not compared.
    pub too_small: bool,
}

/// Fairness figures of one kind of decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct FairnessFigures {
    /// Per group.
    pub groups: Vec<GroupFigures>,
    /// max − min selection rate.
    pub demographic_parity_difference: Option<f64>,
    /// Bootstrap interval of the difference.
    pub demographic_parity_difference_interval: Option<[f64; 2]>,
    /// min / max selection rate.
    pub demographic_parity_ratio: Option<f64>,
    /// The ratio is under 0.8.
    pub four_fifths_flag: Option<bool>,
    /// max(TPR spread, FPR spread).
    pub equalized_odds_difference: Option<f64>,
}

/// `GET /v1/analytics/fairness`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct FairnessReport {
    /// What it covers.
    pub window: AnalyticsWindow,
    /// The subject attribute grouped by.
    pub attribute: String,
    /// The AI counts as positive at confidence ≥ this (the requested
    /// threshold rounded up to a hundredth).
    pub threshold: f64,
    /// Groups smaller than this are not compared.
    pub min_group: u64,
    /// The AI (confident or not) against the human verdict (approve or not).
    pub ai: FairnessFigures,
    /// The human verdicts themselves: approval rates per group.
    pub reviewers: FairnessFigures,
}

/// Agreement of two reviewers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct PairAgreement {
    /// One reviewer.
    pub a: String,
    /// The other.
    pub b: String,
    /// Items both decided.
    pub n: u64,
    /// Cohen's κ on those items.
    pub kappa: Option<f64>,
}

/// One reviewer's figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct ReviewerFigures {
    /// Username.
    pub reviewer: String,
    /// Decisions.
    pub decisions: u64,
    /// Share of approvals (approve or modify).
    pub approve_rate: Option<f64>,
    /// Task creation to decision, median, milliseconds.
    pub median_decision_ms: Option<u64>,
    /// Share of co-decided items where they agreed with every other reviewer.
    pub peer_agreement: Option<f64>,
    /// Very fast approvals at a very high rate (docs/analytics.md).
    pub rubber_stamp: bool,
}

/// `GET /v1/analytics/agreement`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct AgreementReport {
    /// What it covers.
    pub window: AnalyticsWindow,
    /// Items decided by two or more reviewers.
    pub multiply_reviewed: u64,
    /// Fleiss' κ over the items with the most common number of reviewers.
    pub fleiss_kappa: Option<f64>,
    /// Krippendorff's α (nominal) over every multiply reviewed item.
    pub krippendorff_alpha: Option<f64>,
    /// Per pair of reviewers with common items.
    pub pairs: Vec<PairAgreement>,
    /// Per reviewer.
    pub reviewers: Vec<ReviewerFigures>,
    /// Proposals where reviewers disagreed: candidates for adjudication.
    pub disagreements: Vec<String>,
}

/// One line of `GET /v1/exports/labels` (NDJSON): a proposal people
/// decided, for retraining and evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct LabelRecord {
    /// Proposal id.
    pub proposal: String,
    /// System id.
    pub system: String,
    /// Action.
    pub action: String,
    /// RFC 3339.
    pub created_at: String,
    /// The input the AI saw.
    pub input: serde_json::Value,
    /// The output the AI proposed.
    pub ai_output: serde_json::Value,
    /// The output as resolved (edited when `modified`).
    pub output: serde_json::Value,
    /// The AI's confidence.
    pub confidence: Option<f64>,
    /// Final status.
    pub status: crate::ProposalStatus,
    /// Who settled it.
    pub decided_by: Option<crate::DecidedBy>,
    /// Approved with an edited output.
    pub modified: bool,
    /// The subject's attributes (the groups of fairness analysis).
    pub attributes: serde_json::Map<String, serde_json::Value>,
    /// Every human decision, in order.
    pub decisions: Vec<LabelDecision>,
}

/// A human decision in a label export.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct LabelDecision {
    /// Reviewer's username.
    pub reviewer: String,
    /// Verdict.
    pub verdict: crate::Verdict,
    /// Why.
    pub rationale: Option<String>,
    /// Labels the reviewer attached.
    pub labels: Option<serde_json::Value>,
    /// RFC 3339.
    pub decided_at: String,
}
