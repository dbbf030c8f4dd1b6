"""Block outputs of a model as (data points, neurons) matrices.

Forward hooks on the output module of each named block (``transfusion_cli.models.blocks``) capture
one forward's outputs. A convolutional map (N, C, H, W) becomes data points the paper's way:
channels are the neurons and every (input, spatial position) is a data point; two maps of
different size are average-pooled to a common grid first, and positions are subsampled per
input (seeded) so the points stay within a budget while staying several times the number of
neurons. Vectors (N, C) are one point per input; tokens (N, T, D) are T points per input.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from transfusion_cli.errors import TfxError
from transfusion_cli.models.blocks import block_names, block_output_module
from transfusion_cli.similarity.result import SimilarityError

# Data points kept per layer stay at least this many times the number of neurons when the
# inputs allow it (below it CCA values are inflated; shared/similarity.md §5.6).
MIN_POINTS_PER_NEURON = 10


class BlockCapture:
    """Forward hooks on the output modules of ``blocks``; ``run`` returns their outputs.

    Use as a context manager so the hooks are always removed. Each hooked module must run
    exactly once per forward (a module reused inside the model is ambiguous).
    """

    def __init__(self, model: nn.Module, blocks: Sequence[str]):
        valid = block_names(model)
        unknown = [b for b in blocks if b not in valid]
        if unknown:
            raise TfxError(f"Unknown layer '{unknown[0]}'; valid layers: {', '.join(valid)}.")
        self.model, self.blocks = model, list(blocks)
        self.outputs: dict[str, torch.Tensor] = {}
        self._calls: dict[str, int] = defaultdict(int)
        self._handles: list[Any] = []

    def _hook(self, names: list[str]) -> Callable[..., None]:
        def hook(module: nn.Module, inputs: Any, output: Any) -> None:
            if not isinstance(output, torch.Tensor):
                raise TfxError(f"Layer '{names[0]}' outputs a {type(output).__name__}, not a "
                               "tensor; pick another layer.")
            for name in names:
                self._calls[name] += 1
                # A copy: a later in-place op (ReLU(inplace=True)) must not change it.
                self.outputs[name] = output.detach().clone()
        return hook

    def __enter__(self) -> BlockCapture:
        by_module: dict[int, tuple[nn.Module, list[str]]] = {}
        for name in self.blocks:
            module = block_output_module(self.model, name)
            by_module.setdefault(id(module), (module, []))[1].append(name)
        for module, names in by_module.values():
            self._handles.append(module.register_forward_hook(self._hook(names)))
        return self

    def __exit__(self, *exc: Any) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def run(self, forward: Callable[[], Any]) -> dict[str, torch.Tensor]:
        """Call ``forward()`` and return each block's output from that call."""
        self.outputs, self._calls = {}, defaultdict(int)
        forward()
        for name in self.blocks:
            calls = self._calls.get(name, 0)
            if calls != 1:
                module = self.model.tfx_blocks[name][-1]
                raise TfxError(f"Layer '{name}' (module '{module}') ran {calls} times in one "
                               "forward pass; compare a layer whose output module runs once.")
        outputs, self.outputs = self.outputs, {}
        return outputs


@contextmanager
def full_precision() -> Iterator[None]:
    """No TF32 in CUDA matmuls and convolutions (it would change activations by ~1e-3)."""
    matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = matmul, cudnn


def as_map(output: torch.Tensor, layer: str = "layer") -> torch.Tensor:
    """Any block output as a (N, C, H, W) map: vectors are 1x1 maps, tokens (N, T, D) Tx1."""
    if output.ndim == 4:
        return output
    if output.ndim == 2:
        return output[:, :, None, None]
    if output.ndim == 3:
        return output.transpose(1, 2)[..., None]
    raise SimilarityError(f"Layer '{layer}' output has shape {tuple(output.shape)}; expected "
                          "(N, C), (N, T, D) or (N, C, H, W).")


