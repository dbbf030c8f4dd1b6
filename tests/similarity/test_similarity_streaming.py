"""Streaming moments equal the in-memory result; minibatch CKA; Gram vs feature forms."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from transfusion_cli.similarity import (
    MinibatchCKA,
    MinibatchCKAMatrix,
    PairStats,
    SimilarityError,
    cca_from_moments,
    debiased_cka,
    debiased_cka_from_moments,
    linear_cka_from_moments,
    minibatch_cka,
    moments,
    pwcca_from_moments,
    svcca_from_moments,
)
from transfusion_cli.similarity.cka import _gram_cka

FROM_MOMENTS = {"cca": cca_from_moments, "svcca": svcca_from_moments,
                "pwcca": pwcca_from_moments, "cka": linear_cka_from_moments,
                "cka_debiased": debiased_cka_from_moments}


def relu_layers(seed: int, n: int = 1201, p: int = 24, q: int = 16, offset: float = 100.0):
    """Post-ReLU activations with large means (the cancellation-prone case)."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, 6))
    x = np.maximum(z @ rng.standard_normal((6, p)) + rng.standard_normal((n, p)), 0) + offset
    y = np.maximum(z @ rng.standard_normal((6, q)) + rng.standard_normal((n, q)), 0)
    return x, y


def batch_bounds(n: int, rng: np.random.Generator) -> list[tuple[int, int]]:
    """Random batch sizes, ending with a batch of 1."""
    bounds, start = [], 0
    while start < n - 1:
        size = int(min(rng.integers(1, 200), n - 1 - start))
        bounds.append((start, start + size))
        start += size
    return bounds + [(n - 1, n)]


@pytest.mark.parametrize("as_torch", [False, True])
def test_streaming_equals_in_memory(as_torch):
    x, y = relu_layers(0)
    full = moments(x, y, debiased=True)
    stats = PairStats()
    for start, stop in batch_bounds(len(x), np.random.default_rng(1)):
        xb, yb = x[start:stop], y[start:stop]
        stats.update(torch.tensor(xb) if as_torch else xb, torch.tensor(yb) if as_torch else yb)
    streamed = stats.finalize()
    assert streamed.n == len(x)
    for name, fn in FROM_MOMENTS.items():
        assert fn(streamed).value == pytest.approx(fn(full).value, abs=1e-12), name
    assert np.allclose(streamed.mean_x, x.mean(0), atol=1e-12, rtol=0)


def test_streamed_float32_tensors_match_float64_of_the_same_values():
    x, y = relu_layers(2, offset=10.0)
    x32, y32 = x.astype(np.float32), y.astype(np.float32)
    stats = PairStats()
    for start in range(0, len(x), 128):
        stats.update(torch.from_numpy(x32[start:start + 128]),
                     torch.from_numpy(y32[start:start + 128]))
    reference = moments(x32.astype(np.float64), y32.astype(np.float64), debiased=True)
    for name, fn in FROM_MOMENTS.items():
        assert fn(stats.finalize()).value == pytest.approx(fn(reference).value, abs=1e-12), name


def test_pair_stats_rejects_mixed_inputs():
    stats = PairStats()
    stats.update(np.ones((3, 2)), np.ones((3, 2)))
    with pytest.raises(SimilarityError, match="neurons"):
        stats.update(np.ones((3, 3)), np.ones((3, 2)))
    with pytest.raises(SimilarityError, match="torch"):
        stats.update(torch.ones(3, 2), torch.ones(3, 2))
    with pytest.raises(SimilarityError, match="rows"):
        stats.update(np.ones((3, 2)), np.ones((4, 2)))


