"""Similarity moments on the device: float32 products vs float64, CUDA vs CPU agreement."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from transfusion_cli.similarity.cca import cca_from_moments, pwcca_from_moments
from transfusion_cli.similarity.cka import debiased_cka_from_moments, linear_cka_from_moments
from transfusion_cli.similarity.result import SimilarityError
from transfusion_cli.similarity.streaming import PairStats

# Float32 products summed in float64: measured relative error of the scatter matrices about
# 1e-6 and of the metrics about 1e-7 on post-ReLU activations like these.
FLOAT32_METRIC_TOLERANCE = 1e-5
METRICS = {"cca": cca_from_moments, "pwcca": pwcca_from_moments,
           "linear_cka": linear_cka_from_moments, "debiased_cka": debiased_cka_from_moments}


def activations(device: str = "cpu", n: int = 3000) -> tuple[torch.Tensor, torch.Tensor]:
    """Post-ReLU activations with large means (the hard case for cancellation), related."""
    generator = torch.Generator().manual_seed(0)
    x = torch.relu(torch.randn(n, 48, generator=generator) + 0.5) * 4 + 2
    mix = torch.randn(48, 24, generator=generator)
    y = torch.relu(x @ mix / 7 + torch.randn(n, 24, generator=generator)) + 5
    return x.to(device), y.to(device)


def stream(x: torch.Tensor, y: torch.Tensor, products: str, batch: int = 400) -> PairStats:
    stats = PairStats(debiased=True, null_seed=0, products=products)
    for start in range(0, len(x), batch):
        stats.update(x[start: start + batch], y[start: start + batch])
    return stats


def metric_values(stats: PairStats) -> dict[str, float]:
    moments = stats.finalize()
    return {name: float(fn(moments).value) for name, fn in METRICS.items()}


def test_float32_products_match_float64_within_tolerance():
    x, y = activations()
    exact, fast = stream(x, y, "float64"), stream(x, y, "float32")
    reference, approx = metric_values(exact), metric_values(fast)
    errors = {name: abs(reference[name] - approx[name]) for name in METRICS}
    assert max(errors.values()) <= FLOAT32_METRIC_TOLERANCE, errors
    # The products really were float32: the moments differ from float64 by more than rounding.
    sxx64, sxx32 = exact.finalize().sxx, fast.finalize().sxx
    relative = np.abs(sxx64 - sxx32).max() / np.abs(sxx64).max()
    assert 1e-12 < relative < 1e-4
    # Accumulation across batches stays float64.
    assert all(v.dtype == torch.float64 for v in fast._acc.values())


def test_float32_products_reject_unknown_precision():
    with pytest.raises(SimilarityError, match="products"):
        PairStats(products="float16")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("products", ["float64", "float32"])
def test_cuda_moments_agree_with_cpu(products):
    x, y = activations()
    cpu = stream(x, y, products).finalize()
    cuda_stats = stream(x.cuda(), y.cuda(), products)
    assert all(v.device.type == "cuda" for v in cuda_stats._acc.values()
               if isinstance(v, torch.Tensor))
    cuda = cuda_stats.finalize()
    bound = 1e-8 if products == "float64" else 1e-4
    for name in ("sxx", "syy", "sxy"):
        reference = getattr(cpu, name)
        assert np.abs(getattr(cuda, name) - reference).max() <= bound * np.abs(reference).max()
    cpu_values, cuda_values = metric_values(stream(x, y, products)), metric_values(cuda_stats)
    for name in METRICS:
        assert abs(cpu_values[name] - cuda_values[name]) <= (
            1e-8 if products == "float64" else FLOAT32_METRIC_TOLERANCE), name
