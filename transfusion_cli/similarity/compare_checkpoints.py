"""Checkpoint-vs-checkpoint similarity, layer by layer: what `tfx similarity` computes.

``compare_checkpoints(a, b, ...)`` loads both checkpoints, pairs their layers (matched by name,
or every layer of A with every layer of B with ``cross=True``), builds the probe set and runs
the streamed comparison; ``against`` adds run folders compared with their own initialisation.
A notebook calls it directly; the command only parses flags and prints.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transfusion_cli.console import info, warn
from transfusion_cli.errors import CheckpointError, ConfigError, TfxError
from transfusion_cli.runfolder import (
    RunFolder,
    checkpoint_beside,
    checkpoint_in,
    trained_checkpoint_in,
)

DEFAULT_METRICS = ("svcca", "pwcca", "cka")


@dataclass
class Comparison:
    """One model pair and its per-layer-pair results."""

    a: Any  # models.trained.TrainedModel
    b: Any
    pairs: list[tuple[str, str]]
    results: list[Any] = field(default_factory=list)  # PairResult, one per pair
    seconds: float = 0.0

    @property
    def title(self) -> str:
        """``A vs B`` with the checkpoints' short labels."""
        return f"{self.a.label()} vs {self.b.label()}"


@dataclass
class SimilarityRun:
    """Everything one `tfx similarity` call computed."""

    metrics: list[str]
    probe: Any  # ProbeSet
    device: Any
    cross: bool
    comparisons: list[Comparison]
    baseline: bool = False

    @property
    def rows(self) -> list[str]:
        """Layers of A (cross mode: the heatmap's rows)."""
        return list(dict.fromkeys(la for la, _ in self.comparisons[0].pairs))

    @property
    def cols(self) -> list[str]:
        """Layers of B (cross mode: the heatmap's columns)."""
        return list(dict.fromkeys(lb for _, lb in self.comparisons[0].pairs))


def metric_specs(names: str | Sequence[str]) -> list:
    """Registered MetricSpecs for ``"svcca,pwcca,cka"`` (or a list of names), each once."""
    from transfusion_cli.plugins import get

    if isinstance(names, str):
        names = names.split(",")
    wanted = list(dict.fromkeys(n.strip() for n in names if n.strip()))
    if not wanted:
        raise ConfigError("--measure is empty; name one or more measures, e.g. svcca,pwcca,cka "
                          "(`tfx list metrics`).")
    return [get("metrics", name) for name in wanted]


def requested_layers(text: str | Sequence[str] | None) -> list[str] | None:
    """``"stem,block1"`` -> those names; ``"all"``, empty or None -> None (every block)."""
    if text is None:
        return None
    names = [n.strip() for n in (text.split(",") if isinstance(text, str) else text)
             if n.strip()]
    return None if not names or names == ["all"] else list(dict.fromkeys(names))


def diagonal_pairs(a, b, requested: list[str] | None) -> list[tuple[str, str]]:
    """Each layer of A with the layer of B of the same name (same architecture, or the named
    layers both have)."""
    from transfusion_cli.models.blocks import block_names

    names_a, names_b = block_names(a.model), block_names(b.model)
    if requested is None:
        if names_a != names_b or a.arch != b.arch:
            common = [n for n in names_a if n in names_b]
            hint = (f", or compare layers both have by name with --layers {','.join(common)}"
                    if common else "")
            raise ConfigError(f"A is {a.arch} and B is {b.arch}: different architectures are "
                              f"not matched layer by layer; use --cross to compare every layer "
                              f"of A with every layer of B{hint}.")
        return [(n, n) for n in names_a]
    for name in requested:
        for loaded, names in ((a, names_a), (b, names_b)):
            if name not in names:
                raise ConfigError(f"Unknown layer '{name}' for {loaded.arch} "
                                  f"({loaded.label()}); valid layers: {', '.join(names)}.")
    return [(n, n) for n in requested]


def cross_pairs(a, b, requested: list[str] | None) -> list[tuple[str, str]]:
    """Every (requested) layer of A with every (requested) layer of B."""
    from transfusion_cli.models.blocks import block_names

    names_a, names_b = block_names(a.model), block_names(b.model)
    rows, cols = names_a, names_b
    if requested is not None:
        for name in requested:
            if name not in names_a and name not in names_b:
                raise ConfigError(f"Unknown layer '{name}'; {a.arch} has {', '.join(names_a)} "
                                  f"and {b.arch} has {', '.join(names_b)}.")
        rows = [n for n in requested if n in names_a]
        cols = [n for n in requested if n in names_b]
        if not rows or not cols:
            raise ConfigError("--layers names no layer of " + (a.arch if not rows else b.arch)
                              + "; with --cross name layers of both models.")
    return [(r, c) for r in rows for c in cols]


def run_checkpoints(path: str | os.PathLike) -> tuple[Path, Path]:
    """(init.pt, trained checkpoint) of a run folder, or of a checkpoint beside its init.pt."""
    text = str(path)
    path = Path(path)
    if path.is_dir():
        run = RunFolder(path)
        folder = run.checkpoints if run.checkpoints.is_dir() else path
        init, final = checkpoint_in(folder, "init"), trained_checkpoint_in(folder)
        if final is None or not init.is_file():
            raise CheckpointError(f"--against {text}: no checkpoints/init.pt and best.pt (or "
                                  "last.pt) there; pass a run folder written by `tfx fit`.")
        return init, final
    if not path.is_file():
        raise CheckpointError(f"--against {text} does not exist; pass a run folder or a "
                              "checkpoint that has an init.pt beside it.")
    init = checkpoint_beside(path, "init")
    if path.name == init.name or not init.is_file():
        raise CheckpointError(f"--against {text}: no init.pt beside it to compare with; pass a "
                              "run folder or a trained checkpoint inside RUN/checkpoints/.")
    return init, path


