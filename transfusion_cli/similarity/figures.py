"""The paper's representation figures, computed from a `tfx compare-inits` sweep folder.

Each figure reads the sweep's finished cells (``DIR/plan.json``, ``DIR/runs/<cell>/checkpoints``
``init.pt`` and ``best.pt``) and compares checkpoints with ``compare_checkpoints`` (the same
streamed similarity `tfx similarity` computes, on a probe set of the sweep's validation split):

- ``fig2``: Figure 2. Per architecture, the similarity of the top two blocks (before the head),
  averaged, between a transfer-init run and a random-init run after training, and between two
  random-init runs of different seeds; every such pair of the sweep, mean and spread.
- ``layers``: per-layer similarity of each trained run to its own initialisation, one line per
  init (mean over seeds) with a min-max band, one panel per architecture.
- ``scatter``: for every pair of runs above (transfer vs random, random vs random) and every
  block, the two runs' similarity at initialisation (init.pt vs init.pt) against after training
  (best.pt vs best.pt).
- ``filters``: the first convolution's filters at initialisation and after training, for each
  architecture x init (first seed).

Every figure is written with a JSON file of the numbers it shows.
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from transfusion_cli.errors import ConfigError
from transfusion_cli.io import atomic_write, write_json

RANDOM = "random"
FIGURES = ("fig2", "layers", "scatter", "filters")


@dataclass(frozen=True)
class SweepRun:
    """One finished cell of a sweep with the two checkpoints the figures compare."""

    arch: str
    init: str  # the init as the user wrote it (the report's label)
    seed: int
    init_ckpt: Path
    final_ckpt: Path


@dataclass
class FigureSettings:
    """How the similarities are computed."""

    metric: str = "cca"
    samples: int = 500
    split: str = "val"
    seed: int = 0
    device: str = "auto"
    transfer: str | None = None  # the init counted as "transfer"; None: chosen from the sweep


def sweep_runs(directory: str | os.PathLike) -> list[SweepRun]:
    """Finished cells of the sweep in ``directory`` that have init.pt and best.pt (or last.pt)."""
    from transfusion_cli.compare.plan import load_plan
    from transfusion_cli.compare.report import run_path

    plan = load_plan(directory)
    runs = []
    for cell in plan.cells:
        folder = run_path(Path(directory), cell.id) / "checkpoints"
        final = next((folder / n for n in ("best.pt", "last.pt") if (folder / n).is_file()), None)
        if final is not None and (folder / "init.pt").is_file():
            runs.append(SweepRun(cell.arch, cell.label, cell.seed, folder / "init.pt", final))
    if not runs:
        raise ConfigError(f"{directory} has no finished cells with checkpoints; run the sweep "
                          "first (`tfx compare-inits ... --out DIR`).")
    return runs


def transfer_init(runs: Sequence[SweepRun], requested: str | None) -> str:
    """The init that plays "transfer": ``requested``, else the sweep's only init whose spec
    copies every pretrained feature (``InitSpec.full_transfer``, e.g. ``imagenet``)."""
    from transfusion_cli.registry import get

    labels = list(dict.fromkeys(r.init for r in runs))
    if requested is not None:
        if requested not in labels:
            raise ConfigError(f"--transfer {requested!r} is not an init of this sweep; its "
                              f"inits are {', '.join(labels)}.")
        return requested
    pretrained = [label for label in labels
                  if get("inits", label.partition(":")[0]).full_transfer]
    if len(pretrained) == 1:
        return pretrained[0]
    raise ConfigError(f"Cannot tell which init is the transfer init among {', '.join(labels)}; "
                      "name it with --transfer INIT.")


def body_blocks(arch: str) -> list[str]:
    """The architecture's blocks below the classification head (the head's few logits are
    not a representation the paper compares)."""
    from transfusion_cli.models.blocks import block_names
    from transfusion_cli.registry import get

    model = get("architectures", arch).build(num_classes=2, in_chans=3)
    return [name for name in block_names(model) if name != "head"]


def top_blocks(arch: str, count: int = 2) -> list[str]:
    """The ``count`` highest blocks below the classification head."""
    return body_blocks(arch)[-count:]


def short_label(init: str) -> str:
    """An init for legends: a path argument is shortened to its run folder's name
    (``checkpoint:runs/pre/checkpoints/best.pt`` -> ``checkpoint:pre``)."""
    name, sep, argument = init.partition(":")
    if sep and ("/" in argument or argument.endswith(".pt")):
        path = Path(argument)
        folder = path.parent.parent if path.parent.name == "checkpoints" else path.parent
        return f"{name}:{folder.name or path.stem}"
    return init


def similarity(a: Path, b: Path, settings: FigureSettings,
               layers: Sequence[str] | None = None) -> dict[str, float]:
    """Block name -> similarity of checkpoints ``a`` and ``b`` (matched blocks)."""
    from transfusion_cli.similarity.compare_checkpoints import compare_checkpoints

    run = compare_checkpoints(a, b, metrics=[settings.metric], layers=layers,
                              samples=settings.samples, split=settings.split,
                              seed=settings.seed, device=settings.device)
    return {r.layer_a: float(r.metrics[settings.metric].value)
            for r in run.comparisons[0].results}


def run_pairs(runs: Sequence[SweepRun], transfer: str) -> list[tuple[str, SweepRun, SweepRun]]:
    """(kind, a, b): every transfer run with every random run, and every two random runs of
    different seeds, of the same architecture."""
    pairs = []
    for arch in dict.fromkeys(r.arch for r in runs):
        randoms = [r for r in runs if r.arch == arch and r.init == RANDOM]
        transfers = [r for r in runs if r.arch == arch and r.init == transfer]
        pairs += [("transfer vs random", t, r) for t in transfers for r in randoms]
        pairs += [("random vs random", a, b) for a, b in itertools.combinations(randoms, 2)
                  if a.seed != b.seed]
    return pairs


def fig2_data(runs: Sequence[SweepRun], settings: FigureSettings) -> dict[str, Any]:
    """Per architecture and pair kind, the top-two-block similarity of every pair."""
    transfer = transfer_init(runs, settings.transfer)
    result: dict[str, Any] = {"metric": settings.metric, "transfer": transfer, "archs": {}}
    for kind, a, b in run_pairs(runs, transfer):
        layers = top_blocks(a.arch)
        values = similarity(a.final_ckpt, b.final_ckpt, settings, layers)
        entry = result["archs"].setdefault(a.arch, {"layers": layers, "transfer vs random": [],
                                                    "random vs random": []})
        entry[kind].append({"a": f"{a.init} s{a.seed}", "b": f"{b.init} s{b.seed}",
                            "value": float(np.mean([values[n] for n in layers]))})
    if not any(e["random vs random"] and e["transfer vs random"]
               for e in result["archs"].values()):
        raise ConfigError("Figure 2 needs, for one architecture at least, random-init runs of "
                          f"two seeds and a '{transfer}' run; run the sweep with --inits "
                          f"random,{transfer} --seeds 2 or more.")
    return result


def layers_data(runs: Sequence[SweepRun], settings: FigureSettings) -> dict[str, Any]:
    """Per architecture and init, each seed's per-block similarity to its initialisation."""
    result: dict[str, Any] = {"metric": settings.metric, "archs": {}}
    for run in runs:
        values = similarity(run.init_ckpt, run.final_ckpt, settings, body_blocks(run.arch))
        entry = result["archs"].setdefault(run.arch, {"layers": list(values), "inits": {}})
        entry["inits"].setdefault(run.init, []).append(
            {"seed": run.seed, "values": [values[n] for n in entry["layers"]]})
    return result


