"""Contact sheets: a PNG grid of a dataset's images, one row per class or label.

Generic over ``DatasetBundle``: rows are chosen from a split's ``labels`` (no image is decoded
except the ones shown). Multi-class and binary: one row per class. Multi-label: one row of
positive examples per label, then a row of examples with no positive label; each tile is
captioned with its positive labels ("?" marks a masked, e.g. uncertain, label).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from transfusion_cli.data.bundles import DatasetBundle, DatasetInfo, dataset_labels
from transfusion_cli.io import atomic_write

MIN_TILE = 96  # smaller images are enlarged (nearest neighbour) to at least this many pixels
TITLE_WIDTH = 210
GAP = 4
BACKGROUND = (24, 24, 28)
TEXT = (235, 235, 235)
MUTED = (150, 150, 160)


@dataclass(frozen=True)
class SheetRow:
    """One row of the sheet: its title, how many examples the split has, which are shown."""

    title: str
    total: int
    indices: tuple[int, ...]


def sheet_rows(info: DatasetInfo, labels: np.ndarray, per_row: int) -> list[SheetRow]:
    """Rows for ``labels`` of a split: first ``per_row`` examples of each class or label."""
    labels = np.asarray(labels)

    def row(title: str, mask: np.ndarray) -> SheetRow:
        chosen = np.flatnonzero(mask)
        return SheetRow(title, len(chosen), tuple(int(i) for i in chosen[:per_row]))

    if info.task == "multilabel":
        positive = labels.reshape(len(labels), -1) == 1
        rows = [row(name, positive[:, k]) for k, name in enumerate(info.class_names)]
        return rows + [row("no positive label", ~positive.any(axis=1))]
    flat = labels.reshape(len(labels), -1)[:, 0] if len(labels) else labels.reshape(0)
    if info.task == "binary":
        names = list(info.class_names)
        if len(names) != 2:
            names = [f"not {names[0]}" if names else "negative", names[0] if names else "positive"]
        return [row(names[0], flat < 0.5), row(names[1], flat >= 0.5)]
    return [row(name, flat == k) for k, name in enumerate(info.class_names)]


def tile_size(image_size: int) -> int:
    """Displayed tile size: the image size, enlarged by an integer factor to >= MIN_TILE."""
    return image_size * max(1, math.ceil(MIN_TILE / image_size))


def to_pil(image) -> Image.Image:
    """A (C, H, W) uint8 tensor or array as an RGB PIL image (1 channel shown grey)."""
    array = np.asarray(image.numpy() if hasattr(image, "numpy") else image)
    if array.ndim == 2:
        array = array[None]
    if array.dtype != np.uint8:  # be lenient with float images: stretch to 0-255
        low, high = float(np.nanmin(array)), float(np.nanmax(array))
        array = ((array - low) / (high - low or 1.0) * 255).clip(0, 255).astype(np.uint8)
    if array.shape[0] == 1:
        return Image.fromarray(array[0], "L").convert("RGB")
    if array.shape[0] != 3:
        array = np.repeat(array.mean(axis=0, keepdims=True).astype(np.uint8), 3, axis=0)
    return Image.fromarray(np.ascontiguousarray(array.transpose(1, 2, 0)), "RGB")


def load_font(size: int) -> ImageFont.ImageFont:
    """Pillow's built-in font at ``size`` pixels (the bitmap default on old Pillow)."""
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has no sized default font
        return ImageFont.load_default()


def caption(info: DatasetInfo, label: np.ndarray) -> str:
    """Short tile caption for a multi-label example: positive labels, '?' for masked."""
    parts = []
    for name, value in zip(info.class_names, np.asarray(label, dtype=np.float64).reshape(-1),
                           strict=False):
        short = name[:3] if " " not in name else "".join(w[0] for w in name.split()).upper()
        if value == 1:
            parts.append(short)
        elif np.isnan(value):
            parts.append(f"{short}?")
    return " ".join(parts) or "-"


def contact_sheet(bundle: DatasetBundle, split: str = "train", per_row: int = 8,
                  seed: int | None = None) -> Image.Image:
    """The contact sheet of one split as an RGB PIL image."""
    info = bundle.info
    dataset = bundle.split(split)
    labels = dataset_labels(dataset)
    rows = sheet_rows(info, labels, per_row)
    tile = tile_size(info.image_size)
    captioned = info.task == "multilabel"
    font, small = load_font(15), load_font(11)
    caption_height = 14 if captioned else 0
    header = 34
    row_height = tile + caption_height + GAP
    width = TITLE_WIDTH + per_row * (tile + GAP) + GAP
    sheet = Image.new("RGB", (width, header + len(rows) * row_height + GAP), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    seed_text = f", data seed {seed}" if seed is not None else ""
    draw.text((GAP * 2, 9), f"{info.name}: {split} split, {len(labels)} images, "
              f"{info.image_size} px{seed_text}", fill=TEXT, font=font)
    for r, row in enumerate(rows):
        top = header + r * row_height
        draw.text((GAP * 2, top + tile // 2 - 16), row.title[:26], fill=TEXT, font=font)
        draw.text((GAP * 2, top + tile // 2 + 4), f"{row.total} in {split}", fill=MUTED,
                  font=small)
        if not row.indices:
            draw.text((TITLE_WIDTH, top + tile // 2 - 8), "no examples", fill=MUTED, font=font)
            continue
        for c, index in enumerate(row.indices):
            image = to_pil(dataset[index][0])
            if image.size != (tile, tile):
                image = image.resize((tile, tile), Image.Resampling.NEAREST)
            left = TITLE_WIDTH + c * (tile + GAP)
            sheet.paste(image, (left, top))
            if captioned:
                draw.text((left + 2, top + tile + 1), caption(info, labels[index]),
                          fill=MUTED, font=small)
    return sheet


def write_contact_sheet(path: str | os.PathLike, sheet: Image.Image) -> Path:
    """Save a sheet as PNG atomically."""
    return atomic_write(path, lambda tmp: sheet.save(tmp, format="PNG"))
