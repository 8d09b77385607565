//! Confidence intervals for a proportion `k / n`: Wilson's score interval
//! and the exact Clopper–Pearson interval (as statsmodels'
//! `proportion_confint` with `method="wilson"` and `"beta"`).

use statrs::distribution::{ContinuousCDF, Normal};
use statrs::function::beta::checked_beta_reg;

/// Lower and upper bound.
pub type Interval = (f64, f64);

/// The two-sided normal quantile for `alpha` (1.96 for 0.05).
pub fn z(alpha: f64) -> f64 {
    match Normal::new(0.0, 1.0) {
        Ok(normal) => normal.inverse_cdf(1.0 - alpha / 2.0),
        Err(_) => 1.959_963_984_540_054,
    }
}

/// Wilson's score interval at level `1 − alpha`; `None` when `n` is 0.
pub fn wilson(k: u64, n: u64, alpha: f64) -> Option<Interval> {
    if n == 0 {
        return None;
    }
    wilson_at(k.min(n) as f64 / n as f64, n as f64, alpha)
}

/// Wilson's interval for a proportion `p` observed over `n` items, where `n`
/// may be fractional (an effective sample size); `None` when `n` is not
/// positive.
pub fn wilson_at(p: f64, n: f64, alpha: f64) -> Option<Interval> {
    if n <= 0.0 {
        return None;
    }
    let z = z(alpha);
    let z2 = z * z;
    let center = (p + z2 / (2.0 * n)) / (1.0 + z2 / n);
    let half = z / (1.0 + z2 / n) * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    Some(((center - half).max(0.0), (center + half).min(1.0)))
}

/// The exact (Clopper–Pearson) interval at level `1 − alpha`: the Beta
/// quantiles `B(alpha/2; k, n−k+1)` and `B(1−alpha/2; k+1, n−k)`, with 0 and
/// 1 at the ends. `None` when `n` is 0.
pub fn clopper_pearson(k: u64, n: u64, alpha: f64) -> Option<Interval> {
    if n == 0 {
        return None;
    }
    let k = k.min(n);
    let (kf, nf) = (k as f64, n as f64);
    let lower = if k == 0 {
        0.0
    } else {
        beta_quantile(alpha / 2.0, kf, nf - kf + 1.0)
    };
    let upper = if k == n {
        1.0
    } else {
        beta_quantile(1.0 - alpha / 2.0, kf + 1.0, nf - kf)
    };
    Some((lower, upper))
}

/// The `p` quantile of Beta(a, b) by bisection on the regularized incomplete
/// beta function (monotone, so bisection always converges; 200 halvings
/// reach the limit of f64).
fn beta_quantile(p: f64, a: f64, b: f64) -> f64 {
    let (mut lo, mut hi) = (0.0_f64, 1.0_f64);
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if mid <= lo || hi <= mid {
            break;
        }
        match checked_beta_reg(a, b, mid) {
            Ok(cdf) if cdf < p => lo = mid,
            Ok(_) => hi = mid,
            Err(_) => break,
        }
    }
    0.5 * (lo + hi)
}
