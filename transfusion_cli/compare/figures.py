"""The paper's representation analyses from finished sweep cells: the one implementation behind
`tfx figures` and the representations part of `tfx reproduce`.

Input: a compare-inits sweep folder, or a reproduce study folder (its target sweeps). Only
finished cells count (the runner's done record, ``init.pt`` and ``best.pt``); the others are
skipped and named (a killed cell has only ``init.pt`` and ``last.pt``).

Numbers (``representation_numbers``), all in one similarity measure, by default the paper's
CCA (mean canonical correlation over the rank-aware directions, shared/similarity.md §2.2):

- ``to_init`` (the ``layers`` figure; claim C5 and the lower half of C6): per group (an
  architecture) and init, each body block's similarity of ``best.pt`` to the run's own
  ``init.pt``: mean and standard deviation over seeds, the per-seed values, and whether the
  block had fewer than 10 data points per neuron (CCA values are then inflated).
- ``fig2`` (Figure 2; the top of C6): per group, the top two blocks' similarity between trained
  networks, averaged over the two blocks, for every transfer-vs-random pair and every pair of
  random-init runs of different seeds: mean and standard deviation over pairs, and each block
  on its own with its spread.
- ``scatter``: for the same pairs and every block, similarity at initialisation and after
  training. ``filters``: the first convolution before and after training (first seed).

Speed: each checkpoint runs once over one fixed probe set of images (``ActivationCache``)
and every pair is computed from the cached activations, with the values the pairwise
``compare_checkpoints`` gives (benchmarks/figures_speed.py;
tests/compare/test_representation_figures.py).
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Collection, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from transfusion_cli.console import info, warn
from transfusion_cli.errors import ConfigError, TfxError
from transfusion_cli.runfolder import StudyFolder, SweepFolder

FIGURES = ("fig2", "layers", "scatter", "filters")
DEFAULT_MEASURE = "cca"  # the paper's "CCA similarity" (its Figure 2 is CCA, not SVCCA)
TRANSFER_VS_RANDOM, RANDOM_VS_RANDOM = "transfer vs random", "random vs random"
PAIR_KINDS = (TRANSFER_VS_RANDOM, RANDOM_VS_RANDOM)
TOP_BLOCKS = 2  # the paper's Figure 2 averages the top two blocks (stages) below the head
SPREAD = "sample standard deviation (ddof 1): over seeds (to_init), over pairs (fig2)"
# Data points a block needs per neuron before CCA-family values are trusted (similarity.md
# §5.6: with fewer, even unrelated representations come out similar).
LOW_DATA_NOTE = "fewer than {n} data points per neuron: CCA-family values are inflated"


@dataclass(frozen=True)
class SweepRun:
    """A finished cell and the two checkpoints the figures compare."""

    group: str  # what the figures show it under: its architecture (+ train size, sweep)
    arch: str
    init: str  # the init's label as the sweep reports it (``random``, ``imagenet``, ...)
    transfer: bool  # the init copies every pretrained feature (``InitSpec.full_transfer``)
    seed: int
    cell: str
    init_ckpt: Path
    final_ckpt: Path
    sweep: Path | None = None  # its sweep folder: the cells of one sweep share their data
    baseline: bool = False  # its init is the baseline (``InitSpec.baseline``: the paper's random)

    @property
    def name(self) -> str:
        """``init sSEED``: how pairs are listed."""
        return f"{self.init} s{self.seed}"

    @property
    def is_random(self) -> bool:
        """Started from the baseline (random) init."""
        return self.baseline


@dataclass(frozen=True)
class SkippedCell:
    """A planned cell the figures leave out, and why."""

    cell: str
    reason: str


@dataclass
class SweepRuns:
    """The finished runs of one or more sweeps, and the cells left out."""

    sources: list[Path]
    runs: list[SweepRun]
    skipped: list[SkippedCell] = field(default_factory=list)


@dataclass
class FigureSettings:
    """How the similarities are computed."""

    measure: str = DEFAULT_MEASURE
    samples: int = 500
    split: str = "val"
    seed: int = 0
    device: str = "auto"
    transfer: str | None = None  # the init label counted as "transfer"; None: from the sweep
    batch_size: int = 64


def sweep_folders(path: str | os.PathLike) -> list[SweepFolder]:
    """The sweep folder ``path``, or the target sweeps of the reproduce study folder ``path``."""
    path = Path(path)
    if SweepFolder(path).is_planned():
        return [SweepFolder(path)]
    study = StudyFolder(path)
    if study.study.is_file():
        sweeps = [s for s in study.target_sweeps() if s.is_planned()]
        if not sweeps:
            raise ConfigError(f"The study folder {path} has no planned sweeps yet; run `tfx "
                              "reproduce` into it first.")
        return sweeps
    raise ConfigError(f"{path} is neither a compare-inits sweep folder (with plan.json) nor a "
                      "reproduce study folder (with study.json); pass the --out folder of one.")


def _group_name(arch: str, train_size: int | None, sweep: str | None) -> str:
    name = arch if train_size is None else f"{arch} (n={train_size})"
    return f"{sweep}/{name}" if sweep else name


def finished_runs(path: str | os.PathLike, cells: Collection[str] | None = None,
                  archs: Collection[str] | None = None) -> SweepRuns:
    """Finished cells of the sweep(s) at ``path`` (only ``cells`` / ``archs`` when given);
    cells that are not finished are returned as skipped, with the reason."""
    from transfusion_cli.compare.plan import load_plan
    from transfusion_cli.plugins import get

    folders = sweep_folders(path)
    found = SweepRuns([f.root for f in folders], [])
    for folder in folders:
        plan = load_plan(folder.root)
        prefix = folder.root.name if len(folders) > 1 else None
        for cell in plan.cells:
            if (cells is not None and cell.id not in cells) or (archs is not None
                                                                and cell.arch not in archs):
                continue
            run = folder.run(cell.id)
            name = cell.id if prefix is None else f"{prefix}/{cell.id}"
            if not folder.done_marker(cell.id).is_file():
                held = [p.name for p in (run.init, run.last, run.best) if p.is_file()]
                found.skipped.append(SkippedCell(
                    name, "not finished (no done record): killed or still training"
                    + (f"; it holds only {', '.join(held)}" if held else "")))
            elif not run.best.is_file() or not run.init.is_file():
                missing = [p.name for p in (run.init, run.best) if not p.is_file()]
                found.skipped.append(SkippedCell(name, f"no {' or '.join(missing)}"))
            else:
                spec = get("inits", cell.init.partition(":")[0])
                found.runs.append(SweepRun(_group_name(cell.arch, cell.train_size, prefix),
                                           cell.arch, cell.label, spec.full_transfer, cell.seed,
                                           name, run.init, run.best, folder.root,
                                           baseline=spec.baseline))
    if not found.runs:
        listed = "; ".join(f"{s.cell}: {s.reason}" for s in found.skipped[:3])
        raise ConfigError(f"{path} has no finished cells to compare"
                          + (f" ({listed})" if listed else "") + "; let the sweep finish "
                          "first (re-run the same command to resume it).")
    return found


def transfer_init(runs: Sequence[SweepRun], requested: str | None) -> str | None:
    """The init label that plays "transfer": ``requested``, else the only init that copies
    every pretrained feature (``imagenet``, ``checkpoint:PATH``); None when there is none."""
    labels = list(dict.fromkeys(r.init for r in runs))
    if requested is not None:
        if requested not in labels:
            raise ConfigError(f"--transfer {requested!r} is not an init of the finished cells; "
                              f"their inits are {', '.join(labels)}.")
        return requested
    full = list(dict.fromkeys(r.init for r in runs if r.transfer))
    if len(full) > 1:
        raise ConfigError(f"Cannot tell which init is the transfer init among "
                          f"{', '.join(full)}; name it with --transfer INIT.")
    return full[0] if full else None


def body_blocks(arch: str) -> list[str]:
    """The architecture's blocks below the classification head (the head's few logits are
    not a representation the paper compares)."""
    from transfusion_cli.models.blocks import block_names
    from transfusion_cli.plugins import get

    model = get("architectures", arch).build(num_classes=2, in_chans=3)
    return [name for name in block_names(model) if name != "head"]


def run_pairs(runs: Sequence[SweepRun], transfer: str | None
              ) -> list[tuple[str, SweepRun, SweepRun]]:
    """(kind, a, b): every transfer run with every random run, and every two random runs of
    different seeds, of the same group."""
    pairs = []
    for group in dict.fromkeys(r.group for r in runs):
        randoms = [r for r in runs if r.group == group and r.is_random]
        transfers = [r for r in runs if r.group == group and transfer is not None
                     and r.init == transfer]
        pairs += [(TRANSFER_VS_RANDOM, t, r) for t in transfers for r in randoms]
        pairs += [(RANDOM_VS_RANDOM, a, b) for a, b in itertools.combinations(randoms, 2)
                  if a.seed != b.seed]
    return pairs


def short_label(init: str) -> str:
    """An init for legends: a path argument is shortened to its run folder's name
    (``checkpoint:runs/pre/checkpoints/best.pt`` -> ``checkpoint:pre``)."""
    from transfusion_cli.runfolder import RunFolder

    name, sep, argument = init.partition(":")
    if sep and ("/" in argument or argument.endswith(".pt")):
        path = Path(argument)
        run = RunFolder.of_checkpoint(path)
        folder = run.root if run is not None else path.parent
        return f"{name}:{folder.name or path.stem}"
    return init


@dataclass
class BlockSummary:
    """One block's similarity over seeds or pairs: mean, spread, count, the values (in the
    order of the seeds or pairs listed beside it) and whether its data were too few."""

    block: str
    mean: float | None
    std: float | None  # sample standard deviation; None below two values
    n: int  # finite values
    values: list[float | None]
    points: int  # data points per model (inputs x positions)
    neurons: int
    low_data: bool  # points < MIN_POINTS_PER_NEURON x neurons for a CCA-family measure


def summarize(values: Iterable[float]) -> tuple[float | None, float | None, int]:
    """(mean, sample std or None, count) of the finite values."""
    finite = [float(v) for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return None, None, 0
    std = float(np.std(finite, ddof=1)) if len(finite) > 1 else None
    return float(np.mean(finite)), std, len(finite)


def _finite_or_none(value: float) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None


def body_digest(trained: Any) -> str:
    """A hash of everything that makes a checkpoint's body-block activations: its weights and
    buffers outside the head, input channels and normalisation. Runs of a transfer init differ
    only in their seeded head at step 0, so their init.pt share one pass (same numbers)."""
    import hashlib

    import torch

    from transfusion_cli.models.blocks import block_of_parameter

    digest = hashlib.blake2b(repr((trained.arch, trained.in_chans, tuple(trained.info.mean),
                                   tuple(trained.info.std))).encode())
    for name, tensor in trained.model.state_dict().items():
        if block_of_parameter(trained.model, name) != "head":
            digest.update(name.encode())
            digest.update(repr((tuple(tensor.shape), str(tensor.dtype))).encode())
            digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8)
                          .numpy().tobytes())
    return digest.hexdigest()


class PairSimilarities:
    """Per-block similarity of pairs of checkpoints of one group, every checkpoint run once
    over one probe set (``ActivationCache``); pairs are computed on demand and remembered."""

    def __init__(self, runs: Sequence[SweepRun], spec: Any, settings: FigureSettings,
                 probes: dict[Any, tuple[Any, list]] | None = None):
        from transfusion_cli.models.runtime import resolve_device
        from transfusion_cli.models.trained import load_trained
        from transfusion_cli.similarity.activation_cache import ActivationCache
        from transfusion_cli.similarity.probe import build_probe, probe_batches

        self.spec, self.settings = spec, settings
        self.blocks = body_blocks(runs[0].arch)
        self.device = resolve_device(settings.device)
        first = load_trained(runs[0].final_ckpt, self.device)
        # ``probes``: the probe images per sweep, shared by its groups (one dataset per sweep).
        probes = {} if probes is None else probes
        key = runs[0].sweep or runs[0].final_ckpt
        if key not in probes:
            probe = build_probe(first.checkpoint, split=settings.split,
                                samples=settings.samples, seed=settings.seed)
            probes[key] = (probe, list(probe_batches(probe, settings.batch_size, self.device)))
        self.probe, batches = probes[key]
        self.cache = ActivationCache(batches, self.blocks, seed=settings.seed,
                                     available=len(self.probe.dataset))
        self._load = load_trained
        self._keys: dict[Path, str] = {}
        self._results: dict[tuple[str, str], dict[str, Any]] = {}
        self._capture(runs[0].final_ckpt, first)

    def _capture(self, path: Path, trained: Any = None) -> str:
        """Run checkpoint ``path`` over the probe once (``trained``: it, already loaded), unless
        a checkpoint with the same body weights ran already; returns its cache key."""
        from transfusion_cli.similarity.compare_checkpoints import input_preparer

        if path not in self._keys:
            trained = trained or self._load(path, self.device)
            key = body_digest(trained)
            if key not in self.cache:
                self.cache.capture(key, trained.model, input_preparer(trained, self.device))
            self._keys[path] = key
        return self._keys[path]

    def pair(self, a: Path, b: Path) -> dict[str, Any]:
        """Block -> PairResult of checkpoints ``a`` and ``b``."""
        key = (self._capture(a), self._capture(b))
        if key not in self._results:
            results = self.cache.compare(*key, [self.spec])
            self._results[key] = {r.layer_a: r for r in results}
        return self._results[key]

    def values(self, a: Path, b: Path) -> dict[str, float]:
        """Block -> the measure's value for checkpoints ``a`` and ``b``."""
        return {block: float(r.metrics[self.spec.name].value)
                for block, r in self.pair(a, b).items()}

    def block_summary(self, block: str, pairs: Sequence[tuple[Path, Path]]) -> BlockSummary:
        """``block``'s similarity over ``pairs`` of checkpoints."""
        from transfusion_cli.similarity.activations import MIN_POINTS_PER_NEURON

        results = [self.pair(a, b)[block] for a, b in pairs]
        values = [float(r.metrics[self.spec.name].value) for r in results]
        mean, std, n = summarize(values)
        plan = results[0].plan
        neurons = max(plan.neurons_a, plan.neurons_b)
        low = bool(self.spec.needs_more_points_than_neurons
                   and plan.points < MIN_POINTS_PER_NEURON * neurons)
        return BlockSummary(block, mean, std, n, [_finite_or_none(v) for v in values],
                            plan.points, neurons, low)


