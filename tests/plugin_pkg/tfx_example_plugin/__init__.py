"""Example third-party tfx plugin: a stripes dataset and a two-block CNN."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import torch
from torch import nn

from transfusion_cli.api import (
    ArchitectureSpec,
    ArrayImageSplit,
    DatasetBundle,
    DatasetInfo,
    DatasetSpec,
    hookimpl,
)


def make_stripes(n: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Class 0: horizontal stripes, class 1: vertical, with noise."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    grid = (np.arange(size) // 2 % 2).astype(np.float32)
    images = np.empty((n, size, size, 1), dtype=np.uint8)
    for i, label in enumerate(labels):
        rows, cols = grid[:, None] * np.ones(size), grid[None, :] * np.ones((size, 1))
        pattern = rows if label == 0 else cols
        noisy = 0.5 * pattern + rng.normal(0.25, 0.2, (size, size))
        images[i, ..., 0] = np.clip(noisy * 255, 0, 255).astype(np.uint8)
    return images, labels


def build_stripes(options) -> DatasetBundle:
    """Train/val/test splits of the stripes task."""
    size = options.image_size
    info = DatasetInfo(name="example-stripes", task="multiclass",
                       class_names=("horizontal", "vertical"), channels=1, image_size=size,
                       mean=(0.5,), std=(0.25,), selection_metric="auc")
    splits = [ArrayImageSplit(*make_stripes(n, size, options.seed * 10 + k), task="multiclass")
              for k, n in enumerate((64, 32, 32))]
    return DatasetBundle(info, *splits)


class TwoBlockNet(nn.Module):
    """Two conv blocks and a linear head."""

    def __init__(self, num_classes: int = 2, in_chans: int = 1):
        super().__init__()
        self.in_chans = in_chans
        self.block1 = nn.Sequential(nn.Conv2d(in_chans, 8, 3, padding=1), nn.ReLU(),
                                    nn.MaxPool2d(2))
        self.block2 = nn.Sequential(nn.Conv2d(8, 16, 3, padding=1), nn.ReLU())
        self.head = nn.Linear(16, num_classes)
        self.tfx_blocks = OrderedDict(block1=("block1",), block2=("block2",), head=("head",))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.block2(self.block1(x)).mean(dim=(2, 3)))


@hookimpl
def tfx_register_datasets(register):
    register(DatasetSpec("example-stripes", build_stripes, "stripes, horizontal vs vertical",
                         default_image_size=16))


@hookimpl
def tfx_register_architectures(register):
    register(ArchitectureSpec("example-twoblock", TwoBlockNet, "two-block CNN", family="example",
                              default_image_size=16))
