"""The public API: everything a plugin (built-in or third-party) or a notebook imports from tfx.

Plugins import only from here (a test checks ``plugins/`` and ``tests/plugin_pkg/``); the
modules behind these names may move, these names do not.
"""

from transfusion_cli.catalog import spec_rows
from transfusion_cli.console import info, warn
from transfusion_cli.data.build import build_dataset
from transfusion_cli.data.bundles import (
    ArrayImageSplit,
    DatasetBundle,
    DatasetInfo,
    DatasetOptions,
    make_target,
)
from transfusion_cli.data.cache import (
    NpzArraySource,
    cached_split,
    npz_member_header,
    npz_member_shape,
)
from transfusion_cli.data.files import (
    IMAGE_SUFFIXES,
    check_splits,
    file_bundle,
    keep_existing,
    normalisation,
    require_data_dir,
)
from transfusion_cli.data.options import OptionReader, fold_name, match_name, split_list
from transfusion_cli.data.splits import check_fractions, group_split, split_manifest, stratum_keys
from transfusion_cli.data.stats import label_stats
from transfusion_cli.data.tables import Table, read_lines, read_table, reject_duplicates
from transfusion_cli.errors import (
    CheckpointError,
    ConfigError,
    DataError,
    TfxError,
    UnknownNameError,
)
from transfusion_cli.hookspecs import hookimpl
from transfusion_cli.models.blocks import (
    block_names,
    model_blocks,
    resolve_block_prefix,
    state_keys_by_block,
)
from transfusion_cli.models.checkpoint import build_model, load_checkpoint
from transfusion_cli.models.gabor import gabor_bank
from transfusion_cli.models.pretrained import (
    SourceWeights,
    copy_into,
    input_conv_names,
    load_source,
)
from transfusion_cli.models.summary import architecture_summary
from transfusion_cli.models.zoo import load_zoo
from transfusion_cli.registry import (
    ArchitectureSpec,
    DatasetSpec,
    InitContext,
    InitSpec,
    MetricSpec,
    get,
    get_registry,
)
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
from transfusion_cli.similarity.compare_checkpoints import compare_checkpoints

__all__ = [
    "ArchitectureSpec", "ArrayImageSplit", "CheckpointError", "ConfigError", "DataError",
    "DatasetBundle", "DatasetInfo", "DatasetOptions", "DatasetSpec", "IMAGE_SUFFIXES",
    "InitContext", "InitSpec", "MetricSpec", "MinibatchCKA", "NpzArraySource", "OptionReader",
    "SourceWeights", "Table", "TfxError", "UnknownNameError", "block_names", "build_dataset",
    "build_model", "cached_split", "cca_from_moments", "check_fractions", "check_splits",
    "copy_into", "debiased_cka", "debiased_cka_from_moments", "file_bundle", "fold_name",
    "gabor_bank", "get", "get_registry", "group_split", "hookimpl", "info", "input_conv_names",
    "keep_existing", "linear_cka", "linear_cka_from_moments", "load_checkpoint", "load_source",
    "load_zoo", "make_target", "match_name", "mean_cca", "minibatch_cka", "model_blocks",
    "normalisation", "npz_member_header", "npz_member_shape", "pwcca", "pwcca_from_moments",
    "read_lines",
    "read_table", "reject_duplicates", "require_data_dir", "resolve_block_prefix", "split_list",
    "split_manifest", "state_keys_by_block", "stratum_keys", "svcca", "svcca_from_moments",
    "warn",
    # Notebook-facing functions behind `tfx list`, `tfx data stats` and `tfx similarity`.
    "architecture_summary", "compare_checkpoints", "label_stats", "spec_rows",
]
