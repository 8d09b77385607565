//! Analytics reports: the store's summed counts (see
//! `loopgate_store::aggregates`) turned into the wire's figures with core's
//! analytics functions. Pure and synchronous; handlers run it off the async
//! threads.

use std::collections::BTreeMap;

use loopgate_core::Timestamp;
use loopgate_core::analytics::agreement::{KrippendorffSums, cohen_kappa_from, fleiss_kappa_from};
use loopgate_core::analytics::calibration::{BinSums, calibration_from_sums};
use loopgate_core::analytics::fairness::{
    Fairness, GroupCounts, bootstrap_counts, fairness_from_counts,
};
use loopgate_core::analytics::thresholds::{
    QaSums, qa_from_sums, sampling_rate_for, threshold_advice_from,
};
use loopgate_proto as proto;
use loopgate_store::aggregates::{
    self, CALIBRATION_BINS, Contribution, DAY_MS, FAIRNESS_STEPS, THRESHOLD_STEPS, metric, parts,
    step_of,
};
use loopgate_store::{ReviewFact, Total};

/// A count and its two sums.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Sums {
    n: i64,
    a: f64,
    b: f64,
}

impl Sums {
    fn count(self) -> u64 {
        u64::try_from(self.n).unwrap_or(0)
    }
}

/// The counts of a window, summed per metric and key: the store's rows for
/// the whole days, plus the contributions of the facts of the window's
/// first, partial day.
#[derive(Debug, Default)]
pub(crate) struct Totals(BTreeMap<(String, String), Sums>);

impl Totals {
    pub(crate) fn new(rows: Vec<Total>, partial: &[ReviewFact]) -> Totals {
        let mut totals = Totals::default();
        for row in rows {
            totals.add(row.metric, row.key, row.n, row.a, row.b);
        }
        for fact in partial {
            for count in Contribution::of(fact).counts {
                totals.add(
                    count.metric.to_owned(),
                    count.key,
                    count.n,
                    count.a,
                    count.b,
                );
            }
        }
        totals
    }

    fn add(&mut self, metric: String, key: String, n: i64, a: f64, b: f64) {
        let sums = self.0.entry((metric, key)).or_default();
        sums.n += n;
        sums.a += a;
        sums.b += b;
    }

    /// The keys of one metric with their sums.
    fn metric<'a>(&'a self, name: &'a str) -> impl Iterator<Item = (&'a str, Sums)> + 'a {
        self.0
            .range((name.to_owned(), String::new())..)
            .take_while(move |((m, _), _)| m == name)
            .map(|((_, key), sums)| (key.as_str(), *sums))
    }

    fn get(&self, metric: &str, key: &str) -> Sums {
        self.0
            .get(&(metric.to_owned(), key.to_owned()))
            .copied()
            .unwrap_or_default()
    }

    /// Key → count of one metric.
    fn counts(&self, name: &str) -> BTreeMap<String, u64> {
        self.metric(name)
            .filter(|(_, s)| 0 < s.n)
            .map(|(key, s)| (key.to_owned(), s.count()))
            .collect()
    }
}

/// The metrics each report reads.
pub(crate) mod needs {
    use super::metric as m;
    pub(crate) const OVERVIEW: &[&str] = &[
        m::ROUTE,
        m::STATUS,
        m::DECIDER,
        m::SUBMITTED,
        m::RESOLVED,
        m::REVIEW,
        m::TIME,
        m::TASK,
        m::QUEUE_OPENED,
        m::QUEUE_CLOSED,
    ];
    pub(crate) const CALIBRATION: &[&str] = &[m::CALIBRATION];
    pub(crate) const QA: &[&str] = &[m::AUTO, m::QA];
    pub(crate) const THRESHOLDS: &[&str] = &[m::THRESHOLD];
    pub(crate) const FAIRNESS: &[&str] = &[m::FAIR_ALL, m::FAIR];
    pub(crate) const AGREEMENT: &[&str] = &[
        m::MULTI,
        m::PAIR,
        m::FLEISS,
        m::FLEISS_CATEGORY,
        m::KRIPPENDORFF,
        m::KRIPPENDORFF_VALUE,
        m::REVIEWER,
        m::REVIEWER_TIME,
    ];
}

/// Counts and summed times per time bucket.
type Histogram = BTreeMap<i64, (u64, f64)>;

/// The `q` quantile (nearest rank) of a histogram of time buckets, as the
/// mean time of the bucket it falls in.
fn percentile(histogram: &Histogram, q: f64) -> Option<u64> {
    let total: u64 = histogram.values().map(|(n, _)| n).sum();
    if total == 0 {
        return None;
    }
    let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
    let mut seen = 0;
    for (n, sum) in histogram.values() {
        seen += n;
        if rank <= seen {
            return Some((sum / *n as f64).round() as u64);
        }
    }
    None
}

