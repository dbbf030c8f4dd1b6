"""Optimizer and learning-rate schedule from the config."""

from __future__ import annotations

import math

import torch
from torch import nn

from transfusion_cli.train.config import FitConfig


def make_optimizer(model: nn.Module, config: FitConfig) -> torch.optim.Optimizer:
    """Adam (the paper's Retina setting) or SGD with momentum (its CheXpert setting)."""
    params = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum,
                               weight_decay=config.weight_decay)
    return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)


class CosineToZero:
    """lr factor ``0.5 * (1 + cos(pi * step / total))``; constant 1 when ``total`` is 0."""

    def __init__(self, total_steps: int):
        self.total_steps = total_steps

    def __call__(self, step: int) -> float:
        if self.total_steps <= 0:
            return 1.0
        return 0.5 * (1.0 + math.cos(math.pi * min(step, self.total_steps) / self.total_steps))


def make_scheduler(optimizer: torch.optim.Optimizer, config: FitConfig,
                   total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-step schedule: cosine decay to zero over the run, or constant."""
    factor = CosineToZero(total_steps) if config.scheduler == "cosine" else CosineToZero(0)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
