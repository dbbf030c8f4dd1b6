"""The plugin contract: everything a tfx plugin (built-in or third-party) imports from tfx.

Plugins import only from here (a test checks ``plugins/`` and ``tests/plugin_pkg/``); the
modules behind these names may move, these names do not. ``docs/plugins.md`` documents each
name (a test keeps that list and ``__all__`` equal). Notebook conveniences (building a dataset,
loading a checkpoint, comparing checkpoints, ...) are in ``transfusion_cli.notebook``.

Importing this module loads only the hook marker, the specs, the errors and the message
functions (no torch), so a plugin that needs nothing else, such as a preprocessing step that
`tfx predict` loads, stays light; every other name is imported on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from transfusion_cli.console import info, warn
from transfusion_cli.errors import (
    CheckpointError,
    ConfigError,
    DataError,
    TfxError,
    UnknownNameError,
)
from transfusion_cli.hookspecs import hookimpl
from transfusion_cli.plugins import get
from transfusion_cli.registry import (
    ArchitectureSpec,
    DatasetSpec,
    InitContext,
    InitSpec,
    MetricSpec,
    PreprocessSpec,
    TfxModel,
)

# The helpers, imported on first use: module -> names.
_LAZY_MODULES = {
    "transfusion_cli.data.bundles": ("ArrayImageSplit", "DatasetBundle", "DatasetInfo",
                                     "DatasetOptions", "make_target"),
    "transfusion_cli.data.cache": ("NpzArraySource", "cached_split", "npz_member_header"),
    "transfusion_cli.data.files": ("check_splits", "file_bundle", "keep_existing",
                                   "normalisation", "require_data_dir"),
    "transfusion_cli.data.preprocess": ("IMAGE_SUFFIXES",),
    "transfusion_cli.data.options": ("OptionReader", "fold_name", "match_name", "split_list"),
    "transfusion_cli.data.splits": ("check_fractions", "group_split", "split_manifest",
                                    "stratum_keys"),
    "transfusion_cli.data.tables": ("Table", "read_lines", "read_table", "reject_duplicates"),
    "transfusion_cli.models.blocks": ("resolve_block_prefix", "state_keys_by_block"),
    "transfusion_cli.models.gabor": ("gabor_bank",),
    "transfusion_cli.models.pretrained": ("SourceWeights", "copy_into", "input_conv_names",
                                          "load_source"),
    "transfusion_cli.models.zoo": ("load_zoo",),
    "transfusion_cli.similarity": (
        "MinibatchCKA", "cca_from_moments", "debiased_cka", "debiased_cka_from_moments",
        "linear_cka", "linear_cka_from_moments", "mean_cca", "minibatch_cka", "pwcca",
        "pwcca_from_moments", "svcca", "svcca_from_moments"),
}
_LAZY = {name: module for module, names in _LAZY_MODULES.items() for name in names}

if TYPE_CHECKING:  # what type checkers and editors see for the lazily imported names
    from transfusion_cli.data.bundles import (
        ArrayImageSplit,
        DatasetBundle,
        DatasetInfo,
        DatasetOptions,
        make_target,
    )
    from transfusion_cli.data.cache import NpzArraySource, cached_split, npz_member_header
    from transfusion_cli.data.files import (
        check_splits,
        file_bundle,
        keep_existing,
        normalisation,
        require_data_dir,
    )
    from transfusion_cli.data.options import OptionReader, fold_name, match_name, split_list
    from transfusion_cli.data.preprocess import IMAGE_SUFFIXES
    from transfusion_cli.data.splits import (
        check_fractions,
        group_split,
        split_manifest,
        stratum_keys,
    )
    from transfusion_cli.data.tables import Table, read_lines, read_table, reject_duplicates
    from transfusion_cli.models.blocks import resolve_block_prefix, state_keys_by_block
    from transfusion_cli.models.gabor import gabor_bank
    from transfusion_cli.models.pretrained import (
        SourceWeights,
        copy_into,
        input_conv_names,
        load_source,
    )
    from transfusion_cli.models.zoo import load_zoo
    from transfusion_cli.similarity import (
        MinibatchCKA,
        cca_from_moments,
        debiased_cka,
        debiased_cka_from_moments,
        linear_cka,
        linear_cka_from_moments,
        mean_cca,
        minibatch_cka,
        pwcca,
        pwcca_from_moments,
        svcca,
        svcca_from_moments,
    )

__all__ = [
    # Hooks, specs and the registry lookup.
    "ArchitectureSpec", "DatasetSpec", "InitContext", "InitSpec", "MetricSpec",
    "PreprocessSpec", "TfxModel", "get", "hookimpl",
    # Errors and messages.
    "CheckpointError", "ConfigError", "DataError", "TfxError", "UnknownNameError", "info", "warn",
    # What a dataset plugin builds.
    "ArrayImageSplit", "DatasetBundle", "DatasetInfo", "DatasetOptions", "make_target",
    # Helpers for dataset plugins: options, tables, splits, image files, cached arrays.
    "IMAGE_SUFFIXES", "NpzArraySource", "OptionReader", "Table", "cached_split",
    "check_fractions", "check_splits", "file_bundle", "fold_name", "group_split",
    "keep_existing", "match_name", "normalisation", "npz_member_header", "read_lines",
    "read_table", "reject_duplicates", "require_data_dir", "split_list", "split_manifest",
    "stratum_keys",
    # Helpers for architecture and init plugins.
    "SourceWeights", "copy_into", "gabor_bank", "input_conv_names", "load_source", "load_zoo",
    "resolve_block_prefix", "state_keys_by_block",
    # Similarity measures for metric plugins.
    "MinibatchCKA", "cca_from_moments", "debiased_cka", "debiased_cka_from_moments",
    "linear_cka", "linear_cka_from_moments", "mean_cca", "minibatch_cka", "pwcca",
    "pwcca_from_moments", "svcca", "svcca_from_moments",
]


def __getattr__(name: str) -> Any:
    """Import a helper on first use (PEP 562)."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
