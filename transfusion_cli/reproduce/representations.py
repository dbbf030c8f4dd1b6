"""The representations part: per-layer similarity to initialisation, the Figure 2 comparison
and the first-layer filters, computed from finished cells' checkpoints.

Per architecture it reads the random-init cells of seeds 0 and 1 and the pretrained cell of
seed 0: similarity of init.pt and best.pt block by block (random and pretrained), then at the
top two blocks pretrained-vs-random and random-vs-random between trained networks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from transfusion_cli.compare.plan import Cell
from transfusion_cli.compare.report import done_path, run_path
from transfusion_cli.console import warn
from transfusion_cli.errors import TfxError

PRETRAINED, RANDOM = "pretrained", "random"
SKIPPED_BLOCKS = ("head", "fc", "classifier")


def _checkpoints(directory: Path, cell: Cell) -> tuple[Path, Path]:
    folder = run_path(directory, cell.id) / "checkpoints"
    return folder / "init.pt", folder / "best.pt"


def layer_similarity(a: Path, b: Path, metric: str, samples: int) -> list[tuple[str, float]]:
    """[(block, similarity)] of two checkpoints of one architecture (classifier left out)."""
    from transfusion_cli.similarity.compare_checkpoints import compare_checkpoints

    run = compare_checkpoints(a, b, metrics=metric, samples=samples, split="val")
    return [(r.layer_a, float(r.metrics[metric].value)) for r in run.comparisons[0].results
            if r.layer_a not in SKIPPED_BLOCKS]


def _done(directory: Path, cells: list[Cell], arch: str, label: str) -> list[Cell]:
    return sorted((c for c in cells if c.arch == arch and c.label == label
                   and done_path(directory, c.id).is_file()), key=lambda c: c.seed)


def representation_evidence(directory: Path, cells: list[Cell], archs: list[str],
                            metric: str = "svcca", samples: int = 256) -> dict[str, Any]:
    """``{"metric", "to_init": {arch: {init: [(block, value)]}}, "fig2": {arch: {...}},
    "filters": {arch: {init: (init weights, trained weights)}}}``."""
    from transfusion_cli.models.checkpoint import build_model, load_checkpoint
    from transfusion_cli.models.filters import model_filters

    to_init: dict[str, dict[str, list]] = {}
    fig2: dict[str, dict[str, float]] = {}
    filters: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {}
    for arch in archs:
        randoms = _done(directory, cells, arch, RANDOM)
        pretrained = _done(directory, cells, arch, PRETRAINED)
        try:
            for label, found in ((RANDOM, randoms), (PRETRAINED, pretrained)):
                if not found:
                    continue
                init_pt, best_pt = _checkpoints(directory, found[0])
                to_init.setdefault(arch, {})[label] = layer_similarity(init_pt, best_pt, metric,
                                                                       samples)
                weights = [model_filters(build_model(load_checkpoint(p))).weights
                           for p in (init_pt, best_pt)]
                filters.setdefault(arch, {})[label] = (weights[0], weights[1])
            if randoms and pretrained and len(randoms) >= 2:
                r0, r1, p0 = (_checkpoints(directory, c)[1] for c in (randoms[0], randoms[1],
                                                                       pretrained[0]))
                across = layer_similarity(p0, r0, metric, samples)[-2:]
                within = layer_similarity(r1, r0, metric, samples)[-2:]
                fig2[arch] = {"pretrained_vs_random": float(np.mean([v for _, v in across])),
                              "random_vs_random": float(np.mean([v for _, v in within])),
                              "blocks": [b for b, _ in across]}
        except (TfxError, ValueError) as exc:  # one architecture failing leaves the others
            # (ValueError covers numpy's LinAlgError from a degenerate activation matrix)
            warn(f"representations of {arch}: {exc}")
    return {"metric": metric, "to_init": to_init, "fig2": fig2, "filters": filters}


def save_figures(reps: dict[str, Any], folder: Path) -> dict[str, Path]:
    """similarity_to_init.png, figure2.png, init_vs_trained.png and filters_<arch>.png."""
    from matplotlib.figure import Figure

    from transfusion_cli.io import atomic_write
    from transfusion_cli.models.filters import filter_grid

    folder.mkdir(parents=True, exist_ok=True)
    saved: dict[str, Path] = {}

    def save(fig, name: str) -> None:
        fig.tight_layout()
        saved[name] = atomic_write(folder / f"{name}.png",
                                   lambda tmp: fig.savefig(tmp, format="png", dpi=110))

    metric = reps["metric"]
    if reps["to_init"]:
        fig = Figure(figsize=(6.5, 4))
        ax = fig.subplots()
        for arch, arms in reps["to_init"].items():
            for label, values in arms.items():
                ax.plot([b for b, _ in values], [v for _, v in values], marker="o",
                        linestyle="-" if label == RANDOM else "--", label=f"{arch}, {label}")
        ax.set_ylabel(f"{metric} similarity to init")
        ax.set_ylim(0, 1.05)
        ax.legend(fontsize=7)
        ax.set_title("Per-layer similarity to initialisation")
        save(fig, "similarity_to_init")
        fig = Figure(figsize=(4.5, 4.5))
        ax = fig.subplots()
        for arch, arms in reps["to_init"].items():
            if RANDOM in arms and PRETRAINED in arms:
                ax.scatter([v for _, v in arms[RANDOM]], [v for _, v in arms[PRETRAINED]],
                           label=arch)
        ax.plot([0, 1], [0, 1], color="grey", linewidth=0.8)
        ax.set_xlabel("similarity to init, random init")
        ax.set_ylabel("similarity to init, pretrained init")
        ax.legend(fontsize=7)
        save(fig, "init_vs_trained")
    if reps["fig2"]:
        fig = Figure(figsize=(6, 3.5))
        ax = fig.subplots()
        archs = list(reps["fig2"])
        x = np.arange(len(archs))
        ax.bar(x - 0.2, [reps["fig2"][a]["pretrained_vs_random"] for a in archs], 0.4,
               label="pretrained vs random")
        ax.bar(x + 0.2, [reps["fig2"][a]["random_vs_random"] for a in archs], 0.4,
               label="random vs random")
        ax.set_xticks(x, archs)
        ax.set_ylabel(f"{metric}, top two blocks")
        ax.legend(fontsize=8)
        ax.set_title("Figure 2: representations at the top")
        save(fig, "figure2")
    for arch, arms in reps["filters"].items():
        panels = [(f"{label} {stage}", filter_grid(w)) for label, pair in arms.items()
                  for stage, w in zip(("init", "trained"), pair, strict=True)]
        fig = Figure(figsize=(2.6 * len(panels), 2.8))
        for ax, (title, image) in zip(fig.subplots(1, len(panels), squeeze=False)[0], panels,
                                      strict=True):
            ax.imshow(image, cmap="gray" if image.ndim == 2 else None, vmin=0, vmax=1,
                      interpolation="nearest")
            ax.set_title(title, fontsize=8)
            ax.axis("off")
        save(fig, f"filters_{arch}")
    return saved
