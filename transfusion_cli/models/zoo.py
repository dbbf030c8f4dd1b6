"""Reads model_zoo.yaml: the named architectures, as data.

Each entry names its ``family``; the architecture plugin of that family checks and builds its
entries (the core knows no family).
"""

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
    """The `architectures` mapping of the zoo file; every entry has a family."""
    path = path or zoo_path()
    data = yaml.safe_load(path.read_text()) or {}
    archs = data.get("architectures")
    if not isinstance(archs, dict) or not archs:
        raise ConfigError(f"{path}: expected a non-empty `architectures:` mapping.")
    for name, entry in archs.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("family"), str):
            raise ConfigError(f"{path}: entry '{name}' needs a `family:` (the architecture "
                              "plugin that builds it, e.g. the one of `tfx list architectures`).")
    return archs
