"""Issue 11 part A: no command loses or overwrites a user's files (each test is one item).

Every test runs the real CLI (``transfusion_cli.cli.main``), checks the exit code and the
one-line message naming the culprit, and compares a tree snapshot before and after.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap

import fit_helpers
import numpy as np
import pytest
from fit_helpers import ROOT, one_thread
from PIL import Image
from registry_helpers import registry_with
from tree_snapshot import assert_tree_unchanged, snapshot_tree

FIT = ["fit", "--data", "fake-retina", "--arch", "cbr-tiny", "--image-size", "32",
       "--batch-size", "8", "--option", "n_train=32", "--option", "n_val=16"]


@pytest.fixture(autouse=True)
def fakes():
    with registry_with(fit_helpers), one_thread():
        yield


def run_cli(args, capsys) -> tuple[int, str]:
    """`tfx ARGS` in-process: (exit code, stderr)."""
    from transfusion_cli.cli import main

    capsys.readouterr()
    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as exc:
        code = exc.code or 0
    return code, capsys.readouterr().err


def error_line(stderr: str) -> str:
    """The one error line (and assert it is the only line that is an error)."""
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("Error:")]
    assert len(errors) == 1 and errors[0] == lines[-1], stderr
    assert "Traceback" not in stderr
    return errors[0]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A 2-step run (every file a run has), copied by each test that changes it."""
    root = tmp_path_factory.mktemp("finished") / "run"
    from transfusion_cli.cli import main

    with registry_with(fit_helpers), one_thread():
        try:
            main([*FIT, "--steps", "2", "--out", str(root)])
        except SystemExit as done:
            assert done.code in (0, None)
    assert (root / "checkpoints" / "best.pt").is_file()
    return root


def copy_run(source, tmp_path, name="run"):
    target = tmp_path / name
    shutil.copytree(source, target)
    return target


def image_folder(root, classes=("normal", "sick"), per_class=6, size=24):
    rng = np.random.default_rng(0)
    for name in classes:
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(
                root / name / f"{i}.png")
    return root


# ----------------------------------------------------------------------------- item 1

@pytest.mark.parametrize("remove", ["checkpoints/last.pt", "checkpoints"])
def test_item1_resume_without_last_pt_fails_and_touches_nothing(finished_run, tmp_path, capsys,
                                                                remove):
    run = copy_run(finished_run, tmp_path)
    target = run / remove
    shutil.rmtree(target) if target.is_dir() else target.unlink()
    before = snapshot_tree(tmp_path)
    code, stderr = run_cli(["fit", "--resume", run, "--steps", "4"], capsys)
    assert code == 1
    line = error_line(stderr)
    assert str(run / "checkpoints" / "last.pt") in line and "is missing" in line
    assert_tree_unchanged(tmp_path, before)


# ----------------------------------------------------------------------------- item 2

def test_item2_filters_refuses_to_overwrite_its_checkpoint(finished_run, tmp_path, capsys):
    run = copy_run(finished_run, tmp_path)
    best = run / "checkpoints" / "best.pt"
    (tmp_path / "alias.png").symlink_to(best)  # a symlink to the input is the input
    before = snapshot_tree(tmp_path)
    code, stderr = run_cli(["filters", best, "--out", best], capsys)
    assert code == 1 and f"--out {best}" in error_line(stderr)  # (its suffix is refused too)
    alias = tmp_path / "alias.png"
    for args in (["filters", best], ["filters", run / "checkpoints" / "init.pt", "--compare",
                                     best]):
        code, stderr = run_cli([*args, "--out", alias], capsys)
        assert code == 1
        assert f"--out {alias} is also an input ({best})" in error_line(stderr)
    assert_tree_unchanged(tmp_path, before)


def test_item2_similarity_refuses_to_plot_over_a_checkpoint(finished_run, tmp_path, capsys):
    run = copy_run(finished_run, tmp_path)
    a, b = run / "checkpoints" / "init.pt", run / "checkpoints" / "best.pt"
    plot = tmp_path / "plot.png"
    plot.symlink_to(b)
    before = snapshot_tree(tmp_path)
    code, stderr = run_cli(["similarity", a, b, "--plot", b], capsys)
    assert code == 1 and f"--plot {b}" in error_line(stderr)  # (its suffix is refused too)
    code, stderr = run_cli(["similarity", a, b, "--plot", plot], capsys)
    assert code == 1 and f"--plot {plot} is also an input ({b})" in error_line(stderr)
    assert_tree_unchanged(tmp_path, before)


def test_item2_predict_refuses_a_csv_over_an_input(tmp_path, capsys):
    model = tmp_path / "m.onnx"
    model.write_bytes(b"not checked: the guard runs before the model is opened")
    images = image_folder(tmp_path / "images", per_class=1)
    image = images / "normal" / "0.png"
    before = snapshot_tree(tmp_path)
    for csv_path, says in ((image, "is also an input"), (model, "is also an input"),
                           (images / "out.csv", "is inside the dataset folder")):
        folder_or_file = images if csv_path.parent == images else image
        code, stderr = run_cli(["predict", model, folder_or_file, "--csv", csv_path], capsys)
        assert code == 1
        line = error_line(stderr)
        assert f"--csv {csv_path}" in line and says in line
    assert_tree_unchanged(tmp_path, before)


