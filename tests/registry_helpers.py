"""The one way tests put fake plugins into the registry and take them out again."""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from transfusion_cli.plugins import load_registry, reset_registry


def _name(plugin: object) -> str:
    return getattr(plugin, "__name__", None) or type(plugin).__name__


@contextmanager
def registry_with(*plugins: object) -> Iterator[Callable[..., None]]:
    """The built-in registry plus ``plugins`` inside the block; yields ``use(*more)``, which
    reloads it with more plugins. The process-wide registry is dropped afterwards."""
    loaded: list[object] = []

    def use(*more: object) -> None:
        loaded.extend(more)
        reset_registry(load_registry(extra_plugins=[(_name(p), p) for p in loaded]))

    use(*plugins)
    try:
        yield use
    finally:
        reset_registry(None)


def registered_architectures() -> list[str]:
    """The concrete (not pattern) architectures of a freshly loaded registry: under the suite's
    isolation (tests/conftest.py), the built-in ones only."""
    return [s.name for s in load_registry().specs("architectures") if s.resolve is None]


def fake_distribution(root: Path, name: str, entry_points: dict[str, str],
                      modules: dict[str, str]) -> Path:
    """A real installed distribution on disk: a dist-info with `tfx` entry points, plus modules."""
    root.mkdir(parents=True, exist_ok=True)
    dist_info = root / f"{name.replace('-', '_')}-1.2.3.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.2.3\n")
    lines = "\n".join(f"{k} = {v}" for k, v in entry_points.items())
    (dist_info / "entry_points.txt").write_text(f"[tfx]\n{lines}\n")
    for module, source in modules.items():
        (root / f"{module}.py").write_text(textwrap.dedent(source))
    return root
