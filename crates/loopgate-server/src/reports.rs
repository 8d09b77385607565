//! Analytics reports: the store's review facts turned into the wire's
//! figures with core's analytics functions. Pure and synchronous; handlers
//! run it off the async threads.

use std::collections::{BTreeMap, BTreeSet};

use loopgate_core::analytics::agreement::{cohen_kappa, fleiss_kappa, krippendorff_alpha_nominal};
use loopgate_core::analytics::calibration::calibration;
use loopgate_core::analytics::fairness::{Fairness, Labeled, bootstrap, fairness};
use loopgate_core::analytics::thresholds::{qa_estimate, sampling_rate_for, threshold_advice};
use loopgate_core::{DecidedBy, ProposalStatus, Route, TaskKind, TaskState, Timestamp, Verdict};
use loopgate_proto as proto;
use loopgate_store::ReviewFact;

const DAY_MS: i64 = 86_400_000;
/// Bootstrap intervals are computed up to this many items.
const BOOTSTRAP_LIMIT: usize = 50_000;

/// People rejected or modified the AI's output.
fn wrong(fact: &ReviewFact) -> bool {
    fact.verdicts
        .iter()
        .any(|v| matches!(v.verdict, Verdict::Reject | Verdict::Modify))
}

/// People judged it (approve, reject or modify; escalations alone do not count).
fn judged(fact: &ReviewFact) -> bool {
    fact.verdicts.iter().any(|v| v.verdict != Verdict::Escalate)
}

fn percentile(sorted: &[i64], q: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    u64::try_from(sorted[rank - 1]).ok()
}

fn day_text(day: i64) -> String {
    let text = Timestamp::from_millis(day * DAY_MS).to_rfc3339();
    text.get(..10).unwrap_or(&text).to_owned()
}

/// Volumes, override rate, decision times, deadlines and queue depth.
pub(crate) fn overview(
    window: proto::AnalyticsWindow,
    facts: &[ReviewFact],
    from: Timestamp,
    to: Timestamp,
) -> proto::Overview {
    let mut by_route = BTreeMap::new();
    let mut by_status = BTreeMap::new();
    let mut by_decider = BTreeMap::new();
    let (mut reviewed, mut overridden, mut breaches, mut escalations) = (0, 0, 0, 0);
    let mut times = Vec::new();
    let first_day = from.millis().div_euclid(DAY_MS);
    let last_day = (to.millis() - 1).div_euclid(DAY_MS).max(first_day);
    let days = usize::try_from(last_day - first_day + 1)
        .unwrap_or(0)
        .min(3660);
    let mut submitted = vec![0_u64; days];
    let mut resolved = vec![0_u64; days];
    let mut delta = vec![0_i64; days + 1];
    let index = |t: Timestamp| -> Option<usize> {
        usize::try_from(t.millis().div_euclid(DAY_MS) - first_day)
            .ok()
            .filter(|i| *i < days)
    };
    for fact in facts {
        *by_route.entry(fact.route.as_str().to_owned()).or_insert(0) += 1;
        *by_status
            .entry(fact.status.as_str().to_owned())
            .or_insert(0) += 1;
        if let Some(by) = fact.decided_by {
            *by_decider.entry(by.as_str().to_owned()).or_insert(0) += 1;
        }
        if judged(fact) {
            reviewed += 1;
            if wrong(fact) {
                overridden += 1;
            }
        }
        if let (Some(DecidedBy::Reviewers), Some(at)) = (fact.decided_by, fact.decided_at) {
            times.push(at.millis() - fact.created_at.millis());
        }
        if let Some(i) = index(fact.created_at) {
            submitted[i] += 1;
        }
        if let Some(i) = fact.decided_at.and_then(index) {
            resolved[i] += 1;
        }
        if let Some(task) = &fact.task {
            let last = fact.verdicts.iter().map(|v| v.decided_at).max();
            let late = matches!((last, task.due_at), (Some(at), Some(due)) if due < at);
            if task.state == TaskState::Expired || late {
                breaches += 1;
            }
            if 0 < task.level {
                escalations += 1;
            }
            let closed = match task.state {
                TaskState::Open | TaskState::Claimed => None,
                _ => Some(last.or(fact.decided_at).unwrap_or(task.created_at)),
            };
            if let Some(i) = index(task.created_at) {
                delta[i] += 1;
                if let Some(j) = closed.and_then(index) {
                    delta[j] -= 1;
                } else if closed.is_some() {
                    delta[days] -= 1;
                }
            }
        }
    }
    times.sort_unstable();
    let mut open = 0_i64;
    let daily = (0..days)
        .map(|i| {
            open += delta[i];
            proto::DayCounts {
                day: day_text(first_day + i as i64),
                submitted: submitted[i],
                resolved: resolved[i],
                open_at_end: u64::try_from(open).unwrap_or(0),
            }
        })
        .collect();
    proto::Overview {
        window,
        proposals: facts.len() as u64,
        by_route,
        by_status,
        by_decider,
        reviewed,
        overridden,
        override_rate: (0 < reviewed).then(|| overridden as f64 / reviewed as f64),
        decision_time_p50_ms: percentile(&times, 0.5),
        decision_time_p90_ms: percentile(&times, 0.9),
        sla_breaches: breaches,
        escalations,
        daily,
    }
}

