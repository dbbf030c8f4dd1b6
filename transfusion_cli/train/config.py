"""FitConfig: every `tfx fit` setting (declared in ``train.settings``), resolved from a YAML
file and flags (flags win)."""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from transfusion_cli.errors import ConfigError
from transfusion_cli.io import stored_path
from transfusion_cli.runfolder import RunFolder
from transfusion_cli.train.settings import (
    BY_NAME,
    RESUMABLE_CHANGES,
    SETTINGS,
    merge_layer,
)

# Switches that delete or take over an existing run: command line only, never in a YAML file.
DESTRUCTIVE_SWITCHES = {"overwrite": False, "resume": None}
# Input paths a run stores absolute, so that it reads the same files from any folder.
INPUT_PATHS = ("data_dir", "weights")


@dataclass
class FitConfig:
    """Everything one training run needs; saved as the run folder's config.yaml.

    Each field is a setting declared in ``train.settings.SETTINGS`` (type, default, checks,
    help, flag); the fields are written out here for readers and type checkers, and
    ``tests/train/test_fit_settings.py`` checks that they match the settings (names, order, types,
    defaults). Defaults make the quick start (`tfx fit`) train cbr-tiny on synthetic-retina in
    about a minute on 2 CPU cores. ``None`` means "decide from the dataset / device" as each
    setting says.
    """

    # Data
    data: str = "synthetic-retina"
    arch: str = "cbr-tiny"
    init: str = "random"
    weights: str | None = None
    data_dir: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    data_seed: int = 0
    skip_bad_images: bool = False
    augment: str | None = None
    image_size: int | None = None
    train_size: int | None = None
    in_chans: int | None = None
    # Training
    epochs: int | None = 4
    steps: int | None = None
    batch_size: int = 32
    lr: float = 1e-3
    optimizer: str = "adam"
    momentum: float = 0.9
    weight_decay: float = 0.0
    scheduler: str = "cosine"
    warmup_steps: int = 0
    seed: int = 0
    # Run folder and hardware
    device: str = "auto"
    amp: bool | None = None
    workers: int | None = None
    eval_every: int | None = None
    eval_test: bool = False
    selection_metric: str | None = None
    out: str | None = None
    resume: str | None = None
    overwrite: bool = False
    deterministic: bool = False
    log: str = "none"

    def to_dict(self) -> dict[str, Any]:
        """Plain data for config.yaml. ``resume`` and ``overwrite`` are actions of one
        invocation, saved as null / false: rerunning a config starts afresh and never deletes
        an existing run folder unless asked again."""
        data = dataclasses.asdict(self)
        data["resume"] = None
        data["overwrite"] = False
        return data

    @property
    def init_name(self) -> str:
        """The init's registry name (before any ':')."""
        return self.init.split(":", 1)[0]

    @property
    def init_argument(self) -> str | None:
        """The text after ':' in ``init`` (``transfusion:2`` -> ``2``), or None."""
        name, sep, argument = self.init.partition(":")
        return argument if sep else None


FIELDS = {f.name: f for f in dataclasses.fields(FitConfig)}


def _allowed_types(name: str) -> tuple[type, ...]:
    hint = BY_NAME[name].type  # the declared type (FitConfig's annotation, a test checks)
    args = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    return tuple(typing.get_origin(a) or a for a in args)


def _check_value(name: str, value: Any, source: str) -> Any:
    allowed = _allowed_types(name)
    if value is None:
        if type(None) in allowed:
            return None
        raise ConfigError(f"{source}: '{name}' cannot be empty; give a value or remove the key.")
    if isinstance(value, bool) and bool not in allowed:
        raise ConfigError(f"{source}: '{name}' must be a number, got {value!r}.")
    if float in allowed and isinstance(value, int | float):
        return float(value)
    if int in allowed and isinstance(value, int):
        return value
    for kind in (bool, str, dict):
        if kind in allowed and isinstance(value, kind):
            return value
    wanted = " or ".join(t.__name__ for t in allowed if t is not type(None))
    raise ConfigError(f"{source}: '{name}' must be {wanted}, got {value!r}.")


def check_keys(keys: list[str], source: str) -> None:
    """Unknown keys are errors, with the closest valid key suggested."""
    for key in keys:
        if key not in FIELDS:
            close = difflib.get_close_matches(key, list(FIELDS), n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            raise ConfigError(f"{source}: unknown key '{key}'.{hint} Valid keys: "
                              f"{', '.join(FIELDS)}.")


def load_config_file(path: str | Path) -> dict[str, Any]:
    """The mapping in a YAML config file, keys checked and values type-checked."""
    path = Path(path)
    if path.is_dir():
        path = RunFolder(path).config
    if not path.is_file():
        raise ConfigError(f"Config file {path} does not exist; pass a YAML file such as "
                          "RUN_DIR/config.yaml.")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML ({str(exc).splitlines()[0]}).") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping of settings (key: value).")
    check_keys(list(data), str(path))
    for switch, off in DESTRUCTIVE_SWITCHES.items():
        if data.get(switch) not in (None, off):
            raise ConfigError(f"{path}: '{switch}: {data[switch]}' is not allowed in a config "
                              f"file; remove it and pass --{switch} on the command line.")
    return {key: _check_value(key, value, str(path)) for key, value in data.items()}


def resolve_config(config_file: str | Path | None = None,
                   overrides: dict[str, Any] | None = None) -> FitConfig:
    """Defaults, then the YAML file, then ``overrides`` (the flags that were given)."""
    layers = []
    if config_file is not None:
        layers.append((str(config_file), load_config_file(config_file)))
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    check_keys(list(overrides), "flags")
    layers.append(("flags", {k: _check_value(k, v, BY_NAME[k].option)
                             for k, v in overrides.items()}))
    values: dict[str, Any] = {}
    for source, layer in layers:
        values = merge_layer(values, layer, source)
    config = FitConfig(**values)
    for name in INPUT_PATHS:  # config.yaml (and a resume) works from any folder
        setattr(config, name, stored_path(getattr(config, name)))
    validate(config)
    return config


def validate(config: FitConfig) -> None:
    """Run length, range and choice checks (declared on each setting), each failing with the
    fix."""
    if config.steps is not None and config.epochs is not None:
        raise ConfigError("Give either epochs or steps, not both.")
    if config.steps is None and config.epochs is None:
        raise ConfigError("Give the run length: --epochs N or --steps N.")
    for setting in SETTINGS:
        setting.check(getattr(config, setting.name))


def resume_config(run_dir: Path, overrides: dict[str, Any]) -> FitConfig:
    """The config of the run in ``run_dir``, with only the settings a resume may change."""
    saved = load_config_file(RunFolder(run_dir).config)
    given = {k: v for k, v in overrides.items() if v is not None and k != "resume"}
    for name in INPUT_PATHS:  # the same file or folder, typed relative to here, is no change
        if given.get(name):
            given[name] = stored_path(given[name])
            saved[name] = stored_path(saved.get(name))
    changed = sorted(k for k, v in given.items()
                     if k not in RESUMABLE_CHANGES and saved.get(k) != v and k != "overwrite")
    if changed:
        flags = ", ".join(BY_NAME[k].option for k in changed)
        allowed = [s.option for s in SETTINGS if s.resumable and s.name != "resume"]
        raise ConfigError(f"Cannot change {flags} when resuming {run_dir}; only "
                          f"{', '.join(allowed[:-1])} and {allowed[-1]} may change. Start a "
                          "new run instead.")
    config = resolve_config(RunFolder(run_dir).config, given)
    config.resume = str(run_dir)
    config.out = str(run_dir)
    return config
