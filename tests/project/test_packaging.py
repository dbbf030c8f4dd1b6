"""Packaging: model_zoo.yaml and the plugins ship in the wheel and are found from an editable
install and from an installed wheel; every command runs from the wheel; no install hint names
the distribution's old name."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from transfusion_cli.models.zoo import load_zoo, zoo_path

ROOT = Path(__file__).resolve().parents[2]


def test_editable_install_finds_the_zoo():
    assert zoo_path().resolve() == (ROOT / "model_zoo.yaml").resolve()
    assert "cbr-tiny" in load_zoo()


# The old distribution name, spelt so that this file does not match its own patterns.
OLD = "tf" + "x"
OLD_NAME_HINTS = [
    re.compile(rf"(?<![\w.-]){OLD}\[[A-Za-z]"),  # an extra of the old distribution
    re.compile(rf"pip3? install\b[^\n|;&#`]*?(?<![\w./-])['\"]?{OLD}(?![\w-])"),
    re.compile(rf"(?:^|['\"]){OLD}\s*(?:==|>=|<=|~=|!=)\s*\d", re.M),  # a requirement line
    re.compile(rf"(?:version|distribution|metadata|requires|files)\(\s*['\"]{OLD}['\"]"),
]


def repo_text_files() -> list[Path]:
    """The repository's tracked and new (not ignored) text files."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others",
                             "--exclude-standard"], cwd=ROOT, capture_output=True, timeout=60)
    if listed.returncode != 0:  # not a git checkout (an unpacked sdist): walk the tree
        paths = [p for p in ROOT.rglob("*") if p.is_file() and not any(
            part.startswith(".") or part in ("build", "dist") for part in
            p.relative_to(ROOT).parts)]
    else:
        paths = [ROOT / name for name in listed.stdout.decode().split("\0") if name]
    return [p for p in paths if p.is_file() and b"\0" not in p.read_bytes()[:8192]]


def old_name_hints(text: str) -> list[str]:
    """Every install hint or metadata lookup in ``text`` that names the old distribution."""
    return [m.group(0) for pattern in OLD_NAME_HINTS for m in pattern.finditer(text)]


def test_the_hint_finder_tells_old_from_new_names():
    bad = [f"pip install '{OLD}[explain]'", f'pip install "{OLD}[dicom]"',
           f"pip install -U {OLD}", f"needs {OLD}[slurm]", f'dependencies = ["{OLD}>=0.1"]',
           f'importlib.metadata.version("{OLD}")', f"md.distribution('{OLD}')"]
    good = ["pip install 'transfusion-cli[explain]'", "pip install -e '.[dev]'",
            f"`pip install -e .` of your package, `{OLD} plugins` lists it",
            f"[project.entry-points.{OLD}]", f"{OLD} fit --data x", f"pip uninstall {OLD}",
            f"pip install transfusion-cli && {OLD} --version", f"{OLD}_register_datasets",
            f"{OLD}_plugins.architectures", f"(the {OLD} <= 0.x default)"]
    assert [text for text in bad if not old_name_hints(text)] == []
    assert {text: old_name_hints(text) for text in good if old_name_hints(text)} == {}


def test_no_install_hint_names_the_old_distribution():
    """The distribution is `transfusion-cli`; the name it had is TensorFlow Extended
    on the package index, so no doc, message or test may tell anyone to install it."""
    files = repo_text_files()
    assert ROOT / "README.md" in files and ROOT / "pyproject.toml" in files
    found = {str(path.relative_to(ROOT)): hints for path in files
             if (hints := old_name_hints(path.read_text(errors="replace")))}
    assert found == {}
    for pyproject in (p for p in files if p.name == "pyproject.toml"):
        project = tomllib.loads(pyproject.read_text()).get("project", {})
        requirements = [*project.get("dependencies", []),
                        *(r for extra in project.get("optional-dependencies", {}).values()
                          for r in extra)]
        names = {project.get("name")} | {Requirement(r).name for r in requirements}
        assert OLD not in names, pyproject


# What a build reads; the rest of the checkout (tests, caches, build output) stays behind.
SOURCE_IGNORED = shutil.ignore_patterns(".*", "build", "dist", "*.egg-info", "__pycache__",
                                        "tests", "runs", "benchmarks")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel, built from a copy of the source tree (a build writes build/ and *.egg-info
    beside its sources: not in the checkout, which other test processes are reading)."""
    source = tmp_path_factory.mktemp("source") / "transfusion-cli"
    shutil.copytree(ROOT, source, ignore=SOURCE_IGNORED)
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                    "--no-build-isolation", "-w", str(out), str(source)],
                   check=True, capture_output=True, timeout=600)
    return next(out.glob("transfusion_cli-*.whl"))


def test_wheel_ships_zoo_and_plugins(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert "transfusion_cli/model_zoo.yaml" in names
    assert "tfx_plugins/architectures/cbr.py" in names
    assert "transfusion_cli/reproduce/paper_evidence.json" in names  # `--judge paper`
    assert {f"transfusion_cli/deploy/serve/static/{name}" for name in  # the `tfx serve` page
            ("index.html", "app.js", "app.css", "docs.html", "docs.js")} <= set(names)
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "cbr = tfx_plugins.architectures.cbr" in text
    assert text.startswith("[console_scripts]\ntfx = ") or "\ntfx = transfusion_cli" in text
    metadata = next(n for n in names if n.endswith(".dist-info/METADATA"))
    assert "\nName: transfusion-cli\n" in zipfile.ZipFile(wheel).read(metadata).decode()


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
            "from transfusion_cli.plugins import get_registry;"
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
    """`--help` of every command, and a compare-inits plan on synthetic data, from
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
