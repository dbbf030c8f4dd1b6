"""Making a run folder (train/rundir.py, train/runlock.py): `fit --out` refused where it
cannot write, `--overwrite` only over a run tfx made, one process per run, `--resume` needs
last.pt, and a run that fails leaves no folder."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap

import pytest
from fit_helpers import FAKE_RETINA, ROOT, copy_run
from input_files import SMALL, unwritable_folder
from tree_snapshot import assert_tree_unchanged, snapshot_tree


def test_out_under_a_file_or_in_an_unwritable_folder_is_refused(tfx, tmp_path, cache_dir):
    blocker = tmp_path / "afile"
    blocker.write_text("not a folder")
    before = snapshot_tree(tmp_path)
    result = tfx("fit", *SMALL, "--steps", "1", "--out", blocker / "run")
    assert result.exit_code == 1
    assert "afile is a file" in result.error_line()
    assert_tree_unchanged(tmp_path, before)

    unwritable = unwritable_folder() / "tfx-run"
    result = tfx("fit", *SMALL, "--steps", "1", "--out", unwritable)
    assert result.exit_code == 1
    assert str(unwritable) in result.error_line() and not unwritable.exists()
    assert_tree_unchanged(tmp_path, before)


def test_a_late_failure_leaves_no_run_folder(tfx, tmp_path):
    before = snapshot_tree(tmp_path)
    result = tfx("fit", *SMALL, "--steps", "1", "--in-chans", "2", "--out", tmp_path / "run")
    assert result.exit_code == 1
    assert "channels" in result.error_line()
    assert_tree_unchanged(tmp_path, before)


@pytest.mark.parametrize("remove", ["checkpoints/last.pt", "checkpoints"])
def test_resume_without_last_pt_fails_and_touches_nothing(fit_fakes, tfx, fake_retina_run, tmp_path,
                                                           remove):
    run = copy_run(fake_retina_run, tmp_path)
    target = run / remove
    shutil.rmtree(target) if target.is_dir() else target.unlink()
    before = snapshot_tree(tmp_path)
    result = tfx("fit", "--resume", run, "--steps", "4")
    assert result.exit_code == 1
    line = result.error_line()
    assert str(run / "checkpoints" / "last.pt") in line and "is missing" in line
    assert_tree_unchanged(tmp_path, before)


def test_overwrite_replaces_only_a_run_tfx_made(fit_fakes, tfx, fake_retina_run, tmp_path):
    project = tmp_path / "project"
    (project / "data").mkdir(parents=True)
    (project / "config.yaml").write_text("data: fake-retina\n")
    (project / "notes.md").write_text("three months of notes")
    (project / "data" / "scan.png").write_bytes(b"\x89PNG precious")
    (project / "checkpoints").mkdir()
    before = snapshot_tree(tmp_path)
    result = tfx("fit", *FAKE_RETINA, "--steps", "1", "--out", project, "--overwrite")
    assert result.exit_code == 1
    line = result.error_line()
    assert f"{project} exists and is not a tfx run folder" in line
    assert_tree_unchanged(tmp_path, before)
    # A run tfx made carries the marker, and --overwrite may replace it.

    run = copy_run(fake_retina_run, tmp_path)
    assert json.loads((run / "env.json").read_text())["format"].startswith("tfx-run/")
    result = tfx("fit", *FAKE_RETINA, "--steps", "1", "--out", run, "--overwrite")
    assert result.exit_code == 0, result.stderr


def test_a_run_being_trained_is_locked_with_the_holders_pid(fit_fakes, tfx, fake_retina_run,
                                                            tmp_path):
    run = copy_run(fake_retina_run, tmp_path)
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from transfusion_cli.train.runlock import RunLock
        lock = RunLock({str(run)!r}).acquire()
        print("locked", flush=True)
        time.sleep(120)
        """)], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert holder.stdout.readline().strip() == "locked"
        before = snapshot_tree(tmp_path)
        for args in (["fit", "--resume", run, "--steps", "4"],
                     ["fit", *FAKE_RETINA, "--steps", "1", "--out", run, "--overwrite"]):
            result = tfx(*args)
            assert result.exit_code == 1
            line = result.error_line()
            assert f"is being trained by process {holder.pid}" in line and str(run) in line
        assert_tree_unchanged(tmp_path, before)
    finally:
        holder.kill()
        holder.wait()
    # The kernel drops the lock with its holder: the run can be resumed now.
    result = tfx("fit", "--resume", run, "--steps", "3")
    assert result.exit_code == 0, result.stderr
