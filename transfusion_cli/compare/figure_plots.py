"""Drawing and writing the representation figures (PNG + the JSON of the numbers shown), for
`tfx figures` and `tfx reproduce` alike; the numbers come from ``compare.figures``."""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from transfusion_cli.compare.figures import (
    FIGURES,
    LOW_DATA_NOTE,
    PAIR_KINDS,
    RANDOM_VS_RANDOM,
    TRANSFER_VS_RANDOM,
    FigureSettings,
    finished_runs,
    representation_numbers,
    short_label,
)
from transfusion_cli.io import atomic_write, write_json
from transfusion_cli.outputs import (
    PNG_SOFTWARE,
    OutputFile,
    has_json_format,
    png_made_by_tfx,
    refuse_replacing_foreign_file,
)

KIND_COLOURS = {TRANSFER_VS_RANDOM: "tab:orange", RANDOM_VS_RANDOM: "tab:blue"}
# Which part of the numbers each figure shows.
FIGURE_KEYS = {"fig2": "fig2", "layers": "to_init", "scatter": "scatter", "filters": "filters"}
HEADER_KEYS = ("measure", "measure_description", "spread", "min_points_per_neuron", "transfer",
               "sources", "settings", "skipped", "groups", "low_data", "failed")


FIGURE_FORMAT = "tfx-figure/1"  # the "format" of OUT/<name>.json


def _save(fig, path: Path) -> Path:
    return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120,
                                                      bbox_inches="tight",
                                                      metadata={"Software": PNG_SOFTWARE}))


def _figure_json_by_tfx(path: Path) -> bool:
    return has_json_format(path, (FIGURE_FORMAT,), legacy_keys=("figure", "measure"))


def figure_files(out: str | os.PathLike, names: Sequence[str]) -> tuple[OutputFile, ...]:
    """OUT/<name>.png and .json for ``names``, as the guard checks them: never over a file tfx
    did not write."""
    return tuple(file for name in names for file in (
        OutputFile(Path(out) / f"{name}.png", png_made_by_tfx),
        OutputFile(Path(out) / f"{name}.json", _figure_json_by_tfx)))


def _footnote(fig, numbers: dict[str, Any], marked: bool) -> None:
    text = f"measure: {numbers['measure']} ({numbers['measure_description']})"
    if marked:
        text += "\n* " + LOW_DATA_NOTE.format(n=numbers["min_points_per_neuron"])
    fig.text(0.01, -0.02, text, fontsize=7, ha="left", va="top", wrap=True)


