"""Suite-wide isolation and the fixtures many test files share.

Isolation is set when pytest configures itself, before any test module is imported or
parametrised: every test session gets its own image cache (``TFX_CACHE_DIR`` in a temporary
folder) and loads only the built-in plugins (``TFX_LOAD_PLUGINS=""``), so a plugin installed on
the machine or a user's cache cannot change a result, nor the list of tests. Tests that need
installed third-party plugins request the ``third_party_plugins`` fixture. Test parameters read
from the registry (``registered_architecture``) are generated in ``pytest_generate_tests``,
after isolation.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import fit_helpers
import pytest
from cli_runner import TFX, TfxRunner
from fit_helpers import FAKE_RETINA, one_thread
from input_files import SMALL
from registry_helpers import registered_architectures, registry_with

ISOLATION = ("TFX_CACHE_DIR", "TFX_LOAD_PLUGINS")
_SAVED: dict[str, str | None] = {}


def pytest_configure(config: pytest.Config) -> None:
    """Isolate this process (each xdist worker too) from the machine's plugins and cache."""
    if _SAVED:  # configured already (a conftest is configured once per process)
        return
    _SAVED.update({name: os.environ.get(name) for name in ISOLATION})
    os.environ["TFX_CACHE_DIR"] = tempfile.mkdtemp(prefix="tfx-test-cache-")
    os.environ["TFX_LOAD_PLUGINS"] = ""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:  # pytest -n N: N processes share the cores instead of each taking all
        import torch

        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        torch.set_num_threads(max(1, (cpus or 1) // workers))


def pytest_unconfigure(config: pytest.Config) -> None:
    """The cache folder removed, the caller's environment back."""
    if not _SAVED:
        return
    shutil.rmtree(os.environ.get("TFX_CACHE_DIR", ""), ignore_errors=True)
    for name, value in _SAVED.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    _SAVED.clear()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """``registered_architecture``: every concrete architecture of the (isolated) registry."""
    if "registered_architecture" in metafunc.fixturenames:
        metafunc.parametrize("registered_architecture", registered_architectures())


@pytest.fixture(scope="session")
def tfx() -> TfxRunner:
    """Run `tfx`: ``tfx(*args, env=None, check=False)`` in this process, or
    ``tfx.subprocess(*args, env=None, pythonpath=(), cwd=None, timeout=300, check=False)``;
    both return a ``CliResult`` (exit_code, stdout, stderr, output, error_line(), check())."""
    return TFX


@pytest.fixture(scope="session")
def tiny_run(tfx, tmp_path_factory) -> Path:
    """A finished `tfx fit` run folder (2 steps of cbr-tiny on 32 px synthetic retina, 64/32/32
    images), made once per session: read it, or copy it to change it."""
    root = tmp_path_factory.mktemp("tiny-run") / "run"
    with one_thread():
        tfx("fit", *SMALL, "--steps", "2", "--out", root, check=True)
    return root


@pytest.fixture
def fit_fakes() -> Iterator[None]:
    """fit_helpers' fake datasets (fake-retina, fake-binary, fake-chest) in the registry, and
    torch on one thread, for this test."""
    with registry_with(fit_helpers), one_thread():
        yield


@pytest.fixture(scope="session")
def fake_retina_run(tfx, tmp_path_factory) -> Path:
    """A finished 2-step run on the fake retina data (every file a run has), made once per
    session: read it, or copy it to change it."""
    root = tmp_path_factory.mktemp("fake-retina-run") / "run"
    with registry_with(fit_helpers), one_thread():
        tfx("fit", *FAKE_RETINA, "--steps", "2", "--out", root, check=True)
    assert (root / "checkpoints" / "best.pt").is_file()
    return root


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
