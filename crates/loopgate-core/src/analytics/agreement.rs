//! Agreement between reviewers: Cohen's κ for a pair, Fleiss' κ for a
//! fixed number of raters per item, Krippendorff's α (nominal) for any
//! raters with missing ratings.

use std::collections::BTreeMap;

use crate::analytics::ratio;

/// Cohen's κ of two raters over the same items (unweighted, as
/// scikit-learn's `cohen_kappa_score`): (p_o − p_e) / (1 − p_e). `None`
/// when there are no items, the lengths differ, or p_e is 1 (both raters
/// always gave the same single label: agreement is not measurable).
pub fn cohen_kappa<L: Ord>(a: &[L], b: &[L]) -> Option<f64> {
    if a.is_empty() || a.len() != b.len() {
        return None;
    }
    let n = a.len() as f64;
    let mut marginal_a: BTreeMap<&L, f64> = BTreeMap::new();
    let mut marginal_b: BTreeMap<&L, f64> = BTreeMap::new();
    let mut agree = 0.0;
    for (x, y) in a.iter().zip(b) {
        *marginal_a.entry(x).or_default() += 1.0;
        *marginal_b.entry(y).or_default() += 1.0;
        if x == y {
            agree += 1.0;
        }
    }
    let p_o = agree / n;
    let p_e: f64 = marginal_a
        .iter()
        .map(|(label, count)| count / n * marginal_b.get(label).copied().unwrap_or(0.0) / n)
        .sum();
    ratio(p_o - p_e, 1.0 - p_e)
}

/// Fleiss' κ from a table of counts: one row per item, one column per
/// category, every row summing to the same number of raters (as
/// statsmodels' `fleiss_kappa(method="fleiss")`). `None` when there are no
/// items, fewer than two raters per item, rows of unequal totals, or the
/// expected agreement is 1.
pub fn fleiss_kappa(table: &[Vec<u64>]) -> Option<f64> {
    let first = table.first()?;
    let raters: u64 = first.iter().sum();
    if raters < 2 || table.iter().any(|row| row.iter().sum::<u64>() != raters) {
        return None;
    }
    let (items, r) = (table.len() as f64, raters as f64);
    let categories = table.iter().map(Vec::len).max().unwrap_or(0);
    let mut p_j = vec![0.0_f64; categories];
    let mut p_bar = 0.0;
    for row in table {
        let mut agree = 0.0;
        for (j, &count) in row.iter().enumerate() {
            let c = count as f64;
            p_j[j] += c;
            agree += c * (c - 1.0);
        }
        p_bar += agree / (r * (r - 1.0));
    }
    p_bar /= items;
    let p_e: f64 = p_j.iter().map(|total| (total / (items * r)).powi(2)).sum();
    ratio(p_bar - p_e, 1.0 - p_e)
}

/// Krippendorff's α for nominal data: `ratings[rater][unit]`, `None` where a
/// rater did not rate a unit. Units with fewer than two ratings are not
/// pairable and are left out. α = 1 − (n − 1)·Σ_{c≠k} o_ck / Σ_{c≠k} n_c·n_k,
/// from the coincidence matrix o. `None` without pairable units or when
/// every pairable value is the same (no expected disagreement).
pub fn krippendorff_alpha_nominal<L: Ord>(ratings: &[Vec<Option<L>>]) -> Option<f64> {
    let units = ratings.iter().map(Vec::len).max().unwrap_or(0);
    // Coincidences between distinct values only, and the value totals n_c.
    let mut disagreement = 0.0;
    let mut totals: BTreeMap<&L, f64> = BTreeMap::new();
    for unit in 0..units {
        let values: Vec<&L> = ratings
            .iter()
            .filter_map(|row| row.get(unit).and_then(Option::as_ref))
            .collect();
        let m = values.len();
        if m < 2 {
            continue;
        }
        let mut counts: BTreeMap<&L, f64> = BTreeMap::new();
        for value in &values {
            *counts.entry(*value).or_default() += 1.0;
        }
        // Ordered pairs of distinct values within the unit, over m − 1.
        let same: f64 = counts.values().map(|c| c * (c - 1.0)).sum();
        let m = m as f64;
        disagreement += (m * (m - 1.0) - same) / (m - 1.0);
        for (value, count) in counts {
            *totals.entry(value).or_default() += count;
        }
    }
    let n: f64 = totals.values().sum();
    let square: f64 = totals.values().map(|c| c * c).sum();
    let expected = n * n - square;
    if n == 0.0 {
        return None;
    }
    ratio((n - 1.0) * disagreement, expected).map(|it| 1.0 - it)
}
