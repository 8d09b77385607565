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

/// The sums one reliability bin is made of.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct BinSums {
    /// Items.
    pub n: u64,
    /// Σ confidence.
    pub confidence: f64,
    /// Σ correct (items the AI got right).
    pub correct: f64,
}

/// The bin of `confidence` among `n_bins` equal-width bins, the way
/// scikit-learn's `calibration_curve(strategy="uniform")` does it: a value on
/// an edge goes to the bin below, 0 to the first; values outside [0, 1] are
/// clamped.
pub fn bin_of(confidence: f64, n_bins: usize) -> usize {
    let n_bins = n_bins.max(1);
    // numpy.linspace's edges: `k * step`, not `k / n`.
    let step = 1.0 / n_bins as f64;
    let p = confidence.clamp(0.0, 1.0);
    (1..n_bins).take_while(|k| (*k as f64 * step) < p).count()
}

/// Bins `(confidence, correct)` pairs into `n_bins` equal-width bins (see
/// [`bin_of`]); confidences outside [0, 1] are clamped.
pub fn calibration(items: &[(f64, bool)], n_bins: usize) -> Calibration {
    let mut bins = vec![BinSums::default(); n_bins.max(1)];
    let mut squared_error = 0.0;
    for &(confidence, correct) in items {
        let p = confidence.clamp(0.0, 1.0);
        let bin = &mut bins[bin_of(p, n_bins)];
        let y = if correct { 1.0 } else { 0.0 };
        bin.n += 1;
        bin.confidence += p;
        bin.correct += y;
        squared_error += (p - y) * (p - y);
    }
    calibration_from_sums(&bins, squared_error)
}

/// The figures from per-bin sums (equal-width bins over [0, 1], one entry
/// each) and Σ (confidence − correct)² over all items (the Brier numerator).
pub fn calibration_from_sums(sums: &[BinSums], squared_error: f64) -> Calibration {
    let n_bins = sums.len().max(1);
    let step = 1.0 / n_bins as f64;
    let total: u64 = sums.iter().map(|b| b.n).sum();
    let mut ece = 0.0;
    let mut mce: Option<f64> = None;
    let bins: Vec<Bin> = (0..n_bins)
        .map(|b| {
            let sum = sums.get(b).copied().unwrap_or_default();
            let count = sum.n as f64;
            let mean_confidence = ratio(sum.confidence, count);
            let accuracy = ratio(sum.correct, count);
            if let (Some(c), Some(a)) = (mean_confidence, accuracy) {
                let gap = (a - c).abs();
                ece += count / total as f64 * gap;
                mce = Some(mce.map_or(gap, |m: f64| m.max(gap)));
            }
            Bin {
                lower: tidy(b as f64 * step),
                upper: tidy((b + 1) as f64 * step),
                n: sum.n,
                mean_confidence,
                accuracy,
            }
        })
        .collect();
    Calibration {
        bins,
        n: total,
        ece: (0 < total).then_some(ece),
        mce,
        brier: ratio(squared_error, total as f64),
    }
}

/// An edge for display: `0.30000000000000004` reads as `0.3`.
fn tidy(edge: f64) -> f64 {
    (edge * 1e12).round() / 1e12
}
