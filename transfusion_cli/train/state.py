"""Everything random in training, as plain data: RNG states and the seeded data order."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import Sampler


def capture_rng() -> dict[str, Any]:
    """torch (CPU and CUDA), numpy and python RNG states, as checkpoint-safe plain types."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": kind, "keys": keys.tolist(), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": {"version": version, "internal": list(internal), "gauss": gauss},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    """Inverse of ``capture_rng``."""
    torch.set_rng_state(state["torch"])
    np_state = state["numpy"]
    np.random.set_state((np_state["kind"], np.asarray(np_state["keys"], dtype=np.uint32),
                         np_state["pos"], np_state["has_gauss"], np_state["cached_gaussian"]))
    py = state["python"]
    random.setstate((py["version"], tuple(py["internal"]), py["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    """Seed torch, numpy and python's RNGs."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def epoch_permutation(num_examples: int, seed: int, epoch: int) -> torch.Tensor:
    """The shuffled order of epoch ``epoch``: a pure function of (seed, epoch)."""
    generator = torch.Generator()
    generator.manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(num_examples, generator=generator)


class EpochBatchSampler(Sampler[list[int]]):
    """Batches of one epoch's seeded permutation, from batch ``start`` on.

    Each global step takes ``batch_size * world_size`` consecutive indices of the permutation;
    rank ``r`` gets the ``r``-th chunk. An incomplete last global batch is dropped, so every
    step has full batches (BatchNorm) and the data order depends only on (seed, epoch, step).
    With ``augment``, each item is ``(index, draw_seed)``: the seed of that image's
    augmentation, a function of (seed, epoch, position in the permutation) only.
    """

    def __init__(self, num_examples: int, batch_size: int, seed: int, rank: int = 0,
                 world_size: int = 1, augment: bool = False):
        self.num_examples, self.batch_size, self.seed = num_examples, batch_size, seed
        self.rank, self.world_size = rank, world_size
        self.augment = augment
        self.epoch, self.start = 0, 0

    @property
    def batches_per_epoch(self) -> int:
        """Global steps in one epoch."""
        return self.num_examples // (self.batch_size * self.world_size)

    def set_position(self, epoch: int, start: int) -> None:
        """Next iteration yields epoch ``epoch`` from batch ``start``."""
        self.epoch, self.start = epoch, start

    def __len__(self) -> int:
        return self.batches_per_epoch - self.start

    def __iter__(self) -> Iterator[list[int]] | Iterator[list[tuple[int, int]]]:
        from transfusion_cli.train.augment import draw_seed

        order = epoch_permutation(self.num_examples, self.seed, self.epoch)
        global_batch = self.batch_size * self.world_size
        for batch in range(self.start, self.batches_per_epoch):
            first = batch * global_batch + self.rank * self.batch_size
            indices = order[first:first + self.batch_size].tolist()
            if self.augment:
                yield [(index, draw_seed(self.seed, self.epoch, first + offset))
                       for offset, index in enumerate(indices)]
            else:
                yield indices
