"""The choices a run makes where the paper is silent, as plain data for env.json."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from transfusion_cli.errors import ConfigError
from transfusion_cli.registry import TfxModel
from transfusion_cli.train.augment import AUGMENTATIONS
from transfusion_cli.train.config import FitConfig

if TYPE_CHECKING:
    from transfusion_cli.data.bundles import DatasetInfo


def resolve_augment(config: FitConfig) -> str:
    """``--augment``, or the dataset's default (``DatasetSpec.default_augment``)."""
    from transfusion_cli.plugins import get

    return config.augment or get("datasets", config.data).default_augment


def check_selection_metric(name: str, info: DatasetInfo, flag: str) -> None:
    """``name`` is a validation score of ``info``'s task that can pick a checkpoint (the
    binary task's Youden threshold is not a score); else a ConfigError naming ``flag``."""
    import difflib

    from transfusion_cli.scores import metric_names

    names = [m for m in metric_names(info) if m != "threshold"]
    if name not in names:
        close = difflib.get_close_matches(name, names, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise ConfigError(f"{flag} {name!r} is not a metric of dataset '{info.name}' "
                          f"({info.task}); choose one of {', '.join(names)}.{hint}")


def resolve_selection_metric(config: FitConfig, info: DatasetInfo) -> str:
    """``--selection-metric``, or the dataset's selection metric; checked against the task."""
    name = config.selection_metric or info.selection_metric
    check_selection_metric(name, info, "--selection-metric")
    return name


def run_choices(config: FitConfig, model: TfxModel,
                dataset_selection: str | None = None) -> dict[str, Any]:
    """Augmentation, schedule, optimiser, the architecture's init scheme and how best.pt is
    chosen (``dataset_selection``: the dataset's own selection metric, for the record)."""
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
        "best_checkpoint": {"metric": config.selection_metric, "split": "validation",
                            "rule": "the evaluation with the highest value",
                            "dataset_default": dataset_selection},
    }