/// Confidence against the human verdict, over judged items.
pub(crate) fn calibration_report(
    window: proto::AnalyticsWindow,
    facts: &[ReviewFact],
) -> proto::CalibrationReport {
    let items: Vec<(f64, bool)> = facts
        .iter()
        .filter(|f| judged(f))
        .filter_map(|f| f.confidence.map(|c| (c, !wrong(f))))
        .collect();
    let c = calibration(&items, 10);
    proto::CalibrationReport {
        window,
        n: c.n,
        ece: c.ece,
        mce: c.mce,
        brier: c.brier,
        bins: c
            .bins
            .into_iter()
            .map(|b| proto::CalibrationBin {
                lower: b.lower,
                upper: b.upper,
                n: b.n,
                mean_confidence: b.mean_confidence,
                accuracy: b.accuracy,
            })
            .collect(),
    }
}

/// The error of auto-approval estimated from QA samples.
pub(crate) fn qa_report(
    window: proto::AnalyticsWindow,
    facts: &[ReviewFact],
    half_width: f64,
    alpha: f64,
) -> proto::QaReport {
    let auto_approved = facts
        .iter()
        .filter(|f| {
            f.route == Route::Allow
                && f.decided_by == Some(DecidedBy::Policy)
                && f.status == ProposalStatus::Approved
        })
        .count() as u64;
    let samples: Vec<(f64, bool)> = facts
        .iter()
        .filter(|f| judged(f))
        .filter_map(|f| {
            let task = f.task.as_ref()?;
            (task.kind == TaskKind::QaSample).then_some((task.sample_probability, wrong(f)))
        })
        .collect();
    let q = qa_estimate(&samples, alpha);
    proto::QaReport {
        window,
        auto_approved,
        sampled: q.sampled,
        errors: q.errors,
        sampling_rate_needed: sampling_rate_for(
            q.error_rate.unwrap_or(0.5),
            half_width,
            auto_approved,
            alpha,
        ),
        error_rate: q.error_rate,
        effective_n: q.effective_n,
        interval: q.interval.map(|(lo, hi)| [lo, hi]),
        half_width,
    }
}

fn point(p: loopgate_core::analytics::thresholds::ThresholdPoint) -> proto::ThresholdPoint {
    proto::ThresholdPoint {
        threshold: p.threshold,
        automated: p.automated,
        errors: p.errors,
        error_rate: p.error_rate,
        upper_bound: p.upper_bound,
        workload_saved: p.workload_saved,
    }
}

/// The lowest confidence threshold within the target error.
pub(crate) fn threshold_report(
    window: proto::AnalyticsWindow,
    facts: &[ReviewFact],
    target: f64,
    alpha: f64,
) -> proto::ThresholdReport {
    let items: Vec<(f64, bool)> = facts
        .iter()
        .filter(|f| judged(f))
        .filter_map(|f| f.confidence.map(|c| (c, wrong(f))))
        .collect();
    let advice = threshold_advice(&items, target, alpha);
    proto::ThresholdReport {
        window,
        target,
        alpha,
        n: advice.n,
        curve: advice.curve.into_iter().map(point).collect(),
        recommended: advice.recommended.map(point),
    }
}

