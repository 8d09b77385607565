//! Calibration of the AI's `confidence` against what people decided:
//! reliability bins, expected calibration error and the Brier score.

use crate::analytics::ratio;

/// One reliability bin: confidences in `(lower, upper]` (the first bin
/// includes 0).
#[derive(Debug, Clone, PartialEq)]
pub struct Bin {
    /// Lower edge.
    pub lower: f64,
    /// Upper edge.
    pub upper: f64,
    /// Items in the bin.
    pub n: u64,
    /// Mean confidence of its items (`None` when empty).
    pub mean_confidence: Option<f64>,
    /// Share of its items the AI got right (`None` when empty).
    pub accuracy: Option<f64>,
}

/// The reliability diagram and its summaries.
#[derive(Debug, Clone, PartialEq)]
pub struct Calibration {
    /// Equal-width bins over [0, 1].
    pub bins: Vec<Bin>,
    /// Items.
    pub n: u64,
    /// Expected calibration error: Σ_b (n_b / n)·|accuracy_b − confidence_b|
    /// over non-empty bins (`None` without items).
    pub ece: Option<f64>,
    /// Largest |accuracy_b − confidence_b| over non-empty bins.
    pub mce: Option<f64>,
    /// Brier score: mean of (confidence − correct)² (`None` without items).
    pub brier: Option<f64>,
}

/// Bins `(confidence, correct)` pairs into `n_bins` equal-width bins the way
/// scikit-learn's `calibration_curve(strategy="uniform")` does (a value on
/// an edge goes to the bin below it; 0 to the first). Confidences outside
/// [0, 1] are clamped.
pub fn calibration(items: &[(f64, bool)], n_bins: usize) -> Calibration {
    let n_bins = n_bins.max(1);
    // numpy.linspace's edges: `k * step`, not `k / n`.
    let step = 1.0 / n_bins as f64;
    let inner: Vec<f64> = (1..n_bins).map(|k| k as f64 * step).collect();
    let mut n = vec![0_u64; n_bins];
    let mut sum_conf = vec![0.0_f64; n_bins];
    let mut sum_right = vec![0.0_f64; n_bins];
    let mut brier = 0.0;
    for &(confidence, correct) in items {
        let p = confidence.clamp(0.0, 1.0);
        let bin = inner.partition_point(|edge| *edge < p);
        n[bin] += 1;
        sum_conf[bin] += p;
        let y = if correct { 1.0 } else { 0.0 };
        sum_right[bin] += y;
        brier += (p - y) * (p - y);
    }
    let total = items.len() as f64;
    let mut ece = 0.0;
    let mut mce: Option<f64> = None;
    let bins: Vec<Bin> = (0..n_bins)
        .map(|b| {
            let count = n[b] as f64;
            let mean_confidence = ratio(sum_conf[b], count);
            let accuracy = ratio(sum_right[b], count);
            if let (Some(c), Some(a)) = (mean_confidence, accuracy) {
                let gap = (a - c).abs();
                ece += count / total * gap;
                mce = Some(mce.map_or(gap, |m: f64| m.max(gap)));
            }
            Bin {
                lower: tidy(b as f64 * step),
                upper: tidy((b + 1) as f64 * step),
                n: n[b],
                mean_confidence,
                accuracy,
            }
        })
        .collect();
    let some = !items.is_empty();
    Calibration {
        bins,
        n: items.len() as u64,
        ece: some.then_some(ece),
        mce,
        brier: ratio(brier, total),
    }
}

/// An edge for display: `0.30000000000000004` reads as `0.3`.
fn tidy(edge: f64) -> f64 {
    (edge * 1e12).round() / 1e12
}
