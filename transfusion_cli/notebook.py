"""Notebook conveniences: the library functions behind tfx's commands, in one import.

``from transfusion_cli import notebook as tfx`` then ``tfx.build_dataset("synthetic-retina")``,
``tfx.load_trained("run/checkpoints/best.pt")``, ``tfx.compare_checkpoints(a, b)``, ... These are
re-exports of library functions, for interactive use; plugins use ``transfusion_cli.api`` (the
plugin contract) instead.
"""

from __future__ import annotations

from transfusion_cli.catalog import spec_rows
from transfusion_cli.data.build import build_dataset
from transfusion_cli.data.stats import label_stats
from transfusion_cli.models.blocks import block_names, model_blocks
from transfusion_cli.models.checkpoint import build_model, load_checkpoint
from transfusion_cli.models.summary import architecture_summary
from transfusion_cli.models.trained import TrainedModel, load_trained
from transfusion_cli.plugins import get, get_registry
from transfusion_cli.similarity import (
    MinibatchCKA,
    debiased_cka,
    linear_cka,
    mean_cca,
    minibatch_cka,
    pwcca,
    svcca,
)
from transfusion_cli.similarity.compare_checkpoints import compare_checkpoints

__all__ = [
    # The registry: `tfx list`, one spec by name.
    "get", "get_registry", "spec_rows",
    # Datasets: `tfx data stats`.
    "build_dataset", "label_stats",
    # Models and checkpoints.
    "TrainedModel", "architecture_summary", "block_names", "build_model", "load_checkpoint",
    "load_trained", "model_blocks",
    # Representational similarity: `tfx similarity` and the measures behind it.
    "MinibatchCKA", "compare_checkpoints", "debiased_cka", "linear_cka", "mean_cca",
    "minibatch_cka", "pwcca", "svcca",
]