def measure_spec(name: str) -> Any:
    """The registered MetricSpec of a similarity measure (``tfx list metrics``)."""
    from transfusion_cli.plugins import get

    return get("metrics", name)


def _to_init(runs: Sequence[SweepRun], table: PairSimilarities) -> dict[str, Any]:
    """init -> {"seeds", "blocks": [BlockSummary]} for each run vs its own init.pt."""
    result: dict[str, Any] = {}
    for init in dict.fromkeys(r.init for r in runs):
        arm = sorted((r for r in runs if r.init == init), key=lambda r: r.seed)
        pairs = [(r.init_ckpt, r.final_ckpt) for r in arm]
        result[init] = {"seeds": [r.seed for r in arm],
                        "blocks": [asdict(table.block_summary(b, pairs)) for b in table.blocks]}
    return result


def _fig2(pairs: Sequence[tuple[str, SweepRun, SweepRun]],
          table: PairSimilarities) -> dict[str, Any]:
    """Kind -> the top blocks' similarity of trained networks, per pair and summarised."""
    top = table.blocks[-TOP_BLOCKS:]
    result: dict[str, Any] = {"blocks": top}
    for kind in PAIR_KINDS:
        chosen = [(a, b) for k, a, b in pairs if k == kind]
        if not chosen:
            continue
        checkpoints = [(a.final_ckpt, b.final_ckpt) for a, b in chosen]
        per_pair = []
        for (a, b), (pa, pb) in zip(chosen, checkpoints, strict=True):
            values = table.values(pa, pb)
            per_pair.append({"a": a.name, "b": b.name,
                             "value": _finite_or_none(float(np.mean([values[t] for t in top])))})
        mean, std, n = summarize(p["value"] for p in per_pair)
        blocks = [asdict(table.block_summary(t, checkpoints)) for t in top]
        result[kind] = {"mean": mean, "std": std, "n": n, "pairs": per_pair, "blocks": blocks,
                        "seeds": sorted({r.seed for pair in chosen for r in pair}),
                        "low_data": any(b["low_data"] for b in blocks)}
    return result


