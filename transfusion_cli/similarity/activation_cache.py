"""Many models compared pairwise on one probe set, each model run once.

``compare_representations`` runs both models of a pair over the probe set, so comparing K models
pairwise that way runs every model once per pair it is in. ``ActivationCache`` runs each model
once (``capture``) and keeps, per block and batch, the data points that pass would take (the
same point plan, and the same seeded positions: block i samples with ``seed + i``, as
``compare_representations`` seeds its i-th layer pair); ``compare`` then feeds two models' points
through the same accumulators in the same batch order, so every value equals what
``compare_representations`` gives for that pair with the same blocks, to the last bit.

Memory: each captured model's points stay on its device until ``drop``; ``nbytes`` says how
much they take (per model: the sum over blocks of data points x neurons x 4 bytes).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import Any

import torch
from torch import nn

from transfusion_cli.progress import track
from transfusion_cli.similarity.activations import (
    BlockCapture,
    PointPlan,
    PositionSampler,
    as_map,
    full_precision,
    plan_points,
    to_points,
)
from transfusion_cli.similarity.analysis import LayerPairState, PairResult, check_points
from transfusion_cli.similarity.result import SimilarityError


class ActivationCache:
    """Sampled block outputs of several models on the same batches, captured once each."""

    def __init__(self, batches: Sequence[torch.Tensor], blocks: Sequence[str], *,
                 spatial: int | None = None, max_points: int = 50_000, seed: int = 0,
                 available: int | None = None):
        if not batches:
            raise SimilarityError("The probe set is empty; nothing to compare.")
        self.batches = list(batches)
        self.blocks = list(blocks)
        self.inputs = sum(int(b.shape[0]) for b in self.batches)
        self.spatial, self.max_points, self.seed = spatial, max_points, seed
        self.available = available  # images in the whole probe split, for error messages
        self.plans: dict[str, PointPlan] = {}
        self._samplers: dict[str, PositionSampler] = {}
        self._indices: dict[str, list[torch.Tensor | None]] = {}
        self._points: dict[Hashable, dict[str, list[torch.Tensor]]] = {}

    def __contains__(self, key: Hashable) -> bool:
        return key in self._points

    def __len__(self) -> int:
        return len(self._points)

    def capture(self, key: Hashable, model: nn.Module,
                prepare: Callable[[torch.Tensor], torch.Tensor]) -> None:
        """Run ``model`` once over the batches (eval, inference mode, autocast and TF32 off)
        and keep each block's data points under ``key``."""
        if key in self._points:
            return
        model.eval()
        points: dict[str, list[torch.Tensor]] = {block: [] for block in self.blocks}
        with BlockCapture(model, self.blocks) as capture, torch.inference_mode(), \
                full_precision(), track("similarity: activations", self.inputs,
                                        "images") as task:
            for number, images in enumerate(self.batches):
                with torch.autocast(device_type=images.device.type, enabled=False):
                    outputs = capture.run(lambda: model(prepare(images)))  # noqa: B023
                for block in self.blocks:
                    feature_map = as_map(outputs[block], block)
                    plan = self._plan(block, feature_map)
                    index = self._index(block, number, feature_map)
                    points[block].append(to_points(feature_map, plan.grid, index))
                task.advance(images.shape[0])
        self._points[key] = points

    def _plan(self, block: str, feature_map: torch.Tensor) -> PointPlan:
        plan = self.plans.get(block)
        if plan is None:
            plan = plan_points(feature_map, feature_map, self.inputs, self.spatial,
                               self.max_points)
            self.plans[block] = plan
            self._samplers[block] = PositionSampler(plan, self.seed + self.blocks.index(block))
        elif tuple(feature_map.shape[1:]) != plan.shape_a:
            raise SimilarityError(
                f"Layer {block}: output of shape {tuple(feature_map.shape[1:])} per input, but "
                f"the first model's was {plan.shape_a}; only models of one architecture share "
                "an activation cache.")
        return plan

    def _index(self, block: str, number: int, feature_map: torch.Tensor
               ) -> torch.Tensor | None:
        """The positions of batch ``number``: drawn once, then the same for every model."""
        drawn = self._indices.setdefault(block, [])
        if number == len(drawn):
            drawn.append(self._samplers[block].indices(feature_map.shape[0],
                                                       feature_map.device))
        return drawn[number]

    def compare(self, key_a: Hashable, key_b: Hashable, metrics: Sequence[Any]
                ) -> list[PairResult]:
        """Similarity of the two captured models, block by block (``metrics``: MetricSpecs
        computed from moments or from the data points)."""
        per_input = [s.name for s in metrics if s.from_moments is None
                     and s.accumulator is not None]
        if per_input:
            raise SimilarityError(
                f"{', '.join(per_input)} is computed from whole per-input feature maps, which "
                "the activation cache does not keep; choose a measure computed from data "
                "points (cca, svcca, pwcca, cka, cka_debiased).")
        for key in (key_a, key_b):
            if key not in self._points:
                raise SimilarityError(f"No activations captured for {key!r}.")
        results = []
        for number, block in enumerate(self.blocks):
            plan = self.plans[block]
            # `tfx figures` (this cache's user) samples positions itself: no --spatial.
            check_points(plan, (block, block), metrics, self.available, spatial_flag=False)
            state = LayerPairState((block, block), plan, metrics, self.seed + number,
                                   baseline=False)
            for xa, xb in zip(self._points[key_a][block], self._points[key_b][block],
                              strict=True):
                state.add_points(xa, xb)
            results.append(state.finish(baseline=False))
        return results

    def drop(self, key: Hashable) -> None:
        """Forget one model's points (frees their memory)."""
        self._points.pop(key, None)

    def nbytes(self) -> int:
        """Memory the captured points take."""
        return sum(t.numel() * t.element_size() for blocks in self._points.values()
                   for batches in blocks.values() for t in batches)
