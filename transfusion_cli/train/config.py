"""FitConfig: every `tfx fit` setting (declared in ``train.settings``), resolved from a YAML
file and flags (flags win)."""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import field
from pathlib import Path
from typing import Any

import yaml

from transfusion_cli.errors import ConfigError
from transfusion_cli.train.settings import (
    BY_NAME,
    RESUMABLE_CHANGES,
    SETTINGS,
    FitSetting,
    merge_layer,
)

# Switches that delete or take over an existing run: command line only, never in a YAML file.
DESTRUCTIVE_SWITCHES = {"overwrite": False, "resume": None}


class FitConfigMethods:
    """What FitConfig does besides holding the settings (its fields come from SETTINGS)."""

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


def _field(setting: FitSetting) -> tuple[str, Any, Any]:
    if isinstance(setting.default, dict | list):
        return setting.name, setting.type, field(default_factory=setting.default.copy)
    return setting.name, setting.type, field(default=setting.default)


FitConfig = dataclasses.make_dataclass(
    "FitConfig", [_field(s) for s in SETTINGS], bases=(FitConfigMethods,))
FitConfig.__module__ = __name__
FitConfig.__doc__ = """Everything one training run needs; saved as the run folder's config.yaml.

Fields, types and defaults are ``train.settings.SETTINGS`` (one declaration per setting).
Defaults make the quick start (`tfx fit`) train cbr-tiny on synthetic-retina in about a minute
on 2 CPU cores. ``None`` means "decide from the dataset / device" as each setting says.
"""

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
    saved = load_config_file(run_dir / "config.yaml")
    given = {k: v for k, v in overrides.items() if v is not None and k != "resume"}
    changed = sorted(k for k, v in given.items()
                     if k not in RESUMABLE_CHANGES and saved.get(k) != v and k != "overwrite")
    if changed:
        flags = ", ".join(BY_NAME[k].option for k in changed)
        allowed = [s.option for s in SETTINGS if s.resumable and s.name != "resume"]
        raise ConfigError(f"Cannot change {flags} when resuming {run_dir}; only "
                          f"{', '.join(allowed[:-1])} and {allowed[-1]} may change. Start a "
                          "new run instead.")
    config = resolve_config(run_dir / "config.yaml", given)
    config.resume = str(run_dir)
    config.out = str(run_dir)
    return config
