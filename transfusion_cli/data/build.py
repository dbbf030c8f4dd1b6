"""Building a registered dataset from what the user typed: name, folder, options."""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from transfusion_cli.data.bundles import DatasetBundle, DatasetOptions
from transfusion_cli.errors import ConfigError
from transfusion_cli.registry import get


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
    root = os.environ.get("TFX_DATA_DIR")
    if root and (Path(root).expanduser() / name).exists():
        return Path(root).expanduser() / name
    return None


def cache_root() -> Path:
    """Where preprocessed-image caches live: ``$TFX_CACHE_DIR`` or the user cache dir."""
    root = os.environ.get("TFX_CACHE_DIR")
    if root:
        return Path(root).expanduser()
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


MAX_IMAGE_SIZE_ENV = "TFX_MAX_IMAGE_SIZE"
DEFAULT_MAX_IMAGE_SIZE = 2048  # over 3x the paper's largest (Retina, 587 px); catches typos


def max_image_size() -> int:
    """Largest --image-size accepted: $TFX_MAX_IMAGE_SIZE, else 2048."""
    value = os.environ.get(MAX_IMAGE_SIZE_ENV, "").strip()
    if not value:
        return DEFAULT_MAX_IMAGE_SIZE
    if not value.isdigit() or int(value) < 8:
        raise ConfigError(f"{MAX_IMAGE_SIZE_ENV}={value!r} is not a whole number of pixels >= 8; "
                          "set e.g. 4096, or unset it.")
    return int(value)


def build_dataset(name: str, *, data_dir: str | os.PathLike | None = None,
                  image_size: int | None = None, seed: int = 0,
                  options: Mapping[str, Any] | None = None,
                  skip_bad_images: bool = False) -> DatasetBundle:
    """Look up ``name`` in the registry and build its splits."""
    spec = get("datasets", name)
    options = dict(options or {})
    check_option_keys(name, options, spec.options)
    if image_size is not None and image_size < 8:
        raise ConfigError(f"--image-size {image_size} is too small; use 8 or more pixels.")
    if image_size is not None and image_size > max_image_size():
        raise ConfigError(f"--image-size {image_size} is larger than tfx allows "
                          f"({max_image_size()} px; one such image is "
                          f"{image_size * image_size * 3 / 2**20:.0f} MB before batching). Use "
                          f"a smaller size, or raise the limit with {MAX_IMAGE_SIZE_ENV}=N.")
    return spec.build(DatasetOptions(
        image_size=image_size or spec.default_image_size,
        data_dir=resolve_data_dir(name, data_dir),
        seed=seed,
        skip_bad_images=skip_bad_images,
        extra=options,
    ))