fn add_time(histogram: &mut Histogram, bucket: &str, sums: Sums) {
    if let (Ok(bucket), true) = (bucket.parse::<i64>(), 0 < sums.n) {
        let slot = histogram.entry(bucket).or_default();
        slot.0 += sums.count();
        slot.1 += sums.a;
    }
}

fn day_text(day: i64) -> String {
    let text = Timestamp::from_millis(day * DAY_MS).to_rfc3339();
    text.get(..10).unwrap_or(&text).to_owned()
}

/// Volumes, override rate, decision times, deadlines and queue depth.
pub(crate) fn overview(
    window: proto::AnalyticsWindow,
    totals: &Totals,
    from: Timestamp,
    to: Timestamp,
) -> proto::Overview {
    let first_day = aggregates::day_of(from.millis());
    let last_day = aggregates::day_of(to.millis() - 1).max(first_day);
    let days = usize::try_from(last_day - first_day + 1)
        .unwrap_or(0)
        .min(3660);
    let per_day = |name: &str| -> Vec<i64> {
        let mut out = vec![0_i64; days];
        for (key, sums) in totals.metric(name) {
            let index = key
                .parse::<i64>()
                .ok()
                .and_then(|day| usize::try_from(day - first_day).ok())
                .filter(|i| *i < days);
            if let Some(i) = index {
                out[i] += sums.n;
            }
        }
        out
    };
    let (submitted, resolved) = (per_day(metric::SUBMITTED), per_day(metric::RESOLVED));
    let (opened, closed) = (per_day(metric::QUEUE_OPENED), per_day(metric::QUEUE_CLOSED));
    let mut open = 0_i64;
    let daily = (0..days)
        .map(|i| {
            open += opened[i] - closed[i];
            proto::DayCounts {
                day: day_text(first_day + i as i64),
                submitted: u64::try_from(submitted[i]).unwrap_or(0),
                resolved: u64::try_from(resolved[i]).unwrap_or(0),
                open_at_end: u64::try_from(open).unwrap_or(0),
            }
        })
        .collect();
    let by_route = totals.counts(metric::ROUTE);
    let reviewed = totals.get(metric::REVIEW, "judged").count();
    let overridden = totals.get(metric::REVIEW, "overridden").count();
    let mut times = Histogram::new();
    for (bucket, sums) in totals.metric(metric::TIME) {
        add_time(&mut times, bucket, sums);
    }
    let by_decider = totals.counts(metric::DECIDER);
    proto::Overview {
        window,
        proposals: by_route.values().sum(),
        by_route,
        by_status: totals.counts(metric::STATUS),
        approved_by_grant: by_decider.get("grant").copied().unwrap_or(0),
        by_decider,
        reviewed,
        overridden,
        override_rate: (0 < reviewed).then(|| overridden as f64 / reviewed as f64),
        decision_time_p50_ms: percentile(&times, 0.5),
        decision_time_p90_ms: percentile(&times, 0.9),
        sla_breaches: totals.get(metric::TASK, "breach").count(),
        escalations: totals.get(metric::TASK, "escalated").count(),
        daily,
    }
}

