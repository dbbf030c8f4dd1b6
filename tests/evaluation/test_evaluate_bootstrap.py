"""The batched bootstrap gives the per-replicate loop's intervals (same seed, same resamples,
scikit-learn as the reference), and Obuchowski's clustered AUC test is right."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from transfusion_cli.data.bundles import DatasetInfo
from transfusion_cli.errors import DataError
from transfusion_cli.evaluation import weighted
from transfusion_cli.evaluation.bootstrap import (
    DELONG,
    OBUCHOWSKI,
    bootstrap_indices,
    bootstrap_many,
    bootstrap_weights,
    paired_auc_difference,
    percentile_interval,
)
from transfusion_cli.evaluation.clustered import clustered_auc_test
from transfusion_cli.evaluation.delong import delong_test
from transfusion_cli.evaluation.operating_point import rates_at
from transfusion_cli.scores import compute_metrics, metric_values

SKIP = ("threshold", "sensitivity", "specificity")
CHEST = DatasetInfo("t-chest", "multilabel", ("a", "b", "c", "d", "e"), 1, 32, (0.5,), (0.2,),
                    selection_metric="mean_auc")
RETINA = DatasetInfo("t-retina", "multiclass", ("0", "1", "2", "3", "4"), 3, 32, (0.5,) * 3,
                     (0.2,) * 3, referable_threshold=2, selection_metric="referable_auc")
TWO = DatasetInfo("t-two", "multiclass", ("no", "yes"), 3, 32, (0.5,) * 3, (0.2,) * 3)
BINARY = DatasetInfo("t-binary", "binary", ("no", "yes"), 1, 32, (0.5,), (0.2,))


def _task(info: DatasetInfo, n: int, seed: int):
    """Logits with ties (rounded), targets with rare classes / labels so some replicates
    cannot score them, and what the bootstrap stratifies by."""
    rng = np.random.default_rng(seed)
    if info.task == "multilabel":
        targets = (rng.random((n, 5)) < [0.3, 0.5, 0.2, 0.4, 0.03]).astype(np.float64)
        targets[rng.random((n, 5)) < 0.15] = np.nan
        logits = np.round(np.nan_to_num(targets) + rng.normal(0, 1, (n, 5)), 1)
        return logits, targets, np.zeros(n, dtype=int)
    if info.task == "binary":
        targets = (rng.random(n) < 0.35).astype(np.float64)
        return np.round(targets + rng.normal(0, 1, n), 1)[:, None], targets, targets.astype(int)
    k = len(info.class_names)
    probs = [0.55, 0.15, 0.2, 0.06, 0.04][:k] if k == 5 else [0.6, 0.4]
    targets = rng.choice(k, size=n, p=np.asarray(probs) / sum(probs))
    logits = rng.normal(0, 1, (n, k))
    logits[np.arange(n), targets] += 1.0
    return np.round(logits, 1), targets, targets


def _reference(logits, targets, info, strata, groups, n_boot, seed):
    """The old loop: scikit-learn's metrics on each materialised resample."""
    def compute(idx):
        values = metric_values(compute_metrics(logits[idx], targets[idx], info))
        return {k: v for k, v in values.items() if k not in SKIP}

    point = compute(np.arange(len(strata)))
    replicates = {name: [] for name in point}
    for idx in bootstrap_indices(strata, groups, n_boot, seed):
        values = compute(idx)
        for name in replicates:
            replicates[name].append(values.get(name, np.nan))
    result = {}
    for name, values in replicates.items():
        low, high = percentile_interval(values)
        result[name] = (point[name], low, high, int(np.isfinite(values).sum()))
    return result


def _groups(n: int, size: int) -> list[str] | None:
    return None if size == 1 else [f"patient-{i // size}" for i in range(n)]


@pytest.mark.parametrize(("groups_of", "chunk"), [(1, None), (1, 7), (2, None), (3, 5)])
def test_weights_are_the_indices_replicates(groups_of, chunk):
    y = np.random.default_rng(0).choice(3, size=61, p=[0.5, 0.3, 0.2])
    groups = _groups(61, groups_of)
    rows = np.concatenate(list(bootstrap_weights(y, groups, n_boot=23, seed=4, chunk=chunk)))
    expected = [np.bincount(idx, minlength=61) for idx in bootstrap_indices(y, groups, 23, 4)]
    assert rows.shape == (23, 61)
    assert np.array_equal(rows, np.asarray(expected, dtype=np.float64))


