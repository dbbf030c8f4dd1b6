"""Reads model_zoo.yaml: the named architectures, as data."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import yaml

from transfusion_cli.errors import ConfigError

ZOO_FILE = "model_zoo.yaml"


def zoo_path() -> Path:
    """model_zoo.yaml inside the installed package (wheel) or at the source root (editable)."""
    package = Path(__file__).resolve().parent.parent
    for candidate in (package / ZOO_FILE, package.parent / ZOO_FILE):
        if candidate.is_file():
            return candidate
    raise ConfigError(f"{ZOO_FILE} not found next to {package}; reinstall tfx (pip install -e .).")


@cache
def load_zoo(path: Path | None = None) -> dict[str, dict[str, Any]]:
    """The `architectures` mapping of the zoo file, validated."""
    path = path or zoo_path()
    data = yaml.safe_load(path.read_text()) or {}
    archs = data.get("architectures")
    if not isinstance(archs, dict) or not archs:
        raise ConfigError(f"{path}: expected a non-empty `architectures:` mapping.")
    for name, entry in archs.items():
        family = entry.get("family")
        if family == "cbr":
            channels, pools = entry.get("channels"), entry.get("pools")
            if not channels or len(channels) != len(pools or []) or "kernel" not in entry:
                raise ConfigError(f"{path}: CBR entry '{name}' needs kernel, and channels and "
                                  "pools of equal length.")
        elif family == "timm":
            if "timm_name" not in entry or not entry.get("blocks"):
                raise ConfigError(f"{path}: timm entry '{name}' needs timm_name and blocks.")
        else:
            raise ConfigError(f"{path}: entry '{name}' has unknown family {family!r} "
                              "(expected cbr or timm).")
    return archs
