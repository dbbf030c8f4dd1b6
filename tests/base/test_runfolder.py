"""The folders tfx writes, named once (transfusion_cli/runfolder.py): the on-disk contract."""

from __future__ import annotations

from pathlib import Path

import pytest

from transfusion_cli.errors import ConfigError
from transfusion_cli.runfolder import (
    RunFolder,
    StudyFolder,
    SweepFolder,
    checkpoint_beside,
    evaluation_path,
    trained_checkpoint_in,
)


def test_run_folder_layout_is_the_documented_one(tmp_path):
    run = RunFolder(tmp_path / "run")
    assert run.config == tmp_path / "run" / "config.yaml"
    assert (run.env.name, run.metrics.name, run.split.name) == \
        ("env.json", "metrics.jsonl", "split.json")
    assert [run.checkpoint(n) for n in ("init", "last", "best")] == \
        [run.init, run.last, run.best] == \
        [tmp_path / "run" / "checkpoints" / f"{n}.pt" for n in ("init", "last", "best")]
    with pytest.raises(ConfigError, match="init, last, best"):
        run.checkpoint("final")
    assert RunFolder.of_checkpoint(run.best) == run
    assert RunFolder.of_checkpoint(tmp_path / "best.pt") is None
    assert checkpoint_beside(run.best, "init") == run.init


def test_trained_checkpoint_prefers_best_then_last(tmp_path):
    run = RunFolder(tmp_path)
    assert run.trained_checkpoint() is None and not run.is_run()
    run.checkpoints.mkdir()
    run.last.write_bytes(b"")
    assert run.trained_checkpoint() == run.last
    run.best.write_bytes(b"")
    assert run.trained_checkpoint() == trained_checkpoint_in(run.checkpoints) == run.best


def test_evaluation_record_sits_beside_the_model():
    assert evaluation_path("runs/a/checkpoints/best.pt") == \
        Path("runs/a/checkpoints/best.evaluation.json")
    assert evaluation_path("model.onnx") == Path("model.evaluation.json")


def test_sweep_and_study_folders(tmp_path):
    study = StudyFolder(tmp_path)
    sweep = study.sweep("retina")
    assert sweep == SweepFolder(tmp_path / "sweeps" / "retina")
    assert sweep.plan.name == "plan.json" and not sweep.is_planned()
    assert sweep.run("cell-1") == RunFolder(sweep.root / "runs" / "cell-1")
    assert sweep.done_marker("cell-1") == sweep.root / "done" / "cell-1.json"
    assert {p.name for p in (sweep.report, sweep.results_json, sweep.results_csv, sweep.curves)} \
        == {"report.md", "results.json", "results.csv", "curves.png"}
    assert (study.report.name, study.report_html.name, study.verdicts.name, study.study.name) == \
        ("report.md", "report.html", "verdicts.json", "study.json")