@pytest.mark.parametrize("info", [CHEST, RETINA, TWO, BINARY], ids=lambda i: i.name)
@pytest.mark.parametrize("groups_of", [1, 2])
def test_batched_bootstrap_gives_the_loops_intervals(info, groups_of):
    n, n_boot, seed = 90, 150, 11
    logits, targets, strata = _task(info, n, seed=groups_of)
    groups = _groups(n, groups_of)
    expected = _reference(logits, targets, info, strata, groups, n_boot, seed)
    full = {k: v for k, v in metric_values(compute_metrics(logits, targets, info)).items()
            if k not in SKIP}
    result = bootstrap_many(weighted.task_metrics(logits, targets, info), strata, groups,
                            n_boot, seed, point=full)
    assert set(result) == set(expected)
    for name, (point, low, high, valid) in expected.items():
        got = result[name]
        assert got["value"] == point
        assert got["n_valid"] == valid, name
        assert (got["ci_low"], got["ci_high"]) == pytest.approx((low, high), abs=1e-12,
                                                                nan_ok=True), name
    # The rare label / classes leave some replicates without a score, as in the loop.
    if info is CHEST:
        assert result["auc/e"]["n_valid"] < n_boot


def test_default_point_is_the_weighted_metric_on_every_case():
    logits, targets, strata = _task(RETINA, 80, seed=3)
    result = bootstrap_many(weighted.task_metrics(logits, targets, RETINA), strata, None, 20, 0)
    full = metric_values(compute_metrics(logits, targets, RETINA))
    for name in ("auc", "accuracy", "kappa", "referable_auc"):
        assert result[name]["value"] == pytest.approx(full[name], abs=1e-12)


def test_weighted_metrics_match_scikit_learn_on_materialised_resamples():
    rng = np.random.default_rng(8)
    for info in (CHEST, RETINA, TWO, BINARY):
        logits, targets, _ = _task(info, 70, seed=5)
        counts = rng.integers(0, 3, size=(12, 70)).astype(np.float64)
        batch = weighted.task_metrics(logits, targets, info)(counts)
        for row, weights in enumerate(counts):
            idx = np.repeat(np.arange(70), weights.astype(int))
            expected = metric_values(compute_metrics(logits[idx], targets[idx], info))
            for name, values in batch.items():
                assert values[row] == pytest.approx(expected[name], abs=1e-12, nan_ok=True)


def test_weighted_rates_match_rates_at():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 50)
    s = np.round(y + rng.normal(0, 1, 50), 1)
    keys = ("sensitivity", "specificity", "ppv", "npv")
    counts = rng.integers(0, 3, size=(10, 50)).astype(np.float64)
    batch = weighted.rates(y, s, 0.4, keys)(counts)
    for row, weights in enumerate(counts):
        idx = np.repeat(np.arange(50), weights.astype(int))
        expected = rates_at(y[idx], s[idx], 0.4)
        for key in keys:
            assert batch[key][row] == pytest.approx(expected[key], abs=1e-15, nan_ok=True)


def test_weighted_auc_is_exact_with_ties_and_nan_without_both_classes():
    y = np.array([0, 0, 1, 1, 0, 1])
    s = np.array([0.2, 0.5, 0.5, 0.9, 0.2, 0.1])
    weights = np.array([[1, 1, 1, 1, 1, 1], [2, 0, 1, 3, 0, 1], [1, 1, 0, 0, 1, 0]])
    got = weighted.weighted_auc(y, s, weights)
    for row in range(2):
        idx = np.repeat(np.arange(6), weights[row])
        assert got[row] == roc_auc_score(y[idx], s[idx])
    assert np.isnan(got[2])


@pytest.mark.parametrize("groups_of", [1, 2])
def test_paired_difference_interval_is_the_loops(groups_of):
    rng = np.random.default_rng(6)
    n = 120
    y = rng.integers(0, 2, n)
    a, b = np.round(y + rng.normal(0, 1.3, n), 1), np.round(y + rng.normal(0, 0.8, n), 1)
    groups = _groups(n, groups_of)
    differences = [roc_auc_score(y[i], b[i]) - roc_auc_score(y[i], a[i])
                   for i in bootstrap_indices(y, groups, 300, 9)]
    result = paired_auc_difference(y, a, b, groups, n_boot=300, seed=9)
    assert (result["ci_low"], result["ci_high"]) == pytest.approx(
        tuple(np.quantile(differences, [0.025, 0.975])), abs=1e-12)
    assert result["p_method"] == (DELONG if groups is None else OBUCHOWSKI)
    expected = delong_test(y, a, b) if groups is None else clustered_auc_test(y, a, b, groups)
    assert result["p_value"] == expected["p_value"]


