//! Every analytics figure against known answers: the fixtures in
//! `tests/data/analytics` hold fixed data sets and what scikit-learn,
//! fairlearn, statsmodels and krippendorff compute for them
//! (`scripts/analytics-fixtures.py` made them); equal to 1e-9.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use loopgate_core::analytics::agreement::{cohen_kappa, fleiss_kappa, krippendorff_alpha_nominal};
use loopgate_core::analytics::calibration::calibration;
use loopgate_core::analytics::fairness::{
    GroupCounts, Labeled, bootstrap, bootstrap_counts, fairness, fairness_from_counts,
};
use loopgate_core::analytics::intervals::{clopper_pearson, wilson};
use loopgate_core::analytics::thresholds::{qa_estimate, sampling_rate_for, threshold_advice};
use serde_json::Value;

fn fixture(name: &str) -> Value {
    let path = format!(
        "{}/tests/data/analytics/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[track_caller]
fn close(got: f64, want: f64) {
    assert!((got - want).abs() <= 1e-9, "got {got}, want {want}");
}

fn floats(value: &Value) -> Vec<f64> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect()
}

fn bools(value: &Value) -> Vec<bool> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap() == 1)
        .collect()
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn calibration_matches_scikit_learn() {
    let f = fixture("calibration");
    let items: Vec<(f64, bool)> = floats(&f["confidence"])
        .into_iter()
        .zip(bools(&f["correct"]))
        .collect();
    let c = calibration(&items, f["n_bins"].as_u64().unwrap() as usize);
    let counts: Vec<u64> = c.bins.iter().map(|b| b.n).collect();
    let want: Vec<u64> = f["counts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert_eq!(counts, want);
    let nonempty: Vec<_> = c.bins.iter().filter(|b| 0 < b.n).collect();
    for (bin, (t, p)) in nonempty.iter().zip(
        floats(&f["prob_true"])
            .into_iter()
            .zip(floats(&f["prob_pred"])),
    ) {
        close(bin.accuracy.unwrap(), t);
        close(bin.mean_confidence.unwrap(), p);
    }
    close(c.ece.unwrap(), f["ece"].as_f64().unwrap());
    close(c.brier.unwrap(), f["brier"].as_f64().unwrap());
}

#[test]
fn calibration_without_items_has_no_figures() {
    let c = calibration(&[], 10);
    assert_eq!((c.n, c.ece, c.mce, c.brier), (0, None, None, None));
    assert!(c.bins.iter().all(|b| b.n == 0 && b.accuracy.is_none()));
    let edges = calibration(&[(1.0, true), (0.1, true), (0.0, false)], 10);
    assert_eq!(
        (edges.bins[9].n, edges.bins[0].n),
        (1, 2),
        "edges go to the bin below"
    );
    let one_bin = calibration(&[(1.0, true), (1.0, true)], 10);
    close(one_bin.ece.unwrap(), 0.0);
}

#[test]
fn cohen_kappa_matches_scikit_learn() {
    for case in fixture("cohen")["cases"].as_array().unwrap() {
        close(
            cohen_kappa(&strings(&case["a"]), &strings(&case["b"])).unwrap(),
            case["kappa"].as_f64().unwrap(),
        );
    }
    // scikit-learn's docstring example.
    let a = ["negative", "positive", "negative", "neutral", "positive"];
    let b = ["negative", "positive", "negative", "neutral", "negative"];
    close(cohen_kappa(&a, &b).unwrap(), 0.6875);
    // Undefined: no items, unequal lengths, one label throughout.
    assert_eq!(cohen_kappa::<&str>(&[], &[]), None);
    assert_eq!(cohen_kappa(&["a"], &["a", "b"]), None);
    assert_eq!(cohen_kappa(&["a", "a"], &["a", "a"]), None);
}

#[test]
fn fleiss_kappa_matches_statsmodels() {
    for case in fixture("fleiss")["cases"].as_array().unwrap() {
        let table: Vec<Vec<u64>> = case["table"]
            .as_array()
            .unwrap()
            .iter()
            .map(|row| {
                row.as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_u64().unwrap())
                    .collect()
            })
            .collect();
        close(
            fleiss_kappa(&table).unwrap(),
            case["kappa"].as_f64().unwrap(),
        );
    }
    assert_eq!(fleiss_kappa(&[]), None);
    assert_eq!(fleiss_kappa(&[vec![1, 0]]), None, "one rater");
    assert_eq!(
        fleiss_kappa(&[vec![2, 0], vec![1, 2]]),
        None,
        "unequal raters"
    );
    assert_eq!(
        fleiss_kappa(&[vec![3, 0], vec![3, 0]]),
        None,
        "one category used"
    );
}

