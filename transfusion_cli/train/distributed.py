"""DistributedDataParallel under torchrun: process group, rank helpers, exact gathering."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class DistContext:
    """This process's place in the job (rank 0 of 1 without torchrun)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        """True under torchrun with more than one process."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Only the main process prints and writes files."""
        return self.rank == 0


def launched_by_torchrun() -> bool:
    """torchrun sets WORLD_SIZE and RANK for every process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "RANK" in os.environ


def setup_distributed(device_type: str) -> DistContext:
    """Join the process group torchrun describes (NCCL on CUDA, gloo on CPU)."""
    if not launched_by_torchrun():
        return DistContext()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        backend = "nccl" if device_type == "cuda" else "gloo"
        if device_type == "cuda":
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend=backend)
    return DistContext(dist.get_rank(), dist.get_world_size(), local_rank)


def teardown_distributed(ctx: DistContext) -> None:
    """Leave the process group."""
    if ctx.enabled and dist.is_initialized():
        dist.destroy_process_group()


def broadcast_object(ctx: DistContext, value: Any) -> Any:
    """Rank 0's ``value`` on every rank."""
    if not ctx.enabled:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_reduce_sum(ctx: DistContext, tensor: torch.Tensor) -> torch.Tensor:
    """Sum over ranks, in place (no-op on one process)."""
    if ctx.enabled:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def broadcast_buffers(ctx: DistContext, model: nn.Module) -> None:
    """Give every rank rank 0's BatchNorm statistics (each rank updates its own in training)."""
    if ctx.enabled:
        for buffer in model.buffers():
            dist.broadcast(buffer, src=0)


def shard_indices(num_examples: int, ctx: DistContext) -> np.ndarray:
    """This rank's contiguous slice of ``range(num_examples)``; the slices cover it exactly once."""
    return np.array_split(np.arange(num_examples), ctx.world_size)[ctx.rank]


def gather_arrays(ctx: DistContext, array: np.ndarray) -> np.ndarray:
    """Concatenate every rank's array in rank order (the shards' original order)."""
    if not ctx.enabled:
        return array
    parts: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(parts, array)
    return np.concatenate(parts, axis=0)
