"""Task metrics of many bootstrap replicates at once.

A replicate is a row of case weights: how many times each case was drawn. A metric of the
resampled cases equals the same metric with those weights, so every replicate is computed
from the one sorted order of the scores, with numpy, instead of one scikit-learn call per
replicate and metric. ``tests/evaluation/test_evaluate_bootstrap.py`` checks every function
here against ``transfusion_cli.scores.compute_metrics`` (scikit-learn) on the materialised
resamples, including which replicates come out NaN.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from transfusion_cli.data.bundles import DatasetInfo

BatchMetrics = Callable[[np.ndarray], dict[str, np.ndarray]]


def weighted_auc(y_true: Any, scores: Any, weights: Any) -> np.ndarray:
    """ROC AUC of ``scores`` against 0/1 ``y_true`` under each row of ``weights`` (b, n);
    ties count half; NaN where a row weighs no positive or no negative case.

    With integer weights every partial sum is an exact integer or half-integer in float64
    (below 2**53), so each AUC is the correctly rounded ratio of two exact counts.
    """
    y = np.asarray(y_true).astype(bool).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    w = np.atleast_2d(np.asarray(weights, dtype=np.float64))
    if len(y) == 0:
        return np.full(w.shape[0], np.nan)
    order = np.argsort(s, kind="stable")
    sorted_scores = s[order]
    starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])
    w = w[:, order]
    positive = np.add.reduceat(w * y[order], starts, axis=1)
    negative = np.add.reduceat(w * ~y[order], starts, axis=1)
    below = np.cumsum(negative, axis=1) - negative  # negatives scored strictly lower
    pairs = positive.sum(axis=1) * negative.sum(axis=1)
    wins = (positive * (below + 0.5 * negative)).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(pairs > 0, wins / np.where(pairs > 0, pairs, 1.0), np.nan)


def weighted_mean(values: Any, weights: np.ndarray) -> np.ndarray:
    """Weighted mean of ``values`` (n,) under each row of ``weights``; NaN for an empty row."""
    total = weights.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, weights @ np.asarray(values, dtype=np.float64) / total,
                        np.nan)


def _quadratic_kappa(y: np.ndarray, predictions: np.ndarray, k: int,
                     weights: np.ndarray) -> np.ndarray:
    """Quadratic-weighted Cohen's kappa per row (scikit-learn's formula); NaN when the chance
    disagreement is zero, as ``scores._quadratic_kappa``."""
    pair = np.zeros((len(y), k * k))
    pair[np.arange(len(y)), y * k + predictions] = 1.0
    confusion = (weights @ pair).reshape(-1, k, k)  # [b, true, predicted]
    grades = np.arange(k)
    cost = (grades[:, None] - grades[None, :]) ** 2
    predicted, true = confusion.sum(axis=1), confusion.sum(axis=2)
    total = confusion.sum(axis=(1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        expected = predicted[:, :, None] * true[:, None, :] / total[:, None, None]
        chance = (cost * expected).sum(axis=(1, 2))
        kappa = 1.0 - (cost * confusion).sum(axis=(1, 2)) / chance
    return np.where(chance > 0, kappa, np.nan)


def _multiclass(probs: np.ndarray, y: np.ndarray, info: DatasetInfo) -> BatchMetrics:
    k = probs.shape[1]
    onehot = np.eye(k)[y]
    predictions = probs.argmax(axis=1)
    correct = (predictions == y).astype(np.float64)
    threshold = info.referable_threshold
    referable = probs[:, threshold:].sum(axis=1) if threshold is not None else None

    def compute(weights: np.ndarray) -> dict[str, np.ndarray]:
        present = (weights @ onehot) > 0  # (b, k)
        count = present.sum(axis=1)
        if k == 2:  # scikit-learn scores two classes by the positive class's probability
            auc = weighted_auc(y == 1, probs[:, 1], weights)
        else:
            per_class = np.stack([weighted_auc(y == c, probs[:, c], weights)
                                  for c in range(k)], axis=1)
            # Macro one-vs-rest over the classes present (all of them: scikit-learn's macro).
            total = np.where(present, np.nan_to_num(per_class), 0.0).sum(axis=1)
            with np.errstate(invalid="ignore", divide="ignore"):
                auc = total / count
        result = {"auc": np.where(count >= 2, auc, np.nan),
                  "accuracy": weighted_mean(correct, weights),
                  "kappa": _quadratic_kappa(y, predictions, k, weights)}
        if referable is not None:
            result["referable_auc"] = weighted_auc(y >= threshold, referable, weights)
        return result

    return compute


def _multilabel(probs: np.ndarray, y: np.ndarray, info: DatasetInfo) -> BatchMetrics:
    labelled = ~np.isnan(y)

    def compute(weights: np.ndarray) -> dict[str, np.ndarray]:
        result = {}
        for index, name in enumerate(info.class_names):
            keep = labelled[:, index]
            result[f"auc/{name}"] = weighted_auc(y[keep, index], probs[keep, index],
                                                 weights[:, keep])
        values = np.stack([result[f"auc/{name}"] for name in info.class_names], axis=1)
        scored = np.isfinite(values).sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            result["mean_auc"] = np.where(scored > 0, np.nan_to_num(values).sum(axis=1) / scored,
                                          np.nan)
        return result

    return compute


def task_metrics(logits: Any, targets: Any, info: DatasetInfo) -> BatchMetrics:
    """``compute(weights) -> {name: values per row}``: the metrics ``compute_metrics`` gives a
    bootstrap CI (``tfx evaluate``): every one but the binary task's Youden threshold and the
    sensitivity and specificity at it, which are properties of the set, not scores."""
    from transfusion_cli.scores import probabilities

    logits = np.asarray(logits, dtype=np.float64)
    if logits.ndim == 1:
        logits = logits[:, None]
    probs = probabilities(logits, info.task)
    if info.task == "multiclass":
        return _multiclass(probs, np.asarray(targets).reshape(-1).astype(np.int64), info)
    if info.task == "multilabel":
        return _multilabel(probs, np.asarray(targets, dtype=np.float64).reshape(len(probs), -1),
                           info)
    y = np.asarray(targets, dtype=np.float64).reshape(-1)
    score = probs.reshape(-1)
    return lambda weights: {"auc": weighted_auc(y, score, weights)}


def rates(y_true: Any, score: Any, threshold: float, keys: tuple[str, ...]) -> BatchMetrics:
    """``compute(weights)``: sensitivity, specificity, PPV and NPV (``keys`` of them) when
    ``score >= threshold`` is called positive (``operating_point.rates_at`` per row)."""
    y = np.asarray(y_true).astype(bool).ravel()
    called = np.asarray(score, dtype=np.float64).ravel() >= threshold
    cells = {"tp": y & called, "fp": ~y & called, "fn": y & ~called, "tn": ~y & ~called}
    ratios = {"sensitivity": ("tp", "fn"), "specificity": ("tn", "fp"), "ppv": ("tp", "fp"),
              "npv": ("tn", "fn")}

    def compute(weights: np.ndarray) -> dict[str, np.ndarray]:
        counts = {name: weights @ mask.astype(np.float64) for name, mask in cells.items()}
        result = {}
        for key in keys:
            hit, miss = ratios[key]
            total = counts[hit] + counts[miss]
            with np.errstate(invalid="ignore", divide="ignore"):
                result[key] = np.where(total > 0, counts[hit] / total, np.nan)
        return result

    return compute