def plot_fig2(numbers: dict[str, Any], path: Path) -> Path:
    """Grouped bars per group: transfer vs random and random vs random, mean ± std over pairs
    (each pair a dot); groups with too few data points per neuron are starred."""
    from matplotlib.figure import Figure

    groups = list(numbers["fig2"])
    fig = Figure(figsize=(1.8 + 1.6 * len(groups), 4.0))
    ax = fig.subplots()
    width, labelled, starred = 0.38, set(), False
    for offset, kind in ((-width / 2, TRANSFER_VS_RANDOM), (width / 2, RANDOM_VS_RANDOM)):
        for index, group in enumerate(groups):
            entry = numbers["fig2"][group].get(kind)
            if not entry or entry["mean"] is None:
                continue
            x = index + offset
            ax.bar(x, entry["mean"], width, yerr=entry["std"] or 0.0, capsize=3,
                   color=KIND_COLOURS[kind], alpha=0.75,
                   label=None if kind in labelled else kind)
            labelled.add(kind)
            values = [p["value"] for p in entry["pairs"] if p["value"] is not None]
            ax.scatter([x] * len(values), values, color="black", s=12, zorder=3)
            starred |= entry["low_data"]
    ticks = [g + ("*" if any((numbers["fig2"][g].get(k) or {}).get("low_data")
                             for k in PAIR_KINDS) else "") for g in groups]
    ax.set_xticks(range(len(groups)), ticks)
    ax.set_ylabel(f"{numbers['measure']} similarity, top two blocks")
    transfer = short_label(numbers["transfer"]) if numbers["transfer"] else "none"
    ax.set_title(f"Figure 2: trained networks (transfer = {transfer})\n"
                 "bars: mean ± std over pairs; dots: pairs", fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    ax.set_ylim(0, 1)
    _footnote(fig, numbers, starred)
    return _save(fig, path)


def plot_layers(numbers: dict[str, Any], path: Path) -> Path:
    """One panel per group: similarity to init per block, mean line and ± std band over seeds;
    blocks with too few data points per neuron are starred."""
    from matplotlib.figure import Figure

    groups = list(numbers["to_init"])
    fig = Figure(figsize=(4.6 * len(groups) + 0.6, 3.9))
    axes = fig.subplots(1, len(groups), squeeze=False)[0]
    starred = False
    for ax, group in zip(axes, groups, strict=True):
        blocks = numbers["groups"][group]["blocks"]
        x = np.arange(len(blocks))
        low = set()
        for init, arm in numbers["to_init"][group].items():
            mean = np.array([np.nan if b["mean"] is None else b["mean"] for b in arm["blocks"]])
            std = np.array([0.0 if b["std"] is None else b["std"] for b in arm["blocks"]])
            line = ax.plot(x, mean, marker="o",
                           label=f"{short_label(init)} ({len(arm['seeds'])} seeds)")[0]
            ax.fill_between(x, mean - std, mean + std, color=line.get_color(), alpha=0.2)
            low |= {b["block"] for b in arm["blocks"] if b["low_data"]}
        starred |= bool(low)
        ax.set_xticks(x, [b + ("*" if b in low else "") for b in blocks], rotation=30)
        ax.set_ylim(0, 1.02)
        ax.set_title(group, fontsize=10)
        ax.set_ylabel(f"{numbers['measure']} similarity to initialisation")
        ax.legend(fontsize=7)
    fig.suptitle("Similarity of each block to its initialisation (mean ± std over seeds)",
                 fontsize=10)
    _footnote(fig, numbers, starred)
    return _save(fig, path)


def plot_scatter(numbers: dict[str, Any], path: Path) -> Path:
    """Similarity at init (x) vs after training (y), colour by pair kind, marker by group."""
    from matplotlib.figure import Figure

    points = [p for p in numbers["scatter"] if p["at_init"] is not None
              and p["trained"] is not None]
    fig = Figure(figsize=(5.2, 4.8))
    ax = fig.subplots()
    markers = dict(zip(dict.fromkeys(p["group"] for p in points), "osD^vP*X", strict=False))
    for (group, kind), members in itertools.groupby(
            sorted(points, key=lambda p: (p["group"], p["kind"])),
            key=lambda p: (p["group"], p["kind"])):
        members = list(members)
        ax.scatter([p["at_init"] for p in members], [p["trained"] for p in members],
                   color=KIND_COLOURS[kind], marker=markers[group], alpha=0.8,
                   label=f"{group}: {kind}")
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel(f"{numbers['measure']} similarity at initialisation")
    ax.set_ylabel(f"{numbers['measure']} similarity after training")
    ax.set_title("Pairs of runs, one point per block", fontsize=10)
    ax.legend(fontsize=7)
    _footnote(fig, numbers, bool(numbers["low_data"]))
    return _save(fig, path)


def plot_filters(numbers: dict[str, Any], path: Path) -> Path:
    """Rows of (initial, trained) first-layer filters, one row per group x init."""
    from matplotlib.figure import Figure

    from transfusion_cli.models.checkpoint import build_model, load_checkpoint
    from transfusion_cli.models.filters import filter_grid, model_filters

    rows = numbers["filters"]
    fig = Figure(figsize=(7.0, 3.4 * len(rows)))
    axes = fig.subplots(len(rows), 2, squeeze=False)
    for row, entry in enumerate(rows):
        for col, (when, key) in enumerate((("initialisation", "init_ckpt"),
                                           ("trained", "final_ckpt"))):
            weights = model_filters(build_model(load_checkpoint(entry[key]))).weights
            image = filter_grid(weights)
            ax = axes[row][col]
            ax.imshow(image if image.shape[-1] == 3 else image[..., 0],
                      cmap=None if image.shape[-1] == 3 else "gray", vmin=0, vmax=1,
                      interpolation="nearest")
            ax.set_title(f"{entry['group']} / {short_label(entry['init'])}\n"
                         f"seed {entry['seed']}, {when}", fontsize=8)
            ax.axis("off")
    fig.suptitle("First-layer filters before and after training", fontsize=10)
    return _save(fig, path)


PLOTS = {"fig2": plot_fig2, "layers": plot_layers, "scatter": plot_scatter,
         "filters": plot_filters}


def drawable(name: str, numbers: dict[str, Any]) -> str | None:
    """Why figure ``name`` cannot be drawn from ``numbers``; None when it can."""
    if name == "fig2" and not any(
            entry.get(TRANSFER_VS_RANDOM) and entry.get(RANDOM_VS_RANDOM)
            for entry in numbers.get("fig2", {}).values()):
        transfer = numbers["transfer"] or "a transfer init (imagenet or checkpoint:PATH)"
        return ("Figure 2 needs, for one architecture at least, finished random-init runs of "
                f"two seeds and a '{transfer}' run; run the sweep with --inits "
                "random,imagenet --seeds 2 or more.")
    if name == "scatter" and not numbers.get("scatter"):
        return ("The scatter needs pairs of finished runs: random-init runs of two seeds, or a "
                "random and a transfer run of one architecture.")
    if name == "layers" and not numbers.get("to_init"):
        return "No finished runs to compare with their initialisation."
    if name == "filters" and not numbers.get("filters"):
        return "No finished runs whose filters could be shown."
    return None


def write_figures(numbers: dict[str, Any], out: str | os.PathLike,
                  names: Sequence[str] = FIGURES) -> dict[str, tuple[Path, Path]]:
    """OUT/<name>.png and OUT/<name>.json (the numbers it shows, with the measure, spread,
    probe and skipped cells) for each of ``names`` that the numbers can draw."""
    out = Path(out)
    for file in figure_files(out, names):  # checked again at write time: never replaced
        refuse_replacing_foreign_file("--out", file)
    out.mkdir(parents=True, exist_ok=True)
    header = {key: numbers[key] for key in HEADER_KEYS if key in numbers}
    written = {}
    for name in names:
        if drawable(name, numbers) is not None:
            continue
        image = PLOTS[name](numbers, out / f"{name}.png")
        key = FIGURE_KEYS[name]
        data = write_json(out / f"{name}.json",
                          _finite({"format": FIGURE_FORMAT, "figure": name, **header,
                                   key: numbers[key]}))
        written[name] = (image, data)
    return written


def make_figures(names: Sequence[str], source: str | os.PathLike, out: str | os.PathLike,
                 settings: FigureSettings | None = None) -> tuple[dict[str, tuple[Path, Path]],
                                                                  dict[str, Any]]:
    """Compute ``names`` from the finished cells of the sweep or study folder ``source`` and
    write them to ``out``; returns ({name: (png, json)}, the numbers). A figure the cells
    cannot make is a ConfigError naming what is missing."""
    from transfusion_cli.errors import ConfigError

    found = finished_runs(source)
    numbers = representation_numbers(found, settings, names)
    for name in names:
        reason = drawable(name, numbers)
        if reason is not None:
            failed = "; ".join(f"{f['group']}: {f['reason']}" for f in numbers["failed"][:2])
            raise ConfigError(f"{reason}" + (f" (left out: {failed})" if failed else ""))
    return write_figures(numbers, out, names), numbers


def _finite(data: Any) -> Any:
    """NaN -> None, recursively (JSON has no NaN)."""
    if isinstance(data, float):
        return None if math.isnan(data) else data
    if isinstance(data, dict):
        return {k: _finite(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [_finite(v) for v in data]
    return data