def test_null_baseline_keeps_self_moments_and_breaks_pairing():
    x, y = relu_layers(3, n=2000, p=8, q=8)
    stats = PairStats(null_seed=0)
    for start in range(0, len(x), 250):
        stats.update(x[start:start + 250], x[start:start + 250] * 2.0)
    paired, null = stats.finalize(), stats.finalize(null=True)
    assert np.allclose(null.sxx, paired.sxx) and np.allclose(null.syy, paired.syy)
    assert linear_cka_from_moments(paired).value == pytest.approx(1.0, abs=1e-12)
    assert linear_cka_from_moments(null).value < 0.05
    assert cca_from_moments(null).value < 0.15


def test_gram_form_equals_feature_form():
    x, y = relu_layers(4, n=300)
    m = moments(x, y, debiased=True)
    assert _gram_cka(x, y, debiased=False).value == pytest.approx(
        linear_cka_from_moments(m).value, abs=1e-12)
    assert _gram_cka(x, y, debiased=True).value == pytest.approx(
        debiased_cka_from_moments(m).value, abs=1e-12)
    shifted = x + np.random.default_rng(0).normal(0, 50, x.shape[1])
    assert _gram_cka(shifted, y, debiased=True).value == pytest.approx(
        _gram_cka(x, y, debiased=True).value, abs=1e-12)


def test_minibatch_cka_with_one_batch_is_debiased_cka():
    x, y = relu_layers(5, n=400)
    acc = MinibatchCKA()
    acc.update(x, y)
    assert acc.value() == pytest.approx(debiased_cka(x, y), abs=1e-12)
    acc_t = MinibatchCKA()
    acc_t.update(torch.tensor(x, dtype=torch.float64), torch.tensor(y, dtype=torch.float64))
    assert acc_t.value() == pytest.approx(debiased_cka(x, y), abs=1e-12)


def test_minibatch_cka_estimates_debiased_cka_and_skips_tiny_batches():
    x, y = relu_layers(6, n=3003)
    acc = MinibatchCKA()
    for start in range(0, len(x), 500):  # last batch has 3 rows: skipped
        acc.update(x[start:start + 500], y[start:start + 500])
    result = acc.result()
    assert result.details["skipped_batches"] == 1 and result.details["n"] == 3000
    assert result.value == pytest.approx(debiased_cka(x, y), abs=0.02)
    assert minibatch_cka(x, y, batch_size=500) == pytest.approx(result.value, abs=1e-15)


def test_minibatch_matrix_equals_pairwise_accumulators():
    rng = np.random.default_rng(7)
    layers_a = {"a1": rng.standard_normal((64, 5, 3, 3)), "a2": rng.standard_normal((64, 7))}
    layers_b = {"b1": layers_a["a1"].reshape(64, -1) @ rng.standard_normal((45, 6)),
                "b2": rng.standard_normal((64, 4, 2)), "b3": layers_a["a2"] + 1.0}
    matrix = MinibatchCKAMatrix(list(layers_a), list(layers_b))
    pairwise = {(a, b): MinibatchCKA() for a in layers_a for b in layers_b}
    for start in range(0, 64, 16):
        batch_a = {k: v[start:start + 16] for k, v in layers_a.items()}
        batch_b = {k: v[start:start + 16] for k, v in layers_b.items()}
        matrix.update(batch_a, batch_b)
        for (a, b), acc in pairwise.items():
            acc.update(batch_a[a], batch_b[b])
    values = matrix.values()
    for i, a in enumerate(layers_a):
        for j, b in enumerate(layers_b):
            assert values[i, j] == pytest.approx(pairwise[(a, b)].value(), abs=1e-12)
    assert values[1, 2] == pytest.approx(1.0, abs=1e-12)


def test_minibatch_cka_reports_why_it_is_nan():
    acc = MinibatchCKA()
    acc.update(np.ones((3, 2)), np.ones((3, 2)))
    result = acc.result()
    assert np.isnan(result.value) and "no minibatch" in result.reason
    acc.update(np.ones((10, 2)), np.random.default_rng(0).standard_normal((10, 2)))
    assert np.isnan(acc.result().value) and "not positive" in acc.result().reason
