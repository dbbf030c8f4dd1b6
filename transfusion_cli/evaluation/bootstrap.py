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

``bootstrap_weights`` hands out the same replicates as case weights (how many times each case
was drawn), many replicates at a time, and ``bootstrap_many`` / ``paired_auc_difference``
compute every replicate's metrics from them at once (``evaluation.weighted``); only
``bootstrap_ci``, for an arbitrary metric function, calls it once per replicate.
``benchmarks/bootstrap_speed.py`` times both ways and checks that the intervals agree.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Iterator, Sequence
from typing import Any

import numpy as np

from transfusion_cli.errors import DataError

MetricFn = Callable[[np.ndarray, np.ndarray], float]
# Weights held at once by ``bootstrap_weights`` (rows x cases): about 32 MB of float64.
CHUNK_CELLS = 4_000_000
DELONG = "DeLong et al. (1988) paired test, two-sided; cases independent"
OBUCHOWSKI = ("Obuchowski (1997) clustered paired test, two-sided; patients as clusters "
              "(the unit the bootstrap resamples)")


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


def bootstrap_weights(y_true: Any, groups: Sequence[Hashable] | None = None,
                      n_boot: int = 2000, seed: int = 0,
                      chunk: int | None = None) -> Iterator[np.ndarray]:
    """The replicates of ``bootstrap_indices`` (the same draws from the same generator), as
    case weights: arrays of ``chunk`` rows (the last may be shorter) by one column per case,
    each entry how many times the replicate holds that case. Default ``chunk``: about
    ``CHUNK_CELLS`` weights at a time."""
    if n_boot < 1:
        raise DataError(f"--bootstrap must be at least 1 (got {n_boot}); 2000 is usual.")
    y_true = np.asarray(y_true)
    units = resampling_units(y_true, groups)
    cases_of_unit = [cases for _, stratum_units in units for cases in stratum_units]
    n_units = len(cases_of_unit)
    unit_of_case = np.empty(len(y_true), dtype=np.int64)
    for unit, cases in enumerate(cases_of_unit):
        unit_of_case[cases] = unit
    strata, offset = [], 0  # (first unit id, unit count) per stratum, in draw order
    for _, stratum_units in units:
        strata.append((offset, len(stratum_units)))
        offset += len(stratum_units)
    chunk = chunk or max(1, CHUNK_CELLS // max(len(y_true), 1))
    rng = np.random.default_rng(seed)
    for start in range(0, n_boot, chunk):
        rows = min(chunk, n_boot - start)
        draws = np.empty((rows, n_units), dtype=np.int64)
        for row in range(rows):
            for first, k in strata:
                draws[row, first:first + k] = first + rng.integers(0, k, size=k)
        draws += n_units * np.arange(rows)[:, None]
        counts = np.bincount(draws.ravel(), minlength=rows * n_units).reshape(rows, n_units)
        yield counts[:, unit_of_case].astype(np.float64)


def percentile_interval(values: Sequence[float] | np.ndarray,
                        level: float = 0.95) -> tuple[float, float]:
    """The percentile interval of the finite ``values``; NaNs when none are finite."""
    values = np.asarray(values, dtype=np.float64).ravel()  # None reads as NaN
    finite = values[np.isfinite(values)]
    if not 0 < level < 1:
        raise DataError(f"Confidence level must lie between 0 and 1 (got {level}).")
    if len(finite) == 0:
        return math.nan, math.nan
    low, high = np.quantile(finite, [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high)


def bootstrap_ci(metric_fn: MetricFn, y_true: Any, y_score: Any,
                 groups: Sequence[Hashable] | None = None, n_boot: int = 2000, seed: int = 0,
                 level: float = 0.95) -> tuple[float, float, float]:
    """``(point, low, high)``: ``metric_fn(y_true, y_score)`` with its bootstrap interval (one
    call of ``metric_fn`` per replicate: any metric; ``bootstrap_many`` is the fast way)."""
    y_true, y_score = np.asarray(y_true), np.asarray(y_score)
    if len(y_true) != len(y_score):
        raise DataError(f"{len(y_score)} scores for {len(y_true)} labels; give one per case.")
    point = float(metric_fn(y_true, y_score))
    values = [float(metric_fn(y_true[idx], y_score[idx]))
              for idx in bootstrap_indices(y_true, groups, n_boot, seed)]
    low, high = percentile_interval(values, level)
    return point, low, high


def paired_auc_difference(y_true: Any, score_a: Any, score_b: Any,
                          groups: Sequence[Hashable] | None = None, n_boot: int = 2000,
                          seed: int = 0, level: float = 0.95) -> dict[str, Any]:
    """AUC of b minus AUC of a on the same cases: paired bootstrap CI and a paired test.

    Both scores are resampled with the same replicates, so the interval reflects the
    correlation between the two models. The p-value is DeLong's test when the cases are
    independent (no ``groups``), else Obuchowski's (1997) clustered test with the groups
    (patients) as clusters, the unit the bootstrap resamples. Keys: ``auc_a, auc_b,
    difference, ci_low, ci_high, p_value, p_method, n_boot``.
    """
    from transfusion_cli.evaluation.weighted import weighted_auc

    y = np.asarray(y_true).ravel()
    a = np.asarray(score_a, dtype=np.float64).ravel()
    b = np.asarray(score_b, dtype=np.float64).ravel()
    test = paired_auc_test(y, a, b, groups)
    differences = [weighted_auc(y, b, weights) - weighted_auc(y, a, weights)
                   for weights in bootstrap_weights(y, groups, n_boot, seed)]
    low, high = percentile_interval(np.concatenate(differences), level)
    return {"auc_a": test["auc_a"], "auc_b": test["auc_b"], "difference": test["difference"],
            "ci_low": low, "ci_high": high, "p_value": test["p_value"],
            "p_method": test["method"], "n_boot": n_boot}


def paired_auc_test(y_true: Any, score_a: Any, score_b: Any,
                    groups: Sequence[Hashable] | None = None) -> dict[str, Any]:
    """The paired AUC test that fits the cases: DeLong's for independent cases, Obuchowski's
    clustered test when ``groups`` (patients) are given; ``method`` names it."""
    if groups is None:
        from transfusion_cli.evaluation.delong import delong_test

        return {**delong_test(y_true, score_a, score_b), "method": DELONG}
    from transfusion_cli.evaluation.clustered import clustered_auc_test

    return {**clustered_auc_test(y_true, score_a, score_b, groups), "method": OBUCHOWSKI}


def bootstrap_many(compute: Callable[[np.ndarray], dict[str, np.ndarray]], y_strata: Any,
                   groups: Sequence[Hashable] | None = None, n_boot: int = 2000, seed: int = 0,
                   level: float = 0.95, progress: Callable[[int], None] | None = None,
                   point: dict[str, float] | None = None) -> dict[str, dict[str, float]]:
    """Several metrics on the same replicates, computed for many replicates at once.

    ``compute(weights) -> {name: values}`` takes case weights of shape (rows, cases) (see
    ``bootstrap_weights``) and returns one value per row for each metric
    (``evaluation.weighted`` has the task metrics). ``point`` gives the estimates on every
    case (default: ``compute`` with all weights 1). Returns ``{name: {"value", "ci_low",
    "ci_high", "n_valid"}}`` where ``n_valid`` counts the replicates with a finite value;
    ``progress(rows)`` is called after each batch of replicates.
    """
    y_strata = np.asarray(y_strata)
    if point is None:
        point = {name: float(values[0])
                 for name, values in compute(np.ones((1, len(y_strata)))).items()}
    replicates: dict[str, list[np.ndarray]] = {name: [] for name in point}
    for weights in bootstrap_weights(y_strata, groups, n_boot, seed):
        values = compute(weights)
        for name, parts in replicates.items():
            parts.append(np.asarray(values.get(name, np.full(len(weights), np.nan)),
                                    dtype=np.float64))
        if progress is not None:
            progress(len(weights))
    result = {}
    for name, parts in replicates.items():
        values = np.concatenate(parts)
        low, high = percentile_interval(values, level)
        result[name] = {"value": float(point[name]), "ci_low": low, "ci_high": high,
                        "n_valid": int(np.isfinite(values).sum())}
    return result
