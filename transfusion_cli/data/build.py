"""Building a registered dataset from what the user typed: name, folder, options."""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from transfusion_cli import env
from transfusion_cli.data.bundles import DatasetBundle, DatasetOptions
from transfusion_cli.errors import ConfigError
from transfusion_cli.limits import (
    DEFAULT_MAX_IMAGE_SIZE,
    IMAGE_SIZE_CEILING,
    MAX_IMAGE_SIZE_ENV,
    MIN_IMAGE_SIZE,
)
from transfusion_cli.plugins import get


def parse_option_pairs(pairs: Iterable[str]) -> dict[str, str]:
    """``["labels=Edema,Atelectasis", "frontal_only=true"]`` -> dict (``--option KEY=VALUE``)."""
    options: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"Dataset option {pair!r} is not KEY=VALUE; "
                              "write e.g. --option uncertainty=u-ones.")
        options[key.strip().replace("-", "_")] = value.strip()
    return options


def resolve_data_dir(name: str, data_dir: str | os.PathLike | None) -> Path | None:
    """``--data-dir`` if given, else ``$TFX_DATA_DIR/<name>`` when that exists, else None."""
    if data_dir:
        return Path(data_dir).expanduser()
    root = env.value("TFX_DATA_DIR")
    if root is not None and (root / name).exists():
        return root / name
    return None


def cache_root() -> Path:
    """Where preprocessed-image caches live: ``$TFX_CACHE_DIR`` or the user cache dir."""
    root = env.value("TFX_CACHE_DIR")
    if root is not None:
        return root
    import platformdirs

    return Path(platformdirs.user_cache_dir("tfx"))


def check_option_keys(dataset: str, given: Mapping[str, Any], known: Mapping[str, str]) -> None:
    """Unknown dataset options are errors, with a suggestion and the valid keys."""
    for key in given:
        if key not in known:
            close = difflib.get_close_matches(key, list(known), n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            valid = ", ".join(sorted(known)) or "none"
            raise ConfigError(f"Dataset '{dataset}' has no option '{key}'.{hint} "
                              f"Valid options: {valid}.")


def max_image_size() -> int:
    """Largest --image-size accepted: $TFX_MAX_IMAGE_SIZE, else ``DEFAULT_MAX_IMAGE_SIZE``
    (``limits.py`` says why)."""
    limit = env.value(MAX_IMAGE_SIZE_ENV)
    return DEFAULT_MAX_IMAGE_SIZE if limit is None else limit


def check_image_size(image_size: int, limit: int | None = None) -> None:
    """A ConfigError for an --image-size outside ``MIN_IMAGE_SIZE``..``limit`` (default
    ``max_image_size()``)."""
    if image_size < MIN_IMAGE_SIZE:
        raise ConfigError(f"--image-size {image_size} is too small; use {MIN_IMAGE_SIZE} or more "
                          "pixels.")
    limit = max_image_size() if limit is None else limit
    if image_size > limit:
        raise ConfigError(f"--image-size {image_size} is larger than tfx allows ({limit} px; "
                          f"one such image is {image_size * image_size * 3 / 2**20:.0f} MB "
                          "before batching). Use a smaller size, or raise the limit with "
                          f"{MAX_IMAGE_SIZE_ENV}=N (at most {IMAGE_SIZE_CEILING}).")


def build_dataset(name: str, *, data_dir: str | os.PathLike | None = None,
                  image_size: int | None = None, seed: int = 0,
                  options: Mapping[str, Any] | None = None,
                  skip_bad_images: bool = False, max_size: int | None = None) -> DatasetBundle:
    """Look up ``name`` in the registry and build its splits; ``max_size`` bounds
    ``image_size`` (None: ``max_image_size()``, the guard on what a user types)."""
    spec = get("datasets", name)
    options = dict(options or {})
    check_option_keys(name, options, spec.options)
    if image_size is not None:
        check_image_size(image_size, max_size)
    return spec.build(DatasetOptions(
        image_size=image_size or spec.default_image_size,
        data_dir=resolve_data_dir(name, data_dir),
        seed=seed,
        skip_bad_images=skip_bad_images,
        extra=options,
    ))
