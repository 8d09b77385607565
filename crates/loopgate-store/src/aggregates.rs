//! Analytics aggregates: what one proposal adds to the per-day counts the
//! reports are read from.
//!
//! A proposal's contribution is a pure function of its [`ReviewFact`]. Every
//! write that changes a fact reads it before and after, in the same
//! transaction, and applies the difference ([`Contribution::diff`]), so the
//! stored counts always equal the sum of the contributions of the stored
//! facts; a rebuild from scratch gives the same counts. Reports then read a
//! few thousand summed rows instead of a million proposals.
//!
//! Counts are kept per (system, metric, day of creation, action, key); a key
//! made of several parts joins them with [`SEP`]. Each row holds a count `n`
//! and two sums `a`, `b` whose meaning depends on the metric (see
//! [`metric`]); a row whose count reaches 0 is deleted, so every metric
//! counts something in `n`.
//!
//! The same rows keep the review queue's depth: a proposal whose task is
//! open or claimed adds one to its group's row under [`QUEUE_SYSTEM`] (see
//! [`Contribution::queue`]), so `/metrics` reads a few rows per group
//! instead of counting the open tasks.

use std::collections::{BTreeMap, BTreeSet};

use loopgate_core::{DecidedBy, ProposalStatus, Route, TaskKind, TaskState, Timestamp, Verdict};

use crate::ReviewFact;

/// Bump when a contribution changes meaning: stores rebuild their counts
/// when the version they hold differs.
pub const VERSION: &str = "3";

/// The `system` of the rows that count active tasks per group (metric
/// [`metric::QUEUE`], day 0, no action). No system is named with the empty
/// string, so these rows mix with no system's.
pub const QUEUE_SYSTEM: &str = "";

/// Joins the parts of a key (ASCII unit separator: never in names).
pub const SEP: char = '\u{1f}';

/// One day in milliseconds: counts are kept per UTC day of creation.
pub const DAY_MS: i64 = 86_400_000;

/// Confidence steps of the threshold curve (thousandths).
pub const THRESHOLD_STEPS: u32 = 1000;

/// Confidence steps of the AI's positive in fairness (hundredths).
pub const FAIRNESS_STEPS: u32 = 100;

/// Equal-width reliability bins of calibration.
pub const CALIBRATION_BINS: usize = 10;

/// The metrics and what their keys and sums hold.
pub mod metric {
    /// key: route. n: proposals.
    pub const ROUTE: &str = "route";
    /// key: status now. n: proposals.
    pub const STATUS: &str = "status";
    /// key: who settled it. n: proposals.
    pub const DECIDER: &str = "decider";
    /// key: day of creation. n: proposals.
    pub const SUBMITTED: &str = "submitted";
    /// key: day of resolution. n: proposals.
    pub const RESOLVED: &str = "resolved";
    /// key: `judged` (people judged it) or `overridden` (and found it wrong). n: proposals.
    pub const REVIEW: &str = "review";
    /// key: time to a reviewers' decision, as a [`super::time_bucket`]. n: proposals; a: Σ milliseconds.
    pub const TIME: &str = "time";
    /// key: `breach` (deadline missed) or `escalated`. n: tasks.
    pub const TASK: &str = "task";
    /// key: day a task opened. n: tasks.
    pub const QUEUE_OPENED: &str = "queue_opened";
    /// key: group (system [`super::QUEUE_SYSTEM`], day 0). n: tasks open
    /// or claimed in that group's queue now.
    pub const QUEUE: &str = "queue";
    /// key: day a task closed. n: tasks.
    pub const QUEUE_CLOSED: &str = "queue_closed";
    /// key: reliability bin, correct (0/1). n: judged items; a: Σ confidence; b: Σ confidence².
    pub const CALIBRATION: &str = "calibration";
    /// key: confidence step (thousandths), wrong (0/1). n: judged items.
    pub const THRESHOLD: &str = "threshold";
    /// key: empty. n: auto-approved proposals.
    pub const AUTO: &str = "auto";
    /// key: wrong (0/1). n: reviewed QA samples; a: Σ 1/π; b: Σ 1/π².
    pub const QA: &str = "qa";
    /// key: confidence step (hundredths, `-` without), people's positive (0/1). n: judged items.
    pub const FAIR_ALL: &str = "fair_all";
    /// key: attribute, value, confidence step, people's positive. n: judged items.
    pub const FAIR: &str = "fair";
    /// key: empty. n: items with two or more verdicts.
    pub const MULTI: &str = "multi";
    /// key: reviewer a, reviewer b (a ≤ b), verdict of a, verdict of b. n: pairs of verdicts.
    pub const PAIR: &str = "pair";
    /// key: verdicts on the item. n: items; a: Σ over verdicts of c·(c − 1).
    pub const FLEISS: &str = "fleiss";
    /// key: verdicts on the item, verdict. n: verdicts.
    pub const FLEISS_CATEGORY: &str = "fleiss_category";
    /// key: empty. n: pairable items; a: Krippendorff's disagreeing coincidences.
    pub const KRIPPENDORFF: &str = "krippendorff";
    /// key: verdict. n: pairable values.
    pub const KRIPPENDORFF_VALUE: &str = "krippendorff_value";
    /// key: reviewer, `decisions` | `approvals` | `co_decided` | `agreed`. n: decisions.
    pub const REVIEWER: &str = "reviewer";
    /// key: reviewer, [`super::time_bucket`] of the decision time. n: decisions; a: Σ milliseconds.
    pub const REVIEWER_TIME: &str = "reviewer_time";
}