def scatter_data(runs: Sequence[SweepRun], settings: FigureSettings) -> dict[str, Any]:
    """For every pair of runs and block: similarity at initialisation and after training."""
    transfer = transfer_init(runs, settings.transfer)
    points = []
    for kind, a, b in run_pairs(runs, transfer):
        layers = body_blocks(a.arch)
        before = similarity(a.init_ckpt, b.init_ckpt, settings, layers)
        after = similarity(a.final_ckpt, b.final_ckpt, settings, layers)
        points += [{"arch": a.arch, "kind": kind, "layer": layer, "a": f"{a.init} s{a.seed}",
                    "b": f"{b.init} s{b.seed}", "at_init": before[layer],
                    "trained": after[layer]} for layer in before]
    if not points:
        raise ConfigError(f"The scatter needs pairs of runs: random-init runs of two seeds, or "
                          f"a random and a '{transfer}' run of one architecture.")
    return {"metric": settings.metric, "transfer": transfer, "points": points}


def _save(fig, path: Path) -> Path:
    from transfusion_cli.similarity.plots import figure_format

    image_format = figure_format(path, "--out")
    return atomic_write(path, lambda tmp: fig.savefig(tmp, format=image_format, dpi=120,
                                                      bbox_inches="tight"))


KIND_COLOURS = {"transfer vs random": "tab:orange", "random vs random": "tab:blue"}


