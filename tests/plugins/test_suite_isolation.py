"""The test suite sees the built-in plugins only: a third-party plugin installed on the machine
does not reach the tests, not even the lists of tests parametrised from the registry (which
are built after the suite's isolation, tests/conftest.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from registry_helpers import fake_distribution

ROOT = Path(__file__).resolve().parents[2]
LEAKY = """
    import torch

    from transfusion_cli.hookspecs import hookimpl
    from transfusion_cli.registry import ArchitectureSpec

    @hookimpl
    def tfx_register_architectures(register):
        register(ArchitectureSpec("leaky-net", lambda **kw: torch.nn.Identity()))
"""


def test_an_installed_plugin_is_not_in_any_collected_test(tmp_path, tfx):
    site = fake_distribution(tmp_path / "site", "tfx-leaky", {"leaky": "leaky_arch"},
                             {"leaky_arch": LEAKY})
    machine = {"TFX_LOAD_PLUGINS": None}  # as a user runs pytest: installed plugins load
    plugins = json.loads(tfx.subprocess("plugins", "--json", env=machine, pythonpath=[site],
                                        check=True).stdout)
    leaky = next(p for p in plugins if p["name"] == "leaky")
    assert leaky["error"] is None and leaky["registered"]["architectures"] == ["leaky-net"]

    collected = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
         "-o", "addopts=", "tests"],
        capture_output=True, text=True, cwd=ROOT, timeout=300,
        env=tfx.environment(machine, [site]))
    assert collected.returncode == 0, collected.stdout[-3000:] + collected.stderr[-3000:]
    ids = [line for line in collected.stdout.splitlines() if "::" in line]
    assert any("test_forward_shape_and_blocks[" in i and "cbr-tiny" in i for i in ids), ids
    assert not any("leaky-net" in i for i in ids), ids