def _scatter(group: str, pairs: Sequence[tuple[str, SweepRun, SweepRun]],
             table: PairSimilarities) -> list[dict[str, Any]]:
    points = []
    for kind, a, b in pairs:
        before = table.values(a.init_ckpt, b.init_ckpt)
        after = table.values(a.final_ckpt, b.final_ckpt)
        points += [{"group": group, "kind": kind, "block": block, "a": a.name, "b": b.name,
                    "at_init": _finite_or_none(before[block]),
                    "trained": _finite_or_none(after[block])} for block in table.blocks]
    return points


def _filters(runs: Sequence[SweepRun]) -> list[dict[str, Any]]:
    """First-layer filter change of the first seed of each group x init."""
    from transfusion_cli.models.checkpoint import build_model, load_checkpoint
    from transfusion_cli.models.filters import filter_change, model_filters

    firsts: dict[tuple[str, str], SweepRun] = {}
    for run in sorted(runs, key=lambda r: r.seed):
        firsts.setdefault((run.group, run.init), run)
    summary = []
    for (group, init), run in firsts.items():
        before = model_filters(build_model(load_checkpoint(run.init_ckpt)))
        after = model_filters(build_model(load_checkpoint(run.final_ckpt)))
        summary.append({"group": group, "init": init, "seed": run.seed, "cell": run.cell,
                        "module": before.module, "shape": list(before.weights.shape),
                        "change": filter_change(before.weights, after.weights),
                        "init_ckpt": str(run.init_ckpt), "final_ckpt": str(run.final_ckpt)})
    return summary