def parse_spatial(spatial: str | int) -> int | None:
    """``auto`` -> None (the smaller of the two grids); an integer S -> pool to at most S x S."""
    if isinstance(spatial, int) or str(spatial).isdigit():
        size = int(spatial)
        if size < 1:
            raise TfxError("--spatial must be 'auto' or a positive integer (1 = global "
                           "average pooling).")
        return size
    if str(spatial).lower() == "auto":
        return None
    raise TfxError(f"--spatial {spatial!r} is not 'auto' or a positive integer (e.g. 4; "
                   "1 = global average pooling).")


@dataclass
class PointPlan:
    """How one pair of layers becomes paired data points."""

    shape_a: tuple[int, ...]  # (C, H, W) of A's map, per input
    shape_b: tuple[int, ...]
    grid: tuple[int, int]  # common spatial size after pooling
    per_input: int  # positions kept per input
    inputs: int  # inputs in the probe set

    @property
    def neurons_a(self) -> int:
        """Neurons (channels) on A's side."""
        return self.shape_a[0]

    @property
    def neurons_b(self) -> int:
        """Neurons (channels) on B's side."""
        return self.shape_b[0]

    @property
    def points(self) -> int:
        """Data points in total: inputs x positions kept."""
        return self.inputs * self.per_input

    @property
    def positions(self) -> int:
        """Positions per input on the common grid."""
        return self.grid[0] * self.grid[1]

    def describe(self) -> dict[str, Any]:
        """Plain-data summary for reports."""
        return {"grid": list(self.grid), "positions_per_input": self.per_input,
                "inputs": self.inputs, "points": self.points, "shape_a": list(self.shape_a),
                "shape_b": list(self.shape_b)}


def plan_points(map_a: torch.Tensor, map_b: torch.Tensor, inputs: int, spatial: int | None,
                max_points: int) -> PointPlan:
    """Common grid and positions per input for a pair of (N, C, H, W) maps."""
    (_, ca, ha, wa), (_, cb, hb, wb) = map_a.shape, map_b.shape
    grid = (min(ha, hb), min(wa, wb))
    if spatial is not None:
        grid = (min(grid[0], spatial), min(grid[1], spatial))
    area = grid[0] * grid[1]
    budget = math.ceil(max_points / max(inputs, 1))
    floor = math.ceil(MIN_POINTS_PER_NEURON * max(ca, cb) / max(inputs, 1))
    per_input = max(1, min(area, max(budget, floor)))
    return PointPlan((ca, ha, wa), (cb, hb, wb), grid, per_input, inputs)


class PositionSampler:
    """Seeded choice of ``per_input`` grid positions per input, shared by both sides."""

    def __init__(self, plan: PointPlan, seed: int):
        self.plan = plan
        self.generator = torch.Generator().manual_seed(seed)

    def indices(self, batch: int, device: torch.device) -> torch.Tensor | None:
        """(batch, per_input) position indices; None when every position is kept."""
        if self.plan.per_input >= self.plan.positions:
            return None
        scores = torch.rand(batch, self.plan.positions, generator=self.generator)
        return scores.argsort(dim=1)[:, : self.plan.per_input].to(device)


def to_points(feature_map: torch.Tensor, grid: tuple[int, int],
              index: torch.Tensor | None) -> torch.Tensor:
    """(N, C, H, W) -> (N · positions, C): pooled to ``grid``, positions ``index`` kept."""
    if tuple(feature_map.shape[2:]) != tuple(grid):
        feature_map = F.adaptive_avg_pool2d(feature_map.float(), grid)
    n, c = feature_map.shape[:2]
    flat = feature_map.reshape(n, c, -1)
    if index is not None:
        flat = torch.gather(flat, 2, index[:, None, :].expand(n, c, index.shape[1]))
    return flat.permute(0, 2, 1).reshape(-1, c)
