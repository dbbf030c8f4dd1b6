"""Bootstrap CIs, the DeLong test, operating points and calibration (numpy only, fast)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy.stats import norm
from sklearn.metrics import roc_auc_score

from transfusion_cli.errors import DataError
from transfusion_cli.evaluation.bootstrap import (
    bootstrap_ci,
    bootstrap_many,
    paired_auc_difference,
)
from transfusion_cli.evaluation.calibration import reliability
from transfusion_cli.evaluation.delong import delong_ci, delong_test
from transfusion_cli.evaluation.operating_point import rates_at, threshold_for_sensitivity
from transfusion_cli.evaluation.weighted import weighted_auc

# pROC's aSAH data set (Turck et al. 2010; 113 patients with aneurysmal subarachnoid
# haemorrhage, outcome "Poor" = 1), as shipped with the R package pROC.
ASAH_Y = [
    0, 0, 0, 0, 1, 1, 0, 1, 0, 0, 1, 0, 1, 1, 0, 0, 1, 0, 1, 1, 1, 0, 1, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 1, 0, 0, 1, 1, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 1, 0,
    0, 0, 1, 0, 1, 0, 0, 1, 1, 1, 0, 1, 1, 0, 1, 1, 1, 1, 0, 0, 0, 1, 1, 0, 1, 0, 0, 0,
    0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 0, 0, 0, 1, 0, 0, 0]
ASAH_S100B = [
    0.13, 0.14, 0.1, 0.04, 0.13, 0.1, 0.47, 0.16, 0.18, 0.1, 0.12, 0.1, 0.44, 0.71,
    0.04, 0.08, 0.49, 0.04, 0.07, 0.33, 0.09, 0.09, 0.07, 0.11, 0.07, 0.17, 0.07, 0.11,
    0.13, 0.19, 0.05, 0.16, 0.41, 0.14, 0.34, 0.35, 0.48, 0.09, 0.96, 0.25, 0.5, 0.46,
    0.16, 0.07, 0.43, 0.45, 0.11, 0.08, 0.09, 0.86, 0.52, 0.08, 0.06, 0.13, 2.07, 0.1,
    0.14, 0.15, 0.07, 0.06, 0.77, 0.05, 0.09, 0.3, 0.03, 0.09, 0.04, 0.23, 0.7, 0.09,
    0.27, 0.71, 0.08, 0.26, 0.08, 0.16, 0.09, 0.13, 0.1, 0.08, 0.11, 0.33, 0.11, 0.28,
    0.07, 0.1, 0.32, 0.22, 0.07, 0.05, 0.24, 0.38, 0.1, 0.15, 0.08, 0.14, 0.1, 0.07,
    0.04, 0.19, 0.56, 0.14, 0.58, 0.32, 0.82, 0.74, 0.15, 0.47, 0.17, 0.44, 0.15, 0.5,
    0.48]
ASAH_WFNS = [
    1, 1, 1, 1, 3, 2, 5, 4, 1, 2, 5, 2, 5, 5, 1, 2, 5, 2, 2, 5, 2, 1, 1, 1, 1, 2, 1, 2,
    1, 1, 3, 4, 2, 1, 4, 5, 4, 1, 4, 2, 5, 5, 1, 1, 2, 4, 1, 1, 2, 5, 5, 2, 1, 2, 5, 1,
    2, 2, 2, 1, 5, 1, 1, 2, 5, 2, 1, 4, 5, 2, 4, 4, 1, 4, 1, 2, 1, 4, 2, 1, 2, 3, 2, 4,
    2, 1, 4, 5, 1, 1, 5, 4, 2, 2, 1, 1, 1, 3, 1, 2, 5, 2, 2, 5, 5, 5, 2, 4, 4, 5, 1, 1, 1]


def test_delong_matches_the_proc_documentation_example():
    """pROC's roc.test documentation: roc.test(roc(aSAH$outcome, aSAH$wfns),
    roc(aSAH$outcome, aSAH$s100b)) gives AUCs 0.8237 and 0.7314, Z = 2.209, p = 0.02718."""
    result = delong_test(ASAH_Y, ASAH_WFNS, ASAH_S100B)
    assert (len(ASAH_Y), sum(ASAH_Y)) == (113, 41)
    assert result["auc_a"] == pytest.approx(0.8237, abs=5e-5)
    assert result["auc_b"] == pytest.approx(0.7314, abs=5e-5)
    assert result["z"] == pytest.approx(-2.209, abs=5e-4)  # b - a here: the sign flips
    assert result["p_value"] == pytest.approx(0.02718, abs=5e-6)


def _delong_by_pairs(y, a, b):
    """DeLong 1988 written out directly: psi over every positive-negative pair, O(n^2)."""
    y = np.asarray(y)
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    m, n = len(pos), len(neg)

    def psi(x, z):
        return 1.0 if x > z else 0.5 if x == z else 0.0

    v10, v01, aucs = [], [], []
    for s in (np.asarray(a, float), np.asarray(b, float)):
        kernel = np.array([[psi(s[i], s[j]) for j in neg] for i in pos])
        aucs.append(kernel.mean())
        v10.append(kernel.mean(axis=1))  # per positive
        v01.append(kernel.mean(axis=0))  # per negative
    s10 = np.cov(np.array(v10))
    s01 = np.cov(np.array(v01))
    cov = s10 / m + s01 / n
    var = cov[0, 0] + cov[1, 1] - 2 * cov[0, 1]
    z = (aucs[1] - aucs[0]) / math.sqrt(var)
    return aucs, var, z, 2 * norm.sf(abs(z))


def test_delong_matches_a_direct_pairwise_implementation_with_ties():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 60)
    a = np.round(y * 0.8 + rng.normal(0, 1, 60), 1)  # rounding makes ties
    b = np.round(y * 1.2 + rng.normal(0, 1, 60), 1)
    aucs, var, z, p = _delong_by_pairs(y, a, b)
    result = delong_test(y, a, b)
    assert result["auc_a"] == pytest.approx(aucs[0], abs=1e-12)
    assert result["auc_b"] == pytest.approx(roc_auc_score(y, b), abs=1e-12)
    assert result["variance"] == pytest.approx(var, rel=1e-10)
    assert result["z"] == pytest.approx(z, rel=1e-10)
    assert result["p_value"] == pytest.approx(p, rel=1e-9)


def test_delong_identical_scores_and_bad_labels():
    y, s = [0, 1, 0, 1, 1], [0.1, 0.9, 0.3, 0.4, 0.8]
    same = delong_test(y, s, s)
    assert same["difference"] == 0 and same["p_value"] == 1.0
    with pytest.raises(DataError, match="positive and negative"):
        delong_test([1, 1, 1], [0.1, 0.2, 0.3], [0.3, 0.2, 0.1])
    with pytest.raises(DataError, match="0/1"):
        delong_test([0, 1, 2], [0.1, 0.2, 0.3], [0.3, 0.2, 0.1])
    auc, low, high = delong_ci(ASAH_Y, ASAH_S100B)
    # pROC's documentation: ci.auc(aSAH$outcome, aSAH$s100b) is 0.7314, 95% CI 0.6301-0.8326
    # (DeLong).
    assert (auc, low, high) == pytest.approx((0.7314, 0.6301, 0.8326), abs=5e-5)


# A small fixed set: 4 patients, each with 2 images (one per eye).
FIXED_Y = np.array([0, 0, 0, 1, 1, 1, 0, 1])
FIXED_SCORE = np.array([0.1, 0.4, 0.35, 0.8, 0.7, 0.2, 0.5, 0.9])
FIXED_GROUPS = ["p1", "p1", "p2", "p2", "p3", "p3", "p4", "p4"]


def _hand_bootstrap(n_boot, seed, groups):
    """The documented resampling, written out: strata by the unit's largest label, units in
    first-appearance order, rng.integers per stratum in sorted stratum order."""
    units = list(dict.fromkeys(groups)) if groups is not None else list(range(len(FIXED_Y)))
    members = {u: [i for i in range(len(FIXED_Y))
                   if (groups[i] if groups is not None else i) == u] for u in units}
    strata = {}
    for u in units:
        strata.setdefault(int(FIXED_Y[members[u]].max()), []).append(u)
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(n_boot):
        idx = []
        for stratum in sorted(strata):
            chosen = strata[stratum]
            for k in rng.integers(0, len(chosen), size=len(chosen)):
                idx.extend(members[chosen[k]])
        y, s = FIXED_Y[idx], FIXED_SCORE[idx]
        values.append(roc_auc_score(y, s) if 0 < y.sum() < len(y) else math.nan)
    finite = [v for v in values if not math.isnan(v)]
    return np.quantile(finite, [0.025, 0.975])


@pytest.mark.parametrize("groups", [None, FIXED_GROUPS])
def test_bootstrap_ci_equals_a_hand_computed_bootstrap(groups):
    point, low, high = bootstrap_ci(roc_auc_score, FIXED_Y, FIXED_SCORE, groups=groups,
                                    n_boot=300, seed=7)
    assert point == roc_auc_score(FIXED_Y, FIXED_SCORE)
    assert (low, high) == pytest.approx(tuple(_hand_bootstrap(300, 7, groups)), abs=1e-12)


def test_image_level_resamples_keep_both_classes_and_patient_level_keeps_patients():
    seen = []

    def record(y, s):
        seen.append((int(y.sum()), len(y)))
        return roc_auc_score(y, s)

    bootstrap_ci(record, FIXED_Y, FIXED_SCORE, n_boot=50, seed=1)
    assert all(positives == 4 and n == 8 for positives, n in seen[1:])  # stratified
    seen.clear()
    bootstrap_ci(record, FIXED_Y, FIXED_SCORE, groups=FIXED_GROUPS, n_boot=50, seed=1)
    assert all(n == 8 for _, n in seen)  # 4 patients x 2 images every time
    # Patient p2 has both labels: its stratum is positive (largest label).


def test_bootstrap_ci_covers_like_delong_on_a_larger_set():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    s = y + rng.normal(0, 1.2, 400)
    point, low, high = bootstrap_ci(lambda a, b: float(weighted_auc(a, b, np.ones(len(a)))[0]),
                                    y, s, n_boot=1000, seed=0)
    _, d_low, d_high = delong_ci(y, s)
    assert low < point < high
    assert low == pytest.approx(d_low, abs=0.015) and high == pytest.approx(d_high, abs=0.015)


def test_paired_difference_contract_and_seed():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 200)
    a, b = y + rng.normal(0, 1.5, 200), y + rng.normal(0, 0.7, 200)
    result = paired_auc_difference(y, a, b, n_boot=400, seed=3)
    assert {"auc_a", "auc_b", "difference", "ci_low", "ci_high", "p_value"} <= set(result)
    assert result["difference"] == pytest.approx(roc_auc_score(y, b) - roc_auc_score(y, a))
    assert result["ci_low"] < result["difference"] < result["ci_high"]
    assert result["ci_low"] > 0 and result["p_value"] < 0.01
    assert paired_auc_difference(y, a, b, n_boot=400, seed=3) == result
    assert paired_auc_difference(y, a, b, n_boot=400, seed=4)["ci_low"] != result["ci_low"]


def test_bootstrap_many_uses_the_same_resamples_for_every_metric():
    def compute(weights):
        return {"auc": weighted_auc(FIXED_Y, FIXED_SCORE, weights),
                "auc_again": weighted_auc(FIXED_Y, FIXED_SCORE, weights)}

    result = bootstrap_many(compute, FIXED_Y, FIXED_GROUPS, n_boot=200, seed=2)
    assert result["auc"] == result["auc_again"]
    assert result["auc"]["n_valid"] == 200
    assert result["auc"]["value"] == roc_auc_score(FIXED_Y, FIXED_SCORE)


def test_operating_point_threshold_reaches_the_target_on_val_and_is_reused():
    rng = np.random.default_rng(5)
    y_val = rng.integers(0, 2, 300)
    s_val = y_val + rng.normal(0, 1, 300)
    threshold = threshold_for_sensitivity(y_val, s_val, 0.9)
    sens = ((s_val >= threshold) & (y_val == 1)).sum() / y_val.sum()
    assert sens >= 0.9
    # No higher threshold reaches the target (it is the most specific one that does).
    higher = np.sort(s_val[s_val > threshold])[0]
    assert ((s_val >= higher) & (y_val == 1)).sum() / y_val.sum() < 0.9
    rates = rates_at([0, 0, 1, 1, 1], [0.1, 0.6, 0.4, 0.7, 0.9], 0.5)
    assert rates["confusion_matrix"] == {"tp": 2, "fp": 1, "fn": 1, "tn": 1}
    assert (rates["sensitivity"], rates["specificity"], rates["ppv"], rates["npv"]) == \
        pytest.approx((2 / 3, 1 / 2, 2 / 3, 1 / 2))


def test_reliability_bins_and_ece_by_hand():
    y = [0, 1, 1, 0, 1, 1]
    p = [0.05, 0.15, 0.55, 0.58, 0.95, 1.0]
    result = reliability(y, p, bins=2)
    assert result["count"] == [2, 4]
    # Bin 0: mean p 0.10, frequency 0.5; bin 1: mean p 0.77, frequency 0.75.
    expected = 2 / 6 * abs(0.5 - 0.10) + 4 / 6 * abs(0.75 - (0.55 + 0.58 + 0.95 + 1.0) / 4)
    assert result["ece"] == pytest.approx(expected)
    assert all(itertools.starmap(lambda a, b: a is None or 0 <= a <= 1,
                                 zip(result["observed"], result["count"], strict=True)))
