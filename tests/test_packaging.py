"""model_zoo.yaml is found from an editable install and from a built wheel."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from transfusion_cli.models.zoo import load_zoo, zoo_path

ROOT = Path(__file__).resolve().parents[1]


def test_editable_install_finds_the_zoo():
    assert zoo_path().resolve() == (ROOT / "model_zoo.yaml").resolve()
    assert "cbr-tiny" in load_zoo()


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                    "--no-build-isolation", "-w", str(out), str(ROOT)],
                   check=True, capture_output=True, timeout=600)
    return next(out.glob("tfx-*.whl"))


def test_wheel_ships_zoo_and_plugins(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert "transfusion_cli/model_zoo.yaml" in names
    assert "tfx_plugins/architectures/cbr.py" in names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "cbr = tfx_plugins.architectures.cbr" in text


@pytest.fixture(scope="module")
def installed_wheel(wheel, tmp_path_factory) -> tuple[Path, Path, dict[str, str]]:
    """(python, its site-packages, environment) of a fresh venv with the wheel installed
    non-editable; dependencies (torch, timm, ...) come from this environment, nothing is
    downloaded."""
    tmp_path = tmp_path_factory.mktemp("installed")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig;print(sysconfig.get_paths()"
                                "['purelib'])"], capture_output=True, text=True,
                               check=True).stdout.strip())
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target",
                    str(site), str(wheel)], check=True, capture_output=True, timeout=300)
    # Dependencies (torch, timm, ...) come from this environment, after the wheel's own files.
    deps = [p for p in sys.path if p.endswith("site-packages")]
    (site / "zz_deps.pth").write_text("\n".join(deps) + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return python, site, env


def test_installed_wheel_finds_the_zoo(installed_wheel, tmp_path):
    """The installed wheel (not this checkout) finds its zoo and its plugins."""
    python, site, env = installed_wheel
    code = ("import transfusion_cli.models.zoo as z, json, sys;"
            "from transfusion_cli.registry import get_registry;"
            "print(json.dumps([str(z.zoo_path()), sorted(get_registry().names('architectures'))]))")
    result = subprocess.run([str(python), "-c", code], capture_output=True, text=True,
                            cwd=tmp_path, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    path, names = __import__("json").loads(result.stdout)
    assert Path(path).is_relative_to(site)
    assert "cbr-tiny" in names and "resnet50" in names


HELP_EVERY_COMMAND = """
import json, sys
import typer
from typer.testing import CliRunner
import transfusion_cli
from transfusion_cli.cli import app

def paths(command, prefix=()):
    yield prefix
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        yield from paths(sub, (*prefix, name))

runner = CliRunner()
results = {}
for path in paths(typer.main.get_command(app)):
    result = runner.invoke(app, [*path, "--help"], prog_name="tfx")
    results[" ".join(path) or "tfx"] = [result.exit_code, result.output[:200]]
print(json.dumps({"package": transfusion_cli.__file__, "help": results}))
"""


def test_installed_wheel_runs_every_command(installed_wheel, tmp_path):
    """Issue 11 E: `--help` of every command, and a compare-inits plan on synthetic data, from
    the installed wheel (a package left out of the wheel fails here)."""
    python, site, env = installed_wheel
    result = subprocess.run([str(python), "-c", HELP_EVERY_COMMAND], capture_output=True,
                            text=True, cwd=tmp_path, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    report = __import__("json").loads(result.stdout)
    assert Path(report["package"]).is_relative_to(site)
    helps = report["help"]
    failed = {name: output for name, (code, output) in helps.items() if code != 0}
    assert not failed, failed
    assert {"fit", "predict", "export", "similarity", "filters", "compare-inits",
            "data show"} <= set(helps)
    out = tmp_path / "sweep"
    plan = subprocess.run([str(python), "-m", "transfusion_cli", "compare-inits", "--data",
                           "synthetic-retina", "--arch", "cbr-tiny", "--inits", "random",
                           "--seeds", "1", "--image-size", "32", "--steps", "1", "--out",
                           str(out), "--plan-only"], capture_output=True, text=True,
                          cwd=tmp_path, env=env, timeout=300)
    assert plan.returncode == 0, plan.stderr[-2000:]
    assert (out / "plan.json").is_file() and "cbr-tiny" in plan.stdout + plan.stderr
