"""DeLong's test for two correlated ROC AUCs on the same cases (fast midrank algorithm).

DeLong, DeLong & Clarke-Pearson (1988) estimate the covariance of two AUCs measured on the
same cases from their structural components; Sun & Xu (2014) compute those components from
midranks in O(n log n) instead of comparing every positive with every negative.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy.stats import norm, rankdata

from transfusion_cli.errors import DataError


def _binary_labels(y_true: Any) -> np.ndarray:
    y = np.asarray(y_true).ravel()
    values = set(np.unique(y).tolist())
    if not values <= {0, 1}:
        raise DataError(f"AUC labels must be 0/1; got the values {sorted(values)[:5]}. "
                        "Binarise the targets (e.g. grade >= threshold) first.")
    y = y.astype(bool)
    if y.all() or not y.any():
        raise DataError(f"AUC needs positive and negative cases; all {len(y)} are "
                        f"{'positive' if y.any() else 'negative'}.")
    return y


def auc_components(y_true: Any, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray,
                                                             np.ndarray]:
    """AUCs and DeLong structural components for ``scores`` of shape (k, n).

    Returns ``(aucs, v10, v01)``: ``v10[k, i]`` is classifier k's placement value of positive
    i (the share of negatives it outranks, ties counting half), ``v01[k, j]`` one minus the
    share of positives negative j outranks.
    """
    y = _binary_labels(y_true)
    scores = np.atleast_2d(np.asarray(scores, dtype=np.float64))
    if scores.shape[1] != len(y):
        raise DataError(f"{scores.shape[1]} scores for {len(y)} labels; give one per case.")
    positives, negatives = scores[:, y], scores[:, ~y]
    m, n = positives.shape[1], negatives.shape[1]
    rank_all = rankdata(np.concatenate([positives, negatives], axis=1), axis=1)
    rank_pos = rankdata(positives, axis=1)
    rank_neg = rankdata(negatives, axis=1)
    v10 = (rank_all[:, :m] - rank_pos) / n
    v01 = 1.0 - (rank_all[:, m:] - rank_neg) / m
    aucs = v10.mean(axis=1)
    return aucs, v10, v01


def auc_covariance(y_true: Any, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """AUCs of the rows of ``scores`` (k, n) and DeLong's (k, k) covariance matrix."""
    aucs, v10, v01 = auc_components(y_true, scores)
    m, n = v10.shape[1], v01.shape[1]
    s10 = np.atleast_2d(np.cov(v10)) if m > 1 else np.zeros((len(aucs), len(aucs)))
    s01 = np.atleast_2d(np.cov(v01)) if n > 1 else np.zeros((len(aucs), len(aucs)))
    return aucs, s10 / m + s01 / n


def delong_test(y_true: Any, score_a: Any, score_b: Any) -> dict[str, float]:
    """Two-sided DeLong test of AUC(b) = AUC(a) for two scores of the same cases.

    Returns ``auc_a, auc_b, difference`` (b - a), ``variance`` (of the difference), ``z`` and
    ``p_value``. Identical scores give difference 0, variance 0, z 0 and p 1.
    """
    aucs, cov = auc_covariance(y_true, paired_scores(score_a, score_b))
    return difference_test(aucs, cov)


def paired_scores(score_a: Any, score_b: Any) -> np.ndarray:
    """The two models' scores stacked (2, n); different lengths are a DataError."""
    a = np.asarray(score_a, dtype=np.float64).ravel()
    b = np.asarray(score_b, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise DataError(f"The two models scored different numbers of cases ({len(a)} and "
                        f"{len(b)}); compare them on the same test images.")
    return np.stack([a, b])


def difference_test(aucs: np.ndarray, cov: np.ndarray) -> dict[str, float]:
    """The two-sided z test of ``aucs[1] - aucs[0]`` given their (2, 2) covariance."""
    difference = float(aucs[1] - aucs[0])
    variance = float(max(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1], 0.0))
    if variance <= 1e-15:  # the same ranking twice (or a degenerate set): no evidence either way
        same = abs(difference) < 1e-12
        z = 0.0 if same else math.copysign(math.inf, difference)
        p_value = 1.0 if same else 0.0
    else:
        z = difference / math.sqrt(variance)
        p_value = float(2 * norm.sf(abs(z)))
    return {"auc_a": float(aucs[0]), "auc_b": float(aucs[1]), "difference": difference,
            "variance": variance, "z": float(z), "p_value": p_value}


def delong_ci(y_true: Any, score: Any, level: float = 0.95) -> tuple[float, float, float]:
    """One AUC with DeLong's normal-approximation confidence interval, clipped to [0, 1]."""
    aucs, cov = auc_covariance(y_true, np.asarray(score, dtype=np.float64)[None, :])
    half = norm.ppf(0.5 + level / 2) * math.sqrt(max(cov[0, 0], 0.0))
    auc = float(aucs[0])
    return auc, float(max(0.0, auc - half)), float(min(1.0, auc + half))
