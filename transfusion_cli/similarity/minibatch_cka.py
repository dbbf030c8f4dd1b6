"""Minibatch CKA (Nguyen, Raghu & Kornblith 2021): unbiased HSIC summed over minibatches.

CKA_mb = Σ_b HSIC₁(K_b, L_b) / sqrt(Σ_b HSIC₁(K_b, K_b) · Σ_b HSIC₁(L_b, L_b)) with
K_b = X_b X_bᵀ the linear Gram matrix of one minibatch. Memory is one m × m Gram per layer,
whatever the number of inputs; it estimates the debiased CKA (with one batch it equals it).
Batches with fewer than 4 rows are skipped (unbiased HSIC is undefined there).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from transfusion_cli.similarity.arrays import check_pair, is_torch, to_numpy64
from transfusion_cli.similarity.result import MetricResult, SimilarityError, as_float

MIN_BATCH = 4


def _flat_rows(value: Any, name: str) -> Any:
    """(m, ...) -> (m, features) float64, torch tensors kept on their device."""
    if is_torch(value):
        import torch

        return value.detach().reshape(value.shape[0], -1).to(torch.float64)
    array = np.asarray(value, dtype=np.float64)
    return to_numpy64(array.reshape(array.shape[0], -1), name)


class _Gram:
    """The zero-diagonal Gram of one batch and the sums unbiased HSIC needs."""

    def __init__(self, features: Any):
        # Unbiased HSIC is translation invariant, so centring the batch changes nothing but
        # the rounding (uncentred post-ReLU Grams lose digits to cancellation).
        features = features - features.mean(0)
        gram = features @ features.T
        gram = gram.detach().cpu().numpy() if is_torch(gram) else gram
        gram = np.array(gram, dtype=np.float64)
        np.fill_diagonal(gram, 0.0)
        self.gram, self.m = gram, gram.shape[0]
        self.rows = gram.sum(1)
        self.total = float(self.rows.sum())


def _hsic(k: _Gram, l: _Gram, trace_kl: float) -> float:  # noqa: E741
    m = k.m
    value = (trace_kl + k.total * l.total / ((m - 1) * (m - 2))
             - 2.0 / (m - 2) * float(k.rows @ l.rows))
    return value / (m * (m - 3))


class MinibatchCKA:
    """Accumulates minibatch CKA for one pair of layers: ``update(x, y)`` then ``result()``."""

    def __init__(self) -> None:
        self.hsic_xy = self.hsic_xx = self.hsic_yy = 0.0
        self.batches = self.skipped = self.n = 0

    def update(self, x: Any, y: Any) -> None:
        """One minibatch: x (m, ...) and y (m, ...) for the same m inputs (flattened)."""
        x, y = _flat_rows(x, "x"), _flat_rows(y, "y")
        if x.shape[0] != y.shape[0]:
            raise SimilarityError(f"x batch has {x.shape[0]} rows but y batch has {y.shape[0]}.")
        if x.shape[0] < MIN_BATCH:
            self.skipped += 1
            return
        k, l = _Gram(x), _Gram(y)  # noqa: E741
        self.hsic_xy += _hsic(k, l, float(np.sum(k.gram * l.gram)))
        self.hsic_xx += _hsic(k, k, float(np.sum(k.gram * k.gram)))
        self.hsic_yy += _hsic(l, l, float(np.sum(l.gram * l.gram)))
        self.batches += 1
        self.n += k.m

    def result(self) -> MetricResult:
        """The minibatch CKA estimate, or NaN with the reason."""
        details = {"n": self.n, "batches": self.batches, "skipped_batches": self.skipped}
        if self.batches == 0:
            return MetricResult.nan(f"no minibatch of at least {MIN_BATCH} inputs was seen",
                                    **details)
        if self.hsic_xx <= 0 or self.hsic_yy <= 0:
            return MetricResult.nan("a self-HSIC estimate is not positive (constant layer or "
                                    "too few inputs)", **details)
        return MetricResult(self.hsic_xy / math.sqrt(self.hsic_xx * self.hsic_yy), None, details)

    def value(self) -> float:
        """The estimate as a float (NaN with a SimilarityWarning)."""
        return as_float(self.result())


class MinibatchCKAMatrix:
    """Minibatch CKA of every layer of A against every layer of B, in one pass.

    Per batch, one Gram per layer; the L_A × L_B cross terms are one matrix product of the
    flattened zero-diagonal Grams.
    """

    def __init__(self, layers_a: Sequence[str], layers_b: Sequence[str]):
        self.layers_a, self.layers_b = list(layers_a), list(layers_b)
        self.cross = np.zeros((len(self.layers_a), len(self.layers_b)))
        self.self_a = np.zeros(len(self.layers_a))
        self.self_b = np.zeros(len(self.layers_b))
        self.batches = self.skipped = self.n = 0

    def update(self, outputs_a: Mapping[str, Any], outputs_b: Mapping[str, Any]) -> None:
        """One minibatch: each layer's output (m, ...) for the same m inputs."""
        grams_a = [_Gram(_flat_rows(outputs_a[name], name)) for name in self.layers_a]
        grams_b = [_Gram(_flat_rows(outputs_b[name], name)) for name in self.layers_b]
        m = grams_a[0].m
        if any(g.m != m for g in grams_a + grams_b):
            raise SimilarityError("Every layer's batch must hold the same inputs.")
        if m < MIN_BATCH:
            self.skipped += 1
            return
        flat_a = np.stack([g.gram.ravel() for g in grams_a])
        flat_b = np.stack([g.gram.ravel() for g in grams_b])
        traces = flat_a @ flat_b.T
        for i, ga in enumerate(grams_a):
            self.self_a[i] += _hsic(ga, ga, float(flat_a[i] @ flat_a[i]))
            for j, gb in enumerate(grams_b):
                self.cross[i, j] += _hsic(ga, gb, float(traces[i, j]))
        for j, gb in enumerate(grams_b):
            self.self_b[j] += _hsic(gb, gb, float(flat_b[j] @ flat_b[j]))
        self.batches += 1
        self.n += m

    def values(self) -> np.ndarray:
        """(L_A, L_B) minibatch CKA; NaN where a layer's self-HSIC is not positive."""
        with np.errstate(invalid="ignore", divide="ignore"):
            denom = np.sqrt(np.outer(self.self_a, self.self_b))
            out = self.cross / denom
        out[~(np.outer(self.self_a > 0, self.self_b > 0))] = np.nan
        return out


def minibatch_cka(x: Any, y: Any, batch_size: int = 256) -> float:
    """Minibatch CKA of in-memory x (n, p) and y (n, q) over consecutive row batches."""
    x, y = to_numpy64(x, "x"), to_numpy64(y, "y")
    check_pair(x, y)
    if batch_size < MIN_BATCH:
        raise SimilarityError(f"batch_size {batch_size} is too small; use {MIN_BATCH} or more.")
    acc = MinibatchCKA()
    for start in range(0, x.shape[0], batch_size):
        acc.update(x[start:start + batch_size], y[start:start + batch_size])
    return acc.value()
