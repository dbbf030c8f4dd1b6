"""Shared pieces of the image-file datasets: data folders, missing files, split checks, bundles."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from transfusion_cli.console import warn
from transfusion_cli.data.bundles import IMAGENET_MEAN, IMAGENET_STD, DatasetBundle, DatasetInfo
from transfusion_cli.data.cache import FileSource, cached_split
from transfusion_cli.data.preprocess import preprocess_step
from transfusion_cli.errors import DataError

# Grayscale normalisation: ImageNet's statistics averaged over the colour channels.
GRAY_MEAN = (0.449,)
GRAY_STD = (0.226,)


def normalisation(channels: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) for 1- or 3-channel images."""
    return (GRAY_MEAN, GRAY_STD) if channels == 1 else (IMAGENET_MEAN, IMAGENET_STD)


def require_data_dir(dataset: str, data_dir: Path | None, expected: str, source: str) -> Path:
    """The data folder, or a DataError saying which files were expected where and their source."""
    if data_dir is None:
        raise DataError(f"Dataset '{dataset}' needs its files: pass --data-dir PATH (or set "
                        f"TFX_DATA_DIR so that $TFX_DATA_DIR/{dataset} holds them) with "
                        f"{expected}. Get it from {source}.")
    if not data_dir.exists():
        raise DataError(f"Data folder {data_dir} does not exist; dataset '{dataset}' expects "
                        f"{expected} there. Get it from {source}.")
    return data_dir


def keep_existing(paths: Sequence[Path], where: Callable[[int], str], listing: str,
                  skip_bad_images: bool, fix: str) -> list[int]:
    """Indices of ``paths`` that exist; missing ones fail (naming the first) or are skipped."""
    missing = [i for i, path in enumerate(paths) if not os.path.isfile(path)]
    if not missing:
        return list(range(len(paths)))
    first = missing[0]
    if not skip_bad_images:
        raise DataError(f"{len(missing)} of {len(paths)} images listed in {listing} are missing "
                        f"(first: {paths[first]}, from {where(first)}); {fix}, or pass "
                        "--skip-bad-images to leave them out.")
    warn(f"Skipped {len(missing)} of {len(paths)} images listed in {listing} that are missing "
         f"(first: {paths[first]}) because of --skip-bad-images.")
    missing_set = set(missing)
    return [i for i in range(len(paths)) if i not in missing_set]


def check_splits(info: DatasetInfo, labels: dict[str, np.ndarray], fix: str) -> None:
    """Every split non-empty and every class present where metrics need it.

    Multi-class and binary: every class in every split. Multi-label: every label positive and
    negative at least once in train (else it cannot be learned); in val/test a missing one
    is a warning, as its AUC will be NaN (CheXpert's official validation set lacks some).
    """
    for split, values in labels.items():
        if len(values) == 0:
            raise DataError(f"The {split} split of '{info.name}' is empty; {fix}.")
        if info.task == "multilabel":
            matrix = np.asarray(values, dtype=np.float64).reshape(len(values), -1)
            lacking = []
            for column, name in enumerate(info.class_names):
                known = matrix[:, column][~np.isnan(matrix[:, column])]
                for value, kind in ((1.0, "positive"), (0.0, "negative")):
                    if not np.any(known == value):
                        lacking.append((name, kind))
            if lacking and split == "train":
                name, kind = lacking[0]
                raise DataError(f"Label '{name}' has no {kind} images in the train split of "
                                f"'{info.name}' ({len(values)} images), so it cannot be learned; "
                                f"{fix}.")
            if lacking:
                shown = ", ".join(f"{name} ({kind})" for name, kind in lacking)
                warn(f"The {split} split of '{info.name}' ({len(values)} images) has no images "
                     f"of: {shown}; those AUCs will be NaN there.")
        else:
            present = np.unique(np.asarray(values).reshape(len(values), -1)[:, 0])
            allowed = 2 if info.task == "binary" else len(info.class_names)
            outside = [v for v in present.tolist() if not (v == int(v) and 0 <= v < allowed)]
            if outside:
                count = int(np.isin(np.asarray(values).reshape(len(values), -1)[:, 0],
                                    outside).sum())
                raise DataError(f"The {split} split of '{info.name}' has label {outside[0]!r} "
                                f"({count} image(s) with labels outside 0..{allowed - 1}); "
                                f"labels must be class indices 0..{allowed - 1}. Fix the labels; "
                                f"{fix}.")
            for index, name in enumerate(info.class_names):
                if index not in present:
                    raise DataError(f"Class '{name}' has no images in the {split} split of "
                                    f"'{info.name}' ({len(values)} images); {fix}.")


def file_bundle(info: DatasetInfo, splits: dict[str, tuple[list[Path], np.ndarray, list[str]]],
                skip_bad_images: bool, fix: str, manifest: dict[str, Any] | None = None,
                cache_options: dict[str, Any] | None = None) -> DatasetBundle:
    """Cached splits of image files -> a checked DatasetBundle.

    ``splits`` maps split name to (paths, labels, ids). Preprocessing (size, channels, the
    named ``info.preprocess`` step) comes from ``info``; ``cache_options`` adds anything else
    that changes pixels.
    """
    for name, (paths, _, _) in splits.items():
        if not paths:
            raise DataError(f"The {name} split of '{info.name}' is empty; {fix}.")
    step = preprocess_step(info.preprocess)
    built = {}
    for name, (paths, labels, ids) in splits.items():
        source = FileSource(paths, info.image_size, info.channels, step)
        built[name] = cached_split(info.name, name, source, labels, info.task, ids,
                                   info.image_size, info.channels, skip_bad_images,
                                   {"preprocess": info.preprocess, **(cache_options or {})})
    check_splits(info, {name: split.labels for name, split in built.items()}, fix)
    return DatasetBundle(info, built["train"], built["val"], built.get("test"), manifest)