# ------------------------------------------------------------- Obuchowski's clustered test
def _brute_force_clustered(y, scores, groups):
    """Obuchowski (1997) written out pair by pair: psi over every positive/negative pair,
    cluster sums of the placement values, the S10 / S01 / S11 sums, the covariance."""
    y = list(y)
    clusters = list(dict.fromkeys(groups))
    positives = [i for i in range(len(y)) if y[i] == 1]
    negatives = [i for i in range(len(y)) if y[i] == 0]
    big_m, big_n = len(positives), len(negatives)

    def psi(x, z):
        return 1.0 if x > z else 0.5 if x == z else 0.0

    aucs, v10, v01 = [], [], []
    for s in scores:
        aucs.append(sum(psi(s[i], s[j]) for i in positives for j in negatives) / (big_m * big_n))
        v10.append([sum(sum(psi(s[i], s[j]) for j in negatives) / big_n
                        for i in positives if groups[i] == c) for c in clusters])
        v01.append([sum(sum(psi(s[i], s[j]) for i in positives) / big_m
                        for j in negatives if groups[j] == c) for c in clusters])
    m = [sum(1 for i in positives if groups[i] == c) for c in clusters]
    n = [sum(1 for j in negatives if groups[j] == c) for c in clusters]
    i10, i01, count = sum(1 for v in m if v), sum(1 for v in n if v), len(clusters)
    k = len(scores)
    cov = np.zeros((k, k))
    for r, t in itertools.product(range(k), repeat=2):
        s10 = sum((v10[r][c] - m[c] * aucs[r]) * (v10[t][c] - m[c] * aucs[t])
                  for c in range(count)) * i10 / ((i10 - 1) * big_m)
        s01 = sum((v01[r][c] - n[c] * aucs[r]) * (v01[t][c] - n[c] * aucs[t])
                  for c in range(count)) * i01 / ((i01 - 1) * big_n)
        s11_rt = sum((v10[r][c] - m[c] * aucs[r]) * (v01[t][c] - n[c] * aucs[t])
                     for c in range(count)) * count / (count - 1)
        s11_tr = sum((v10[t][c] - m[c] * aucs[t]) * (v01[r][c] - n[c] * aucs[r])
                     for c in range(count)) * count / (count - 1)
        cov[r, t] = s10 / big_m + s01 / big_n + (s11_rt + s11_tr) / (big_m * big_n)
    return aucs, cov


def _clustered_case(seed: int, patients: int = 30):
    """Patients with one to three images, a shared patient effect (so eyes correlate)."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 4, patients)
    groups = [f"p{p}" for p, size in enumerate(sizes) for _ in range(size)]
    effect = np.repeat(rng.normal(0, 1, patients), sizes)
    y = (effect + rng.normal(0, 0.7, len(groups)) > 0.3).astype(int)
    a = np.round(y + effect + rng.normal(0, 1.0, len(groups)), 1)
    b = np.round(y + 0.5 * effect + rng.normal(0, 0.8, len(groups)), 1)
    return y, a, b, groups


@pytest.mark.parametrize("seed", [0, 1])
def test_clustered_test_equals_the_pair_by_pair_computation(seed):
    y, a, b, groups = _clustered_case(seed)
    aucs, cov = _brute_force_clustered(y, [a, b], groups)
    result = clustered_auc_test(y, a, b, groups)
    assert (result["auc_a"], result["auc_b"]) == pytest.approx(tuple(aucs), abs=1e-12)
    variance = cov[0, 0] + cov[1, 1] - 2 * cov[0, 1]
    assert result["variance"] == pytest.approx(variance, rel=1e-10)
    assert result["clusters"] == len(set(groups))


def test_clustered_test_with_single_case_clusters_is_delong():
    rng = np.random.default_rng(4)
    y = rng.integers(0, 2, 150)
    a, b = np.round(y + rng.normal(0, 1, 150), 1), np.round(y + rng.normal(0, 0.7, 150), 1)
    clustered = clustered_auc_test(y, a, b, [f"case{i}" for i in range(150)])
    delong = delong_test(y, a, b)
    for key in ("auc_a", "auc_b", "difference", "variance", "z", "p_value"):
        assert clustered[key] == pytest.approx(delong[key], rel=1e-12, abs=1e-15), key


def test_clustering_changes_the_variance_and_ids_do_not_matter():
    y, a, b, groups = _clustered_case(5, patients=60)
    clustered = clustered_auc_test(y, a, b, groups)
    renamed = clustered_auc_test(y, a, b, [g.upper() + "x" for g in groups])
    assert renamed == pytest.approx(clustered, rel=1e-12)
    assert clustered["variance"] != pytest.approx(delong_test(y, a, b)["variance"], rel=1e-3)


def test_clustered_test_needs_two_patients_of_each_class():
    with pytest.raises(DataError, match="at least 2 patients"):
        clustered_auc_test([0, 1, 0, 1], [0.1, 0.9, 0.2, 0.8], [0.3, 0.7, 0.1, 0.9],
                           ["p", "p", "p", "q"])
