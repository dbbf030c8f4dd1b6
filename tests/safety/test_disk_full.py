"""A full disk, a full quota or a file-size limit is one `Error: could not write X: ...` line,
and every file written before stays as it was (issue 20, item 19).

The size limit is real: `tfx` runs in a subprocess under ``RLIMIT_FSIZE`` (with SIGXFSZ ignored,
so an oversized write fails with EFBIG instead of killing the process). A full disk is
simulated where file systems report it late: ``fsync`` failing with ENOSPC."""

from __future__ import annotations

import errno
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from cli_runner import CliResult
from fit_helpers import one_thread
from input_files import SMALL
from tree_snapshot import assert_tree_unchanged, snapshot_tree

from transfusion_cli.io import StorageFullError, write_text

pytestmark = pytest.mark.skipif(not hasattr(resource, "RLIMIT_FSIZE"), reason="POSIX only")


def tfx_with_size_limit(tfx, limit_bytes: int, *args, cwd: Path) -> CliResult:
    """`tfx ARGS` in a subprocess that may write no file beyond ``limit_bytes``."""
    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    return tfx.subprocess(*args, env={"OMP_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1"},
                          cwd=cwd, timeout=600, preexec_fn=limit)


@pytest.fixture(scope="module")
def trained(tfx, tmp_path_factory) -> Path:
    """A 2-step run (no limit), evaluated once into ``eval/`` (the earlier files)."""
    root = tmp_path_factory.mktemp("disk-full")
    with one_thread():
        result = tfx("fit", *SMALL, "--steps", "2", "--out", root / "run")
        assert result.exit_code == 0, result.stderr
        result = tfx("evaluate", root / "run" / "checkpoints" / "best.pt", "--bootstrap", "20",
                     "--out", root / "eval")
        assert result.exit_code == 0, result.stderr
    return root


def test_fit_over_a_file_size_limit_is_one_line_and_leaves_no_run(tfx, trained):
    # 1 MB: config.yaml and env.json fit, the 4 MB init.pt does not.
    before = snapshot_tree(trained)
    done = tfx_with_size_limit(tfx, 1_000_000, "fit", *SMALL, "--steps", "2", "--out", "run2",
                               cwd=trained)
    assert done.exit_code == 1, done.stderr
    line = done.error_line()
    assert line.startswith("Error: could not write run2/checkpoints/init.pt: file too large")
    assert "ulimit -f" in line
    assert_tree_unchanged(trained, before)  # the new run is removed, the old one untouched


def test_evaluate_over_a_file_size_limit_keeps_the_earlier_evaluation(tfx, trained):
    before = snapshot_tree(trained)
    done = tfx_with_size_limit(tfx, 3_000, "evaluate", "run/checkpoints/best.pt", "--bootstrap",
                               "20", "--out", "eval", cwd=trained)
    assert done.exit_code == 1, done.stderr
    line = done.error_line()
    assert line.startswith("Error: could not write eval/") and ": file too large;" in line
    assert_tree_unchanged(trained, before)  # eval/ and the record beside the model as they were



def test_export_over_a_file_size_limit_is_one_line_naming_the_model(tfx, trained):
    """The exporter writes into a temp folder (torch.onnx wraps the failed write): the error
    names the model asked for, and no temp folder, partial model or empty -o folder is left."""
    before = snapshot_tree(trained)
    done = tfx_with_size_limit(tfx, 100_000, "export", "run/checkpoints/best.pt", "-o",
                               "deploy/m.onnx", cwd=trained)
    assert done.exit_code == 1, done.stderr
    assert done.error_line().startswith("Error: could not write deploy/m.onnx: file too large")
    assert snapshot_tree(trained) == before  # not even the output folder it made

def test_a_full_disk_at_fsync_is_one_line_naming_the_file(tfx, trained, monkeypatch):
    def full(_fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    before = snapshot_tree(trained)
    monkeypatch.setattr(os, "fsync", full)
    with one_thread():
        result = tfx("evaluate", trained / "run" / "checkpoints" / "best.pt", "--bootstrap", "20",
                     "--out", trained / "eval")
    monkeypatch.undo()
    assert result.exit_code == 1
    line = result.error_line()
    assert f"could not write {trained / 'eval'}/" in line
    assert "no space left on device; free some space" in line
    assert_tree_unchanged(trained, before)


def test_torch_save_failures_are_reported_as_the_write_that_failed(tmp_path):
    """torch.save wraps a failed write in RuntimeError('[enforce fail ...]'): the checkpoint
    writer still reports what happened, and leaves no temp file and no partial target."""
    import torch

    from transfusion_cli.models.checkpoint import save_checkpoint

    code = (
        "import resource, signal, sys, torch\n"
        "from transfusion_cli.errors import TfxError\n"
        "from transfusion_cli.models.checkpoint import save_checkpoint\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (20000, 20000))\n"
        "try:\n"
        "    save_checkpoint({'w': torch.zeros(100000)}, sys.argv[1])\n"
        "except TfxError as exc:\n"
        "    print(type(exc).__name__, exc)\n")
    target = tmp_path / "ckpt.pt"
    save_checkpoint({"w": torch.ones(3)}, target)  # the earlier checkpoint
    before = snapshot_tree(tmp_path)
    done = subprocess.run([sys.executable, "-c", code, str(target)], capture_output=True,
                          text=True, timeout=300)
    assert done.stdout.startswith(f"StorageFullError could not write {target}: file too large"), \
        done.stdout + done.stderr
    assert_tree_unchanged(tmp_path, before)


def test_the_atomic_writers_name_the_target_not_the_temp_file(tmp_path, monkeypatch):
    target = tmp_path / "report.md"
    target.write_text("earlier")

    def full(_fd):
        raise OSError(errno.EDQUOT, os.strerror(errno.EDQUOT))

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(StorageFullError, match=f"could not write {target}: disk quota"):
        write_text(target, "later")
    monkeypatch.undo()
    assert [p.name for p in tmp_path.iterdir()] == ["report.md"]
    assert target.read_text() == "earlier"
