"""Shared pieces of the "your files are safe" tests: a tiny image-folder run, and the refusal
check every test makes (`tfx` in-process through the real entry point, cli_runner.TFX)."""

from __future__ import annotations

from pathlib import Path

from cli_runner import TFX
from fit_helpers import one_thread
from input_files import SMALL, image_folder
from tree_snapshot import assert_tree_unchanged, snapshot_tree

__all__ = ["SMALL", "assert_refused", "image_folder", "image_folder_run"]

FIT = ["fit", "--arch", "cbr-tiny", "--image-size", "16", "--batch-size", "8", "--steps", "2"]


def image_folder_run(root: Path) -> tuple[Path, Path]:
    """(data folder, best.pt): ``root/data/image-folder`` (two classes of noise, 12 each) and
    a 2-step cbr-tiny run trained on it with ``--data-dir``, so the run records the folder."""
    data = image_folder(root / "data" / "image-folder", per_class=12, size=24)
    run = root / "run"
    with one_thread():
        TFX(*FIT, "--data", "image-folder", "--data-dir", data, "--out", run, check=True)
    return data, run / "checkpoints" / "best.pt"


def assert_refused(root: Path, *args: object, says: str, env: dict[str, str] | None = None,
                   code: int = 1) -> str:
    """`tfx ARGS` exits with ``code``, one `Error:` line holding ``says``, nothing under
    ``root`` changed; returns the error line."""
    before = snapshot_tree(root)
    result = TFX(*args, env=env)
    assert result.exit_code == code, result.stderr
    line = result.error_line()
    assert says in line, line
    assert_tree_unchanged(root, before)
    return line
