"""The training loss per task, and evaluation: logits over a split, then the metrics."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from transfusion_cli.data.bundles import DatasetInfo, normalize
from transfusion_cli.models.runtime import Runtime, resolve_device
from transfusion_cli.registry import TfxModel
from transfusion_cli.scores import compute_metrics


def task_loss(logits: torch.Tensor, targets: torch.Tensor, task: str) -> torch.Tensor:
    """Cross-entropy (multiclass); BCE-with-logits (binary); masked BCE (multilabel, NaN =
    no label)."""
    logits = logits.float()
    if task == "multiclass":
        return F.cross_entropy(logits, targets)
    if task == "binary":
        return F.binary_cross_entropy_with_logits(logits.reshape(-1), targets.reshape(-1).float())
    mask = ~torch.isnan(targets)
    losses = F.binary_cross_entropy_with_logits(logits, torch.nan_to_num(targets, nan=0.0),
                                                reduction="none")
    return (losses * mask).sum() / mask.sum().clamp(min=1)


def model_in_chans(model: TfxModel, info: DatasetInfo) -> int:
    """Input channels the model was built for (its ``in_chans``), else the dataset's."""
    model = getattr(model, "module", model)
    return int(getattr(model, "in_chans", None) or info.channels)


@torch.no_grad()
def predict_logits(model: nn.Module, loader: DataLoader, info: DatasetInfo,
                   runtime: Runtime, in_chans: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(logits float32 (N, outputs), targets) over every batch of ``loader``, in order."""
    in_chans = in_chans or model_in_chans(model, info)
    was_training = model.training
    model.eval()
    logits, targets = [], []
    try:
        for images, target in loader:
            x = runtime.layout(normalize(runtime.to_device(images), info, in_chans))
            with runtime.autocast():
                output = model(x)
            logits.append(output.float().cpu().numpy())
            targets.append(target.numpy())
    finally:
        model.train(was_training)
    if not logits:
        return np.zeros((0, info.num_outputs), np.float32), np.zeros((0,))
    return np.concatenate(logits), np.concatenate(targets)


def loss_of(logits: np.ndarray, targets: np.ndarray, task: str) -> float:
    """Mean ``task_loss`` over all predictions (float64, for the metrics record)."""
    if len(logits) == 0:
        return float("nan")
    target = torch.from_numpy(targets)
    return float(task_loss(torch.from_numpy(logits).double(),
                           target.double() if task != "multiclass" else target, task))


def score_loader(model: nn.Module, loader: DataLoader, info: DatasetInfo,
                 device: torch.device | str | Runtime = "cpu",
                 in_chans: int | None = None) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    """(metrics, logits, targets) of ``model`` over ``loader`` (single process).

    ``metrics`` is ``compute_metrics`` plus ``val_loss``.
    """
    if not isinstance(device, Runtime | torch.device):
        device = resolve_device(device)
    runtime = device if isinstance(device, Runtime) else Runtime(device)
    if not isinstance(device, Runtime):
        model.to(runtime.device)
    logits, targets = predict_logits(model, loader, info, runtime, in_chans)
    metrics = compute_metrics(logits, targets, info)
    metrics["val_loss"] = loss_of(logits, targets, info.task)
    return metrics, logits, targets
