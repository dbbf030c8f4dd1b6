"""What a training checkpoint holds beyond the weights, and putting a run back from one."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from transfusion_cli.data.bundles import DatasetInfo
from transfusion_cli.errors import CheckpointError
from transfusion_cli.models.checkpoint import load_checkpoint, make_checkpoint, save_checkpoint
from transfusion_cli.train.state import capture_rng, restore_rng


def plain(value: Any) -> Any:
    """JSON-level plain data (an init's report may hold paths or numpy numbers)."""
    return json.loads(json.dumps(value, default=str))


@dataclass
class TrainState:
    """Counters and best-so-far that travel in every checkpoint."""

    step: int = 0
    best_value: float | None = None
    best_step: int | None = None
    images_seen: int = 0
    train_time_s: float = 0.0
    # Losses of the steps since the last evaluation (a stop between two evaluations keeps them).
    interval_losses: list[float] = field(default_factory=list)
    last_record: dict[str, Any] = field(default_factory=dict)
    first_loss: float | None = None  # the first checked loss: the divergence check's yardstick

    def to_dict(self) -> dict[str, Any]:
        return {"step": self.step, "best_value": self.best_value, "best_step": self.best_step,
                "images_seen": self.images_seen, "train_time_s": self.train_time_s,
                "interval_losses": [float(v) for v in self.interval_losses],
                "first_loss": self.first_loss}


@dataclass
class Trainables:
    """The objects whose state a checkpoint saves and a resume restores."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler | None


def training_checkpoint(parts: Trainables, arch: str, info: DatasetInfo, in_chans: int,
                        init: dict[str, Any], state: TrainState, steps_per_epoch: int,
                        config: dict[str, Any]) -> dict[str, Any]:
    """A full checkpoint: weights, optimizer, scheduler, scaler, RNG, counters, metrics."""
    checkpoint = make_checkpoint(
        parts.model, arch, info, init=init, step=state.step,
        epoch=state.step // steps_per_epoch,
        optimizer=parts.optimizer.state_dict(),
        scheduler=parts.scheduler.state_dict(),
        scaler=parts.scaler.state_dict() if parts.scaler is not None else None,
        rng=capture_rng(),
        metrics=plain(state.last_record),
        train_state=state.to_dict(),
        config=config,
    )
    checkpoint["arch"]["in_chans"] = int(in_chans)
    return contiguous_weights(checkpoint)


def contiguous_weights(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """Weights saved in the standard layout, whatever memory format training used."""
    checkpoint["state_dict"] = {k: v.contiguous() for k, v in checkpoint["state_dict"].items()}
    return checkpoint


def weights_checkpoint(model: nn.Module, arch: str, info: DatasetInfo, in_chans: int,
                       init: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    """The step-0 checkpoint (init.pt): weights right after the init, nothing else."""
    checkpoint = make_checkpoint(model, arch, info, init=init, step=0, epoch=0, config=config)
    checkpoint["arch"]["in_chans"] = int(in_chans)
    return contiguous_weights(checkpoint)


def save(checkpoint: dict[str, Any], path: Path) -> None:
    """Atomic save."""
    save_checkpoint(checkpoint, path)


def restore(path: Path, parts: Trainables, arch: str, info: DatasetInfo) -> tuple[TrainState,
                                                                                  dict[str, Any]]:
    """Load ``path`` into ``parts`` and the RNGs; returns the counters and the init entry."""
    checkpoint = load_checkpoint(path)
    if checkpoint["arch"]["name"] != arch or checkpoint["dataset"]["name"] != info.name:
        raise CheckpointError(f"{path} is a {checkpoint['arch']['name']} checkpoint on "
                              f"{checkpoint['dataset']['name']}, not {arch} on {info.name}; "
                              "resume the run folder it belongs to.")
    if "optimizer" not in checkpoint or "train_state" not in checkpoint:
        raise CheckpointError(f"{path} has no optimizer/training state (a weights-only "
                              "checkpoint); resume needs RUN/checkpoints/last.pt.")
    parts.model.load_state_dict(checkpoint["state_dict"])
    parts.optimizer.load_state_dict(checkpoint["optimizer"])
    parts.scheduler.load_state_dict(checkpoint["scheduler"])
    if parts.scaler is not None and checkpoint.get("scaler") is not None:
        parts.scaler.load_state_dict(checkpoint["scaler"])
    restore_rng(checkpoint["rng"])
    saved = checkpoint["train_state"]
    state = TrainState(step=int(saved["step"]), best_value=saved["best_value"],
                       best_step=saved["best_step"], images_seen=int(saved["images_seen"]),
                       train_time_s=float(saved["train_time_s"]),
                       interval_losses=list(saved.get("interval_losses", [])),
                       last_record=dict(checkpoint.get("metrics") or {}),
                       first_loss=saved.get("first_loss"))
    return state, checkpoint.get("init") or {}
