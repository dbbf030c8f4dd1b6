"""Obuchowski's (1997) test for two correlated ROC AUCs when cases come in clusters.

Two eyes of one patient are not independent cases: DeLong's variance counts them as two and
comes out too small. Obuchowski, "Nonparametric analysis of clustered ROC curve data"
(Biometrics 53:567-578, 1997), sums DeLong's structural components (placement values) within
each cluster and takes their variance over clusters. With I clusters, I10 of them holding a
positive case and I01 a negative, M positives and N negatives in all, cluster i's sums
``V10_i`` (over its positives) and ``V01_i`` (over its negatives), its counts ``m_i``, ``n_i``
and AUC ``A``::

    S10 = I10 / ((I10 - 1) M) * sum_i (V10_i - m_i A)(V10_i - m_i A)'
    S01 = I01 / ((I01 - 1) N) * sum_i (V01_i - n_i A)(V01_i - n_i A)'
    S11 = I / (I - 1)         * sum_i (V10_i - m_i A)(V01_i - n_i A)'
    cov(A) = S10 / M + S01 / N + (S11 + S11') / (M N)

With one case per cluster this is DeLong's covariance exactly (a test checks it).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np

from transfusion_cli.errors import DataError
from transfusion_cli.evaluation.delong import auc_components, difference_test, paired_scores


def cluster_ids(groups: Sequence[Hashable], n: int) -> np.ndarray:
    """One integer per case naming its cluster (patient)."""
    if len(groups) != n:
        raise DataError(f"{len(groups)} patient ids for {n} cases; give one per case.")
    _, ids = np.unique(np.asarray([str(g) for g in groups]), return_inverse=True)
    return ids.ravel()


def clustered_auc_covariance(y_true: Any, scores: np.ndarray, groups: Sequence[Hashable]
                             ) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """AUCs of the rows of ``scores`` (k, n), Obuchowski's (k, k) covariance and the counts
    behind it (``clusters``, ``clusters_with_positive``, ``clusters_with_negative``).

    Fewer than two clusters holding a positive (or a negative) case leave the variance
    undefined: a DataError.
    """
    aucs, v10, v01 = auc_components(y_true, scores)  # checks the labels are 0/1, both present
    y = np.asarray(y_true).ravel().astype(bool)
    cluster = cluster_ids(groups, len(y))
    count = int(cluster.max()) + 1
    m_i = np.bincount(cluster[y], minlength=count)
    n_i = np.bincount(cluster[~y], minlength=count)
    big_m, big_n = int(y.sum()), int((~y).sum())
    with_positive, with_negative = int((m_i > 0).sum()), int((n_i > 0).sum())
    counts = {"clusters": count, "clusters_with_positive": with_positive,
              "clusters_with_negative": with_negative}
    if with_positive < 2 or with_negative < 2:
        raise DataError(f"A clustered AUC test needs at least 2 patients with a positive and 2 "
                        f"with a negative case; got {with_positive} and {with_negative}.")
    v10_i = np.stack([np.bincount(cluster[y], weights=row, minlength=count) for row in v10])
    v01_i = np.stack([np.bincount(cluster[~y], weights=row, minlength=count) for row in v01])
    x = v10_i - m_i[None, :] * aucs[:, None]
    z = v01_i - n_i[None, :] * aucs[:, None]
    s10 = with_positive / ((with_positive - 1) * big_m) * (x @ x.T)
    s01 = with_negative / ((with_negative - 1) * big_n) * (z @ z.T)
    s11 = count / (count - 1) * (x @ z.T)
    cov = s10 / big_m + s01 / big_n + (s11 + s11.T) / (big_m * big_n)
    return aucs, cov, counts


def clustered_auc_test(y_true: Any, score_a: Any, score_b: Any,
                       groups: Sequence[Hashable]) -> dict[str, float]:
    """Two-sided test of AUC(b) = AUC(a) on the same clustered cases (Obuchowski 1997).

    Returns what ``delong.delong_test`` returns (``auc_a, auc_b, difference, variance, z,
    p_value``) plus the cluster counts.
    """
    aucs, cov, counts = clustered_auc_covariance(y_true, paired_scores(score_a, score_b),
                                                 groups)
    return {**difference_test(aucs, cov), **counts}
