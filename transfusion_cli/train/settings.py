"""The fit settings, each declared once: name, type, default, choices, help.

The YAML checks of ``config.yaml``, the flags of ``tfx fit`` and the pass-through flags of
``tfx compare-inits`` are built from ``SETTINGS``; ``FitConfig`` (``train/config.py``) is a plain
dataclass that writes each field out for readers and type checkers.

To add a setting, add one ``FitSetting`` to ``SETTINGS`` below and the same field (name, type,
default, at the same place) to ``FitConfig``; read it as ``config.NAME`` in the training code.
It becomes a config.yaml key, a ``tfx fit`` flag and, unless compare-inits sets it per cell
(``compare.plan.CELL_FIELDS``), a ``tfx compare-inits`` flag, with the same default
everywhere. ``tests/train/test_fit_settings.py`` checks that this holds for every entry, and that
FitConfig's fields are the settings.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any

from transfusion_cli.errors import ConfigError
from transfusion_cli.limits import MAX_IN_CHANS, MAX_SEED, MIN_IMAGE_SIZE

DATA, MODEL, TRAINING, RUN = "Data", "Model", "Training", "Run folder and hardware"
DEVICES = ("auto", "cpu", "cuda")  # also the --device choices of other commands


@dataclass(frozen=True)
class FitSetting:
    """One fit setting: a FitConfig field, a config.yaml key and a command-line flag."""

    name: str  # FitConfig field and YAML key; the flag is --name-with-dashes
    type: Any  # the field's type, e.g. ``int | None`` (None: decided from data or device)
    default: Any
    help: str  # one sentence, without the default (commands show it)
    panel: str = TRAINING  # group in `tfx fit --help`
    short: str | None = None  # e.g. "-d"
    flag: str | None = None  # the flag when it is not --name-with-dashes
    choices: tuple[str, ...] = ()
    # What a None default means, shown as the default ("the dataset's").
    default_text: str | None = None
    at_least: float | None = None  # range checks, each failing with the fix
    above: float | None = None
    at_most: float | None = None
    path: bool = False  # a file or folder: the flag takes a path, the config keeps a string
    key_values: bool = False  # a dict: the flag repeats as KEY=VALUE
    metavar: str | None = None
    # Flag without a --no- form (False and absent read the same, so a YAML true stays).
    switch: bool = False
    resumable: bool = False  # may change when resuming a run (does not alter what was trained)

    @property
    def option(self) -> str:
        """The long flag, e.g. ``--batch-size``."""
        return self.flag or "--" + self.name.replace("_", "-")

    def check(self, value: Any, source: str | None = None) -> None:
        """Range and choice checks of a (type-checked) value; None passes."""
        if value is None:
            return
        where = source or self.option
        if self.choices and value not in self.choices:
            close = difflib.get_close_matches(str(value), self.choices, n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            raise ConfigError(f"{where} {value!r} is not one of {', '.join(self.choices)}.{hint}")
        if self.above is not None and not value > self.above:
            wanted = "positive" if self.above == 0 else f"above {self.above}"
            raise ConfigError(f"{where} must be {wanted}, got {value}.")
        if self.at_least is not None and value < self.at_least:
            wanted = "0 or more" if self.at_least == 0 else f"at least {self.at_least:.15g}"
            raise ConfigError(f"{where} must be {wanted}, got {value}.")
        if self.at_most is not None and value > self.at_most:
            raise ConfigError(f"{where} must be at most {self.at_most:.15g}, got {value}.")


def _parse_option_pairs(pairs: list[str]) -> dict[str, str]:
    from transfusion_cli.data.build import parse_option_pairs

    return parse_option_pairs(pairs)


SETTINGS: tuple[FitSetting, ...] = (
    FitSetting("data", str, "synthetic-retina", "Dataset name (`tfx list datasets`).",
               DATA, short="-d"),
    FitSetting("arch", str, "cbr-tiny", "Architecture (`tfx list architectures`).", MODEL,
               short="-a"),
    FitSetting("init", str, "random", "Initialisation, NAME or NAME:ARG (`tfx list inits`).",
               MODEL),
    FitSetting("weights", str | None, None, "Weights file the init reads (e.g. a timm "
               ".safetensors for imagenet / mean-var).", MODEL, path=True),
    FitSetting("data_dir", str | None, None, "Folder of the dataset's files.", DATA, path=True,
               default_text="$TFX_DATA_DIR/<name>"),
    FitSetting("options", dict[str, Any], {}, "Dataset option, repeatable (see `tfx list "
               "datasets --json`).", DATA, flag="--option", metavar="KEY=VALUE", key_values=True),
    FitSetting("data_seed", int, 0, "Seed of the data: synthetic content, patient split, "
               "--train-size subset.", DATA, at_least=0, at_most=MAX_SEED),
    FitSetting("skip_bad_images", bool, False, "Leave out unreadable images (with a warning) "
               "instead of failing.", DATA, switch=True),
    FitSetting("augment", str | None, None, "Training augmentation (torchvision v2, after the "
               "image cache): none, light (no flips), flip (light + horizontal flip) or fundus; "
               "see docs/reproduce-the-paper.md.", DATA,
               choices=("none", "light", "flip", "fundus"),
               default_text="the dataset's (`tfx list datasets`)"),
    # The upper bound depends on $TFX_MAX_IMAGE_SIZE: data.build_dataset checks it.
    FitSetting("image_size", int | None, None, "Image side in pixels.", DATA,
               at_least=MIN_IMAGE_SIZE, default_text="the dataset's"),
    FitSetting("train_size", int | None, None, "Train on a fixed, seeded, stratified subset of "
               "N training images.", DATA, at_least=1, default_text="the whole training split"),
    FitSetting("in_chans", int | None, None, "Model input channels (grey images are replicated "
               "to 3).", MODEL, at_least=1, at_most=MAX_IN_CHANS, default_text="the dataset's"),
    FitSetting("epochs", int | None, 4, "Epochs to train (ignored when --steps is given).",
               at_least=1, resumable=True),
    FitSetting("steps", int | None, None, "Optimizer steps to train (instead of --epochs).",
               at_least=1, resumable=True),
    FitSetting("batch_size", int, 32, "Images per step (per process under torchrun).",
               short="-b", at_least=1),
    FitSetting("lr", float, 1e-3, "Peak learning rate.", above=0),
    FitSetting("optimizer", str, "adam", "Optimizer.", choices=("adam", "sgd")),
    FitSetting("momentum", float, 0.9, "SGD momentum (sgd only).", at_least=0),
    FitSetting("weight_decay", float, 0.0, "L2 weight decay.", at_least=0),
    FitSetting("scheduler", str, "cosine", "Learning-rate schedule: cosine decay to zero over "
               "the run, or constant.", choices=("cosine", "constant")),
    FitSetting("warmup_steps", int, 0, "Linear learning-rate warm-up over the first N steps, "
               "then the schedule (constant: a fixed warm-up, independent of the run length).",
               at_least=0),
    FitSetting("seed", int, 0, "Training seed: initialisation, data order and every other "
               "training RNG.", at_least=0, at_most=MAX_SEED),
    FitSetting("device", str, "auto", "Where to train; auto: CUDA if present.", RUN,
               choices=DEVICES, resumable=True),
    FitSetting("amp", bool | None, None, "Mixed precision.", RUN,
               default_text="on for CUDA (bf16 where supported, else fp16), off on CPU"),
    FitSetting("workers", int | None, None, "Data-loading processes.", RUN, at_least=0,
               default_text="0 on CPU, up to 8 on CUDA", resumable=True),
    FitSetting("eval_every", int | None, None, "Evaluate every N steps.", at_least=1,
               default_text="once per epoch, and at the end", resumable=True),
    FitSetting("eval_test", bool, False, "Also score the test split at every evaluation "
               "(test/<metric> in metrics.jsonl): convergence on held-out data, as the paper "
               "measures it.", switch=True),
    FitSetting("selection_metric", str | None, None, "Validation metric that picks best.pt "
               "(the highest value wins), e.g. auc, kappa, mean_auc, auc/LABEL.",
               default_text="the dataset's (`tfx list datasets`), e.g. referable_auc"),
    FitSetting("out", str | None, None, "Run folder.", RUN, short="-o", path=True,
               default_text="runs/<data>-<arch>-<YYYYmmdd-HHMMSS>"),
    FitSetting("resume", str | None, None, "Continue the run in RUN_DIR from its last.pt.", RUN,
               path=True, metavar="RUN_DIR", resumable=True),
    FitSetting("overwrite", bool, False, "Replace an existing run folder.", RUN, switch=True),
    FitSetting("deterministic", bool, False, "Deterministic algorithms (no cuDNN autotuning); "
               "slower on GPU.", RUN, switch=True),
    FitSetting("log", str, "none", "Mirror every metrics.jsonl record (and the settings, as "
               "parameters) to an experiment tracker: tensorboard (RUN/tensorboard/) or mlflow "
               "($MLFLOW_TRACKING_URI, else the SQLite store RUN/mlflow.db); needs pip install "
               "'transfusion-cli[tensorboard]' or 'transfusion-cli[mlflow]'.",
               RUN, choices=("none", "tensorboard", "mlflow"), resumable=True),
)

BY_NAME: dict[str, FitSetting] = {s.name: s for s in SETTINGS}
# Settings that may change when resuming a run: they do not alter what has been trained so far.
RESUMABLE_CHANGES = frozenset(s.name for s in SETTINGS if s.resumable)


def flag_value(setting: FitSetting, value: Any) -> Any:
    """A command-line value as FitConfig holds it; None (and an absent switch) is "not given"."""
    if value is None or (setting.switch and value is False):
        return None
    if setting.path:
        return str(value)
    if setting.key_values:
        return _parse_option_pairs(list(value)) if value else None
    return value


def merge_layer(values: dict[str, Any], layer: dict[str, Any], source: str) -> dict[str, Any]:
    """``values`` updated by ``layer`` (a config file or the flags): the run length given last
    wins (steps in a layer clears epochs from below, and back); KEY=VALUE settings (dataset
    options) merge key by key."""
    if layer.get("steps") is not None and layer.get("epochs") is not None:
        raise ConfigError(f"{source}: give either epochs or steps, not both.")
    merged = dict(values)
    if layer.get("steps") is not None:
        merged["epochs"] = None
    if layer.get("epochs") is not None:
        merged["steps"] = None
    layer = dict(layer)
    for name in (s.name for s in SETTINGS if s.key_values and s.name in layer):
        layer[name] = {**(merged.get(name) or {}), **(layer[name] or {})}
    merged.update(layer)
    return merged

