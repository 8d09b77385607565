#!/usr/bin/env python3
"""Makes the analytics fixtures: fixed data sets and the reference values
that scikit-learn, fairlearn, statsmodels and krippendorff compute for them.

The Rust tests read the JSON files and compare to 1e-9; Python is not needed
to run them. Regenerate with:

    pip install scikit-learn==1.9.1 fairlearn==0.15.0 statsmodels==0.15.0 krippendorff
    scripts/analytics-fixtures.py
"""
import json
import pathlib

import krippendorff
import numpy as np
import sklearn
import fairlearn
import statsmodels
from fairlearn.metrics import (
    demographic_parity_difference,
    demographic_parity_ratio,
    equalized_odds_difference,
)
from sklearn.calibration import calibration_curve
from sklearn.metrics import brier_score_loss, cohen_kappa_score
from statsmodels.stats.inter_rater import fleiss_kappa
from statsmodels.stats.proportion import proportion_confint

OUT = pathlib.Path(__file__).resolve().parent.parent / "crates/loopgate-core/tests/data/analytics"
OUT.mkdir(parents=True, exist_ok=True)
VERSIONS = {
    "scikit-learn": sklearn.__version__,
    "fairlearn": fairlearn.__version__,
    "statsmodels": statsmodels.__version__,
    "krippendorff": getattr(krippendorff, "__version__", "unknown"),
    "numpy": np.__version__,
}


def write(name, value):
    value = {"made_with": VERSIONS, **value}
    (OUT / f"{name}.json").write_text(json.dumps(value, indent=1, sort_keys=True) + "\n")


rng = np.random.default_rng(20261127)

# Calibration: confidences (some exactly on bin edges) and whether the AI was right.
conf = np.round(rng.uniform(0, 1, 400), 3)
conf[:6] = [0.0, 0.1, 0.3, 0.5, 0.9, 1.0]
right = (rng.uniform(0, 1, 400) < conf * 0.9 + 0.05).astype(int)
n_bins = 10
prob_true, prob_pred = calibration_curve(right, conf, n_bins=n_bins, strategy="uniform")
edges = np.linspace(0.0, 1.0, n_bins + 1)
ids = np.searchsorted(edges[1:-1], conf)  # as calibration_curve bins
counts = np.bincount(ids, minlength=n_bins)
nonempty = counts[counts > 0]
ece = float(np.sum(nonempty / len(conf) * np.abs(prob_true - prob_pred)))
write("calibration", {
    "confidence": conf.tolist(), "correct": right.tolist(), "n_bins": n_bins,
    "counts": counts.tolist(), "prob_true": prob_true.tolist(), "prob_pred": prob_pred.tolist(),
    "ece": ece, "brier": float(brier_score_loss(right, conf)),
})

# Cohen's kappa: scikit-learn's docstring example, and a larger random pair.
y1 = ["negative", "positive", "negative", "neutral", "positive"]
y2 = ["negative", "positive", "negative", "neutral", "negative"]
a = rng.choice(["approve", "reject", "modify"], 300, p=[0.6, 0.3, 0.1])
b = np.where(rng.uniform(0, 1, 300) < 0.75, a, rng.choice(["approve", "reject", "modify"], 300))
write("cohen", {"cases": [
    {"a": y1, "b": y2, "kappa": float(cohen_kappa_score(y1, y2))},
    {"a": a.tolist(), "b": b.tolist(), "kappa": float(cohen_kappa_score(a, b))},
]})

# Fleiss' kappa: subjects x categories counts, 5 raters each (and the
# classic Fleiss 1971 table used in the literature, 10 subjects x 5 categories, 14 raters).
table = rng.multinomial(5, [0.5, 0.3, 0.2], size=50)
classic = np.array([
    [0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
    [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7],
])
write("fleiss", {"cases": [
    {"table": classic.tolist(), "kappa": float(fleiss_kappa(classic, method="fleiss"))},
    {"table": table.tolist(), "kappa": float(fleiss_kappa(table, method="fleiss"))},
]})

# Krippendorff's alpha, nominal, with missing ratings: Krippendorff's own
# example (reliability data, 4 coders x 12 units) and a random matrix.
nan = float("nan")
paper = [
    [1, 2, 3, 3, 2, 1, 4, 1, 2, nan, nan, nan],
    [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, nan, 3],
    [nan, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, nan],
    [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, nan],
]
rand = rng.integers(1, 4, size=(4, 40)).astype(float)
rand[rng.uniform(0, 1, size=rand.shape) < 0.2] = nan
def rows(m):
    return [[None if np.isnan(v) else int(v) for v in row] for row in np.asarray(m, dtype=float)]
write("krippendorff", {"cases": [
    {"ratings": rows(paper), "alpha": float(krippendorff.alpha(reliability_data=paper, level_of_measurement="nominal"))},
    {"ratings": rows(rand), "alpha": float(krippendorff.alpha(reliability_data=rand, level_of_measurement="nominal"))},
]})

# Fairness: groups, human labels (y_true) and AI predictions (y_pred).
groups = rng.choice(["A", "B", "C"], 600, p=[0.5, 0.3, 0.2])
y_true = (rng.uniform(0, 1, 600) < np.select([groups == "A", groups == "B"], [0.3, 0.4], 0.5)).astype(int)
y_pred = np.where(rng.uniform(0, 1, 600) < 0.8, y_true, 1 - y_true)
y_pred[(groups == "C") & (rng.uniform(0, 1, 600) < 0.2)] = 1
write("fairness", {
    "group": groups.tolist(), "y_true": y_true.tolist(), "y_pred": y_pred.tolist(),
    "demographic_parity_difference": float(demographic_parity_difference(y_true, y_pred, sensitive_features=groups)),
    "demographic_parity_ratio": float(demographic_parity_ratio(y_true, y_pred, sensitive_features=groups)),
    "equalized_odds_difference": float(equalized_odds_difference(y_true, y_pred, sensitive_features=groups)),
})

# Binomial intervals: Wilson and Clopper-Pearson (statsmodels' "beta").
cases = []
for k, n in [(0, 10), (1, 10), (5, 10), (10, 10), (3, 250), (0, 1), (47, 1000), (999, 1000)]:
    for alpha in (0.05, 0.01):
        w = proportion_confint(k, n, alpha=alpha, method="wilson")
        cp = proportion_confint(k, n, alpha=alpha, method="beta")
        cases.append({"k": k, "n": n, "alpha": alpha, "wilson": [float(w[0]), float(w[1])],
                      "clopper_pearson": [float(cp[0]), float(cp[1])]})
write("intervals", {"cases": cases})
print("wrote", sorted(p.name for p in OUT.iterdir()))
