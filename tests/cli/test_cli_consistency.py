"""What a user sees on every command: --version, help examples, full-width tables when piped,
progress off a terminal, and the documented installs (CPU-only, predict-only)."""

from __future__ import annotations

import importlib.metadata
import io
import json
import re
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest
from export_helpers import FakeDatasets, fundus_png, make_ckpt, retina_info
from packaging.requirements import Requirement
from registry_helpers import registry_with
from rich.console import Console
from rich.table import Table

from transfusion_cli import __version__, progress
from transfusion_cli.console import UNLIMITED_WIDTH, DataConsole

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"

VERSION_WITHOUT_TORCH = """
import atexit, sys
atexit.register(lambda: print("TORCH_IMPORTED=" + str("torch" in sys.modules), file=sys.stderr))
from transfusion_cli.cli import main
main(["--version"])
"""


def test_version_is_printed_without_importing_torch():
    run = subprocess.run([sys.executable, "-c", VERSION_WITHOUT_TORCH], capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout == f"tfx {__version__}\n"
    assert "TORCH_IMPORTED=False" in run.stderr


@pytest.mark.parametrize("command", ["export", "predict", "plugins"])
def test_help_ends_with_examples(tfx, command):
    result = tfx(command, "--help")
    assert result.exit_code == 0
    lines = [line.strip() for line in result.stdout.splitlines() if line.strip()]
    heading = max(i for i, line in enumerate(lines) if line == "Examples")
    examples = lines[heading + 1:]
    assert 1 <= len(examples) <= 2
    assert all(line.startswith(f"tfx {command}") for line in examples)


# ---------------------------------------------------------------------------- tables


def long_table() -> tuple[Table, str]:
    value = "/data/" + "very-long-folder-name/" * 12 + "image.png"
    table = Table("image", "probability")
    table.add_row(value, "0.125")
    return table, value


def test_tables_are_full_width_off_a_terminal():
    buffer = io.StringIO()
    console = DataConsole(file=buffer, soft_wrap=True, highlight=False)
    assert not console.is_terminal and console.width == UNLIMITED_WIDTH
    table, value = long_table()
    console.print(table)
    row = next(line for line in buffer.getvalue().splitlines() if "image.png" in line)
    assert value in row and "0.125" in row
    assert max(len(line) for line in buffer.getvalue().splitlines()) < len(value) + 30


def test_tables_fit_the_terminal_on_a_terminal():
    buffer = io.StringIO()
    console = DataConsole(file=buffer, force_terminal=True, width=80, color_system=None)
    assert console.width == 80
    table, value = long_table()
    console.print(table)
    assert value not in buffer.getvalue()  # folded to the terminal's width
    assert max(len(line) for line in buffer.getvalue().splitlines()) <= 80


# ---------------------------------------------------------------------------- progress


def test_off_terminal_a_long_step_prints_periodic_lines(monkeypatch, capsys):
    monkeypatch.setenv(progress.INTERVAL_ENV, "0.05")
    with progress.track("caching", total=6, unit="images") as task:
        assert not task.on_terminal
        for _ in range(6):
            time.sleep(0.03)
            task.advance()
    lines = capsys.readouterr().err.splitlines()
    assert 2 <= len(lines) <= 4  # about one per 0.05 s over 0.18 s, not one per advance
    assert all(re.fullmatch(r"caching: \d/6 images \(\d+%\), \d+s elapsed, ETA \d+s", line)
               for line in lines), lines
    monkeypatch.setenv(progress.INTERVAL_ENV, "60")
    with progress.track("caching", total=6, unit="images") as task:
        for _ in range(6):
            task.advance()
    assert capsys.readouterr().err == ""  # a quick step stays quiet


def test_fit_progress_off_a_terminal_prints_steps_loss_and_eta(monkeypatch, capsys):
    from transfusion_cli.train.progress import Progress

    monkeypatch.setenv(progress.INTERVAL_ENV, "0")
    bar = Progress(total_steps=10, start_step=4, selection="auc", enabled=True)
    bar.step(5, 0.6931)
    bar.evaluation({"step": 5, "epoch": 0.5, "train_loss": 0.69, "auc": 0.75, "best": True,
                    "images_per_s": 100.0})
    bar.step(6, 0.5)
    bar.close()
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith("fit: 5/10 steps (50%)") and "loss 0.6931" in lines[0]
    assert "ETA" in lines[0]
    assert lines[1].startswith("step 5/10  epoch 0.50  train_loss 0.6900  auc 0.7500 (best)")
    assert len(lines) == 3  # a status change alone (the new metric) prints no line
    assert lines[2].startswith("fit: 6/10 steps (60%)") and lines[2].endswith(
        "loss 0.5000  auc 0.7500")
    Progress(total_steps=10, start_step=0, selection="auc", enabled=False).step(3, 0.1)
    assert capsys.readouterr().err == ""  # ranks other than 0


def test_on_a_terminal_nested_tasks_share_one_display(monkeypatch):
    buffer = io.StringIO()
    monkeypatch.setattr(progress, "err", Console(file=buffer, force_terminal=True, width=100))
    with progress.track("compare-inits", total=2, unit="cells") as sweep:
        for cell in range(2):
            with progress.track("fit", total=3, unit="steps") as fit:  # a cell inside the sweep
                assert fit.on_terminal and sweep.on_terminal
                fit.message(f"cell {cell}")
                for step in range(3):
                    fit.update(step + 1, status="loss 0.5")
            sweep.advance()
    assert progress._display.bar is None and progress._display.users == 0
    assert "cell 0" in buffer.getvalue() and "compare-inits" in buffer.getvalue()


def test_track_iter_counts_weighted_items(monkeypatch, capsys):
    monkeypatch.setenv(progress.INTERVAL_ENV, "0")
    batches = [[1, 2, 3], [4, 5]]
    assert list(progress.track_iter(batches, "calibration", total=5, unit="images",
                                    weight=len)) == batches
    assert capsys.readouterr().err.splitlines()[-1].startswith("calibration: 5/5 images (100%)")


# ---------------------------------------------------------------------------- installs


def shell_block_after(marker: str) -> str:
    """The first ```bash block of the README after ``marker``."""
    text = README.read_text()
    return re.search(r"```bash\n(.*?)```", text[text.index(marker):], flags=re.S).group(1)


def project_requirements(extras: set[str]) -> list[Requirement]:
    """What installing this project with ``extras`` asks for: its dependencies and those of
    each extra (an extra naming the project itself, like dev's [train], is followed)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = [Requirement(r) for r in project["dependencies"]]
    todo, seen = list(extras), set()
    while todo:
        extra = todo.pop()
        if extra in seen:
            continue
        seen.add(extra)
        for text in project["optional-dependencies"][extra]:
            requirement = Requirement(text)
            if requirement.name == project["name"]:
                todo.extend(requirement.extras)
            else:
                wanted.append(requirement)
    return wanted


def pip_requirements(block: str) -> list[Requirement]:
    """The requirements that the `pip install` lines of a shell block name (``.[a,b]`` and
    ``-e .``: this project's own, see ``project_requirements``; ``--no-deps .``: none)."""
    wanted = []
    for line in block.splitlines():
        words = line.split("#")[0].replace('"', "").replace("'", "").split()
        if words[:2] != ["pip", "install"]:
            continue
        args = iter(words[2:])
        for word in args:
            if word in ("--index-url", "--extra-index-url"):
                next(args)
            elif word.startswith(".") and "--no-deps" not in words:
                extras = re.search(r"\[(.*)\]", word)
                wanted += project_requirements(set(extras.group(1).split(",")) if extras
                                               else set())
            elif not word.startswith("-") and not word.startswith("."):
                wanted.append(Requirement(word))
    return wanted


def test_cpu_only_install_names_every_dependency_with_cpu_onnxruntime():
    expected = set()
    for requirement in project_requirements({"train"}):  # the whole tool, as [dev] has it
        requirement.marker = None
        if requirement.name == "onnxruntime-gpu":
            continue  # the CPU install uses plain onnxruntime, listed for other platforms
        expected.add(str(requirement))
    documented = {str(r) for r in pip_requirements(shell_block_after("**CPU only**"))}
    assert documented == expected
    assert "download.pytorch.org/whl/cpu" in shell_block_after("**CPU only**")


def distribution_closure(names: list[str]) -> set[str]:
    """The distributions ``names`` need, recursively (markers evaluated, no extras)."""
    seen: set[str] = set()
    todo = list(names)
    while todo:
        name = todo.pop()
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        key = dist.metadata["Name"].lower().replace("_", "-")
        if key in seen:
            continue
        seen.add(key)
        for text in dist.requires or []:
            requirement = Requirement(text)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(requirement.name)
    return seen


def top_level_modules(distributions: set[str]) -> set[str]:
    """The importable top-level names those distributions provide."""
    modules = set()
    for module, dists in importlib.metadata.packages_distributions().items():
        if any(d.lower().replace("_", "-") in distributions for d in dists):
            modules.add(module)
    return modules


PREDICT_ONLY = """
import importlib.abc, json, sys
allowed = set(json.loads(sys.argv[1]))


class NotInstalled(importlib.abc.MetaPathFinder):
    \"\"\"Behave as if every package outside the predict-only install were missing.\"\"\"

    def find_spec(self, name, path=None, target=None):
        top = name.split(".")[0]
        if top in allowed or top in sys.stdlib_module_names or top.startswith("_"):
            return None
        raise ModuleNotFoundError(f"No module named {name!r} (predict-only install)", name=name)


sys.meta_path.insert(0, NotInstalled())
from transfusion_cli.cli import main
main(["predict", *sys.argv[2:], "--json"])
"""


def test_predict_works_with_only_the_predict_only_install(tmp_path):
    """`tfx predict` with every package outside the README's predict-only install made
    unimportable (torch, timm, onnx, sklearn, ...): the project's base dependencies."""
    documented = [r.name for r in pip_requirements(shell_block_after("**Predict only**"))
                  if r.marker is None or r.marker.evaluate()]
    assert {"numpy", "pillow", "typer", "rich"} <= set(documented)
    assert {"onnxruntime", "onnxruntime-gpu"} & set(documented)
    assert not {"torch", "torchvision", "timm", "onnx", "scikit-learn"} & set(documented)
    installed = [("onnxruntime-gpu" if name == "onnxruntime" and not has(name) else name)
                 for name in documented]
    allowed = top_level_modules(distribution_closure(installed)) | {"transfusion_cli",
                                                                    "tfx_plugins"}
    assert "torch" not in allowed and "sklearn" not in allowed and "onnxruntime" in allowed
    with registry_with(FakeDatasets()):
        ckpt = make_ckpt(tmp_path / "m.pt", "cbr-tiny", retina_info(32))
        from transfusion_cli.deploy.export import ExportSettings, export_checkpoint

        export_checkpoint(ExportSettings(checkpoint=ckpt, out=tmp_path / "m.onnx",
                                         latency_runs=1))
    image = fundus_png(tmp_path / "eye.png", size=70)
    run = subprocess.run([sys.executable, "-c", PREDICT_ONLY, json.dumps(sorted(allowed)),
                          str(tmp_path / "m.onnx"), str(image)], capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    (record,) = [json.loads(line) for line in run.stdout.splitlines()]
    assert record["image"] == str(image) and set(record["probabilities"]) == set(
        retina_info().class_names)


def has(distribution: str) -> bool:
    try:
        importlib.metadata.distribution(distribution)
        return True
    except importlib.metadata.PackageNotFoundError:
        return False


@pytest.mark.parametrize("args,expected", [
    (["fit", "--bogus"], "No such option: --bogus"),
    (["fit", "--steps", "many"], "Invalid value for '--steps'"),
    (["export"], "Missing argument"),
    (["no-such-command"], "No such command"),
])
def test_usage_errors_are_one_line(tfx, args, expected):
    result = tfx(*args)
    assert result.exit_code == 2 and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: ") and expected in lines[0] and "--help" in lines[0]
    assert "╭" not in result.stderr and "Usage:" not in result.stderr
