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
    if a.len() != b.len() {
        return None;
    }
    let mut confusion: BTreeMap<(&L, &L), u64> = BTreeMap::new();
    for pair in a.iter().zip(b) {
        *confusion.entry(pair).or_default() += 1;
    }
    cohen_kappa_from(&confusion)
}

/// [`cohen_kappa`] from the confusion counts: how many items got label x
/// from the first rater and y from the second, per (x, y).
pub fn cohen_kappa_from<L: Ord>(confusion: &BTreeMap<(L, L), u64>) -> Option<f64> {
    let n = confusion.values().sum::<u64>() as f64;
    if n == 0.0 {
        return None;
    }
    let mut marginal_a: BTreeMap<&L, f64> = BTreeMap::new();
    let mut marginal_b: BTreeMap<&L, f64> = BTreeMap::new();
    let mut agree = 0.0;
    for ((x, y), &count) in confusion {
        let count = count as f64;
        *marginal_a.entry(x).or_default() += count;
        *marginal_b.entry(y).or_default() += count;
        if x == y {
            agree += count;
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
    if table.iter().any(|row| row.iter().sum::<u64>() != raters) {
        return None;
    }
    let categories = table.iter().map(Vec::len).max().unwrap_or(0);
    let mut totals = vec![0_u64; categories];
    let mut agreeing_pairs = 0;
    for row in table {
        for (j, &count) in row.iter().enumerate() {
            totals[j] += count;
            agreeing_pairs += count * count.saturating_sub(1);
        }
    }
    fleiss_kappa_from(table.len() as u64, raters, agreeing_pairs, &totals)
}

/// [`fleiss_kappa`] from its sums over `items` items of `raters` ratings
/// each: Σ over items and categories of c·(c − 1) (ordered pairs of raters
/// who agree) and the ratings per category.
pub fn fleiss_kappa_from(
    items: u64,
    raters: u64,
    agreeing_pairs: u64,
    totals: &[u64],
) -> Option<f64> {
    if items == 0 || raters < 2 {
        return None;
    }
    let (n, r) = (items as f64, raters as f64);
    let p_bar = agreeing_pairs as f64 / (r * (r - 1.0)) / n;
    let p_e: f64 = totals.iter().map(|t| (*t as f64 / (n * r)).powi(2)).sum();
    ratio(p_bar - p_e, 1.0 - p_e)
}

/// Krippendorff's α for nominal data: `ratings[rater][unit]`, `None` where a
/// rater did not rate a unit. Units with fewer than two ratings are not
/// pairable and are left out. α = 1 − (n − 1)·Σ_{c≠k} o_ck / Σ_{c≠k} n_c·n_k,
/// from the coincidence matrix o. `None` without pairable units or when
/// every pairable value is the same (no expected disagreement).
pub fn krippendorff_alpha_nominal<L: Ord>(ratings: &[Vec<Option<L>>]) -> Option<f64> {
    let units = ratings.iter().map(Vec::len).max().unwrap_or(0);
    let mut sums: KrippendorffSums<&L> = KrippendorffSums::default();
    for unit in 0..units {
        let values: Vec<&L> = ratings
            .iter()
            .filter_map(|row| row.get(unit).and_then(Option::as_ref))
            .collect();
        sums.add_unit(&values);
    }
    sums.alpha()
}

/// The sums Krippendorff's α (nominal) is made of: the disagreeing
/// coincidences and the pairable values per label.
#[derive(Debug, Clone, PartialEq)]
pub struct KrippendorffSums<L: Ord> {
    /// Σ_units (ordered pairs of distinct values) / (m − 1).
    pub disagreement: f64,
    /// Pairable values per label (n_c).
    pub totals: BTreeMap<L, u64>,
}

impl<L: Ord> Default for KrippendorffSums<L> {
    fn default() -> Self {
        Self {
            disagreement: 0.0,
            totals: BTreeMap::new(),
        }
    }
}

impl<L: Ord + Clone> KrippendorffSums<L> {
    /// Adds one unit's values (units with fewer than two are not pairable).
    pub fn add_unit<V: std::borrow::Borrow<L>>(&mut self, values: &[V]) {
        let m = values.len();
        if m < 2 {
            return;
        }
        let mut counts: BTreeMap<&L, u64> = BTreeMap::new();
        for value in values {
            *counts.entry(value.borrow()).or_default() += 1;
        }
        // Ordered pairs of distinct values within the unit, over m − 1.
        let same: u64 = counts.values().map(|c| c * (c - 1)).sum();
        let m = m as u64;
        self.disagreement += (m * (m - 1) - same) as f64 / (m - 1) as f64;
        for (value, count) in counts {
            *self.totals.entry(value.clone()).or_default() += count;
        }
    }
}

impl<L: Ord> KrippendorffSums<L> {
    /// α = 1 − (n − 1)·disagreement / Σ_{c≠k} n_c·n_k; `None` without
    /// pairable values or when they are all the same.
    pub fn alpha(&self) -> Option<f64> {
        let n: f64 = self.totals.values().map(|c| *c as f64).sum();
        if n == 0.0 {
            return None;
        }
        let square: f64 = self.totals.values().map(|c| (*c as f64).powi(2)).sum();
        ratio((n - 1.0) * self.disagreement, n * n - square).map(|it| 1.0 - it)
    }
}
