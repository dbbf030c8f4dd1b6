"""curves.png: validation metric against training steps, one colour per init, the mean over
seeds as a line with the min-max band, one panel per architecture (a row per train size)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from transfusion_cli.compare.report import CellResult, Results
from transfusion_cli.io import atomic_write


def seed_band(curves: list[list[tuple[int, float]]]) -> tuple[np.ndarray, ...]:
    """(steps, mean, min, max) over seeds on the union of evaluated steps; each seed is
    linearly interpolated inside its own range, and a step counts only seeds that reach it."""
    steps = np.array(sorted({s for curve in curves for s, _ in curve}), dtype=float)
    stacked = np.full((len(curves), len(steps)), np.nan)
    for row, curve in enumerate(curves):
        xs = np.array([s for s, v in curve if not math.isnan(v)], dtype=float)
        ys = np.array([v for _, v in curve if not math.isnan(v)], dtype=float)
        if len(xs) == 0:
            continue
        inside = (steps >= xs[0]) & (steps <= xs[-1])
        stacked[row, inside] = np.interp(steps[inside], xs, ys)
    counted = ~np.all(np.isnan(stacked), axis=0)
    stacked = stacked[:, counted]
    return (steps[counted], np.nanmean(stacked, axis=0), np.nanmin(stacked, axis=0),
            np.nanmax(stacked, axis=0))


def plot_curves(results: Results, path: str | Path) -> bool:
    """Draw the curves of the finished cells; False (nothing written) when none finished."""
    if not results.cells:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    archs = list(dict.fromkeys(g.arch for g in results.groups))
    sizes = list(dict.fromkeys(g.train_size for g in results.groups))
    inits = list(dict.fromkeys(g.init for g in results.groups))
    colours = {init: plt.get_cmap("tab10")(i % 10) for i, init in enumerate(inits)}
    figure, axes = plt.subplots(len(sizes), len(archs), squeeze=False, sharey=True,
                                figsize=(5.0 * len(archs), 3.6 * len(sizes)))
    for row, size in enumerate(sizes):
        for col, arch in enumerate(archs):
            axis = axes[row][col]
            for init in inits:
                runs: list[CellResult] = [c for c in results.cells if c.arch == arch
                                          and c.init == init and c.train_size == size]
                if not runs:
                    continue
                steps, mean, low, high = seed_band([r.curve for r in runs])
                axis.plot(steps, mean, color=colours[init], label=f"{init} (n={len(runs)})",
                          linewidth=1.8, marker="o" if len(steps) < 15 else None, markersize=3)
                axis.fill_between(steps, low, high, color=colours[init], alpha=0.18,
                                  linewidth=0)
            if results.target_metric is not None:
                axis.axhline(results.target_metric, color="0.4", linestyle="--", linewidth=1,
                             label=f"target {results.target_metric:g}")
            size_text = "all training images" if size is None else f"{size} training images"
            axis.set_title(f"{arch}, {size_text}", fontsize=10)
            axis.set_xlabel("training step")
            if col == 0:
                axis.set_ylabel(f"validation {results.metric}")
            axis.grid(alpha=0.3)
            axis.legend(fontsize=8, loc="lower right")
    figure.suptitle(f"{results.data}: mean over seeds, band = min-max", fontsize=11)
    figure.tight_layout()
    atomic_write(path, lambda tmp: figure.savefig(tmp, dpi=120, format="png"))
    plt.close(figure)
    return True