def plot_fig2(data: dict[str, Any], path: Path) -> Path:
    """Grouped bars: per architecture, transfer-vs-random and random-vs-random (mean, each
    pair as a dot)."""
    from matplotlib.figure import Figure

    archs = list(data["archs"])
    fig = Figure(figsize=(1.8 + 1.6 * len(archs), 4.0))
    ax = fig.subplots()
    width = 0.38
    for offset, kind in ((-width / 2, "transfer vs random"), (width / 2, "random vs random")):
        for index, arch in enumerate(archs):
            values = [p["value"] for p in data["archs"][arch][kind]]
            if not values:
                continue
            x = index + offset
            ax.bar(x, float(np.mean(values)), width, color=KIND_COLOURS[kind], alpha=0.75,
                   label=kind if index == 0 or kind not in ax.get_legend_handles_labels()[1]
                   else None)
            ax.scatter([x] * len(values), values, color="black", s=12, zorder=3)
    ax.set_xticks(range(len(archs)), archs)
    ax.set_ylabel(f"{data['metric']} similarity, top two blocks (mean)")
    ax.set_title(f"Figure 2: trained networks\n(transfer = {short_label(data['transfer'])})",
                 fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    ax.set_ylim(0, 1)
    return _save(fig, path)


def plot_layers(data: dict[str, Any], path: Path) -> Path:
    """One panel per architecture: similarity to init per block, mean line, min-max band."""
    from matplotlib.figure import Figure

    archs = list(data["archs"])
    fig = Figure(figsize=(4.6 * len(archs) + 0.6, 3.9))
    axes = fig.subplots(1, len(archs), squeeze=False)[0]
    for ax, arch in zip(axes, archs, strict=True):
        entry = data["archs"][arch]
        x = np.arange(len(entry["layers"]))
        for init, seeds in entry["inits"].items():
            values = np.array([s["values"] for s in seeds], dtype=float)
            mean = np.nanmean(values, axis=0)
            line = ax.plot(x, mean, marker="o",
                           label=f"{short_label(init)} ({len(seeds)} seeds)")[0]
            ax.fill_between(x, np.nanmin(values, axis=0), np.nanmax(values, axis=0),
                            color=line.get_color(), alpha=0.2)
        ax.set_xticks(x, entry["layers"], rotation=30)
        ax.set_ylim(0, 1.02)
        ax.set_title(arch, fontsize=10)
        ax.set_ylabel(f"{data['metric']} similarity to initialisation")
        ax.legend(fontsize=7)
    fig.suptitle("Similarity of each block to its initialisation (mean, min-max over seeds)",
                 fontsize=10)
    return _save(fig, path)


def plot_scatter(data: dict[str, Any], path: Path) -> Path:
    """Similarity at init (x) vs after training (y), colour by pair kind, marker by arch."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.2, 4.8))
    ax = fig.subplots()
    markers = dict(zip(dict.fromkeys(p["arch"] for p in data["points"]), "osD^vP*X",
                       strict=False))
    for (arch, kind), group in itertools.groupby(
            sorted(data["points"], key=lambda p: (p["arch"], p["kind"])),
            key=lambda p: (p["arch"], p["kind"])):
        group = list(group)
        ax.scatter([p["at_init"] for p in group], [p["trained"] for p in group],
                   color=KIND_COLOURS[kind], marker=markers[arch], alpha=0.8,
                   label=f"{arch}: {kind}")
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel(f"{data['metric']} similarity at initialisation")
    ax.set_ylabel(f"{data['metric']} similarity after training")
    ax.set_title("Pairs of runs, one point per block", fontsize=10)
    ax.legend(fontsize=7)
    return _save(fig, path)


def plot_filters(runs: Sequence[SweepRun], path: Path) -> dict[str, Any]:
    """Rows of (initial, trained) first-layer filters, one row per architecture x init."""
    from matplotlib.figure import Figure

    from transfusion_cli.models.checkpoint import build_model, load_checkpoint
    from transfusion_cli.models.filters import filter_change, filter_grid, model_filters

    firsts: dict[tuple[str, str], SweepRun] = {}
    for run in sorted(runs, key=lambda r: r.seed):
        firsts.setdefault((run.arch, run.init), run)
    fig = Figure(figsize=(7.0, 3.4 * len(firsts)))
    axes = fig.subplots(len(firsts), 2, squeeze=False)
    summary = []
    for row, ((arch, init), run) in enumerate(firsts.items()):
        before = model_filters(build_model(load_checkpoint(run.init_ckpt)))
        after = model_filters(build_model(load_checkpoint(run.final_ckpt)))
        change = filter_change(before.weights, after.weights)
        for col, (when, found) in enumerate((("initialisation", before), ("trained", after))):
            ax = axes[row][col]
            image = filter_grid(found.weights)
            ax.imshow(image if image.shape[-1] == 3 else image[..., 0],
                      cmap=None if image.shape[-1] == 3 else "gray", vmin=0, vmax=1,
                      interpolation="nearest")
            ax.set_title(f"{arch} / {short_label(init)}\nseed {run.seed}, {when}", fontsize=8)
            ax.axis("off")
        summary.append({"arch": arch, "init": init, "seed": run.seed, "module": before.module,
                        "shape": list(before.weights.shape), "change": change})
    fig.suptitle("First-layer filters before and after training", fontsize=10)
    _save(fig, path)
    return {"filters": summary}


def make_figure(name: str, directory: str | os.PathLike, out: str | os.PathLike,
                settings: FigureSettings | None = None) -> tuple[Path, Path]:
    """Compute figure ``name`` from the sweep in ``directory``; writes OUT/<name>.png and
    OUT/<name>.json and returns their paths."""
    if name not in FIGURES:
        raise ConfigError(f"Unknown figure {name!r}; choose one of {', '.join(FIGURES)}.")
    settings = settings or FigureSettings()
    runs = sweep_runs(directory)
    out = Path(out)
    image, numbers = out / f"{name}.png", out / f"{name}.json"
    if name == "filters":
        data = plot_filters(runs, image)
    else:
        compute = {"fig2": fig2_data, "layers": layers_data, "scatter": scatter_data}[name]
        plot = {"fig2": plot_fig2, "layers": plot_layers, "scatter": plot_scatter}[name]
        data = compute(runs, settings)
        plot(data, image)
    write_json(numbers, {"figure": name, "sweep": str(Path(directory).resolve()),
                         "settings": vars(settings), **_finite(data)})
    return image, numbers


def _finite(data: Any) -> Any:
    """NaN -> None, recursively (JSON has no NaN)."""
    if isinstance(data, float):
        return None if math.isnan(data) else data
    if isinstance(data, dict):
        return {k: _finite(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [_finite(v) for v in data]
    return data
