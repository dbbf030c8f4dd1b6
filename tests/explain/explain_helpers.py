"""Shared by the `tfx explain` tests: input images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def noise_png(path: Path, seed: int, size: int = 48) -> Path:
    """A colour-noise PNG at ``path`` (its folder made)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(path)
    return path
