"""Heatmap overlays as PNG bytes, drawn the same way for `tfx explain`, `tfx predict
--heatmaps` and `tfx serve`: the model's input image, the heatmap on top in a perceptually
uniform colour map (inferno) with a colour bar on a stated scale (one scale across a batch,
or the model's absolute one), the class and score in the title, nothing drawn outside the
imaged field of view (the fundus disc), and the synthetic-data warning where it applies.

Matplotlib's object API (``Figure`` + Agg canvas, no pyplot): no global state, so a server
may draw from several threads. Every text is drawn literally (no mathtext), whatever the
class names or file names hold.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from transfusion_cli.deploy.heatmaps import upsample
from transfusion_cli.outputs import (
    PNG_SOFTWARE,
    OutputFile,
    png_made_by_tfx,
    refuse_replacing_foreign_file,
)

COLOUR_MAP = "inferno"
HEATMAP_ALPHA = 0.55
FIGURE_INCHES = (5.0, 4.4)
DPI = 100


@dataclass(frozen=True)
class OverlayText:
    """The words around a heatmap: title (class and score), colour-bar label, warning."""

    title: str
    colour_bar: str
    warning: str | None = None


def overlay_png(image: np.ndarray, heatmap: np.ndarray, text: OverlayText, vmax: float,
                mask: np.ndarray | None = None) -> bytes:
    """PNG bytes: uint8 (H, W, C) ``image`` with ``heatmap`` (h, w, any resolution; resized
    to the image) drawn on the scale 0..``vmax`` (values above are drawn at the top colour),
    only where ``mask`` (H, W) is true."""
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure

    size = image.shape[0]
    rgb = image if image.ndim == 3 and image.shape[2] == 3 else \
        np.repeat(image.reshape(size, image.shape[1], 1), 3, axis=2)
    values = upsample(heatmap, size) if heatmap.shape != (size, size) else heatmap
    shown = np.ones(values.shape, dtype=bool) if mask is None else mask
    # Blend once in numpy (one image for matplotlib to draw): the colour-mapped heatmap at
    # HEATMAP_ALPHA where shown, the plain image elsewhere.
    norm = Normalize(vmin=0.0, vmax=max(float(vmax), 1e-12), clip=True)
    colour_map = colormaps[COLOUR_MAP]
    alpha = np.where(shown, HEATMAP_ALPHA, 0.0)[..., None]
    blended = rgb / 255.0 * (1.0 - alpha) + colour_map(norm(values))[..., :3] * alpha
    figure = Figure(figsize=FIGURE_INCHES, dpi=DPI)
    FigureCanvasAgg(figure)
    axes = figure.add_axes((0.04, 0.1, 0.74, 0.74))
    axes.imshow(np.clip(blended, 0.0, 1.0), interpolation="bilinear")
    axes.set_axis_off()
    bar_axes = figure.add_axes((0.81, 0.1, 0.035, 0.74))
    bar = figure.colorbar(ScalarMappable(norm=norm, cmap=colour_map), cax=bar_axes,
                          extend="max")
    bar.set_label(text.colour_bar, fontsize=7, parse_math=False)
    bar.ax.tick_params(labelsize=7)
    figure.text(0.04, 0.97, text.title, fontsize=8.5, va="top", ha="left", wrap=True,
                parse_math=False)
    if text.warning:
        figure.text(0.04, 0.015, text.warning, fontsize=7.5, color="#b00020", va="bottom",
                    ha="left", wrap=True, weight="bold", parse_math=False)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, metadata={"Software": PNG_SOFTWARE},
                   pil_kwargs={"compress_level": 1})
    return buffer.getvalue()


def unique_stems(images: list[str]) -> list[str]:
    """One file-name stem per image, in order: the image's own stem, numbered ``<stem>-2``,
    ``<stem>-3`` ... when an earlier image took it (``left/eye.png`` and ``right/eye.png``);
    compared without case, so the names stay distinct on case-insensitive file systems."""
    stems, used = [], set()
    for image in images:
        stem = Path(image).stem or "image"
        name, count = stem, 1
        while name.casefold() in used:
            count += 1
            name = f"{stem}-{count}"
        used.add(name.casefold())
        stems.append(name)
    return stems


def overlay_files(folder: Path, images: list[str], suffixes: list[str]) -> tuple[OutputFile, ...]:
    """Every name the overlays of ``images`` may take in ``folder`` (``<stem><suffix>``,
    numbered stems included), as the guard checks them: never over a PNG tfx did not draw."""
    return tuple(OutputFile(folder / f"{stem}{suffix}", png_made_by_tfx)
                 for stem in unique_stems(images) for suffix in suffixes)


def write_overlay(path: Path, png: bytes, flag: str) -> Path:
    """Write ``png`` to ``path`` atomically, never over a file tfx did not draw."""
    from transfusion_cli.io import atomic_write

    refuse_replacing_foreign_file(flag, OutputFile(path, png_made_by_tfx))
    return atomic_write(path, lambda tmp: tmp.write_bytes(png))
