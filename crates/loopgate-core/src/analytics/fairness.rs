//! Fairness across the groups of a subject attribute, with fairlearn's
//! definitions: selection (positive) rate, true and false positive rates,
//! demographic parity difference and ratio, equalized odds difference; and
//! percentile bootstrap intervals for any figure.

use std::collections::BTreeMap;

use rand::RngCore;
use rand_distr::{Binomial, Distribution};

use crate::analytics::intervals::Interval;
use crate::analytics::ratio;

/// One item: its group, the reference label (`y_true`, e.g. what people
/// decided) and the prediction (`y_pred`, e.g. what the AI proposed).
#[derive(Debug, Clone, PartialEq)]
pub struct Labeled<'a> {
    /// The group (a value of the attribute).
    pub group: &'a str,
    /// Reference label.
    pub truth: bool,
    /// Prediction.
    pub predicted: bool,
}

/// Rates of one group.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupRates {
    /// The attribute value.
    pub group: String,
    /// Items.
    pub n: u64,
    /// Share predicted positive (fairlearn's `selection_rate`).
    pub selection_rate: Option<f64>,
    /// Share positive in the reference.
    pub base_rate: Option<f64>,
    /// True positive rate (`None` without reference positives).
    pub tpr: Option<f64>,
    /// False positive rate (`None` without reference negatives).
    pub fpr: Option<f64>,
    /// Fewer items than the minimum: shown, but left out of the differences.
    pub too_small: bool,
}

/// The figures for one attribute.
#[derive(Debug, Clone, PartialEq)]
pub struct Fairness {
    /// Per group, by name.
    pub groups: Vec<GroupRates>,
    /// max − min selection rate over the groups large enough.
    pub demographic_parity_difference: Option<f64>,
    /// min / max selection rate over the groups large enough.
    pub demographic_parity_ratio: Option<f64>,
    /// The ratio is under 0.8 (the four-fifths rule of thumb).
    pub four_fifths_flag: Option<bool>,
    /// max(TPR spread, FPR spread) over the groups large enough, ignoring
    /// groups where a rate is undefined.
    pub equalized_odds_difference: Option<f64>,
}

/// The counts of one group the rates are made of.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GroupCounts {
    /// Items.
    pub n: u64,
    /// Predicted positive.
    pub predicted: u64,
    /// Positive in the reference.
    pub truth: u64,
    /// Predicted and reference positive.
    pub true_positive: u64,
    /// Predicted positive, reference negative.
    pub false_positive: u64,
}

impl GroupCounts {
    /// Counts `count` items with these labels.
    pub fn add(&mut self, truth: bool, predicted: bool, count: u64) {
        self.n += count;
        self.predicted += count * u64::from(predicted);
        self.truth += count * u64::from(truth);
        self.true_positive += count * u64::from(truth && predicted);
        self.false_positive += count * u64::from(!truth && predicted);
    }
}

/// Rates per group and the differences between groups with at least
/// `min_group` items.
pub fn fairness(items: &[Labeled<'_>], min_group: u64) -> Fairness {
    let mut by_group: BTreeMap<&str, GroupCounts> = BTreeMap::new();
    for item in items {
        by_group
            .entry(item.group)
            .or_default()
            .add(item.truth, item.predicted, 1);
    }
    fairness_from_counts(by_group, min_group)
}

/// [`fairness`] from the counts per group, in the order given.
pub fn fairness_from_counts<'a>(
    by_group: impl IntoIterator<Item = (&'a str, GroupCounts)>,
    min_group: u64,
) -> Fairness {
    let groups: Vec<GroupRates> = by_group
        .into_iter()
        .map(|(group, c)| GroupRates {
            group: group.to_owned(),
            n: c.n,
            selection_rate: ratio(c.predicted as f64, c.n as f64),
            base_rate: ratio(c.truth as f64, c.n as f64),
            tpr: ratio(c.true_positive as f64, c.truth as f64),
            fpr: ratio(c.false_positive as f64, (c.n - c.truth.min(c.n)) as f64),
            too_small: c.n < min_group,
        })
        .collect();
    let counted: Vec<&GroupRates> = groups.iter().filter(|g| !g.too_small).collect();
    let spread = |rate: fn(&GroupRates) -> Option<f64>| -> Option<(f64, f64)> {
        let values: Vec<f64> = counted.iter().filter_map(|g| rate(g)).collect();
        let min = values.iter().copied().reduce(f64::min)?;
        let max = values.iter().copied().reduce(f64::max)?;
        Some((min, max))
    };
    let selection = spread(|g| g.selection_rate);
    let tpr = spread(|g| g.tpr).map(|(lo, hi)| hi - lo);
    let fpr = spread(|g| g.fpr).map(|(lo, hi)| hi - lo);
    let parity_ratio = selection.and_then(|(lo, hi)| ratio(lo, hi));
    Fairness {
        demographic_parity_difference: selection.map(|(lo, hi)| hi - lo),
        demographic_parity_ratio: parity_ratio,
        four_fifths_flag: parity_ratio.map(|r| r < 0.8),
        equalized_odds_difference: match (tpr, fpr) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (one, other) => one.or(other),
        },
        groups,
    }
}

