"""The one way tests put fake plugins into the registry and take them out again."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from transfusion_cli.plugins import load_registry
from transfusion_cli.registry import reset_registry


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