/// Confidence against the human verdict, over judged items.
pub(crate) fn calibration_report(
    window: proto::AnalyticsWindow,
    totals: &Totals,
) -> proto::CalibrationReport {
    let mut bins = vec![BinSums::default(); CALIBRATION_BINS];
    let mut squared_error = 0.0;
    for (key, sums) in totals.metric(metric::CALIBRATION) {
        let [bin, correct] = parts(key)[..] else {
            continue;
        };
        let (Ok(bin), correct) = (bin.parse::<usize>(), correct == "1") else {
            continue;
        };
        let Some(slot) = bins.get_mut(bin) else {
            continue;
        };
        let y = if correct { 1.0 } else { 0.0 };
        slot.n += sums.count();
        slot.confidence += sums.a;
        slot.correct += y * sums.n as f64;
        // Σ (p − y)² = Σ p² − 2y Σ p + y² n.
        squared_error += sums.b - 2.0 * y * sums.a + y * sums.n as f64;
    }
    let c = calibration_from_sums(&bins, squared_error.max(0.0));
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
    totals: &Totals,
    half_width: f64,
    alpha: f64,
) -> proto::QaReport {
    let auto_approved = totals.get(metric::AUTO, "").count();
    let (right, wrong) = (totals.get(metric::QA, "0"), totals.get(metric::QA, "1"));
    let sums = QaSums {
        sampled: right.count() + wrong.count(),
        errors: wrong.count(),
        weight: right.a + wrong.a,
        weight_squared: right.b + wrong.b,
        error_weight: wrong.a,
    };
    let q = qa_from_sums(&sums, alpha);
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

/// The lowest confidence threshold (in thousandths) within the target error.
pub(crate) fn threshold_report(
    window: proto::AnalyticsWindow,
    totals: &Totals,
    target: f64,
    alpha: f64,
) -> proto::ThresholdReport {
    let mut levels: BTreeMap<u32, (u64, u64)> = BTreeMap::new();
    for (key, sums) in totals.metric(metric::THRESHOLD) {
        let [step, wrong] = parts(key)[..] else {
            continue;
        };
        let Ok(step) = step.parse::<u32>() else {
            continue;
        };
        let level = levels.entry(step).or_default();
        level.0 += sums.count();
        if wrong == "1" {
            level.1 += sums.count();
        }
    }
    let levels: Vec<(f64, u64, u64)> = levels
        .into_iter()
        .map(|(step, (items, errors))| {
            (f64::from(step) / f64::from(THRESHOLD_STEPS), items, errors)
        })
        .collect();
    let advice = threshold_advice_from(&levels, target, alpha);
    proto::ThresholdReport {
        window,
        target,
        alpha,
        n: advice.n,
        curve: advice.curve.into_iter().map(point).collect(),
        recommended: advice.recommended.map(point),
    }
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

/// The group of proposals without the attribute.
const NONE: &str = "(none)";

/// The AI's positive in fairness: the step (hundredths) a confidence must
/// reach; `threshold` rounds up to the next hundredth.
pub(crate) fn fairness_step(threshold: f64) -> u32 {
    match step_of(threshold, FAIRNESS_STEPS) {
        Some(h) if f64::from(h) / f64::from(FAIRNESS_STEPS) < threshold => h + 1,
        Some(h) => h,
        None => 0,
    }
}

/// One kind of item: group, reference label, prediction; and how many.
type Cell = ((String, bool, bool), u64);

/// Fairness of cells, with `counts[i]` items of `cells[i]`'s kind.
fn fairness_of(cells: &[Cell], counts: &[u64], min_group: u64) -> Fairness {
    let mut by_group: BTreeMap<&str, GroupCounts> = BTreeMap::new();
    for (((group, truth, predicted), _), count) in cells.iter().zip(counts) {
        by_group
            .entry(group.as_str())
            .or_default()
            .add(*truth, *predicted, *count);
    }
    fairness_from_counts(by_group, min_group)
}

/// Fairness across the values of `attribute`: the AI (confidence at or
/// above the threshold is its positive) against the human verdict (nobody
/// rejected it is positive), and the human approval rates on their own.
pub(crate) fn fairness_report(
    window: proto::AnalyticsWindow,
    totals: &Totals,
    attribute: &str,
    threshold: f64,
    min_group: u64,
    alpha: f64,
) -> proto::FairnessReport {
    let step = fairness_step(threshold);
    // (group, step or None, people's positive) → items.
    let mut by_value: BTreeMap<(String, Option<u32>, bool), i64> = BTreeMap::new();
    let mut unnamed: BTreeMap<(Option<u32>, bool), i64> = BTreeMap::new();
    for (key, sums) in totals.metric(metric::FAIR_ALL) {
        let [confidence, positive] = parts(key)[..] else {
            continue;
        };
        *unnamed
            .entry((confidence.parse().ok(), positive == "1"))
            .or_default() += sums.n;
    }
    for (key, sums) in totals.metric(metric::FAIR) {
        let [name, value, confidence, positive] = parts(key)[..] else {
            continue;
        };
        if name != attribute {
            continue;
        }
        let cell = (confidence.parse().ok(), positive == "1");
        *unnamed.entry(cell).or_default() -= sums.n;
        *by_value
            .entry((value.to_owned(), cell.0, cell.1))
            .or_default() += sums.n;
    }
    for ((confidence, positive), n) in unnamed {
        *by_value
            .entry((NONE.to_owned(), confidence, positive))
            .or_default() += n;
    }
    let mut ai: BTreeMap<(String, bool, bool), u64> = BTreeMap::new();
    let mut people: BTreeMap<(String, bool, bool), u64> = BTreeMap::new();
    for ((group, confidence, positive), n) in by_value {
        let n = u64::try_from(n).unwrap_or(0);
        if n == 0 {
            continue;
        }
        if let Some(h) = confidence {
            *ai.entry((group.clone(), positive, step <= h)).or_default() += n;
        }
        *people.entry((group, positive, positive)).or_default() += n;
    }
    let report = |cells: BTreeMap<(String, bool, bool), u64>, rates: bool| {
        let cells: Vec<Cell> = cells.into_iter().collect();
        let counts: Vec<u64> = cells.iter().map(|(_, n)| *n).collect();
        let result = fairness_of(&cells, &counts, min_group);
        let interval = bootstrap_counts(
            &counts,
            |sample| fairness_of(&cells, sample, min_group).demographic_parity_difference,
            200,
            alpha,
            0x6c6f_6f70,
        );
        figures(result, interval, rates)
    };
    proto::FairnessReport {
        window,
        attribute: attribute.to_owned(),
        threshold: f64::from(step) / f64::from(FAIRNESS_STEPS),
        min_group,
        ai: report(ai, true),
        reviewers: report(people, false),
    }
}

/// Agreement between reviewers, their diligence, and the items to adjudicate.
pub(crate) fn agreement_report(
    window: proto::AnalyticsWindow,
    totals: &Totals,
    disagreements: Vec<String>,
) -> proto::AgreementReport {
    // Per pair of reviewers: the confusion counts of their verdicts.
    let mut pairs: BTreeMap<(String, String), BTreeMap<(String, String), u64>> = BTreeMap::new();
    for (key, sums) in totals.metric(metric::PAIR) {
        let [a, b, x, y] = parts(key)[..] else {
            continue;
        };
        *pairs
            .entry((a.to_owned(), b.to_owned()))
            .or_default()
            .entry((x.to_owned(), y.to_owned()))
            .or_default() += sums.count();
    }
    // Fleiss over the most common number of verdicts per item.
    let common = totals
        .metric(metric::FLEISS)
        .filter_map(|(key, sums)| Some((key.parse::<u64>().ok()?, sums)))
        .max_by_key(|(m, sums)| (sums.n, std::cmp::Reverse(*m)));
    let fleiss = common.and_then(|(m, sums)| {
        let prefix = m.to_string();
        let category_totals: Vec<u64> = totals
            .metric(metric::FLEISS_CATEGORY)
            .filter(|(key, _)| parts(key).first() == Some(&prefix.as_str()))
            .map(|(_, s)| s.count())
            .collect();
        fleiss_kappa_from(sums.count(), m, sums.a.round() as u64, &category_totals)
    });
    let krippendorff = KrippendorffSums {
        disagreement: totals.get(metric::KRIPPENDORFF, "").a,
        totals: totals
            .counts(metric::KRIPPENDORFF_VALUE)
            .into_iter()
            .collect::<BTreeMap<String, u64>>(),
    };
    // Per reviewer.
    let mut stats: BTreeMap<&str, BTreeMap<&str, u64>> = BTreeMap::new();
    for (key, sums) in totals.metric(metric::REVIEWER) {
        let [reviewer, stat] = parts(key)[..] else {
            continue;
        };
        *stats.entry(reviewer).or_default().entry(stat).or_default() += sums.count();
    }
    let mut times: BTreeMap<&str, Histogram> = BTreeMap::new();
    for (key, sums) in totals.metric(metric::REVIEWER_TIME) {
        let [reviewer, bucket] = parts(key)[..] else {
            continue;
        };
        add_time(times.entry(reviewer).or_default(), bucket, sums);
    }
    let reviewers = stats
        .into_iter()
        .map(|(reviewer, stat)| {
            let get = |name: &str| stat.get(name).copied().unwrap_or(0);
            let (decisions, co_decided) = (get("decisions"), get("co_decided"));
            let approve_rate = (0 < decisions).then(|| get("approvals") as f64 / decisions as f64);
            let median = times.get(reviewer).and_then(|h| percentile(h, 0.5));
            proto::ReviewerFigures {
                reviewer: reviewer.to_owned(),
                decisions,
                approve_rate,
                median_decision_ms: median,
                peer_agreement: (0 < co_decided).then(|| get("agreed") as f64 / co_decided as f64),
                rubber_stamp: 20 <= decisions
                    && approve_rate.is_some_and(|r| 0.95 <= r)
                    && median.is_some_and(|m| m < 10_000),
            }
        })
        .collect();
    proto::AgreementReport {
        window,
        multiply_reviewed: totals.get(metric::MULTI, "").count(),
        fleiss_kappa: fleiss,
        krippendorff_alpha: krippendorff.alpha(),
        pairs: pairs
            .into_iter()
            .map(|((a, b), confusion)| proto::PairAgreement {
                a,
                b,
                n: confusion.values().sum(),
                kappa: cohen_kappa_from(&confusion),
            })
            .collect(),
        reviewers,
        disagreements,
    }
}