fn group_of(fact: &ReviewFact) -> String {
    fact.group.clone().unwrap_or_else(|| "(none)".to_owned())
}

fn figures(result: Fairness, interval: Option<(f64, f64)>, rates: bool) -> proto::FairnessFigures {
    proto::FairnessFigures {
        groups: result
            .groups
            .into_iter()
            .map(|g| proto::GroupFigures {
                group: g.group,
                n: g.n,
                selection_rate: g.selection_rate,
                base_rate: if rates { g.base_rate } else { None },
                tpr: if rates { g.tpr } else { None },
                fpr: if rates { g.fpr } else { None },
                too_small: g.too_small,
            })
            .collect(),
        demographic_parity_difference: result.demographic_parity_difference,
        demographic_parity_difference_interval: interval.map(|(lo, hi)| [lo, hi]),
        demographic_parity_ratio: result.demographic_parity_ratio,
        four_fifths_flag: result.four_fifths_flag,
        equalized_odds_difference: if rates {
            result.equalized_odds_difference
        } else {
            None
        },
    }
}

/// Fairness across the values of `attribute`: the AI (confidence at or
/// above `threshold` is its positive) against the human verdict (approve or
/// modify is positive), and the human approval rates on their own.
pub(crate) fn fairness_report(
    window: proto::AnalyticsWindow,
    facts: &[ReviewFact],
    attribute: &str,
    threshold: f64,
    min_group: u64,
    alpha: f64,
) -> proto::FairnessReport {
    let judged_facts: Vec<&ReviewFact> = facts.iter().filter(|f| judged(f)).collect();
    let groups: Vec<String> = judged_facts.iter().map(|f| group_of(f)).collect();
    let ai: Vec<Labeled<'_>> = judged_facts
        .iter()
        .zip(&groups)
        .filter_map(|(f, group)| {
            Some(Labeled {
                group,
                truth: !f.verdicts.iter().any(|v| v.verdict == Verdict::Reject),
                predicted: threshold <= f.confidence?,
            })
        })
        .collect();
    let people: Vec<Labeled<'_>> = judged_facts
        .iter()
        .zip(&groups)
        .map(|(f, group)| {
            let approved = !f.verdicts.iter().any(|v| v.verdict == Verdict::Reject);
            Labeled {
                group,
                truth: approved,
                predicted: approved,
            }
        })
        .collect();
    let interval = |items: &[Labeled<'_>]| {
        (items.len() <= BOOTSTRAP_LIMIT)
            .then(|| {
                bootstrap(
                    items,
                    |sample| fairness(sample, min_group).demographic_parity_difference,
                    200,
                    alpha,
                    0x6c6f_6f70,
                )
            })
            .flatten()
    };
    proto::FairnessReport {
        window,
        attribute: attribute.to_owned(),
        threshold,
        min_group,
        ai: figures(fairness(&ai, min_group), interval(&ai), true),
        reviewers: figures(fairness(&people, min_group), interval(&people), false),
    }
}

