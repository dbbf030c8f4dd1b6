"""The choices a run makes where the paper is silent, as plain data for env.json."""

from __future__ import annotations

from typing import Any

from torch import nn

from transfusion_cli.train.augment import AUGMENTATIONS
from transfusion_cli.train.config import FitConfig


def resolve_augment(config: FitConfig) -> str:
    """``--augment``, or the dataset's default (``DatasetSpec.default_augment``)."""
    from transfusion_cli.registry import get

    return config.augment or get("datasets", config.data).default_augment


def run_choices(config: FitConfig, model: nn.Module) -> dict[str, Any]:
    """Augmentation, schedule, optimiser and the architecture's init scheme of this run."""
    schedule = ("cosine decay to zero over the run" if config.scheduler == "cosine"
                else "constant")
    if config.warmup_steps:
        schedule = f"linear warm-up over {config.warmup_steps} steps, then {schedule}"
    return {
        "augment": {"name": config.augment, "pipeline": AUGMENTATIONS.get(config.augment or "")},
        "lr_schedule": schedule,
        "optimizer": f"{config.optimizer} (tfx's default from a public re-implementation; the "
                     "paper gives none)",
        "architecture_init": getattr(model, "tfx_init_scheme", None) or
        "the architecture's own reset_parameters (He normal, fan_out, for CBR models)",
        "test_split_curve": bool(config.eval_test),
    }
