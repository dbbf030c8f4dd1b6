"""Self-describing checkpoints: plain dicts that load with ``torch.load(weights_only=True)``.

Keys: ``format``, ``format_version``, ``tfx_version``, ``arch`` ({name, num_classes,
in_chans}), ``dataset`` (``DatasetInfo.to_dict()``), ``init`` ({name, report}),
``state_dict``, ``optimizer``, ``scheduler``, ``scaler``, ``step``, ``epoch``, ``rng``,
``metrics``, ``config``. ``similarity``, ``export`` and ``predict`` rebuild everything from a
checkpoint alone.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from transfusion_cli import __version__
from transfusion_cli.data.bundles import DatasetInfo
from transfusion_cli.errors import CheckpointError
from transfusion_cli.io import atomic_write

FORMAT = "tfx-checkpoint"
FORMAT_VERSION = 1


def make_checkpoint(model: nn.Module, arch_name: str, info: DatasetInfo, *,
                    init: dict[str, Any] | None = None, step: int = 0, epoch: int = 0,
                    **extra: Any) -> dict[str, Any]:
    """A checkpoint dict for ``model`` (extra keys: optimizer, scheduler, rng, metrics, ...)."""
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    checkpoint = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "tfx_version": __version__,
        "arch": {"name": arch_name, "num_classes": int(info.num_outputs),
                 "in_chans": int(getattr(model, "in_chans", info.channels))},
        "dataset": info.to_dict(),
        "init": init or {"name": "random"},
        "state_dict": state,
        "step": int(step),
        "epoch": int(epoch),
    }
    checkpoint.update(extra)
    return checkpoint


def save_checkpoint(checkpoint: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write atomically (temp file, then rename)."""
    return atomic_write(path, lambda tmp: torch.save(checkpoint, tmp))


def load_checkpoint(path: str | os.PathLike, map_location: str = "cpu") -> dict[str, Any]:
    """Load and validate a tfx checkpoint with ``weights_only=True``."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"Checkpoint {path} does not exist; pass the path of a .pt file "
                              "written by `tfx fit` (RUN/checkpoints/best.pt).")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"Cannot read {path} as a tfx checkpoint ({type(exc).__name__}: "
                              f"{str(exc).splitlines()[0][:200]}); is the file complete?") from exc
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a tfx checkpoint (no format='{FORMAT}' key); "
                              "use a file written by `tfx fit`.")
    if checkpoint.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(f"{path} has checkpoint format {checkpoint['format_version']}, "
                              f"newer than this tfx ({FORMAT_VERSION}); upgrade tfx.")
    return checkpoint


def checkpoint_dataset_info(checkpoint: dict[str, Any]) -> DatasetInfo:
    """The DatasetInfo stored in a checkpoint."""
    return DatasetInfo.from_dict(checkpoint["dataset"])


def build_model(checkpoint: dict[str, Any], load_weights: bool = True) -> nn.Module:
    """Rebuild the checkpoint's architecture through the registry and load its weights."""
    from transfusion_cli.registry import get

    arch = checkpoint["arch"]
    spec = get("architectures", arch["name"])
    model = spec.build(num_classes=arch["num_classes"], in_chans=arch["in_chans"])
    if load_weights:
        try:
            model.load_state_dict(checkpoint["state_dict"])
        except RuntimeError as exc:
            raise CheckpointError(f"Checkpoint weights do not fit architecture "
                                  f"'{arch['name']}': {str(exc).splitlines()[0]}") from exc
    return model


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 of a file, hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
