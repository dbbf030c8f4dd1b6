"""FitConfig: every `tfx fit` setting, resolved from a YAML file and flags (flags win)."""

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

OPTIMIZERS = ("adam", "sgd")
SCHEDULERS = ("cosine", "constant")
DEVICES = ("auto", "cpu", "cuda")
# Settings that may change when resuming a run: they do not alter what has been trained so far.
RESUMABLE_CHANGES = frozenset({"epochs", "steps", "eval_every", "workers", "device", "resume"})


@dataclass
class FitConfig:
    """Everything one training run needs; saved as the run folder's config.yaml.

    Defaults make the quick start (`tfx fit`) train cbr-tiny on synthetic-retina in about a
    minute on 2 CPU cores. ``None`` means "decide from the dataset / device" as documented on
    each field.
    """

    data: str = "synthetic-retina"
    arch: str = "cbr-tiny"
    init: str = "random"  # a registered init, ``name`` or ``name:ARGUMENT``
    weights: str | None = None  # file an init reads (InitContext.weights)
    data_dir: str | None = None
    options: dict[str, Any] = field(default_factory=dict)  # dataset-specific options
    data_seed: int = 0  # synthetic content, patient split and --train-size subset
    skip_bad_images: bool = False
    image_size: int | None = None  # None: the dataset's default
    train_size: int | None = None  # None: the whole training split
    in_chans: int | None = None  # None: the dataset's channels
    epochs: int | None = 4  # ignored when steps is set
    steps: int | None = None
    batch_size: int = 32  # per process under torchrun
    lr: float = 1e-3
    optimizer: str = "adam"
    momentum: float = 0.9  # sgd only
    weight_decay: float = 0.0
    scheduler: str = "cosine"  # cosine decay to zero over the run, or constant
    seed: int = 0  # initialisation, data order and every other training RNG
    device: str = "auto"
    amp: bool | None = None  # None: on for CUDA, off on CPU
    workers: int | None = None  # None: 0 on CPU, min(8, cores) on CUDA
    eval_every: int | None = None  # steps; None: once per epoch (and always at the end)
    out: str | None = None  # None: runs/<data>-<arch>-<YYYYmmdd-HHMMSS>
    resume: str | None = None
    overwrite: bool = False
    deterministic: bool = False

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
    hint = typing.get_type_hints(FitConfig)[name]
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
        path = path / "config.yaml"
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
    return {key: _check_value(key, value, str(path)) for key, value in data.items()}


def resolve_config(config_file: str | Path | None = None,
                   overrides: dict[str, Any] | None = None) -> FitConfig:
    """Defaults, then the YAML file, then ``overrides`` (the flags that were given)."""
    layers = []
    if config_file is not None:
        layers.append((str(config_file), load_config_file(config_file)))
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    check_keys(list(overrides), "flags")
    layers.append(("flags", {k: _check_value(k, v, f"--{k.replace('_', '-')}")
                             for k, v in overrides.items()}))
    values: dict[str, Any] = {}
    for source, layer in layers:
        # The run length given last wins: steps in a layer clear epochs from below, and back.
        if layer.get("steps") is not None and layer.get("epochs") is not None:
            raise ConfigError(f"{source}: give either epochs or steps, not both.")
        if layer.get("steps") is not None:
            values["epochs"] = None
        if layer.get("epochs") is not None:
            values["steps"] = None
        layer = dict(layer)
        if "options" in layer:  # dataset options merge key by key
            layer["options"] = {**values.get("options", {}), **(layer["options"] or {})}
        values.update(layer)
    config = FitConfig(**values)
    validate(config)
    return config


def validate(config: FitConfig) -> None:
    """Range and choice checks, each failing with the fix."""
    if config.steps is not None and config.epochs is not None:
        raise ConfigError("Give either epochs or steps, not both.")
    if config.steps is None and config.epochs is None:
        raise ConfigError("Give the run length: --epochs N or --steps N.")
    positive = {"epochs": config.epochs, "steps": config.steps, "batch_size": config.batch_size,
                "eval_every": config.eval_every, "train_size": config.train_size,
                "image_size": config.image_size, "in_chans": config.in_chans}
    for name, value in positive.items():
        if value is not None and value < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be at least 1, got {value}.")
    if not config.lr > 0:
        raise ConfigError(f"--lr must be positive, got {config.lr}.")
    if config.weight_decay < 0:
        raise ConfigError(f"--weight-decay must be 0 or more, got {config.weight_decay}.")
    if config.workers is not None and config.workers < 0:
        raise ConfigError(f"--workers must be 0 or more, got {config.workers}.")
    for name, value, choices in (("optimizer", config.optimizer, OPTIMIZERS),
                                 ("scheduler", config.scheduler, SCHEDULERS),
                                 ("device", config.device, DEVICES)):
        if value not in choices:
            close = difflib.get_close_matches(value, choices, n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            raise ConfigError(f"--{name} {value!r} is not one of {', '.join(choices)}.{hint}")


def resume_config(run_dir: Path, overrides: dict[str, Any]) -> FitConfig:
    """The config of the run in ``run_dir``, with only the settings a resume may change."""
    saved = load_config_file(run_dir / "config.yaml")
    given = {k: v for k, v in overrides.items() if v is not None and k != "resume"}
    changed = sorted(k for k, v in given.items()
                     if k not in RESUMABLE_CHANGES and saved.get(k) != v and k != "overwrite")
    if changed:
        flags = ", ".join(f"--{k.replace('_', '-')}" for k in changed)
        raise ConfigError(f"Cannot change {flags} when resuming {run_dir}; only --epochs, "
                          "--steps, --eval-every, --workers and --device may change. Start a "
                          "new run instead.")
    config = resolve_config(run_dir / "config.yaml", given)
    config.resume = str(run_dir)
    config.out = str(run_dir)
    return config
