"""Training: ``fit(FitConfig) -> FitResult`` writes a run folder; ``score_loader`` scores a model
over a data loader.

The names below are imported on first use, so that importing a light submodule (the
settings that the CLI declares its flags from) does not import torch: `tfx predict` and
`tfx --version` stay torch-free.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "FitConfig": "config", "load_config_file": "config", "resolve_config": "config",
    "resume_config": "config", "score_loader": "evaluation", "predict_logits": "evaluation",
    "task_loss": "evaluation", "FitResult": "loop", "fit": "loop",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
