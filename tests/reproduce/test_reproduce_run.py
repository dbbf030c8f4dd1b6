"""`tfx reproduce` end to end on a tiny profile (local and submitit executors), resuming without
retraining, and the compare-inits cluster flags (--cell-index, --plan-only from a folder)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

TINY = """
name: tiny
datasets:
  retina: {data: synthetic-retina, options: {train_size: 48, val_size: 32, test_size: 48}}
fit: {image_size: 32, steps: 2, eval_every: 2, batch_size: 16, scheduler: constant}
pretrained:
  stand_in:
    data: {retina: synthetic-chest}
    options: {train_size: 48, val_size: 32, test_size: 32}
roles: {standard: [cbr-tiny], small: []}
parts:
  table1: {dataset: retina, archs: [cbr-tiny], inits: [random, pretrained], seeds: 1}
  convergence: {dataset: retina, archs: [cbr-tiny], inits: [random, pretrained, gabor],
                target: 0.5}
"""


def trained_files(out: Path) -> dict[Path, int]:
    """Every checkpoint and done record of the study, with its mtime."""
    files = [*out.glob("sweeps/*/runs/*/checkpoints/*.pt"), *out.glob("sweeps/*/done/*.json")]
    return {p: p.stat().st_mtime_ns for p in files}


@pytest.fixture
def tiny_profile(tmp_path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY)
    return path


def test_tiny_study_finishes_then_reruns_without_training(tfx, tiny_profile, tmp_path):
    out = tmp_path / "study"
    result = tfx("reproduce", "--profile", str(tiny_profile), "-o", str(out))
    assert result.exit_code == 0, result.stderr[-3000:]
    # Stand-in source (1) + table1 random / pretrained + convergence gabor (random and
    # pretrained are table1's cells): 4 fits.
    assert len(list(out.glob("sweeps/*/done/*.json"))) == 4
    assert (out / "sweeps" / "retina" / "runs" / "cbr-tiny__random__nall__s0" /
            "test_predictions.npz").is_file()
    report = (out / "report.md").read_text()
    for claim in range(1, 9):
        assert f"| C{claim} |" in report
    assert "STAND-IN, not ImageNet" in report and "synthetic-chest" in report
    assert "not run" in report  # e.g. C4: no table3 in this profile
    assert "cbr-tiny, pretrained - random" in report  # the paired difference with its CI
    html = (out / "report.html").read_text()
    assert html.startswith("<!DOCTYPE html>") and "<table>" in html
    verdicts = json.loads((out / "verdicts.json").read_text())["verdicts"]
    assert [v["claim"] for v in verdicts] == [f"C{i}" for i in range(1, 9)]
    assert result.stdout.count("\n") == 8  # one verdict line per claim
    # The claims were judged on evidence.json, which `--judge` reads again (same verdicts).
    result = tfx("reproduce", "--judge", str(out / "evidence.json"), "--json")
    assert result.exit_code == 0, result.stderr[-3000:]
    assert [v["verdict"] for v in json.loads(result.stdout)["verdicts"]] == \
        [v["verdict"] for v in verdicts]

    before = trained_files(out)
    result = tfx("reproduce", "--profile", str(tiny_profile), "-o", str(out))
    assert result.exit_code == 0, result.stderr[-3000:]
    assert "4 cells, 4 already finished, 0 to run" not in result.stderr  # two stages, counted apart
    assert "1 cells, 1 already finished, 0 to run" in result.stderr
    assert "3 cells, 3 already finished, 0 to run" in result.stderr
    assert trained_files(out) == before  # nothing retrained, nothing rewritten


def test_reproduce_refuses_a_foreign_folder_and_bad_flags(tfx, tiny_profile, tmp_path):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    result = tfx("reproduce", "--profile", str(tiny_profile), "-o", str(foreign))
    assert result.exit_code == 1 and "not written by `tfx reproduce`" in result.stderr
    assert (foreign / "notes.txt").read_text() == "keep me"
    result = tfx("reproduce", "--profile", str(tiny_profile), "--only", "table3", "-o",
                 str(tmp_path / "x"))
    assert result.exit_code == 1 and "has no part 'table3'" in result.stderr
    assert "Traceback" not in result.stderr
    result = tfx("reproduce", "--show-profile", "smoke")
    assert result.exit_code == 0 and "parts:" in result.stdout and "stand_in:" in result.stdout


def _slurm_study(tfx, tiny_profile, tmp_path, cluster: str) -> Path:
    out = tmp_path / f"study-{cluster}"
    result = tfx("reproduce", "--profile", str(tiny_profile), "--only", "table1", "--executor",
                 "slurm", "--slurm-cluster", cluster, "--jobs", "2", "--time-min", "10", "-o",
                 str(out))
    assert result.exit_code == 0, result.stderr[-3000:]
    assert f"{cluster}: submitted" in result.stderr
    assert len(list(out.glob("sweeps/*/done/*.json"))) == 3  # source + random + pretrained
    assert "| C1 |" in (out / "report.md").read_text()
    return out


def test_slurm_executor_through_submitit_debug_backend(tfx, tiny_profile, tmp_path):
    pytest.importorskip("submitit")
    _slurm_study(tfx, tiny_profile, tmp_path, "debug")


@pytest.mark.slow
def test_slurm_executor_through_submitit_local_backend(tfx, tiny_profile, tmp_path):
    pytest.importorskip("submitit")
    out = _slurm_study(tfx, tiny_profile, tmp_path, "local")
    assert list((out / "slurm").rglob("*_log.out"))  # each cell ran as its own job


def test_compare_cell_index_and_plan_only_from_an_existing_folder(tfx, tmp_path):
    out = tmp_path / "sweep"
    plan = ["compare-inits", "--data", "synthetic-retina", "--arch", "cbr-tiny", "--inits",
            "random", "--seeds", "2", "--steps", "1", "--image-size", "32", "--batch-size", "8",
            "--option", "train_size=24", "--option", "val_size=16", "--option", "test_size=16",
            "-o", str(out), "--plan-only"]
    listed = tfx(*plan, check=True).stdout
    again = tfx("compare-inits", "-o", str(out), "--plan-only", check=True).stdout
    assert again == listed and again.count("\tnew") == 2  # no flags repeated
    result = tfx("compare-inits", "-o", str(out), "--cell-index", "1")
    assert result.exit_code == 0, result.stderr
    assert (out / "done" / "cbr-tiny__random__nall__s1.json").is_file()
    assert not (out / "done" / "cbr-tiny__random__nall__s0.json").exists()
    result = tfx("compare-inits", "-o", str(out), "--cell-index", "2")
    assert result.exit_code == 1 and "out of range: the plan has 2 cells (0 to 1)" in result.stderr


def test_compare_inits_runs_cells_through_the_same_slurm_executor(tfx, tmp_path):
    pytest.importorskip("submitit")
    out = tmp_path / "sweep"
    result = tfx("compare-inits", "--data", "synthetic-retina", "--arch", "cbr-tiny", "--inits",
                 "random", "--seeds", "1", "--steps", "1", "--image-size", "32", "--batch-size",
                 "8", "--option", "train_size=24", "--option", "val_size=16", "--option",
                 "test_size=16", "-o", str(out), "--executor", "slurm", "--slurm-cluster", "debug")
    assert result.exit_code == 0, result.stderr[-3000:]
    assert "debug: submitted 1 cell job(s)" in result.stderr
    assert (out / "done" / "cbr-tiny__random__nall__s0.json").is_file()
    assert (out / "report.md").is_file()


def test_cell_lock_is_exclusive_and_reports_unsupported_file_systems(tmp_path, monkeypatch):
    import filelock

    from transfusion_cli.compare.runner import CellBusy, LockError, cell_lock

    with cell_lock(tmp_path, "c"), pytest.raises(CellBusy, match="another process"), \
            cell_lock(tmp_path, "c"):
        pass
    with cell_lock(tmp_path, "c"):  # released: free again
        pass

    def refuse(self, *args, **kwargs):
        raise OSError(38, "Function not implemented")

    monkeypatch.setattr(filelock.FileLock, "acquire", refuse)
    with pytest.raises(LockError, match="refuses file locks.*local disk"), \
            cell_lock(tmp_path, "d"):
        pass