def _low_data(group: str, table: PairSimilarities) -> list[dict[str, Any]]:
    """The group's blocks with fewer than MIN_POINTS_PER_NEURON data points per neuron (for a
    measure of the CCA family)."""
    from transfusion_cli.similarity.activations import MIN_POINTS_PER_NEURON

    flagged = []
    for block in table.blocks:
        plan = table.cache.plans[block]
        neurons = max(plan.neurons_a, plan.neurons_b)
        if table.spec.needs_more_points_than_neurons and \
                plan.points < MIN_POINTS_PER_NEURON * neurons:
            flagged.append({"group": group, "block": block, "points": plan.points,
                            "neurons": neurons})
    return flagged


def _group_numbers(numbers: dict[str, Any], group: str, members: Sequence[SweepRun],
                   spec: Any, settings: FigureSettings, figures: Sequence[str],
                   probes: dict[Any, tuple[Any, list]]) -> None:
    """Add one group's numbers to ``numbers`` (its activations are freed afterwards)."""
    pairs = run_pairs(members, numbers["transfer"])
    if "layers" not in figures and not pairs:
        return
    table = PairSimilarities(members, spec, settings, probes)
    info(f"figures: {group}: {len(members)} runs, probe {table.probe.info.name} "
         f"{settings.split}, {len(table.probe)} inputs, {spec.name}")
    found: dict[str, Any] = {}
    if "layers" in figures:
        found["to_init"] = _to_init(members, table)
    if "fig2" in figures and pairs:
        found["fig2"] = _fig2(pairs, table)
    if "scatter" in figures:
        found["scatter"] = _scatter(group, pairs, table)
    # Only now, when every number of the group exists, is anything added.
    numbers["groups"][group] = {"arch": members[0].arch, "blocks": table.blocks,
                                "top_blocks": table.blocks[-TOP_BLOCKS:],
                                "probe": table.probe.describe(),
                                "network_passes": len(table.cache)}
    for key, value in found.items():
        if key == "scatter":
            numbers[key] += value
        else:
            numbers[key][group] = value
    numbers["low_data"] += _low_data(group, table)
    info(f"figures: {group}: {len(table.cache)} distinct checkpoints, each run once; their "
         f"activations take {table.cache.nbytes() / 2**20:.0f} MiB")


