//! Feedback and oversight figures, as pure functions over plain data: the
//! store gathers the rows, these turn them into numbers.
//!
//! Every function is defined on every input: where a figure has no value
//! (no items, one class only, a zero denominator) it is `None`, never NaN,
//! and the docs say when. Definitions follow scikit-learn, fairlearn,
//! statsmodels and Krippendorff; `tests/analytics.rs` checks each against
//! their output on fixed data to 1e-9.

pub mod agreement;
pub mod calibration;
pub mod fairness;
pub mod intervals;
pub mod thresholds;

/// `num / den`, or `None` when `den` is zero.
pub(crate) fn ratio(num: f64, den: f64) -> Option<f64> {
    (den != 0.0).then(|| num / den)
}