/// A percentile bootstrap interval at level `1 − alpha` for `figure` over
/// `items`, from `reps` resamples drawn with a fixed `seed` (the same input
/// gives the same interval). Resamples where the figure is undefined are
/// skipped; `None` when fewer than half of them are defined.
pub fn bootstrap<T: Clone>(
    items: &[T],
    figure: impl Fn(&[T]) -> Option<f64>,
    reps: usize,
    alpha: f64,
    seed: u64,
) -> Option<Interval> {
    if items.is_empty() || reps == 0 {
        return None;
    }
    let mut rng = SplitMix(seed);
    let mut values = Vec::with_capacity(reps);
    let mut sample = Vec::with_capacity(items.len());
    for _ in 0..reps {
        sample.clear();
        for _ in 0..items.len() {
            sample.push(items[rng.below(items.len())].clone());
        }
        if let Some(value) = figure(&sample).filter(|v| v.is_finite()) {
            values.push(value);
        }
    }
    percentile_interval(values, reps, alpha)
}

/// [`bootstrap`] over items given as counts per kind (cell): each resample
/// draws the same number of items from the cells in proportion to their
/// counts (a multinomial draw, one binomial per cell, so its cost does not
/// grow with the number of items) and hands `figure` the resampled counts.
pub fn bootstrap_counts(
    counts: &[u64],
    figure: impl Fn(&[u64]) -> Option<f64>,
    reps: usize,
    alpha: f64,
    seed: u64,
) -> Option<Interval> {
    let total: u64 = counts.iter().sum();
    if total == 0 || reps == 0 {
        return None;
    }
    let mut rng = SplitMix(seed);
    let mut values = Vec::with_capacity(reps);
    let mut sample = vec![0_u64; counts.len()];
    for _ in 0..reps {
        let (mut left, mut mass) = (total, total);
        for (slot, &count) in sample.iter_mut().zip(counts) {
            let draw = if left == 0 || count == 0 {
                0
            } else if count == mass {
                left
            } else {
                let p = count as f64 / mass as f64;
                Binomial::new(left, p).map_or(0, |b| b.sample(&mut rng))
            };
            *slot = draw;
            left -= draw.min(left);
            mass -= count;
        }
        if let Some(value) = figure(&sample).filter(|v| v.is_finite()) {
            values.push(value);
        }
    }
    percentile_interval(values, reps, alpha)
}

/// The `alpha/2` and `1 − alpha/2` percentiles of `values`, when at least
/// half of `reps` resamples gave one.
fn percentile_interval(mut values: Vec<f64>, reps: usize, alpha: f64) -> Option<Interval> {
    if values.is_empty() || values.len() * 2 < reps {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let at =
        |q: f64| values[((q * (values.len() - 1) as f64).round() as usize).min(values.len() - 1)];
    Some((at(alpha / 2.0), at(1.0 - alpha / 2.0)))
}

/// SplitMix64: small, fast, and the same everywhere.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next()) * n as u128) >> 64) as usize
    }
}

impl RngCore for SplitMix {
    fn next_u32(&mut self) -> u32 {
        (self.next() >> 32) as u32
    }

    fn next_u64(&mut self) -> u64 {
        self.next()
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        for chunk in dest.chunks_mut(8) {
            let bytes = self.next().to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
    }
}
