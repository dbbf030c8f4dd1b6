"""Dataset interfaces: what a dataset plugin builds and what training, export and predict read.

A dataset plugin's ``build(DatasetOptions)`` returns a ``DatasetBundle``: a ``DatasetInfo``
(task type, class names, channels, normalisation, ...; saved in every checkpoint) and the
train / val / test splits. A split is a torch ``Dataset`` with a ``labels`` array (so
stratification, statistics and contact sheets never decode images), optionally a ``groups``
list (the patient id of each image; `tfx evaluate` then resamples patients) whose items are
``(image, target)``: image a uint8 tensor (C, H, W); target an int64 scalar (multi-class),
a float32 scalar 0/1 (binary) or a float32 vector with NaN for masked labels (multi-label).
Normalisation happens on the device, in ``normalize``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from transfusion_cli.errors import DataError

TASKS = ("multiclass", "multilabel", "binary")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# The step that tfx 0.1 checkpoints and exported models meant by ``fundus_crop: true``.
LEGACY_FUNDUS_STEP = "fundus_crop"


@dataclass(frozen=True)
class DatasetInfo:
    """What a model trained on a dataset needs to know about it (stored in checkpoints)."""

    name: str
    task: str
    class_names: tuple[str, ...]
    channels: int
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    # Multi-class ordinal grades: classes >= this are "referable" (retina: 2). None otherwise.
    referable_threshold: int | None = None
    # Metric (key of the metrics dict) that selects best.pt; higher is better.
    selection_metric: str = "auc"
    # Preprocessing step (a registered ``PreprocessSpec`` name) applied before resizing;
    # None: none. Stored in checkpoints and exported models, so predict re-applies it.
    preprocess: str | None = None
    # Dataset options as resolved (policies, label choice, ...), recorded for reproducibility.
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise DataError(f"Dataset '{self.name}': task {self.task!r} is not one of {TASKS}.")
        if len(self.mean) != self.channels or len(self.std) != self.channels:
            raise DataError(f"Dataset '{self.name}': mean/std need {self.channels} values.")

    @property
    def num_outputs(self) -> int:
        """Model outputs: one logit per class (multi-class), per label, or one (binary)."""
        return 1 if self.task == "binary" else len(self.class_names)

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (lists, not tuples) for checkpoints and JSON."""
        data = asdict(self)
        for key in ("class_names", "mean", "std"):
            data[key] = list(data[key])
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DatasetInfo:
        """Inverse of ``to_dict``; reads checkpoints of tfx 0.1 too (``fundus_crop: bool``)."""
        data = dict(data)
        if "fundus_crop" in data:  # tfx 0.1 recorded the one built-in step as a flag
            data["preprocess"] = LEGACY_FUNDUS_STEP if data.pop("fundus_crop") else None
        for key in ("class_names", "mean", "std"):
            data[key] = tuple(data[key])
        return cls(**data)


@dataclass
class DatasetOptions:
    """What the user asked of a dataset."""

    image_size: int | None = None  # None: the dataset's default
    data_dir: Path | None = None
    seed: int = 0
    skip_bad_images: bool = False
    # Dataset-specific options (``--option key=value``); a dataset rejects keys it does not know.
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class DatasetBundle:
    """A built dataset: its info and its splits (test may be None)."""

    info: DatasetInfo
    train: Dataset
    val: Dataset
    test: Dataset | None = None
    # Patient-level split record, written to the run folder as split.json when present.
    split_manifest: dict[str, Any] | None = None

    def split(self, name: str) -> Dataset:
        """One split by name ('train', 'val', 'test')."""
        dataset = getattr(self, name, None) if name in ("train", "val", "test") else None
        if dataset is None:
            raise DataError(f"Dataset '{self.info.name}' has no '{name}' split; "
                            "use train, val" + (" or test." if self.test is not None else "."))
        return dataset


class ArrayImageSplit(Dataset):
    """A split held as a uint8 array (N, H, W, C) in memory or memory-mapped on disk."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, task: str,
                 ids: list[str] | None = None):
        if images.ndim == 3:
            images = images[..., None]
        if len(images) != len(labels):
            raise DataError(f"{len(images)} images but {len(labels)} labels.")
        self.images, self.labels, self.task = images, np.asarray(labels), task
        self.ids = ids if ids is not None else [str(i) for i in range(len(images))]

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = torch.from_numpy(np.ascontiguousarray(self.images[index])).permute(2, 0, 1)
        return image, make_target(self.labels[index], self.task)


def make_target(label: Any, task: str) -> torch.Tensor:
    """The training target for one label, per the conventions in this module's docstring."""
    if task == "multiclass":
        return torch.tensor(int(np.asarray(label).reshape(-1)[0]), dtype=torch.long)
    if task == "binary":
        return torch.tensor(float(np.asarray(label).reshape(-1)[0]), dtype=torch.float32)
    return torch.as_tensor(np.asarray(label, dtype=np.float32))


def adapt_channels(images: torch.Tensor, in_chans: int) -> torch.Tensor:
    """Replicate grayscale to 3 channels (ImageNet-style models) or average colour to 1."""
    channels = images.shape[1]
    if channels == in_chans:
        return images
    if channels == 1:
        return images.expand(-1, in_chans, -1, -1)
    if in_chans == 1:
        return images.float().mean(dim=1, keepdim=True).to(images.dtype)
    raise DataError(f"Cannot feed {channels}-channel images to a model with {in_chans} channels.")


def normalize(images: torch.Tensor, info: DatasetInfo, in_chans: int | None = None) -> torch.Tensor:
    """uint8 (N, C, H, W) -> float32 normalised with the dataset's mean/std, channels adapted."""
    x = images.float().div_(255.0)
    mean = torch.tensor(info.mean, device=x.device).view(1, -1, 1, 1)
    std = torch.tensor(info.std, device=x.device).view(1, -1, 1, 1)
    x = (x - mean) / std
    return adapt_channels(x, in_chans) if in_chans else x


def dataset_labels(dataset: Dataset) -> np.ndarray:
    """The ``labels`` array of a split (also through ``torch.utils.data.Subset``)."""
    if hasattr(dataset, "labels"):
        return np.asarray(dataset.labels)
    if hasattr(dataset, "dataset") and hasattr(dataset, "indices"):
        return dataset_labels(dataset.dataset)[np.asarray(dataset.indices)]
    raise DataError(f"{type(dataset).__name__} has no `labels`; dataset splits must expose them.")