/// One count row's share.
#[derive(Debug, Clone, PartialEq)]
pub struct Count {
    /// Which metric.
    pub metric: &'static str,
    /// Its key.
    pub key: String,
    /// Count.
    pub n: i64,
    /// First sum.
    pub a: f64,
    /// Second sum.
    pub b: f64,
}

/// What one proposal adds.
#[derive(Debug, Clone, PartialEq)]
pub struct Contribution {
    /// System.
    pub system: String,
    /// Action.
    pub action: String,
    /// UTC day of creation (days since the epoch).
    pub day: i64,
    /// Creation time.
    pub created_at: Timestamp,
    /// Its shares.
    pub counts: Vec<Count>,
    /// Its reviewers disagreed (it belongs in the adjudication queue).
    pub disagreement: bool,
    /// The group whose queue holds its task (open or claimed), if any.
    pub queue: Option<String>,
}

/// Joins key parts.
pub fn key<S: AsRef<str>>(parts: &[S]) -> String {
    let mut out = String::new();
    for (i, part) in parts.iter().enumerate() {
        if 0 < i {
            out.push(SEP);
        }
        out.push_str(part.as_ref());
    }
    out
}

/// The parts of a key.
pub fn parts(key: &str) -> Vec<&str> {
    key.split(SEP).collect()
}

/// The day (since the epoch) of a time in milliseconds.
pub fn day_of(millis: i64) -> i64 {
    millis.div_euclid(DAY_MS)
}

/// The largest step h in 0..=steps with h / steps ≤ `confidence` (so
/// `confidence ≥ h / steps` exactly when the step is at least h), or `None`
/// for a confidence below 0 or not a number.
pub fn step_of(confidence: f64, steps: u32) -> Option<u32> {
    if !(0.0..).contains(&confidence) {
        return None;
    }
    let scale = f64::from(steps);
    let mut h = (confidence * scale).floor().clamp(0.0, scale) as u32;
    while h < steps && f64::from(h + 1) / scale <= confidence {
        h += 1;
    }
    while 0 < h && confidence < f64::from(h) / scale {
        h -= 1;
    }
    Some(h)
}

/// Decision times are counted in buckets of two significant digits (exact
/// under 100 ms), named by their lower bound; each bucket also sums its
/// times, so a percentile reads as the mean time of the bucket it falls in
/// (within 10% of the exact percentile, exact when the bucket's times are
/// equal).
pub fn time_bucket(millis: i64) -> i64 {
    let millis = millis.max(0);
    let mut scale = 1;
    while 100 <= millis / scale {
        scale *= 10;
    }
    millis / scale * scale
}

/// People rejected or modified the AI's output.
pub fn wrong(fact: &ReviewFact) -> bool {
    fact.verdicts
        .iter()
        .any(|v| matches!(v.verdict, Verdict::Reject | Verdict::Modify))
}

/// People judged it (approve, reject or modify; escalations alone do not
/// count, nor does `respond`: words sent back are neither a yes nor a no).
pub fn judged(fact: &ReviewFact) -> bool {
    fact.verdicts
        .iter()
        .any(|v| !matches!(v.verdict, Verdict::Escalate | Verdict::Respond))
}

/// People's positive: nobody rejected it.
pub fn accepted(fact: &ReviewFact) -> bool {
    !fact.verdicts.iter().any(|v| v.verdict == Verdict::Reject)
}

/// Approve and modify count as approvals.
pub fn approving(verdict: Verdict) -> bool {
    matches!(verdict, Verdict::Approve | Verdict::Modify)
}

struct Builder(Vec<Count>);

impl Builder {
    fn add(&mut self, metric: &'static str, key: String) {
        self.sums(metric, key, 1, 0.0, 0.0);
    }

    fn sums(&mut self, metric: &'static str, key: String, n: i64, a: f64, b: f64) {
        self.0.push(Count {
            metric,
            key,
            n,
            a,
            b,
        });
    }
}

fn flag(value: bool) -> &'static str {
    if value { "1" } else { "0" }
}