#[test]
fn krippendorff_alpha_matches_the_published_example() {
    let cases = fixture("krippendorff");
    for (i, case) in cases["cases"].as_array().unwrap().iter().enumerate() {
        let ratings: Vec<Vec<Option<i64>>> = case["ratings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|row| row.as_array().unwrap().iter().map(Value::as_i64).collect())
            .collect();
        let alpha = krippendorff_alpha_nominal(&ratings).unwrap();
        close(alpha, case["alpha"].as_f64().unwrap());
        if i == 0 {
            // Krippendorff (2011), "Computing Krippendorff's alpha-reliability": 0.743.
            assert_eq!(format!("{alpha:.3}"), "0.743");
        }
    }
    assert_eq!(krippendorff_alpha_nominal::<u8>(&[]), None);
    assert_eq!(
        krippendorff_alpha_nominal(&[vec![Some(1), None], vec![None, Some(2)]]),
        None,
        "nothing pairable"
    );
    assert_eq!(
        krippendorff_alpha_nominal(&[vec![Some(1), Some(1)], vec![Some(1), Some(1)]]),
        None,
        "one value"
    );
}

#[test]
fn fairness_matches_fairlearn() {
    let f = fixture("fairness");
    let groups = strings(&f["group"]);
    let items: Vec<Labeled<'_>> = groups
        .iter()
        .zip(bools(&f["y_true"]).into_iter().zip(bools(&f["y_pred"])))
        .map(|(group, (truth, predicted))| Labeled {
            group,
            truth,
            predicted,
        })
        .collect();
    let result = fairness(&items, 0);
    close(
        result.demographic_parity_difference.unwrap(),
        f["demographic_parity_difference"].as_f64().unwrap(),
    );
    close(
        result.demographic_parity_ratio.unwrap(),
        f["demographic_parity_ratio"].as_f64().unwrap(),
    );
    close(
        result.equalized_odds_difference.unwrap(),
        f["equalized_odds_difference"].as_f64().unwrap(),
    );
    assert_eq!(result.groups.iter().map(|g| g.n).sum::<u64>(), 600);

    // Small groups are shown but not compared.
    let big_only = fairness(&items, 150);
    let small: Vec<&str> = big_only
        .groups
        .iter()
        .filter(|g| g.too_small)
        .map(|g| g.group.as_str())
        .collect();
    assert_eq!(small, ["C"]);
    // The bootstrap interval holds the point estimate and is repeatable.
    let figure = |sample: &[Labeled<'_>]| fairness(sample, 0).demographic_parity_difference;
    let interval = bootstrap(&items, figure, 400, 0.05, 7).unwrap();
    let point = result.demographic_parity_difference.unwrap();
    assert!(
        interval.0 <= point && point <= interval.1,
        "{interval:?} {point}"
    );
    assert_eq!(bootstrap(&items, figure, 400, 0.05, 7), Some(interval));

    // The same over counts per (group, truth, prediction): a multinomial
    // resample of the cells, whatever the number of items.
    let mut cells: std::collections::BTreeMap<(&str, bool, bool), u64> = Default::default();
    for item in &items {
        *cells
            .entry((item.group, item.truth, item.predicted))
            .or_default() += 1;
    }
    let kinds: Vec<(&str, bool, bool)> = cells.keys().copied().collect();
    let counts: Vec<u64> = cells.values().copied().collect();
    let from_counts = |sample: &[u64]| {
        let mut by_group: std::collections::BTreeMap<&str, GroupCounts> = Default::default();
        for ((group, truth, predicted), n) in kinds.iter().zip(sample) {
            by_group
                .entry(group)
                .or_default()
                .add(*truth, *predicted, *n);
        }
        fairness_from_counts(by_group, 0).demographic_parity_difference
    };
    close(from_counts(&counts).unwrap(), point);
    let by_cells = bootstrap_counts(&counts, from_counts, 400, 0.05, 7).unwrap();
    assert!(
        by_cells.0 <= point && point <= by_cells.1,
        "{by_cells:?} {point}"
    );
    assert_eq!(
        bootstrap_counts(&counts, from_counts, 400, 0.05, 7),
        Some(by_cells)
    );
    // Both resample the same distribution: the intervals agree closely.
    assert!(
        (by_cells.0 - interval.0).abs() < 0.03 && (by_cells.1 - interval.1).abs() < 0.03,
        "{by_cells:?} {interval:?}"
    );
    assert_eq!(bootstrap_counts(&[0, 0], from_counts, 10, 0.05, 7), None);

    // No items, one group: no differences.
    assert_eq!(fairness(&[], 0).demographic_parity_difference, None);
    let one = [Labeled {
        group: "A",
        truth: true,
        predicted: true,
    }];
    let single = fairness(&one, 0);
    close(single.demographic_parity_difference.unwrap(), 0.0);
    assert_eq!(single.groups[0].fpr, None, "no negatives");
}

#[test]
fn intervals_match_statsmodels() {
    for case in fixture("intervals")["cases"].as_array().unwrap() {
        let (k, n, alpha) = (
            case["k"].as_u64().unwrap(),
            case["n"].as_u64().unwrap(),
            case["alpha"].as_f64().unwrap(),
        );
        let (lo, hi) = wilson(k, n, alpha).unwrap();
        let want = floats(&case["wilson"]);
        close(lo, want[0]);
        close(hi, want[1]);
        let (lo, hi) = clopper_pearson(k, n, alpha).unwrap();
        let want = floats(&case["clopper_pearson"]);
        close(lo, want[0]);
        close(hi, want[1]);
    }
    assert_eq!(wilson(0, 0, 0.05), None);
    assert_eq!(clopper_pearson(0, 0, 0.05), None);
}

#[test]
fn qa_estimates_weight_by_inverse_probability() {
    // 10 samples at 10% (each stands for 10 items), 2 wrong; 5 at 50%, 0 wrong.
    let mut samples = vec![(0.1, false); 8];
    samples.extend([(0.1, true), (0.1, true)]);
    samples.extend([(0.5, false); 5]);
    let q = qa_estimate(&samples, 0.05);
    assert_eq!((q.sampled, q.errors), (15, 2));
    close(q.population, 110.0);
    close(q.error_rate.unwrap(), 20.0 / 110.0);
    close(
        q.effective_n.unwrap(),
        110.0 * 110.0 / (10.0 * 100.0 + 5.0 * 4.0),
    );
    let (lo, hi) = q.interval.unwrap();
    assert!(lo < 20.0 / 110.0 && 20.0 / 110.0 < hi);
    // Equal weights: the plain proportion and Wilson's interval.
    let equal = qa_estimate(
        &[(0.2, true), (0.2, false), (0.2, false), (0.2, false)],
        0.05,
    );
    close(equal.error_rate.unwrap(), 0.25);
    let (lo, hi) = wilson(1, 4, 0.05).unwrap();
    let got = equal.interval.unwrap();
    close(got.0, lo);
    close(got.1, hi);
    let none = qa_estimate(&[], 0.05);
    assert_eq!((none.error_rate, none.interval), (None, None));
    // 1% ± 0.5% at 95% over 100,000 items a period: n₀ = 1.96²·0.01·0.99 /
    // 0.005² = 1521.2, corrected for the population 1498.4, so 1,499 samples.
    close(
        sampling_rate_for(0.01, 0.005, 100_000, 0.05).unwrap(),
        0.01499,
    );
    assert_eq!(sampling_rate_for(0.5, 0.001, 10, 0.05), Some(1.0));
    assert_eq!(sampling_rate_for(0.5, 0.0, 10, 0.05), None);
}

#[test]
fn threshold_advice_finds_the_lowest_safe_threshold() {
    // 200 items at 0.95 with 1 error, 200 at 0.85 with 2, 200 at 0.6 with 40.
    let mut items = Vec::new();
    for (confidence, n, wrong) in [(0.95, 200, 1), (0.85, 200, 2), (0.6, 200, 40)] {
        for i in 0..n {
            items.push((confidence, i < wrong));
        }
    }
    let advice = threshold_advice(&items, 0.03, 0.05);
    let thresholds: Vec<f64> = advice.curve.iter().map(|p| p.threshold).collect();
    assert_eq!(thresholds, [0.95, 0.85, 0.6]);
    let at = |i: usize| &advice.curve[i];
    assert_eq!((at(1).automated, at(1).errors), (400, 3));
    // The bound is the upper end of the two-sided 90% Clopper–Pearson interval.
    close(
        at(1).upper_bound.unwrap(),
        clopper_pearson(3, 400, 0.10).unwrap().1,
    );
    let recommended = advice.recommended.unwrap();
    assert_eq!(recommended.threshold, 0.85);
    close(recommended.workload_saved, 400.0 / 600.0);
    assert_eq!(threshold_advice(&items, 0.001, 0.05).recommended, None);
    assert!(threshold_advice(&[], 0.01, 0.05).curve.is_empty());
}

mod never_nan {
    use proptest::prelude::*;

    use super::*;

    fn finite(value: Option<f64>) -> bool {
        value.is_none_or(f64::is_finite)
    }

    proptest! {
        #[test]
        fn every_figure_is_a_number_or_absent(
            items in prop::collection::vec((0.0_f64..=1.0, any::<bool>(), any::<bool>(), 0_u8..3), 0..60),
            target in 0.0_f64..0.2,
        ) {
            let pairs: Vec<(f64, bool)> = items.iter().map(|(c, a, _, _)| (*c, *a)).collect();
            let c = calibration(&pairs, 10);
            prop_assert!(finite(c.ece) && finite(c.mce) && finite(c.brier));
            prop_assert!(c.ece.is_none_or(|e| (0.0..=1.0).contains(&e)));
            let a: Vec<u8> = items.iter().map(|it| it.3).collect();
            let b: Vec<u8> = items.iter().map(|it| (it.3 + u8::from(it.1)) % 3).collect();
            let kappa = cohen_kappa(&a, &b);
            prop_assert!(finite(kappa) && kappa.is_none_or(|k| (-1.0..=1.0 + 1e-12).contains(&k)));
            let ratings = vec![
                a.iter().map(|v| Some(*v)).collect::<Vec<_>>(),
                b.iter().zip(&items).map(|(v, it)| it.2.then_some(*v)).collect(),
            ];
            let alpha = krippendorff_alpha_nominal(&ratings);
            prop_assert!(finite(alpha) && alpha.is_none_or(|x| x <= 1.0 + 1e-12));
            let groups = ["A", "B", "C"];
            let labeled: Vec<Labeled<'_>> = items
                .iter()
                .map(|(_, t, p, g)| Labeled { group: groups[*g as usize], truth: *t, predicted: *p })
                .collect();
            let f = fairness(&labeled, 5);
            prop_assert!(finite(f.demographic_parity_difference) && finite(f.demographic_parity_ratio));
            prop_assert!(finite(f.equalized_odds_difference));
            let advice = threshold_advice(&pairs, target, 0.05);
            prop_assert!(advice.curve.iter().all(|p| finite(p.error_rate) && finite(p.upper_bound)));
            let q = qa_estimate(&items.iter().map(|(c, a, _, _)| (c.max(0.01), *a)).collect::<Vec<_>>(), 0.05);
            prop_assert!(finite(q.error_rate) && q.interval.is_none_or(|(lo, hi)| lo.is_finite() && hi.is_finite()));
        }
    }
}
