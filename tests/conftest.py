"""Suite-wide isolation and the fixtures many test files share.

Every test session gets its own image cache (``TFX_CACHE_DIR`` in a temporary folder) and loads
only the built-in plugins (``TFX_LOAD_PLUGINS=""``), so a plugin installed on the machine or a
user's cache cannot change a result. Tests that need installed third-party plugins request the
``third_party_plugins`` fixture.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from registry_helpers import registry_with


@pytest.fixture(autouse=True, scope="session")
def tfx_isolation(tmp_path_factory) -> Iterator[None]:
    """Session-wide: a private image cache and no third-party plugins (set before any
    module-scoped fixture runs)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TFX_CACHE_DIR", str(tmp_path_factory.mktemp("tfx-cache")))
        patch.setenv("TFX_LOAD_PLUGINS", "")
        yield


@pytest.fixture
def third_party_plugins(monkeypatch) -> None:
    """Let this test (and the `tfx` subprocesses it starts) load installed third-party plugins."""
    monkeypatch.delenv("TFX_LOAD_PLUGINS", raising=False)


@pytest.fixture
def cache_dir(tmp_path, monkeypatch) -> Path:
    """A fresh, empty image cache for this test (``TFX_CACHE_DIR``)."""
    monkeypatch.setenv("TFX_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def fake_registry() -> Iterator[Callable[..., None]]:
    """``fake_registry(plugin, ...)``: the built-in registry plus these plugin objects (modules
    or instances with hook implementations) for the rest of the test, then the real one."""
    with registry_with() as use:
        yield use
