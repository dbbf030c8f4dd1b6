"""The base install (predict, serve) has no torch; in it every command that needs
torch stops with one line naming the extra to install."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
TRAIN_ONLY = {"torch", "torchvision", "timm", "onnx", "scikit-learn", "threadpoolctl"}

WITHOUT_TRAIN_EXTRA = """
import importlib.abc, sys
BLOCKED = {"torch", "torchvision", "timm", "onnx", "sklearn", "threadpoolctl",
           "pytorch_grad_cam"}


class NotInstalled(importlib.abc.MetaPathFinder):
    \"\"\"Behave as if the [train] extra were not installed.\"\"\"

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)


sys.meta_path.insert(0, NotInstalled())
from transfusion_cli.cli import main
main(sys.argv[1:])
"""


def test_base_dependencies_are_torch_free_and_dev_installs_the_train_extra():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    base = {Requirement(r).name for r in project["dependencies"]}
    extras = project["optional-dependencies"]
    assert not base & TRAIN_ONLY
    assert {Requirement(r).name for r in extras["train"]} >= TRAIN_ONLY
    dev = [Requirement(r) for r in extras["dev"]]
    assert any(r.name == project["name"] and "train" in r.extras for r in dev)


def run_without_torch(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", WITHOUT_TRAIN_EXTRA, *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("args", [
    ["fit", "--epochs", "1", "--out", "run"],
    ["evaluate", "model.pt"],
    ["export", "model.pt", "--out", "model.onnx"],
    ["explain", "model.pt", "photo.png", "--out", "maps"],
    ["similarity", "model.pt", "model.pt"],
    ["filters", "model.pt", "--out", "filters.png"],
    ["data", "show", "--data", "synthetic-retina", "--out", "data.png"],
    ["compare-inits", "--out", "sweep"],
    ["reproduce", "--out", "study"],
], ids=lambda args: args[0] if args[0] != "data" else "data-show")
def test_commands_that_need_torch_name_the_extra(tmp_path, args):
    (tmp_path / "model.pt").write_bytes(b"not read: torch is needed first")
    (tmp_path / "photo.png").write_bytes(b"")
    run = run_without_torch(args, tmp_path)
    assert run.returncode == 1, run.stderr[-2000:]
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr[-2000:]
    assert lines[0].startswith("Error: ") and "pip install 'transfusion-cli[train]'" in lines[0]
    assert "internal error" not in lines[0]
    assert not (tmp_path / "run").exists() and not (tmp_path / "sweep").exists()


def test_commands_without_torch_still_work(tmp_path):
    run = run_without_torch(["--version"], tmp_path)
    assert run.returncode == 0 and run.stdout.strip()
    run = run_without_torch(["list", "preprocessing"], tmp_path)
    assert run.returncode == 0 and "fundus_crop" in run.stdout, run.stderr
