"""CCA, SVCCA and PWCCA from exact moments: rank-aware, never inverting a singular covariance.

Recipe (see shared/similarity.md §2.2-2.4): eigh of Sxx and Syy keeping eigenvalues above
``rank_tol`` times the largest; whiten with V Λ^{-1/2}; the canonical correlations are the
singular values of the whitened cross-scatter, averaged over min(rank_x, rank_y) directions.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from transfusion_cli.similarity.result import MetricResult, SimilarityError, as_float
from transfusion_cli.similarity.streaming import Moments, moments

DEFAULT_RANK_TOL = 1e-10
DEFAULT_VARIANCE = 0.99
# A layer whose total variance is below this (relative to its squared mean scale) is constant.
CONSTANT_TOL = 1e-24


@dataclass
class Basis:
    """Principal directions of one side: kept eigenvectors and eigenvalues, descending."""

    vectors: np.ndarray  # (p, rank)
    values: np.ndarray  # (rank,)
    spectrum: np.ndarray  # every eigenvalue, descending, clipped at 0

    @property
    def rank(self) -> int:
        """Numerical rank: directions kept."""
        return int(self.values.shape[0])


@dataclass
class CCAFit:
    """Canonical correlations with the singular vectors PWCCA needs."""

    rho: np.ndarray  # (r,), descending, in [0, 1]
    left: np.ndarray  # (rank_x, r): left singular vectors in X's whitened basis (or empty)
    right: np.ndarray  # (rank_y, r)
    basis_x: Basis
    basis_y: Basis


def is_constant(total_scatter: float, mean: np.ndarray, n: int) -> bool:
    """True when no neuron varies beyond rounding noise of the activations' scale
    (``total_scatter`` = trace of XcᵀXc, the summed squared deviations)."""
    scale = max(1.0, float(np.max(np.abs(mean))) if mean.size else 1.0)
    return total_scatter <= CONSTANT_TOL * n * max(1, mean.size) * scale**2


def constant_reason(m: Moments, metric: str) -> str | None:
    """Why ``metric`` is undefined when a side is constant; None when neither is."""
    sides = [name for name, s, mu in (("x", m.sxx, m.mean_x), ("y", m.syy, m.mean_y))
             if is_constant(float(np.trace(s)), mu, m.n)]
    if not sides:
        return None
    verb = "is" if len(sides) == 1 else "are"
    return (f"{' and '.join(sides)} {verb} constant over the data (every neuron has zero "
            f"variance), so {metric} is undefined")


# Inside ``reused_bases()``: principal_basis results by the scatter matrix's bytes.
_BASES: contextvars.ContextVar[dict | None] = contextvars.ContextVar("tfx_bases", default=None)


@contextlib.contextmanager
def reused_bases() -> Iterator[None]:
    """Within the block, ``principal_basis`` computes each distinct scatter matrix once (a
    model compared with several others has the same self-scatter in every pair: one
    eigendecomposition, the same values to the bit). Memory: the bases, until the block ends."""
    token = _BASES.set({})
    try:
        yield
    finally:
        _BASES.reset(token)


def principal_basis(scatter: np.ndarray, rank_tol: float = DEFAULT_RANK_TOL) -> Basis:
    """Eigen-directions of a scatter matrix with eigenvalue > rank_tol · the largest."""
    memo = _BASES.get()
    if memo is not None:
        key = (scatter.shape, rank_tol,
               hashlib.blake2b(np.ascontiguousarray(scatter).tobytes()).digest())
        if key not in memo:
            memo[key] = _principal_basis(scatter, rank_tol)
        return memo[key]
    return _principal_basis(scatter, rank_tol)


def _principal_basis(scatter: np.ndarray, rank_tol: float) -> Basis:
    values, vectors = np.linalg.eigh(scatter)
    values, vectors = values[::-1], vectors[:, ::-1]
    spectrum = np.clip(values, 0.0, None)
    top = spectrum[0] if spectrum.size else 0.0
    keep = spectrum > rank_tol * top if top > 0 else np.zeros_like(spectrum, dtype=bool)
    return Basis(vectors[:, keep], spectrum[keep], spectrum)


def require_points(m: Moments, metric: str) -> None:
    """The CCA family needs more data points than neurons (else every ρ is trivially 1)."""
    if m.n <= max(m.p, m.q):
        raise SimilarityError(
            f"{metric}: {m.n} data points for {m.p} and {m.q} neurons; CCA needs more data "
            f"points than neurons (n > {max(m.p, m.q)}, ideally 10x): use more inputs or "
            "spatial positions, or a CKA metric.")


def _fit_bases(bx: Basis, by: Basis, sxy: np.ndarray, vectors: bool = True) -> CCAFit:
    whitened = (bx.vectors.T @ sxy @ by.vectors) / np.sqrt(bx.values)[:, None]
    whitened /= np.sqrt(by.values)[None, :]
    if not vectors:  # singular values only: 3-4x cheaper than the full SVD
        rho = np.linalg.svd(whitened, compute_uv=False)
        return CCAFit(np.clip(rho, 0.0, 1.0), np.zeros((0, 0)), np.zeros((0, 0)), bx, by)
    left, rho, right_t = np.linalg.svd(whitened, full_matrices=False)
    return CCAFit(np.clip(rho, 0.0, 1.0), left, right_t.T, bx, by)


def fit_cca(m: Moments, rank_tol: float = DEFAULT_RANK_TOL, metric: str = "cca",
            vectors: bool = True) -> CCAFit | MetricResult:
    """Canonical correlations of the moments (with the singular vectors PWCCA needs when
    ``vectors``), or a NaN result saying why there are none."""
    require_points(m, metric)
    reason = constant_reason(m, metric)
    if reason:
        return MetricResult.nan(reason, n=m.n, p=m.p, q=m.q)
    return _fit_bases(principal_basis(m.sxx, rank_tol), principal_basis(m.syy, rank_tol), m.sxy,
                      vectors)


def _details(m: Moments, fit: CCAFit, **extra: Any) -> dict[str, Any]:
    return {"n": m.n, "p": m.p, "q": m.q, "rank_x": fit.basis_x.rank,
            "rank_y": fit.basis_y.rank, "coefficients": int(fit.rho.size), **extra}


def cca_from_moments(m: Moments, rank_tol: float = DEFAULT_RANK_TOL) -> MetricResult:
    """Mean canonical correlation over min(rank_x, rank_y) directions (also mean ρ²)."""
    fit = fit_cca(m, rank_tol, "cca", vectors=False)
    if isinstance(fit, MetricResult):
        return fit
    return MetricResult(float(fit.rho.mean()), None,
                        _details(m, fit, cca_mean_sq=float(np.mean(fit.rho**2))))


def variance_rank(spectrum: np.ndarray, variance: float, rank: int) -> int:
    """Fewest leading directions whose eigenvalues (σ²) reach ``variance`` of the total."""
    if not 0.0 < variance <= 1.0:
        raise SimilarityError(f"SVCCA variance {variance} must be in (0, 1], e.g. 0.99.")
    cumulative = np.cumsum(spectrum)
    k = int(np.searchsorted(cumulative, variance * cumulative[-1], side="left")) + 1
    return max(1, min(k, rank))


def svcca_from_moments(m: Moments, variance: float = DEFAULT_VARIANCE,
                       rank_tol: float = DEFAULT_RANK_TOL) -> MetricResult:
    """SVCCA: CCA on the top principal directions explaining ``variance`` of each side (σ²)."""
    require_points(m, "svcca")
    reason = constant_reason(m, "svcca")
    if reason:
        return MetricResult.nan(reason, n=m.n, p=m.p, q=m.q)
    bx, by = principal_basis(m.sxx, rank_tol), principal_basis(m.syy, rank_tol)
    kx = variance_rank(bx.spectrum, variance, bx.rank)
    ky = variance_rank(by.spectrum, variance, by.rank)
    top_x = Basis(bx.vectors[:, :kx], bx.values[:kx], bx.spectrum)
    top_y = Basis(by.vectors[:, :ky], by.values[:ky], by.spectrum)
    fit = _fit_bases(top_x, top_y, m.sxy, vectors=False)
    return MetricResult(float(fit.rho.mean()), None,
                        {"n": m.n, "p": m.p, "q": m.q, "kx": kx, "ky": ky,
                         "rank_x": bx.rank, "rank_y": by.rank, "variance": variance})


def _projection_weights(singular: np.ndarray, basis: Basis) -> np.ndarray:
    """α̃_i = Σ_j |<h_i, xc_j>| from moments: H ᵀXc = Uᵀ Λ^{1/2} Vᵀ."""
    return np.abs(singular.T @ (np.sqrt(basis.values)[:, None] * basis.vectors.T)).sum(axis=1)


def pwcca_from_moments(m: Moments, rank_tol: float = DEFAULT_RANK_TOL) -> MetricResult:
    """Projection-weighted CCA (Morcos et al. 2018), weights from X (the first argument).

    The Y-weighted value and the mean of both are in the details (pwcca_y, pwcca_mean).
    """
    fit = fit_cca(m, rank_tol, "pwcca")
    if isinstance(fit, MetricResult):
        return fit
    alpha_x = _projection_weights(fit.left, fit.basis_x)
    alpha_y = _projection_weights(fit.right, fit.basis_y)
    value_x = float(alpha_x @ fit.rho / alpha_x.sum())
    value_y = float(alpha_y @ fit.rho / alpha_y.sum())
    return MetricResult(value_x, None, _details(m, fit, weights="x", pwcca_y=value_y,
                                                pwcca_mean=(value_x + value_y) / 2))


def cca_coefficients(x: Any, y: Any, rank_tol: float = DEFAULT_RANK_TOL) -> np.ndarray:
    """Canonical correlations of x (n, p) and y (n, q), descending; columns centred.

    Rank-aware: min(rank_x, rank_y) coefficients. A constant side gives an empty array and a
    SimilarityWarning; n <= max(p, q) raises SimilarityError.
    """
    fit = fit_cca(moments(x, y), rank_tol, vectors=False)
    if isinstance(fit, MetricResult):
        as_float(fit)
        return np.zeros(0)
    return fit.rho


def mean_cca(x: Any, y: Any, rank_tol: float = DEFAULT_RANK_TOL) -> float:
    """Mean canonical correlation ("mean CCA similarity" of the SVCCA paper)."""
    return as_float(cca_from_moments(moments(x, y), rank_tol))


def svcca(x: Any, y: Any, variance: float = DEFAULT_VARIANCE,
          rank_tol: float = DEFAULT_RANK_TOL) -> float:
    """SVCCA (Raghu et al. 2017): keep the fewest top singular directions of each centred side
    whose σ² reach ``variance`` of the total, then the mean canonical correlation."""
    return as_float(svcca_from_moments(moments(x, y), variance, rank_tol))


def pwcca(x: Any, y: Any, rank_tol: float = DEFAULT_RANK_TOL) -> float:
    """PWCCA (Morcos et al. 2018, paper definition): canonical correlations weighted by
    α_i ∝ Σ_j |<h_i, x_j>| over x's centred neurons (asymmetric: weights from x)."""
    return as_float(pwcca_from_moments(moments(x, y), rank_tol))