impl Contribution {
    /// The contribution of `fact`.
    pub fn of(fact: &ReviewFact) -> Contribution {
        let mut out = Builder(Vec::with_capacity(24));
        overview(fact, &mut out);
        figures(fact, &mut out);
        let disagreement = agreement(fact, &mut out);
        Contribution {
            system: fact.system.to_string(),
            action: fact.action.clone(),
            day: day_of(fact.created_at.millis()),
            created_at: fact.created_at,
            counts: out.0,
            disagreement,
            queue: fact
                .task
                .as_ref()
                .filter(|task| matches!(task.state, TaskState::Open | TaskState::Claimed))
                .map(|task| task.group.clone()),
        }
    }

    /// `after − before`, summed per (metric, key), without the rows that do
    /// not change.
    pub fn diff(before: Option<&Contribution>, after: Option<&Contribution>) -> Vec<Count> {
        let mut sums: BTreeMap<(&'static str, &str), (i64, f64, f64)> = BTreeMap::new();
        for (sign, side) in [(-1, before), (1, after)] {
            for count in side.iter().flat_map(|c| &c.counts) {
                let entry = sums.entry((count.metric, count.key.as_str())).or_default();
                entry.0 += sign * count.n;
                entry.1 += sign as f64 * count.a;
                entry.2 += sign as f64 * count.b;
            }
        }
        sums.into_iter()
            .filter(|(_, (n, a, b))| *n != 0 || *a != 0.0 || *b != 0.0)
            .map(|((metric, key), (n, a, b))| Count {
                metric,
                key: key.to_owned(),
                n,
                a,
                b,
            })
            .collect()
    }
}

fn overview(fact: &ReviewFact, out: &mut Builder) {
    out.add(metric::ROUTE, fact.route.as_str().to_owned());
    out.add(metric::STATUS, fact.status.as_str().to_owned());
    out.add(
        metric::SUBMITTED,
        day_of(fact.created_at.millis()).to_string(),
    );
    if let Some(by) = fact.decided_by {
        out.add(metric::DECIDER, by.as_str().to_owned());
    }
    if let Some(at) = fact.decided_at {
        out.add(metric::RESOLVED, day_of(at.millis()).to_string());
    }
    if judged(fact) {
        out.add(metric::REVIEW, "judged".to_owned());
        if wrong(fact) {
            out.add(metric::REVIEW, "overridden".to_owned());
        }
    }
    if let (Some(DecidedBy::Reviewers), Some(at)) = (fact.decided_by, fact.decided_at) {
        let millis = (at.millis() - fact.created_at.millis()).max(0);
        out.sums(
            metric::TIME,
            time_bucket(millis).to_string(),
            1,
            millis as f64,
            0.0,
        );
    }
    if let Some(task) = &fact.task {
        let last = fact.verdicts.iter().map(|v| v.decided_at).max();
        let late = matches!((last, task.due_at), (Some(at), Some(due)) if due < at);
        if task.state == TaskState::Expired || late {
            out.add(metric::TASK, "breach".to_owned());
        }
        if 0 < task.level {
            out.add(metric::TASK, "escalated".to_owned());
        }
        out.add(
            metric::QUEUE_OPENED,
            day_of(task.created_at.millis()).to_string(),
        );
        let closed = match task.state {
            TaskState::Open | TaskState::Claimed => None,
            _ => Some(last.or(fact.decided_at).unwrap_or(task.created_at)),
        };
        if let Some(closed) = closed {
            out.add(metric::QUEUE_CLOSED, day_of(closed.millis()).to_string());
        }
    }
}

fn figures(fact: &ReviewFact, out: &mut Builder) {
    if fact.route == Route::Allow
        && fact.decided_by == Some(DecidedBy::Policy)
        && fact.status == ProposalStatus::Approved
    {
        out.add(metric::AUTO, String::new());
    }
    if !judged(fact) {
        return;
    }
    let wrong = wrong(fact);
    if let Some(c) = fact.confidence {
        let p = c.clamp(0.0, 1.0);
        let bin = loopgate_core::analytics::calibration::bin_of(p, CALIBRATION_BINS);
        out.sums(
            metric::CALIBRATION,
            key(&[bin.to_string().as_str(), flag(!wrong)]),
            1,
            p,
            p * p,
        );
        if let Some(step) = c.is_finite().then(|| step_of(c, THRESHOLD_STEPS)).flatten() {
            out.add(
                metric::THRESHOLD,
                key(&[step.to_string().as_str(), flag(wrong)]),
            );
        }
    }
    if let Some(task) = fact.task.as_ref().filter(|t| t.kind == TaskKind::QaSample) {
        let probability = task.sample_probability;
        if probability > 0.0 && probability <= 1.0 {
            let w = 1.0 / probability;
            out.sums(metric::QA, flag(wrong).to_owned(), 1, w, w * w);
        }
    }
    let step = fact
        .confidence
        .and_then(|c| step_of(c, FAIRNESS_STEPS))
        .map_or_else(|| "-".to_owned(), |h| h.to_string());
    let positive = flag(accepted(fact));
    out.add(metric::FAIR_ALL, key(&[step.as_str(), positive]));
    for (name, value) in &fact.attributes {
        out.add(
            metric::FAIR,
            key(&[name.as_str(), value.as_str(), step.as_str(), positive]),
        );
    }
}

/// Adds the agreement shares; says whether the reviewers disagreed.
fn agreement(fact: &ReviewFact, out: &mut Builder) -> bool {
    let start = fact.task.as_ref().map_or(fact.created_at, |t| t.created_at);
    let several = 2 <= fact.verdicts.len();
    for v in &fact.verdicts {
        let who = v.reviewer.as_str();
        out.add(metric::REVIEWER, key(&[who, "decisions"]));
        if approving(v.verdict) {
            out.add(metric::REVIEWER, key(&[who, "approvals"]));
        }
        let millis = (v.decided_at.millis() - start.millis()).max(0);
        let bucket = time_bucket(millis).to_string();
        out.sums(
            metric::REVIEWER_TIME,
            key(&[who, bucket.as_str()]),
            1,
            millis as f64,
            0.0,
        );
        if several {
            out.add(metric::REVIEWER, key(&[who, "co_decided"]));
            let others_agree = fact
                .verdicts
                .iter()
                .filter(|o| o.reviewer != v.reviewer)
                .all(|o| o.verdict == v.verdict);
            if others_agree {
                out.add(metric::REVIEWER, key(&[who, "agreed"]));
            }
        }
    }
    if !several {
        return false;
    }
    out.add(metric::MULTI, String::new());
    for (i, x) in fact.verdicts.iter().enumerate() {
        for y in &fact.verdicts[i + 1..] {
            let (first, second) = if x.reviewer <= y.reviewer {
                (x, y)
            } else {
                (y, x)
            };
            out.add(
                metric::PAIR,
                key(&[
                    first.reviewer.as_str(),
                    second.reviewer.as_str(),
                    first.verdict.as_str(),
                    second.verdict.as_str(),
                ]),
            );
        }
    }
    let m = fact.verdicts.len().to_string();
    let mut per_verdict: BTreeMap<&str, u64> = BTreeMap::new();
    for v in &fact.verdicts {
        *per_verdict.entry(v.verdict.as_str()).or_default() += 1;
    }
    let agreeing: u64 = per_verdict.values().map(|c| c * (c - 1)).sum();
    out.sums(metric::FLEISS, m.clone(), 1, agreeing as f64, 0.0);
    for (verdict, count) in &per_verdict {
        out.sums(
            metric::FLEISS_CATEGORY,
            key(&[m.as_str(), verdict]),
            i64::try_from(*count).unwrap_or(i64::MAX),
            0.0,
            0.0,
        );
    }
    // Krippendorff: one value per reviewer (their first verdict).
    let mut seen = BTreeSet::new();
    let values: Vec<&str> = fact
        .verdicts
        .iter()
        .filter(|v| seen.insert(v.reviewer.as_str()))
        .map(|v| v.verdict.as_str())
        .collect();
    let mut sums = loopgate_core::analytics::agreement::KrippendorffSums::<&str>::default();
    sums.add_unit(&values);
    if 0.0 < sums.disagreement || !sums.totals.is_empty() {
        out.sums(
            metric::KRIPPENDORFF,
            String::new(),
            1,
            sums.disagreement,
            0.0,
        );
        for (verdict, count) in sums.totals {
            out.sums(
                metric::KRIPPENDORFF_VALUE,
                verdict.to_owned(),
                i64::try_from(count).unwrap_or(i64::MAX),
                0.0,
                0.0,
            );
        }
    }
    per_verdict.len() > 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_compare_exactly() {
        for h in 0..=100 {
            let t = f64::from(h) / 100.0;
            assert_eq!(step_of(t, 100), Some(h), "{t}");
            if 0 < h {
                assert_eq!(step_of(t - 1e-12, 100), Some(h - 1), "just under {t}");
            }
        }
        assert_eq!(step_of(0.29, 100), Some(29));
        assert_eq!(step_of(1.5, 1000), Some(1000));
        assert_eq!(step_of(-0.1, 100), None);
        assert_eq!(step_of(f64::NAN, 100), None);
    }

    #[test]
    fn time_buckets_keep_two_digits() {
        assert_eq!(time_bucket(-5), 0);
        assert_eq!(time_bucket(99), 99);
        assert_eq!(time_bucket(12_345), 12_000);
    }
}
