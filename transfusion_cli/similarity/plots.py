"""PNG figures: similarity over layers (several runs overlaid) and the cross-layer heatmap."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from transfusion_cli.errors import ConfigError
from transfusion_cli.io import atomic_write


@dataclass
class Curve:
    """One comparison drawn as a line over its layers."""

    label: str
    layers: list[str]
    values: dict[str, list[float]]  # metric -> one value per layer


# Figure formats by file suffix (matplotlib's Agg, PDF and SVG backends; JPEG through Pillow).
FIGURE_FORMATS = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".pdf": "pdf", ".svg": "svg",
                  ".tif": "tiff", ".tiff": "tiff", ".webp": "webp"}


def figure_format(path: str | os.PathLike, flag: str = "--plot") -> str:
    """The format ``path``'s suffix names; any other suffix is a ConfigError (the file would
    otherwise hold PNG bytes under a .jpg name)."""
    suffix = Path(path).suffix.lower()
    if Path(path).is_dir():
        raise ConfigError(f"{flag} {path} is a folder; give a file name such as "
                          f"{Path(path) / 'figure.png'}.")
    if suffix not in FIGURE_FORMATS:
        raise ConfigError(f"{flag} {path}: cannot tell the image format from the suffix "
                          f"{suffix or '(none)'}; end the name in one of "
                          f"{', '.join(FIGURE_FORMATS)}.")
    return FIGURE_FORMATS[suffix]


def _save(fig, path: str | os.PathLike) -> Path:
    image_format = figure_format(path)
    return atomic_write(path, lambda tmp: fig.savefig(tmp, format=image_format, dpi=120,
                                                      bbox_inches="tight"))


def save_layer_plot(curves: Sequence[Curve], metrics: Sequence[str], path: str | os.PathLike,
                    title: str = "Similarity to initialisation") -> Path:
    """One panel per metric, one line per comparison, layers on the x axis.

    Curves with the same layer names share a categorical axis; otherwise x is the relative
    depth (0 = first compared layer, 1 = last) and every point is labelled with its layer.
    """
    from matplotlib.figure import Figure

    same_layers = all(c.layers == curves[0].layers for c in curves)
    fig = Figure(figsize=(4.2 * len(metrics) + 1, 3.8))
    axes = fig.subplots(1, len(metrics), squeeze=False)[0]
    for ax, metric in zip(axes, metrics, strict=True):
        for curve in curves:
            count = len(curve.layers)
            xs = (np.arange(count) if same_layers
                  else np.linspace(0.0, 1.0, count) if count > 1 else np.zeros(1))
            ax.plot(xs, curve.values[metric], marker="o", label=curve.label)
            if not same_layers:
                for x, y, name in zip(xs, curve.values[metric], curve.layers, strict=True):
                    if not math.isnan(y):
                        ax.annotate(name, (x, y), fontsize=6, xytext=(2, 3),
                                    textcoords="offset points")
        if same_layers:
            ax.set_xticks(range(len(curves[0].layers)))
            ax.set_xticklabels(curves[0].layers, rotation=30)
        else:
            ax.set_xlabel("relative depth")
        ax.set_ylim(-0.05, 1.05)
        ax.set_title(metric)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("similarity")
    axes[-1].legend(fontsize=7, loc="best")
    fig.suptitle(title)
    return _save(fig, path)


def save_heatmap(matrices: dict[str, np.ndarray], layers_a: Sequence[str],
                 layers_b: Sequence[str], label_a: str, label_b: str,
                 path: str | os.PathLike) -> Path:
    """One heatmap per metric: rows are A's layers, columns B's, values annotated."""
    from matplotlib.figure import Figure

    width = (0.75 * len(layers_b) + 1.6) * len(matrices)
    fig = Figure(figsize=(width, 0.7 * len(layers_a) + 2), layout="constrained")
    axes = fig.subplots(1, len(matrices), squeeze=False)[0]
    for index, (ax, (metric, matrix)) in enumerate(zip(axes, matrices.items(), strict=True)):
        image = ax.imshow(matrix, vmin=0.0, vmax=1.0, cmap="viridis", origin="lower")
        ax.set_xticks(range(len(layers_b)))
        ax.set_xticklabels(layers_b, rotation=45, ha="right")
        ax.set_yticks(range(len(layers_a)))
        ax.set_yticklabels(layers_a)
        ax.set_xlabel(label_b)
        if index == 0:
            ax.set_ylabel(label_a)
        ax.set_title(metric)
        for i in range(matrix.shape[0]):
            for j in range(matrix.shape[1]):
                value = matrix[i, j]
                text = "nan" if math.isnan(value) else f"{value:.2f}"
                ax.text(j, i, text, ha="center", va="center", fontsize=7,
                        color="white" if math.isnan(value) or value < 0.6 else "black")
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    return _save(fig, path)


def save_image_panels(panels: Sequence[tuple[str, np.ndarray]], path: str | os.PathLike) -> Path:
    """Images (H, W) or (H, W, 3) in [0, 1] side by side, each with its title."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.5 * len(panels), 4.8))
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (title, image) in zip(axes, panels, strict=True):
        ax.imshow(image, cmap="gray" if image.ndim == 2 else None, vmin=0.0, vmax=1.0,
                  interpolation="nearest")
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    return _save(fig, path)
