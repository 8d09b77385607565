//! What the human decisions say about automating more (or less): the error
//! rate of auto-approved items estimated from QA samples, and the lowest
//! confidence threshold that keeps the error of auto-approval under a
//! target.

use crate::analytics::intervals::{Interval, clopper_pearson, wilson_at, z};
use crate::analytics::ratio;

/// The error rate of auto-approved proposals, estimated from QA samples.
#[derive(Debug, Clone, PartialEq)]
pub struct QaEstimate {
    /// Samples reviewed.
    pub sampled: u64,
    /// Of those, judged wrong (rejected or modified).
    pub errors: u64,
    /// Σ 1/π: the number of auto-approved items the samples stand for.
    pub population: f64,
    /// Hájek estimate Σ(e/π) / Σ(1/π) (`None` without samples).
    pub error_rate: Option<f64>,
    /// Kish's effective sample size (Σw)² / Σw².
    pub effective_n: Option<f64>,
    /// Wilson interval at the effective sample size.
    pub interval: Option<Interval>,
}

/// The sums the QA estimate is made of, with weights w = 1/π.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct QaSums {
    /// Samples reviewed.
    pub sampled: u64,
    /// Of those, judged wrong.
    pub errors: u64,
    /// Σ w.
    pub weight: f64,
    /// Σ w².
    pub weight_squared: f64,
    /// Σ w over the wrong ones.
    pub error_weight: f64,
}

impl QaSums {
    /// Adds one sample; probabilities outside (0, 1] are ignored.
    pub fn add(&mut self, probability: f64, wrong: bool) {
        if !(probability > 0.0 && probability <= 1.0) {
            return;
        }
        let w = 1.0 / probability;
        self.sampled += 1;
        self.weight += w;
        self.weight_squared += w * w;
        if wrong {
            self.errors += 1;
            self.error_weight += w;
        }
    }
}

/// Estimates from `(inclusion probability, wrong)` pairs, one per reviewed
/// QA sample, with inverse-probability weights. Probabilities outside
/// (0, 1] are ignored.
pub fn qa_estimate(samples: &[(f64, bool)], alpha: f64) -> QaEstimate {
    let mut sums = QaSums::default();
    for &(probability, wrong) in samples {
        sums.add(probability, wrong);
    }
    qa_from_sums(&sums, alpha)
}

/// The estimate from its sums.
pub fn qa_from_sums(sums: &QaSums, alpha: f64) -> QaEstimate {
    let error_rate = ratio(sums.error_weight, sums.weight);
    let effective_n = ratio(sums.weight * sums.weight, sums.weight_squared);
    let interval = match (error_rate, effective_n) {
        (Some(p), Some(n)) => wilson_at(p, n, alpha),
        _ => None,
    };
    QaEstimate {
        sampled: sums.sampled,
        errors: sums.errors,
        population: sums.weight,
        error_rate,
        effective_n,
        interval,
    }
}

/// The QA sampling rate that estimates an error rate near `expected` to
/// within ± `half_width` (at level `1 − alpha`) over `population` items a
/// period: n₀ = z²·p(1−p)/h², corrected for the finite population, over the
/// population; at most 1. `None` for a zero population or half-width.
pub fn sampling_rate_for(
    expected: f64,
    half_width: f64,
    population: u64,
    alpha: f64,
) -> Option<f64> {
    if population == 0 || half_width <= 0.0 {
        return None;
    }
    let p = expected.clamp(0.0, 1.0);
    let z = z(alpha);
    let n0 = z * z * p * (1.0 - p) / (half_width * half_width);
    let big_n = population as f64;
    let n = n0 / (1.0 + (n0 - 1.0).max(0.0) / big_n);
    Some((n.ceil() / big_n).min(1.0))
}

/// One point of the threshold curve: auto-approve at `confidence ≥ threshold`.
#[derive(Debug, Clone, PartialEq)]
pub struct ThresholdPoint {
    /// The threshold.
    pub threshold: f64,
    /// Reviewed items at or above it (they would have been automated).
    pub automated: u64,
    /// Of those, the ones people judged wrong.
    pub errors: u64,
    /// errors / automated.
    pub error_rate: Option<f64>,
    /// Clopper–Pearson upper bound of the error rate.
    pub upper_bound: Option<f64>,
    /// Share of the reviewed items that would no longer need review.
    pub workload_saved: f64,
}

/// The curve and the advice.
#[derive(Debug, Clone, PartialEq)]
pub struct ThresholdAdvice {
    /// The target error rate.
    pub target: f64,
    /// 1 − confidence level of the bound.
    pub alpha: f64,
    /// Reviewed items.
    pub n: u64,
    /// One point per level (each distinct confidence in [`threshold_advice`]), highest first.
    pub curve: Vec<ThresholdPoint>,
    /// The lowest threshold whose upper bound is within the target (`None`
    /// when none is).
    pub recommended: Option<ThresholdPoint>,
}

/// Threshold advice from reviewed `(confidence, wrong)` pairs: for each
/// distinct confidence t, the items at or above t, their error rate and its
/// one-sided upper bound at level 1 − alpha (the upper end of the two-sided
/// Clopper–Pearson interval at 2·alpha); the recommendation is the lowest t
/// whose bound is at most `target`.
pub fn threshold_advice(items: &[(f64, bool)], target: f64, alpha: f64) -> ThresholdAdvice {
    let mut levels: Vec<(f64, u64, u64)> = Vec::new();
    let mut sorted: Vec<(f64, bool)> = items
        .iter()
        .copied()
        .filter(|(c, _)| c.is_finite())
        .collect();
    sorted.sort_by(|a, b| b.0.total_cmp(&a.0));
    for (confidence, wrong) in sorted {
        match levels.last_mut() {
            Some(last) if last.0 == confidence => {
                last.1 += 1;
                last.2 += u64::from(wrong);
            }
            _ => levels.push((confidence, 1, u64::from(wrong))),
        }
    }
    threshold_advice_from(&levels, target, alpha)
}

/// Threshold advice from `(threshold, items, errors)` levels: the reviewed
/// items whose confidence falls at that level (at or above it, below the
/// next one up) and how many of them people judged wrong. Levels may come
/// in any order; non-finite thresholds are ignored.
pub fn threshold_advice_from(
    levels: &[(f64, u64, u64)],
    target: f64,
    alpha: f64,
) -> ThresholdAdvice {
    let mut sorted: Vec<(f64, u64, u64)> = levels
        .iter()
        .copied()
        .filter(|(t, items, _)| t.is_finite() && 0 < *items)
        .collect();
    sorted.sort_by(|a, b| b.0.total_cmp(&a.0));
    let n: u64 = sorted.iter().map(|l| l.1).sum();
    let (mut automated, mut errors) = (0_u64, 0_u64);
    let curve: Vec<ThresholdPoint> = sorted
        .into_iter()
        .map(|(threshold, items, wrong)| {
            automated += items;
            errors += wrong.min(items);
            ThresholdPoint {
                threshold,
                automated,
                errors,
                error_rate: ratio(errors as f64, automated as f64),
                upper_bound: clopper_pearson(errors, automated, 2.0 * alpha).map(|(_, hi)| hi),
                workload_saved: automated as f64 / n as f64,
            }
        })
        .collect();
    let recommended = curve
        .iter()
        .filter(|p| p.upper_bound.is_some_and(|ub| ub <= target))
        .min_by(|a, b| a.threshold.total_cmp(&b.threshold))
        .cloned();
    ThresholdAdvice {
        target,
        alpha,
        n,
        curve,
        recommended,
    }
}
