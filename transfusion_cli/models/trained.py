"""A trained model ready to use: a tfx checkpoint rebuilt in eval mode on a device.

``load_trained`` is the one way tfx loads a checkpoint to run it (`tfx evaluate`, `similarity`,
`compare-inits`' test pass, `export`, `explain`)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from transfusion_cli.data.bundles import DatasetInfo
from transfusion_cli.models.checkpoint import (
    build_model,
    checkpoint_dataset_info,
    load_checkpoint,
    recorded_init,
)
from transfusion_cli.models.runtime import resolve_device
from transfusion_cli.runfolder import RunFolder


@dataclass
class TrainedModel:
    """A checkpoint rebuilt for inference: ``model`` in eval mode on ``device``, with the
    checkpoint it came from and the dataset it was trained on."""

    path: Path
    checkpoint: dict[str, Any]
    model: nn.Module
    device: torch.device
    info: DatasetInfo

    @property
    def arch(self) -> str:
        """Registry name of the architecture."""
        return str(self.checkpoint["arch"]["name"])

    @property
    def in_chans(self) -> int:
        """Input channels the model expects (may differ from the dataset's)."""
        return int(self.checkpoint["arch"]["in_chans"])

    @property
    def init(self) -> str:
        """The init it started from (the baseline init when the checkpoint does not say)."""
        return str(recorded_init(self.checkpoint).get("name"))

    @property
    def step(self) -> int | None:
        """Training step at which the checkpoint was saved."""
        return self.checkpoint.get("step")

    def label(self) -> str:
        """Short name: ``RUN/best.pt`` for a checkpoint inside a run folder, else the file name."""
        return checkpoint_label(self.path)


def checkpoint_label(path: str | os.PathLike) -> str:
    """Short name of a checkpoint: ``RUN/best.pt`` inside a run folder, else the file name."""
    path = Path(path)
    run = RunFolder.of_checkpoint(path)
    return f"{run.root.name}/{path.name}" if run is not None else path.name


def load_trained(path: str | os.PathLike, device: str | torch.device = "cpu") -> TrainedModel:
    """Load and validate the checkpoint at ``path`` (``weights_only=True``) and rebuild its model
    in eval mode on ``device`` (a ``--device`` value or a torch device); channels_last on CUDA,
    where its convolutions are faster."""
    if not isinstance(device, torch.device):
        device = resolve_device(device)
    checkpoint = load_checkpoint(path)
    model = build_model(checkpoint).eval().to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    return TrainedModel(Path(path), checkpoint, model, device, checkpoint_dataset_info(checkpoint))