def representation_numbers(found: SweepRuns, settings: FigureSettings | None = None,
                           figures: Sequence[str] = FIGURES) -> dict[str, Any]:
    """The numbers behind ``figures`` (plain data, see the module docstring): one key per
    figure plus what every number needs beside it (measure, spread, probe, skipped cells,
    low-data blocks, groups that failed and why)."""
    from transfusion_cli.similarity.activations import MIN_POINTS_PER_NEURON
    from transfusion_cli.similarity.cca import reused_bases

    settings = settings or FigureSettings()
    unknown = [f for f in figures if f not in FIGURES]
    if unknown:
        raise ConfigError(f"Unknown figure {unknown[0]!r}; choose one of {', '.join(FIGURES)}.")
    spec = measure_spec(settings.measure)
    if spec.from_moments is None and spec.accumulator is not None:
        raise ConfigError(f"--measure {spec.name} is computed from whole per-input feature maps, "
                          "which the figures do not keep; choose cca (the paper's), svcca, "
                          "pwcca, cka or cka_debiased.")
    if settings.samples < 1 or settings.batch_size < 1:
        raise ConfigError(f"--samples {settings.samples} must be at least 1.")
    runs = found.runs
    numbers: dict[str, Any] = {
        "measure": spec.name, "measure_description": spec.description, "spread": SPREAD,
        "min_points_per_neuron": MIN_POINTS_PER_NEURON,
        "transfer": transfer_init(runs, settings.transfer),
        "sources": [str(s) for s in found.sources], "settings": asdict(settings),
        "skipped": [asdict(s) for s in found.skipped], "groups": {}, "low_data": [],
        "failed": []}
    if "filters" in figures:
        numbers["filters"] = _filters(runs)
    similarity_figures = [f for f in figures if f != "filters"]
    for name in similarity_figures:
        numbers[{"layers": "to_init"}.get(name, name)] = [] if name == "scatter" else {}
    probes: dict[Any, tuple[Any, list]] = {}
    for group in dict.fromkeys(r.group for r in runs) if similarity_figures else ():
        try:
            with reused_bases():  # a checkpoint's eigendecompositions are shared by its pairs
                _group_numbers(numbers, group, [r for r in runs if r.group == group], spec,
                               settings, similarity_figures, probes)
        except (TfxError, np.linalg.LinAlgError) as exc:  # the other groups still count
            numbers["failed"].append({"group": group, "reason": str(exc)})
            warn(f"figures: {group} left out: {exc}")
    for entry in numbers["low_data"]:
        warn(f"{entry['group']} {entry['block']}: {entry['points']} data points for "
             f"{entry['neurons']} neurons, "
             + LOW_DATA_NOTE.format(n=MIN_POINTS_PER_NEURON) + "; use more --samples")
    return numbers
