"""Turning numpy arrays or torch tensors (CPU or CUDA) into float64 numpy matrices."""

from __future__ import annotations

from typing import Any

import numpy as np

from transfusion_cli.similarity.result import SimilarityError


def is_torch(value: Any) -> bool:
    """True for a torch tensor (checked without importing torch)."""
    return type(value).__module__.startswith("torch") and hasattr(value, "detach")


def to_numpy64(value: Any, name: str = "x") -> np.ndarray:
    """A 2-D float64 numpy array on the CPU from an (n, features) array or tensor."""
    if is_torch(value):
        import torch

        value = value.detach().to("cpu", torch.float64).numpy()
    array = np.asarray(value, dtype=np.float64)
    if array.ndim != 2:
        raise SimilarityError(f"{name} has shape {array.shape}; pass a 2-D (data points, "
                              "neurons) matrix (flatten or pool conv maps first).")
    if not np.isfinite(array).all():
        raise SimilarityError(f"{name} contains NaN or infinite values.")
    return array


def check_pair(x: np.ndarray, y: np.ndarray) -> None:
    """Both matrices must describe the same data points (same number of rows)."""
    if x.shape[0] != y.shape[0]:
        raise SimilarityError(f"x has {x.shape[0]} data points (rows) but y has {y.shape[0]}; "
                              "both must come from the same inputs in the same order.")
    if x.shape[0] < 2:
        raise SimilarityError(f"{x.shape[0]} data point(s); similarity needs at least 2.")
