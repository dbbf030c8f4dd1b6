"""A checkpoint's dataset rebuilt as its training built it, and a split read in batches.

`tfx evaluate` and `tfx export` (parity, calibration, test metrics) both read data this way."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from transfusion_cli.data.bundles import DatasetInfo
from transfusion_cli.errors import DataError

BATCH_SIZE = 32


def checkpoint_dataset(checkpoint: dict[str, Any], info: DatasetInfo, image_size: int,
                       data_dir: Path | None):
    """The checkpoint's dataset rebuilt as training built it (name, data seed, options)."""
    from transfusion_cli.limits import IMAGE_SIZE_CEILING

    # the size it was trained at passed fit's guard already (perhaps raised by
    # TFX_MAX_IMAGE_SIZE there): only the ceiling applies
    return checkpoint_source(checkpoint, info, data_dir).build(
        image_size, max_size=IMAGE_SIZE_CEILING if image_size == info.image_size else None)


def checkpoint_source(checkpoint: dict[str, Any], info: DatasetInfo, data_dir: Path | None,
                      strict: bool = True):
    """The ``DataSource`` of the checkpoint's training data (``data_dir``: another folder
    of it). ``strict`` False: a recorded folder that cannot be read is left out instead of
    raising (what the output guard protects: nothing can be lost in a missing folder)."""
    from transfusion_cli.data.source import DataSource
    from transfusion_cli.plugins import get

    config = checkpoint.get("config") or {}
    spec = get("datasets", info.name)
    options = config.get("options") or info.options or {}
    options = {k: v for k, v in options.items() if k in spec.options}
    data_seed = config.get("data_seed")
    if data_dir is None and spec.needs_data_dir:
        try:
            data_dir = trained_data_dir(info.name, config.get("data_dir"))
        except DataError:
            if strict:
                raise
    return DataSource.named(info.name, data_dir, options,
                            int(data_seed) if data_seed is not None else 0,
                            bool(config.get("skip_bad_images")))


def checkpoint_input_roots(checkpoint: dict[str, Any], info: DatasetInfo,
                           data_dir: Path | None = None) -> list[Path]:
    """Every file and folder the checkpoint's training data are read from (`tfx explain` and
    `tfx export` keep their outputs out of them); when the dataset's plugin is not installed
    here (or cannot list them), the folder the checkpoint recorded."""
    from transfusion_cli.errors import TfxError

    try:
        return checkpoint_source(checkpoint, info, data_dir, strict=False).input_roots()
    except TfxError:
        folder = data_dir or (checkpoint.get("config") or {}).get("data_dir")
        return [Path(folder)] if folder else []


def trained_data_dir(dataset: str, stored: str | None) -> Path | None:
    """The data folder (or file: a CSV, an .npz) a checkpoint was trained on, when it can
    still be read there; otherwise a DataError that asks for ``--data-dir``."""
    if not stored:
        return None  # trained from $TFX_DATA_DIR/<name>: build_dataset looks there again
    path = Path(stored)
    if not path.is_absolute():  # stored as typed by an older tfx, relative to an unknown folder
        raise DataError(f"The checkpoint names its '{dataset}' data folder as {stored!r}, "
                        "relative to the folder `tfx fit` ran in, which is not known; pass "
                        "--data-dir PATH to the dataset's folder.")
    if not path.exists():
        raise DataError(f"The checkpoint was trained on '{dataset}' files in {str(path)!r}, "
                        "which does not exist here (moved, or another machine); pass "
                        "--data-dir PATH to the dataset's folder.")
    return path


def split_batches(split, limit: int | None = None, batch_size: int = BATCH_SIZE,
                  shuffle_seed: int | None = None
                  ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(uint8 images (B, C, H, W), targets) of a split, in order or in a seeded random order."""
    count = len(split) if limit is None else min(limit, len(split))
    order = (np.random.default_rng(shuffle_seed).permutation(len(split))[:count]
             if shuffle_seed is not None else np.arange(count))
    for start in range(0, count, batch_size):
        items = [split[int(i)] for i in order[start: start + batch_size]]
        yield torch.stack([image for image, _ in items]), torch.stack([t for _, t in items])
