"""A split of a synthetic dataset: labels up front, images drawn on demand and memoised.

Item ``index`` of split ``split`` is a pure function of (data seed, dataset, split, index):
its random generator is seeded with those four numbers, draws the label first (so ``labels``
costs no drawing) and then the image, at whatever size was asked.
"""

from __future__ import annotations

import contextlib
from typing import Any, Protocol

import numpy as np
import torch
from torch.utils.data import Dataset

from transfusion_cli.api import make_target

SPLIT_KEYS = {"train": 0, "val": 1, "test": 2}


class Generator(Protocol):
    """What a synthetic dataset draws: a label (cheap) and the image that goes with it."""

    def label(self, rng: np.random.Generator) -> Any:
        """Draw one item's label (a fixed number of draws from ``rng``)."""

    def labels(self, draws: list[Any]) -> np.ndarray:
        """The split's ``labels`` array from the drawn labels."""

    def image(self, rng: np.random.Generator, draw: Any, size: int) -> np.ndarray:
        """Draw the uint8 (C, size, size) image that goes with ``draw``."""


class SyntheticSplit(Dataset):
    """``(uint8 tensor (C, H, W), target)`` items generated from the seed; ``labels`` and
    ``ids`` are known without drawing any image."""

    def __init__(self, generator: Generator, *, dataset_key: int, seed: int, split: str,
                 size: int, image_size: int, task: str):
        self.generator, self.image_size, self.task, self.split = generator, image_size, task, split
        self.key = (seed, dataset_key, SPLIT_KEYS[split])
        self.draws = [generator.label(self.rng(index)) for index in range(size)]
        self.labels = generator.labels(self.draws)
        self.ids = [f"{split}-{index:05d}" for index in range(size)]
        self._images: dict[int, np.ndarray] = {}

    def rng(self, index: int) -> np.random.Generator:
        """The random generator of item ``index``."""
        return np.random.default_rng([*self.key, index])

    def __len__(self) -> int:
        return len(self.draws)

    def image(self, index: int) -> np.ndarray:
        """Item ``index``'s image, uint8 (C, H, W), drawn once and then kept in memory."""
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} is out of range for a split of {len(self)} images")
        cached = self._images.get(index)
        if cached is None:
            rng = self.rng(index)
            draw = self.generator.label(rng)  # replays the label draws, then draws the image
            with single_threaded_blas():
                cached = self.generator.image(rng, draw, self.image_size)
            self._images[index] = cached
        return cached

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = torch.from_numpy(self.image(index).copy())
        return image, make_target(self.labels[index], self.task)

    def __getstate__(self) -> dict[str, Any]:  # DataLoader workers start with an empty memo
        state = dict(self.__dict__)
        state["_images"] = {}
        return state


_CONTROLLER: list[Any] = []


def single_threaded_blas() -> contextlib.AbstractContextManager:
    """Run numpy's BLAS on one thread: the drawing uses many small matrix products, which
    multi-threaded BLAS makes many times slower on a busy machine (and it competes with the
    training threads)."""
    if not _CONTROLLER:
        try:
            from threadpoolctl import ThreadpoolController

            _CONTROLLER.append(ThreadpoolController())
        except ImportError:  # threadpoolctl comes with scikit-learn; without it, just run
            _CONTROLLER.append(None)
    controller = _CONTROLLER[0]
    if controller is None:
        return contextlib.nullcontext()
    return controller.limit(limits=1, user_api="blas")
