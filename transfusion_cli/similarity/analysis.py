"""Model-vs-model similarity, layer by layer, in one streamed pass over the probe set."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from transfusion_cli.errors import TfxError
from transfusion_cli.progress import track
from transfusion_cli.similarity.activations import (
    MIN_POINTS_PER_NEURON,
    BlockCapture,
    PointPlan,
    PositionSampler,
    as_map,
    full_precision,
    plan_points,
    to_points,
)
from transfusion_cli.similarity.result import MetricResult, SimilarityError
from transfusion_cli.similarity.streaming import PairStats


@dataclass
class PairResult:
    """Similarity of one layer of A with one layer of B."""

    layer_a: str
    layer_b: str
    plan: PointPlan
    metrics: dict[str, MetricResult]
    baseline: dict[str, MetricResult] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def row(self, metric_names: Sequence[str]) -> dict[str, Any]:
        """Plain-data record: layer, neurons, points, one key per metric, then details."""
        row: dict[str, Any] = {"layer": self.layer_a}
        if self.layer_b != self.layer_a:
            row["layer_b"] = self.layer_b
        row["neurons"] = self.plan.neurons_a
        if self.plan.neurons_b != self.plan.neurons_a:
            row["neurons_b"] = self.plan.neurons_b
        row["points"] = self.plan.points
        for name in metric_names:
            row[name] = self.metrics[name].value
        if self.baseline:
            row["baseline"] = {k: v.value for k, v in self.baseline.items()}
        row["details"] = {name: self.metrics[name].details for name in metric_names}
        reasons = {k: v.reason for k, v in self.metrics.items() if v.reason}
        if reasons:
            row["reasons"] = reasons
        row.update(self.plan.describe())
        if self.notes:
            row["notes"] = list(self.notes)
        return row


class LayerPairState:
    """Accumulators of one layer pair: ``update`` with block outputs, or ``add_points`` with
    data points already sampled (``similarity.activation_cache`` replays cached points)."""

    def __init__(self, layers: tuple[str, str], plan: PointPlan, metrics: Sequence[Any],
                 seed: int, baseline: bool):
        self.layers, self.plan = layers, plan
        self.point_hungry = [s.name for s in metrics if s.needs_more_points_than_neurons]
        self.sampler = PositionSampler(plan, seed)
        self.moment_specs = [s for s in metrics if s.from_moments is not None]
        self.batched = {s.name: s.accumulator() for s in metrics
                        if s.from_moments is None and s.accumulator is not None}
        self.plain = [s for s in metrics if s.from_moments is None and s.accumulator is None]
        # Row-norm sums are for debiased CKA (and any plugin metric that may use them).
        needs_debiased = any(s.needs_row_norms for s in self.moment_specs)
        self.stats = (PairStats(debiased=needs_debiased, null_seed=seed if baseline else None)
                      if self.moment_specs else None)
        self.points_a: list[torch.Tensor] = []
        self.points_b: list[torch.Tensor] = []

    def update(self, out_a: torch.Tensor, out_b: torch.Tensor) -> None:
        map_a, map_b = as_map(out_a, self.layers[0]), as_map(out_b, self.layers[1])
        if self.stats is not None or self.plain:
            index = self.sampler.indices(map_a.shape[0], map_a.device)
            self.add_points(to_points(map_a, self.plan.grid, index),
                            to_points(map_b, self.plan.grid, index))
        for accumulator in self.batched.values():
            accumulator.update(out_a.reshape(out_a.shape[0], -1),
                               out_b.reshape(out_b.shape[0], -1))

    def add_points(self, xa: torch.Tensor, xb: torch.Tensor) -> None:
        """One batch of paired data points (rows) for the moment and point-based metrics."""
        if self.stats is not None:
            self.stats.update(xa, xb)
        if self.plain:
            self.points_a.append(xa.float().cpu())
            self.points_b.append(xb.float().cpu())

    def finish(self, baseline: bool) -> PairResult:
        metrics: dict[str, MetricResult] = {}
        null: dict[str, MetricResult] = {}
        where = f"layer {self.layers[0]}" + (
            f" vs {self.layers[1]}" if self.layers[1] != self.layers[0] else "")
        if self.stats is not None:
            moments = self.stats.finalize()
            null_moments = self.stats.finalize(null=True) if baseline else None
            for spec in self.moment_specs:
                try:
                    metrics[spec.name] = spec.from_moments(moments)
                except SimilarityError as exc:
                    raise SimilarityError(f"{where}: {exc}") from exc
                if null_moments is not None:
                    # Debiased CKA has no null: the null pass keeps no row-norm sums.
                    with contextlib.suppress(SimilarityError):
                        null[spec.name] = spec.from_moments(null_moments)
        for name, accumulator in self.batched.items():
            metrics[name] = accumulator.result()
        if self.plain:
            x, y = torch.cat(self.points_a).numpy(), torch.cat(self.points_b).numpy()
            for spec in self.plain:
                try:
                    value = spec.fn(x, y)
                except SimilarityError as exc:
                    raise SimilarityError(f"{where}: {exc}") from exc
                metrics[spec.name] = (value if isinstance(value, MetricResult)
                                      else MetricResult(float(value)))
        notes = []
        neurons = max(self.plan.neurons_a, self.plan.neurons_b)
        hungry = sorted(self.point_hungry)
        if hungry and self.plan.points < MIN_POINTS_PER_NEURON * neurons:
            notes.append(f"{self.plan.points} data points for {neurons} neurons (less than "
                         f"{MIN_POINTS_PER_NEURON}x): {', '.join(hungry)} values are inflated; "
                         "use more --samples")
        return PairResult(self.layers[0], self.layers[1], self.plan, metrics, null, notes)


def check_points(plan: PointPlan, layers: tuple[str, str], metrics: Sequence[Any],
                 available: int | None = None, spatial_flag: bool = True) -> None:
    """Fail before the pass when a metric that needs more points than neurons could not be
    computed (``available``: images in the whole probe split; ``spatial_flag``: whether the
    command has ``--spatial`` to advise)."""
    needing = [s.name for s in metrics if s.needs_more_points_than_neurons]
    neurons = max(plan.neurons_a, plan.neurons_b)
    if needing and plan.points <= neurons:
        enough = neurons // plan.per_input + 1
        if available is not None and enough > available:
            raise SimilarityError(
                f"Layer {layers[0]}: the probe split has only {available} images, too few for "
                f"{', '.join(needing)} here ({neurons} neurons need {enough} images at "
                f"{plan.per_input} positions each); probe a larger split (e.g. --split train), "
                + ("keep more positions with --spatial, " if spatial_flag else "")
                + "or use --measure cka.")
        raise SimilarityError(
            f"Layer {layers[0]}: {plan.points} data points ({plan.inputs} inputs x "
            f"{plan.per_input} positions) for {neurons} neurons; {', '.join(needing)} need more "
            f"points than neurons: use --samples {enough} or more, or --measure cka.")


def compare_representations(model_a: nn.Module, model_b: nn.Module,
                            batches: Iterable[torch.Tensor], *,
                            prepare_a: Callable[[torch.Tensor], torch.Tensor],
                            prepare_b: Callable[[torch.Tensor], torch.Tensor],
                            pairs: Sequence[tuple[str, str]], metrics: Sequence[Any], inputs: int,
                            spatial: int | None = None, max_points: int = 50_000, seed: int = 0,
                            baseline: bool = False,
                            progress: Callable[[int], None] | None = None,
                            available: int | None = None) -> list[PairResult]:
    """Similarity of each (layer of A, layer of B) pair over ``batches`` of uint8 images.

    Both models see every batch (``prepare_*`` normalise it for each), in eval mode, under
    inference mode with autocast and TF32 off. ``metrics`` are MetricSpecs; those with
    ``from_moments`` share one exact moment pass per pair.
    """
    if not pairs:
        raise TfxError("No layers to compare.")
    layers_a = list(dict.fromkeys(a for a, _ in pairs))
    layers_b = list(dict.fromkeys(b for _, b in pairs))
    states: list[LayerPairState] | None = None
    model_a.eval()
    model_b.eval()
    seen = 0
    with BlockCapture(model_a, layers_a) as capture_a, BlockCapture(model_b, layers_b) as \
            capture_b, torch.inference_mode(), full_precision(), \
            track("similarity: activations", inputs, "images") as task:
        for images in batches:
            device_type = images.device.type
            with torch.autocast(device_type=device_type, enabled=False):
                outputs_a = capture_a.run(lambda: model_a(prepare_a(images)))  # noqa: B023
                outputs_b = capture_b.run(lambda: model_b(prepare_b(images)))  # noqa: B023
            if states is None:
                states = []
                for index, (la, lb) in enumerate(pairs):
                    plan = plan_points(as_map(outputs_a[la], la), as_map(outputs_b[lb], lb),
                                       inputs, spatial, max_points)
                    check_points(plan, (la, lb), metrics, available)
                    states.append(LayerPairState((la, lb), plan, metrics, seed + index, baseline))
            for state in states:
                state.update(outputs_a[state.layers[0]], outputs_b[state.layers[1]])
            seen += images.shape[0]
            task.advance(images.shape[0])
            if progress is not None:
                progress(seen)
    if states is None:
        raise TfxError("The probe set is empty; nothing to compare.")
    if seen != inputs:
        raise TfxError(f"Expected {inputs} probe inputs but saw {seen}.")
    return [state.finish(baseline) for state in states]


def result_matrix(results: Sequence[PairResult], layers_a: Sequence[str],
                  layers_b: Sequence[str], metric: str) -> np.ndarray:
    """(len(layers_a), len(layers_b)) values of ``metric`` from cross-mode results."""
    table = {(r.layer_a, r.layer_b): r.metrics[metric].value for r in results}
    return np.array([[table.get((a, b), np.nan) for b in layers_b] for a in layers_a])