def test_item2_data_show_refuses_to_write_into_the_dataset(tmp_path, capsys):
    data = image_folder(tmp_path / "D")
    before = snapshot_tree(tmp_path)
    for out in (data / "normal" / "x.png", data / "normal" / "0.png"):
        code, stderr = run_cli(["data", "show", "--data", "image-folder", "--data-dir", data,
                                "--out", out], capsys)
        assert code == 1
        assert f"is inside the dataset folder {data}" in error_line(stderr)
    assert_tree_unchanged(tmp_path, before)


def test_item2_export_refuses_to_overwrite_its_checkpoint(finished_run, tmp_path, capsys):
    run = copy_run(finished_run, tmp_path)
    best = run / "checkpoints" / "best.pt"
    (tmp_path / "model.onnx").symlink_to(best)
    data = image_folder(tmp_path / "D", per_class=1)
    before = snapshot_tree(tmp_path)
    code, stderr = run_cli(["export", best, "--out", tmp_path / "model.onnx"], capsys)
    assert code == 1
    assert f"--out {tmp_path / 'model.onnx'} is also an input ({best})" in error_line(stderr)
    code, stderr = run_cli(["export", best, "--out", data / "model.onnx", "--data-dir", data],
                           capsys)
    assert code == 1 and "is inside the dataset folder" in error_line(stderr)
    assert_tree_unchanged(tmp_path, before)


def test_item2_fit_refuses_an_out_inside_or_around_its_data(tmp_path, capsys):
    data = image_folder(tmp_path / "D")
    before = snapshot_tree(tmp_path)
    for out, says in ((data / "run", "is inside the dataset folder"),
                      (tmp_path, "contains the dataset folder")):
        code, stderr = run_cli(["fit", "--data", "image-folder", "--data-dir", data,
                                "--image-size", "16", "--batch-size", "4", "--steps", "1",
                                "--out", out,
                                "--overwrite"], capsys)
        assert code == 1
        assert says in error_line(stderr)
    assert_tree_unchanged(tmp_path, before)


# ----------------------------------------------------------------------------- item 3

def test_item3_overwrite_only_replaces_a_run_tfx_made(finished_run, tmp_path, capsys):
    project = tmp_path / "project"
    (project / "data").mkdir(parents=True)
    (project / "config.yaml").write_text("data: fake-retina\n")
    (project / "notes.md").write_text("three months of notes")
    (project / "data" / "scan.png").write_bytes(b"\x89PNG precious")
    (project / "checkpoints").mkdir()
    before = snapshot_tree(tmp_path)
    code, stderr = run_cli([*FIT, "--steps", "1", "--out", project, "--overwrite"], capsys)
    assert code == 1
    line = error_line(stderr)
    assert f"{project} exists and is not a tfx run folder" in line
    assert_tree_unchanged(tmp_path, before)
    # A run tfx made carries the marker, and --overwrite may replace it.
    import json

    run = copy_run(finished_run, tmp_path)
    assert json.loads((run / "env.json").read_text())["format"].startswith("tfx-run/")
    code, stderr = run_cli([*FIT, "--steps", "1", "--out", run, "--overwrite"], capsys)
    assert code == 0, stderr


# ----------------------------------------------------------------------------- item 4

def test_item4_a_run_being_trained_is_locked_with_the_holders_pid(finished_run, tmp_path,
                                                                  capsys):
    run = copy_run(finished_run, tmp_path)
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
                     [*FIT, "--steps", "1", "--out", run, "--overwrite"]):
            code, stderr = run_cli(args, capsys)
            assert code == 1
            line = error_line(stderr)
            assert f"is being trained by process {holder.pid}" in line and str(run) in line
        assert_tree_unchanged(tmp_path, before)
    finally:
        holder.kill()
        holder.wait()
    # The kernel drops the lock with its holder: the run can be resumed now.
    code, stderr = run_cli(["fit", "--resume", run, "--steps", "3"], capsys)
    assert code == 0, stderr


# ----------------------------------------------------------------------------- item 5

@pytest.mark.parametrize("switch", ["overwrite: true", "resume: SOMEWHERE"])
def test_item5_destructive_switches_in_a_config_file_are_errors(finished_run, tmp_path, capsys,
                                                                switch):
    run = copy_run(finished_run, tmp_path)
    config = tmp_path / "settings.yaml"
    config.write_text((run / "config.yaml").read_text().replace("overwrite: false", "")
                      .replace("resume: null", "") + switch.replace("SOMEWHERE", str(run)) + "\n")
    before = snapshot_tree(tmp_path)
    code, stderr = run_cli(["fit", "--config", config], capsys)
    assert code == 1
    line = error_line(stderr)
    key = switch.split(":")[0]
    assert str(config) in line and f"'{key}:" in line and f"pass --{key} on the command line" \
        in line
    assert_tree_unchanged(tmp_path, before)
    # The run's own config.yaml (overwrite: false, resume: null) still reruns as before.
    code, stderr = run_cli(["fit", "--config", run / "config.yaml", "--out", tmp_path / "again"],
                           capsys)
    assert code == 0, stderr
