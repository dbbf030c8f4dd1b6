"""The probe set: a seeded, fixed subset of one dataset split that both models see in order."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from transfusion_cli.data.bundles import DatasetInfo
from transfusion_cli.errors import ConfigError


@dataclass
class ProbeSet:
    """Which inputs the representations are compared on."""

    dataset: Dataset
    info: DatasetInfo
    split: str
    indices: list[int]
    ids_sha256: str
    data_seed: int

    def __len__(self) -> int:
        return len(self.indices)

    def describe(self) -> dict[str, Any]:
        """Plain-data summary for reports."""
        return {"dataset": self.info.name, "split": self.split, "inputs": len(self.indices),
                "image_size": self.info.image_size, "data_seed": self.data_seed,
                "ids_sha256": self.ids_sha256}


def _recorded_options(checkpoint: Mapping[str, Any], name: str) -> tuple[dict, Any, int, Any]:
    """Options, data folder, data seed and image size the checkpoint was trained with."""
    from transfusion_cli.plugins import get

    config = checkpoint.get("config") if isinstance(checkpoint.get("config"), dict) else {}
    known = get("datasets", name).options
    options = config.get("options") or {
        k: v for k, v in (checkpoint["dataset"].get("options") or {}).items() if k in known}
    return (dict(options), config.get("data_dir"), int(config.get("data_seed") or 0),
            checkpoint["dataset"].get("image_size"))


def build_probe(checkpoint: Mapping[str, Any], *, data: str | None = None,
                data_dir: str | None = None, options: Mapping[str, Any] | None = None,
                split: str = "val", samples: int = 500, seed: int = 0,
                image_size: int | None = None, data_seed: int | None = None) -> ProbeSet:
    """``samples`` inputs (seeded choice, kept in index order) of a split of ``data``
    (default: the dataset, options and image size recorded in ``checkpoint``)."""
    from transfusion_cli.data.build import build_dataset

    if samples < 1:
        raise ConfigError(f"--samples {samples} must be at least 1.")
    name = data or checkpoint["dataset"]["name"]
    recorded_options, recorded_dir, recorded_seed, recorded_size = (
        _recorded_options(checkpoint, name) if data is None else ({}, None, 0, None))
    bundle = build_dataset(
        name, data_dir=data_dir or recorded_dir, image_size=image_size or recorded_size,
        seed=recorded_seed if data_seed is None else data_seed,
        options=recorded_options if options is None else options)
    dataset = bundle.split(split)
    total = len(dataset)
    if total == 0:
        raise ConfigError(f"Split '{split}' of dataset '{name}' is empty; choose another "
                          "--split.")
    if samples >= total:
        indices = list(range(total))
    else:
        indices = sorted(np.random.default_rng(seed).choice(total, samples, replace=False)
                         .tolist())
    ids = getattr(dataset, "ids", None)
    keys = [str(ids[i]) for i in indices] if ids is not None else [str(i) for i in indices]
    digest = hashlib.sha256("\n".join(keys).encode()).hexdigest()
    return ProbeSet(Subset(dataset, indices), bundle.info, split, indices, digest,
                    recorded_seed if data_seed is None else data_seed)


def probe_batches(probe: ProbeSet, batch_size: int, device: torch.device,
                  workers: int = 0) -> Iterator[torch.Tensor]:
    """The probe images as uint8 (B, C, H, W) batches on ``device``, in a fixed order."""
    if batch_size < 1:
        raise ConfigError(f"--batch-size {batch_size} must be at least 1.")
    loader = DataLoader(probe.dataset, batch_size=batch_size, shuffle=False,
                        num_workers=workers, pin_memory=device.type == "cuda")
    for images, _targets in loader:
        yield images.to(device, non_blocking=True)
