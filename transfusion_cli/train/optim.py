"""Optimizer and learning-rate schedule from the config.

The paper gives neither; tfx's defaults (Adam, lr 1e-3 for Retina; SGD with momentum 0.9 for
CheXpert) come from a public re-implementation of the paper, not from the paper itself.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from transfusion_cli.train.config import FitConfig


def make_optimizer(model: nn.Module, config: FitConfig) -> torch.optim.Optimizer:
    """Adam, or SGD with momentum (tfx's defaults, from a public re-implementation)."""
    params = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum,
                               weight_decay=config.weight_decay)
    return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)


class LearningRateFactor:
    """lr factor at a step: a linear warm-up over ``warmup_steps`` (``(step + 1) / warmup``),
    then ``0.5 * (1 + cos(pi * step / total))`` (cosine) or 1 (constant, or ``total`` 0).

    Under ``constant`` the factor never depends on the run length, so the learning curve of a
    run is the same whatever ``--steps`` it was given: the setting for convergence studies.
    """

    def __init__(self, total_steps: int, cosine: bool = True, warmup_steps: int = 0):
        self.total_steps, self.cosine, self.warmup_steps = total_steps, cosine, warmup_steps

    def __call__(self, step: int) -> float:
        warmup = min(1.0, (step + 1) / self.warmup_steps) if self.warmup_steps > 0 else 1.0
        if not self.cosine or self.total_steps <= 0:
            return warmup
        progress = min(step, self.total_steps) / self.total_steps
        return warmup * 0.5 * (1.0 + math.cos(math.pi * progress))


def make_scheduler(optimizer: torch.optim.Optimizer, config: FitConfig,
                   total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-step schedule: optional linear warm-up, then cosine decay to zero over the run or
    constant."""
    factor = LearningRateFactor(total_steps, cosine=config.scheduler == "cosine",
                                warmup_steps=config.warmup_steps)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