/// Agreement between reviewers, their diligence, and the items to adjudicate.
pub(crate) fn agreement_report(
    window: proto::AnalyticsWindow,
    facts: &[ReviewFact],
) -> proto::AgreementReport {
    const CATEGORIES: [Verdict; 4] = [
        Verdict::Approve,
        Verdict::Reject,
        Verdict::Modify,
        Verdict::Escalate,
    ];
    let category = |v: Verdict| CATEGORIES.iter().position(|c| *c == v).unwrap_or(0);
    let several: Vec<&ReviewFact> = facts.iter().filter(|f| 2 <= f.verdicts.len()).collect();
    // Pairs.
    // Per pair of reviewers: the two verdict sequences on common items.
    type Ratings = (Vec<usize>, Vec<usize>);
    let mut pairs: BTreeMap<(&str, &str), Ratings> = BTreeMap::new();
    for fact in &several {
        for (i, x) in fact.verdicts.iter().enumerate() {
            for y in &fact.verdicts[i + 1..] {
                let (first, second) = if x.reviewer <= y.reviewer {
                    (x, y)
                } else {
                    (y, x)
                };
                let entry = pairs
                    .entry((first.reviewer.as_str(), second.reviewer.as_str()))
                    .or_default();
                entry.0.push(category(first.verdict));
                entry.1.push(category(second.verdict));
            }
        }
    }
    // Fleiss over the most common number of reviewers per item.
    let mut by_count: BTreeMap<usize, usize> = BTreeMap::new();
    for fact in &several {
        *by_count.entry(fact.verdicts.len()).or_default() += 1;
    }
    let common = by_count
        .iter()
        .max_by_key(|(m, n)| (**n, std::cmp::Reverse(**m)))
        .map(|(m, _)| *m);
    let table: Vec<Vec<u64>> = several
        .iter()
        .filter(|f| Some(f.verdicts.len()) == common)
        .map(|f| {
            let mut row = vec![0_u64; CATEGORIES.len()];
            for v in &f.verdicts {
                row[category(v.verdict)] += 1;
            }
            row
        })
        .collect();
    // Krippendorff over every reviewer and multiply reviewed item.
    let reviewers: BTreeSet<&str> = several
        .iter()
        .flat_map(|f| f.verdicts.iter().map(|v| v.reviewer.as_str()))
        .collect();
    let ratings: Vec<Vec<Option<usize>>> = reviewers
        .iter()
        .map(|r| {
            several
                .iter()
                .map(|f| {
                    f.verdicts
                        .iter()
                        .find(|v| v.reviewer == *r)
                        .map(|v| category(v.verdict))
                })
                .collect()
        })
        .collect();
    // Per reviewer, over all their decisions.
    #[derive(Default)]
    struct Tally {
        decisions: u64,
        approvals: u64,
        times: Vec<i64>,
        co_decided: u64,
        agreed: u64,
    }
    let mut tallies: BTreeMap<&str, Tally> = BTreeMap::new();
    let mut disagreements = Vec::new();
    for fact in facts {
        let unanimous = fact
            .verdicts
            .windows(2)
            .all(|w| w[0].verdict == w[1].verdict);
        if 2 <= fact.verdicts.len() && !unanimous && disagreements.len() < 100 {
            disagreements.push(fact.id.to_string());
        }
        let start = fact.task.as_ref().map_or(fact.created_at, |t| t.created_at);
        for v in &fact.verdicts {
            let tally = tallies.entry(v.reviewer.as_str()).or_default();
            tally.decisions += 1;
            if matches!(v.verdict, Verdict::Approve | Verdict::Modify) {
                tally.approvals += 1;
            }
            tally.times.push(v.decided_at.millis() - start.millis());
            if 2 <= fact.verdicts.len() {
                tally.co_decided += 1;
                let others_agree = fact
                    .verdicts
                    .iter()
                    .filter(|o| o.reviewer != v.reviewer)
                    .all(|o| o.verdict == v.verdict);
                if others_agree {
                    tally.agreed += 1;
                }
            }
        }
    }
    let reviewers = tallies
        .into_iter()
        .map(|(reviewer, mut t)| {
            t.times.sort_unstable();
            let approve_rate = (0 < t.decisions).then(|| t.approvals as f64 / t.decisions as f64);
            let median = percentile(&t.times, 0.5);
            proto::ReviewerFigures {
                reviewer: reviewer.to_owned(),
                decisions: t.decisions,
                approve_rate,
                median_decision_ms: median,
                peer_agreement: (0 < t.co_decided).then(|| t.agreed as f64 / t.co_decided as f64),
                rubber_stamp: 20 <= t.decisions
                    && approve_rate.is_some_and(|r| 0.95 <= r)
                    && median.is_some_and(|m| m < 10_000),
            }
        })
        .collect();
    proto::AgreementReport {
        window,
        multiply_reviewed: several.len() as u64,
        fleiss_kappa: fleiss_kappa(&table),
        krippendorff_alpha: krippendorff_alpha_nominal(&ratings),
        pairs: pairs
            .into_iter()
            .map(|((a, b), (x, y))| proto::PairAgreement {
                a: a.to_owned(),
                b: b.to_owned(),
                n: x.len() as u64,
                kappa: cohen_kappa(&x, &y),
            })
            .collect(),
        reviewers,
        disagreements,
    }
}
