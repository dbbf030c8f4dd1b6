"""Seeded, stratified bootstrap confidence intervals that resample patients, not images.

The resampling, exactly (so a reader or a test can redo it by hand):

1. Units are the groups (patients) when ``groups`` is given, else the single cases. A unit's
   stratum is the largest label among its cases (1-D labels: a patient with one referable
   eye is a referable patient); 2-D (multi-label) targets are not stratified.
2. ``rng = numpy.random.default_rng(seed)``; for each of ``n_boot`` replicates, for each
   stratum in sorted order, draw ``rng.integers(0, k, size=k)`` among that stratum's ``k``
   units (units in first-appearance order); the replicate holds every case of every drawn
   unit, so each replicate keeps every stratum's unit count and hence both classes.
3. The interval is the percentile interval (``numpy.quantile`` at (1 - level) / 2 and
   (1 + level) / 2) of the replicate values that are finite; the point estimate is the
   metric on the full set.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Sequence
from typing import Any

import numpy as np

from transfusion_cli.errors import DataError

MetricFn = Callable[[np.ndarray, np.ndarray], float]


def resampling_units(y_true: np.ndarray, groups: Sequence[Hashable] | None
                     ) -> list[tuple[Any, list[np.ndarray]]]:
    """``[(stratum, [case indices of each unit])]`` in sorted stratum order (see module doc)."""
    n = len(y_true)
    if groups is None:
        unit_of = np.arange(n)
    else:
        if len(groups) != n:
            raise DataError(f"{len(groups)} patient ids for {n} cases; give one per case.")
        _, first, unit_of = np.unique(np.asarray([str(g) for g in groups]), return_index=True,
                                      return_inverse=True)
        order = np.argsort(np.argsort(first))  # renumber units by first appearance
        unit_of = order[unit_of]
    members: dict[int, list[int]] = {}
    for index, unit in enumerate(unit_of.tolist()):
        members.setdefault(unit, []).append(index)
    strata: dict[Any, list[np.ndarray]] = {}
    flat = np.asarray(y_true).ndim == 1
    for unit in sorted(members):
        cases = np.asarray(members[unit])
        stratum = np.asarray(y_true)[cases].max().item() if flat else 0
        strata.setdefault(stratum, []).append(cases)
    return [(stratum, strata[stratum]) for stratum in sorted(strata)]


def bootstrap_indices(y_true: Any, groups: Sequence[Hashable] | None = None, n_boot: int = 2000,
                      seed: int = 0):
    """Yield the case indices of each of ``n_boot`` stratified (group) bootstrap replicates."""
    if n_boot < 1:
        raise DataError(f"--bootstrap must be at least 1 (got {n_boot}); 2000 is usual.")
    units = resampling_units(np.asarray(y_true), groups)
    rng = np.random.default_rng(seed)
    for _ in range(n_boot):
        picked: list[np.ndarray] = []
        for _, stratum_units in units:
            k = len(stratum_units)
            picked.extend(stratum_units[i] for i in rng.integers(0, k, size=k))
        yield np.concatenate(picked)


def percentile_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float]:
    """The percentile interval of the finite ``values``; NaNs when none are finite."""
    finite = np.asarray([v for v in values if v is not None and math.isfinite(v)])
    if not 0 < level < 1:
        raise DataError(f"Confidence level must lie between 0 and 1 (got {level}).")
    if len(finite) == 0:
        return math.nan, math.nan
    low, high = np.quantile(finite, [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high)


def bootstrap_ci(metric_fn: MetricFn, y_true: Any, y_score: Any,
                 groups: Sequence[Hashable] | None = None, n_boot: int = 2000, seed: int = 0,
                 level: float = 0.95) -> tuple[float, float, float]:
    """``(point, low, high)``: ``metric_fn(y_true, y_score)`` with its bootstrap interval."""
    y_true, y_score = np.asarray(y_true), np.asarray(y_score)
    if len(y_true) != len(y_score):
        raise DataError(f"{len(y_score)} scores for {len(y_true)} labels; give one per case.")
    point = float(metric_fn(y_true, y_score))
    values = [float(metric_fn(y_true[idx], y_score[idx]))
              for idx in bootstrap_indices(y_true, groups, n_boot, seed)]
    low, high = percentile_interval(values, level)
    return point, low, high


def fast_auc(y_true: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """ROC AUC of each row of ``scores`` (k, n) against 0/1 labels (midranks; ties count half)."""
    from scipy.stats import rankdata

    y = np.asarray(y_true).astype(bool)
    m, n = int(y.sum()), int((~y).sum())
    if m == 0 or n == 0:
        return np.full(np.atleast_2d(scores).shape[0], np.nan)
    ranks = rankdata(np.atleast_2d(scores), axis=1)
    return (ranks[:, y].sum(axis=1) - m * (m + 1) / 2) / (m * n)


def paired_auc_difference(y_true: Any, score_a: Any, score_b: Any,
                          groups: Sequence[Hashable] | None = None, n_boot: int = 2000,
                          seed: int = 0, level: float = 0.95) -> dict[str, float]:
    """AUC of b minus AUC of a on the same cases: paired bootstrap CI and DeLong p-value.

    Both scores are resampled with the same replicate indices, so the interval reflects the
    correlation between the two models. Keys: ``auc_a, auc_b, difference, ci_low, ci_high,
    p_value`` (plus ``n_boot``).
    """
    from transfusion_cli.evaluation.delong import delong_test

    y = np.asarray(y_true).ravel()
    stacked = np.stack([np.asarray(score_a, dtype=np.float64).ravel(),
                        np.asarray(score_b, dtype=np.float64).ravel()])
    test = delong_test(y, stacked[0], stacked[1])
    differences = []
    for idx in bootstrap_indices(y, groups, n_boot, seed):
        aucs = fast_auc(y[idx], stacked[:, idx])
        differences.append(float(aucs[1] - aucs[0]))
    low, high = percentile_interval(differences, level)
    return {"auc_a": test["auc_a"], "auc_b": test["auc_b"], "difference": test["difference"],
            "ci_low": low, "ci_high": high, "p_value": test["p_value"], "n_boot": n_boot}


def bootstrap_many(compute: Callable[[np.ndarray], dict[str, float]], y_strata: Any,
                   groups: Sequence[Hashable] | None = None, n_boot: int = 2000, seed: int = 0,
                   level: float = 0.95, progress: Callable[[], None] | None = None
                   ) -> dict[str, dict[str, float]]:
    """Several metrics on the same replicates: ``compute(indices) -> {name: value}``.

    Returns ``{name: {"value", "ci_low", "ci_high", "n_valid"}}`` where ``value`` is
    ``compute`` on every case and ``n_valid`` counts the replicates with a finite value.
    """
    y_strata = np.asarray(y_strata)
    point = compute(np.arange(len(y_strata)))
    replicates: dict[str, list[float]] = {name: [] for name in point}
    for idx in bootstrap_indices(y_strata, groups, n_boot, seed):
        values = compute(idx)
        for name in replicates:
            replicates[name].append(float(values.get(name, math.nan)))
        if progress is not None:
            progress()
    result = {}
    for name, values in replicates.items():
        low, high = percentile_interval(values, level)
        result[name] = {"value": float(point[name]), "ci_low": low, "ci_high": high,
                        "n_valid": int(np.isfinite(values).sum())}
    return result
