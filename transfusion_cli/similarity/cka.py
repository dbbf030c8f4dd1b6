"""Linear CKA and debiased linear CKA (Kornblith et al. 2019), feature form and Gram form.

Feature form (from moments, used when there are more data points than neurons):
CKA = |Sxy|²_F / (|Sxx|_F |Syy|_F); the debiased version replaces each |S|² by the unbiased
HSIC estimator (Song et al. 2012) written in feature space. The Gram form (n × n kernels) is
used when n is the smaller dimension.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from transfusion_cli.similarity.arrays import check_pair, to_numpy64
from transfusion_cli.similarity.cca import constant_reason, is_constant
from transfusion_cli.similarity.result import MetricResult, SimilarityError, as_float
from transfusion_cli.similarity.streaming import Moments, moments


def _constant(m: Moments) -> MetricResult | None:
    reason = constant_reason(m, "CKA")
    return MetricResult.nan(reason, n=m.n, p=m.p, q=m.q) if reason else None


def linear_cka_from_moments(m: Moments) -> MetricResult:
    """Linear CKA from centred scatter matrices."""
    constant = _constant(m)
    if constant:
        return constant
    value = np.sum(m.sxy**2) / (np.linalg.norm(m.sxx) * np.linalg.norm(m.syy))
    return MetricResult(float(value), None, {"n": m.n, "p": m.p, "q": m.q})


def _debiased_hsic(cross_sq: float, sum_ab: float, tx: float, ty: float, n: int) -> float:
    """Unbiased HSIC up to a factor common to all three terms of CKA, in feature space:
    |XcᵀYc|²_F - n/(n-2) Σ a_i b_i + tx ty / ((n-1)(n-2))."""
    return cross_sq - n / (n - 2) * sum_ab + tx * ty / ((n - 1) * (n - 2))


def debiased_cka_from_moments(m: Moments) -> MetricResult:
    """Debiased linear CKA (unbiased HSIC); can be slightly negative; needs n >= 4."""
    if not m.has_debiased:
        raise SimilarityError("These moments lack the row-norm sums debiased CKA needs; "
                              "accumulate them with PairStats(debiased=True).")
    if m.n < 4:
        return MetricResult.nan(f"debiased CKA needs at least 4 data points, got {m.n}", n=m.n)
    constant = _constant(m)
    if constant:
        return constant
    tx, ty = float(np.trace(m.sxx)), float(np.trace(m.syy))
    hxy = _debiased_hsic(float(np.sum(m.sxy**2)), m.sum_ab, tx, ty, m.n)
    hxx = _debiased_hsic(float(np.sum(m.sxx**2)), m.sum_aa, tx, tx, m.n)
    hyy = _debiased_hsic(float(np.sum(m.syy**2)), m.sum_bb, ty, ty, m.n)
    if hxx <= 0 or hyy <= 0:
        return MetricResult.nan("the unbiased self-HSIC estimate is not positive (too few data "
                                "points for the variation in the layer)", n=m.n, p=m.p, q=m.q)
    return MetricResult(float(hxy / np.sqrt(hxx * hyy)), None, {"n": m.n, "p": m.p, "q": m.q})


def hsic_unbiased(k: np.ndarray, l: np.ndarray) -> float:  # noqa: E741
    """Unbiased HSIC (Song et al. 2012) of two n × n Gram matrices, n >= 4."""
    n = k.shape[0]
    k, l = k.copy(), l.copy()  # noqa: E741
    np.fill_diagonal(k, 0.0)
    np.fill_diagonal(l, 0.0)
    rows_k, rows_l = k.sum(1), l.sum(1)
    value = (np.sum(k * l) + rows_k.sum() * rows_l.sum() / ((n - 1) * (n - 2))
             - 2.0 / (n - 2) * rows_k @ rows_l)
    return float(value / (n * (n - 3)))


def _gram_cka(x: np.ndarray, y: np.ndarray, debiased: bool) -> MetricResult:
    n = x.shape[0]
    xc, yc = x - x.mean(0), y - y.mean(0)
    if (is_constant(float(np.sum(xc * xc)), x.mean(0), n)
            or is_constant(float(np.sum(yc * yc)), y.mean(0), n)):
        return MetricResult.nan("x or y is constant over the data (every neuron has zero "
                                "variance), so CKA is undefined", n=n)
    if debiased:
        if n < 4:
            return MetricResult.nan(f"debiased CKA needs at least 4 data points, got {n}", n=n)
        # Unbiased HSIC is translation invariant; centring first only avoids cancellation.
        k, l = xc @ xc.T, yc @ yc.T  # noqa: E741
        hxx, hyy = hsic_unbiased(k, k), hsic_unbiased(l, l)
        if hxx <= 0 or hyy <= 0:
            return MetricResult.nan("the unbiased self-HSIC estimate is not positive", n=n)
        return MetricResult(hsic_unbiased(k, l) / np.sqrt(hxx * hyy), None, {"n": n})
    k, l = xc @ xc.T, yc @ yc.T  # noqa: E741
    value = np.sum(k * l) / (np.linalg.norm(k) * np.linalg.norm(l))
    return MetricResult(float(value), None, {"n": n})


def _cka(x: Any, y: Any, debiased: bool) -> MetricResult:
    x, y = to_numpy64(x, "x"), to_numpy64(y, "y")
    check_pair(x, y)
    if x.shape[0] <= max(x.shape[1], y.shape[1]):
        return _gram_cka(x, y, debiased)
    m = moments(x, y, debiased=debiased)
    return debiased_cka_from_moments(m) if debiased else linear_cka_from_moments(m)


def linear_cka(x: Any, y: Any) -> float:
    """Linear CKA of x (n, p) and y (n, q), columns centred; in [0, 1]."""
    return as_float(_cka(x, y, debiased=False))


def debiased_cka(x: Any, y: Any) -> float:
    """Debiased linear CKA (unbiased HSIC estimator); near 0 for independent data."""
    return as_float(_cka(x, y, debiased=True))