def input_preparer(loaded, device):
    """uint8 probe batch -> the model's normalised input (channels_last on CUDA)."""
    import torch

    from transfusion_cli.data.bundles import normalize

    def prepare(images):
        x = normalize(images, loaded.info, loaded.in_chans)
        return x.contiguous(memory_format=torch.channels_last) if device.type == "cuda" else x
    return prepare


def run_comparison(comparison: Comparison, specs: Sequence[Any], probe, device, *,
                   spatial: int | None, max_points: int, seed: int, batch_size: int,
                   workers: int, baseline: bool) -> Comparison:
    """Fill ``comparison.results`` with one streamed pass of the probe set through both models;
    the time it took and any NaN values or notes are reported on stderr."""
    from transfusion_cli.similarity.analysis import compare_representations
    from transfusion_cli.similarity.probe import probe_batches

    a, b = comparison.a, comparison.b
    started = time.perf_counter()
    comparison.results = compare_representations(
        a.model, b.model, probe_batches(probe, batch_size, device, workers),
        prepare_a=input_preparer(a, device), prepare_b=input_preparer(b, device),
        pairs=comparison.pairs, metrics=specs, inputs=len(probe), spatial=spatial,
        max_points=max_points, seed=seed, baseline=baseline, available=len(probe.dataset))
    comparison.seconds = time.perf_counter() - started
    info(f"{comparison.title}: {len(comparison.pairs)} layer pair(s) over {len(probe)} inputs "
         f"in {comparison.seconds:.1f} s")
    for result in comparison.results:
        where = result.layer_a if result.layer_a == result.layer_b else \
            f"{result.layer_a}/{result.layer_b}"
        for name, metric in result.metrics.items():
            if metric.reason:
                warn(f"{where}: {name} is NaN: {metric.reason}")
        for note in result.notes:
            warn(f"{where}: {note}")
    return comparison


def compare_checkpoints(checkpoint_a: str | os.PathLike, checkpoint_b: str | os.PathLike, *,
                        metrics: str | Sequence[str] = DEFAULT_METRICS,
                        layers: str | Sequence[str] | None = None, cross: bool = False,
                        against: Sequence[str | os.PathLike] = (), data: str | None = None,
                        data_dir: str | os.PathLike | None = None,
                        options: dict[str, Any] | None = None, split: str = "val",
                        samples: int = 500, seed: int = 0, spatial: str | int | None = "auto",
                        max_points: int = 50_000, batch_size: int = 64, device: str = "auto",
                        workers: int = 0, baseline: bool = False) -> SimilarityRun:
    """Similarity of checkpoint A and B layer by layer on a probe set (by default the
    validation split of A's dataset), plus each ``against`` run vs its own init.pt."""
    from transfusion_cli.models.runtime import resolve_device
    from transfusion_cli.models.trained import load_trained
    from transfusion_cli.similarity.activations import parse_spatial
    from transfusion_cli.similarity.probe import build_probe

    specs = metric_specs(metrics)
    if against and cross:
        raise ConfigError("--against overlays similarity-to-initialisation curves and cannot "
                          "be combined with --cross; run them separately.")
    if max_points < 1:
        raise ConfigError(f"--max-points {max_points} must be at least 1.")
    if workers < 0:
        raise ConfigError(f"--workers {workers} must be 0 (load in this process) or more.")
    if batch_size < 1:
        raise ConfigError(f"--batch-size {batch_size} must be at least 1.")
    spatial = parse_spatial(spatial) if isinstance(spatial, str) else spatial
    runs = [run_checkpoints(path) for path in against]
    dev = resolve_device(device)
    a, b = load_trained(checkpoint_a, dev), load_trained(checkpoint_b, dev)
    requested = requested_layers(layers)
    pairs = cross_pairs(a, b, requested) if cross else diagonal_pairs(a, b, requested)
    probe = build_probe(a.checkpoint, data=data, data_dir=str(data_dir) if data_dir else None,
                        options=options, split=split, samples=samples, seed=seed)
    info(f"probe: {probe.info.name} {split}, {len(probe)} inputs of {probe.info.image_size} px, "
         f"device {dev}")
    comparisons = [Comparison(a, b, pairs)]
    for init_path, final_path in runs:
        ra, rb = load_trained(init_path, dev), load_trained(final_path, dev)
        run_layers = [n for n in requested or [] if n in ra.model.tfx_blocks]
        comparisons.append(Comparison(ra, rb, diagonal_pairs(ra, rb, run_layers or None)))
    for comparison in comparisons:
        run_comparison(comparison, specs, probe, dev, spatial=spatial, max_points=max_points,
                       seed=seed, batch_size=batch_size, workers=workers, baseline=baseline)
    if not comparisons[0].results:
        raise TfxError("No layers to compare.")
    return SimilarityRun([s.name for s in specs], probe, dev, cross, comparisons, baseline)
