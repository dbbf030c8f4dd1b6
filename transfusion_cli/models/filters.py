"""First-layer convolution filters of a checkpoint as an image grid (the paper's Gabor figure)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from torch import nn

from transfusion_cli.errors import TfxError
from transfusion_cli.models.blocks import block_names, model_blocks


@dataclass
class Filters:
    """The weights of one conv layer: (out_channels, in_channels, kh, kw)."""

    layer: str  # block name
    module: str  # module name inside the model
    weights: np.ndarray


def first_conv(model: nn.Module, layer: str | None = None) -> tuple[str, str, nn.Conv2d]:
    """(block, module name, module) of the first Conv2d of ``layer`` (default: first block)."""
    names = block_names(model)
    layer = layer or names[0]
    if layer not in names:
        raise TfxError(f"Unknown layer '{layer}'; valid layers: {', '.join(names)}.")
    for prefix in model_blocks(model)[layer]:
        for name, module in model.get_submodule(prefix).named_modules():
            if isinstance(module, nn.Conv2d):
                return layer, f"{prefix}.{name}" if name else prefix, module
    raise TfxError(f"Layer '{layer}' has no Conv2d; pick a convolutional layer "
                   f"({', '.join(names)}).")


def model_filters(model: nn.Module, layer: str | None = None) -> Filters:
    """The first conv weights of ``layer`` as a numpy array."""
    block, name, conv = first_conv(model, layer)
    return Filters(block, name, conv.weight.detach().cpu().double().numpy())


def filter_grid(weights: np.ndarray, pad: int = 1) -> np.ndarray:
    """Filters tiled in a near-square grid, each normalised to [0, 1] on its own.

    3 input channels -> RGB tiles; otherwise grayscale tiles of the mean over input channels.
    Padding between tiles is white.
    """
    out, inp, kh, kw = weights.shape
    tiles = weights.transpose(0, 2, 3, 1) if inp == 3 else weights.mean(axis=1)[..., None]
    low = tiles.reshape(out, -1).min(axis=1)[:, None, None, None]
    high = tiles.reshape(out, -1).max(axis=1)[:, None, None, None]
    tiles = (tiles - low) / np.where(high > low, high - low, 1.0)
    cols = math.ceil(math.sqrt(out))
    rows = math.ceil(out / cols)
    channels = tiles.shape[-1]
    grid = np.ones((rows * (kh + pad) + pad, cols * (kw + pad) + pad, channels))
    for index in range(out):
        r, c = divmod(index, cols)
        top, left = pad + r * (kh + pad), pad + c * (kw + pad)
        grid[top:top + kh, left:left + kw] = tiles[index]
    return grid[..., 0] if channels == 1 else grid


def filter_change(a: np.ndarray, b: np.ndarray) -> dict[str, Any]:
    """How far filters moved from ``a`` to ``b`` (same shape): relative norm, mean cosine."""
    if a.shape != b.shape:
        return {"comparable": False, "shape_a": list(a.shape), "shape_b": list(b.shape)}
    fa, fb = a.reshape(a.shape[0], -1), b.reshape(b.shape[0], -1)
    norms = np.linalg.norm(fa, axis=1) * np.linalg.norm(fb, axis=1)
    cosine = np.divide((fa * fb).sum(1), norms, out=np.full(len(fa), np.nan), where=norms > 0)
    return {"comparable": True,
            "relative_change": float(np.linalg.norm(fb - fa) / max(np.linalg.norm(fa), 1e-300)),
            "mean_cosine": float(np.nanmean(cosine)) if np.isfinite(cosine).any() else math.nan,
            "min_cosine": float(np.nanmin(cosine)) if np.isfinite(cosine).any() else math.nan}
