"""A cell's saved test predictions carry the patient ids of a split that has them, so the
study's evidence resamples patients (both eyes together), not images."""

from __future__ import annotations

import numpy as np

from transfusion_cli.compare.runner import save_test_predictions
from transfusion_cli.reproduce.study_evidence import _groups
from transfusion_cli.runfolder import RunFolder


def test_groups_are_saved_and_read_back(tmp_path):
    run = RunFolder(tmp_path / "run")
    run.root.mkdir()
    logits = np.zeros((4, 5), np.float32)
    targets = np.array([0, 2, 3, 1])
    save_test_predictions(run, logits, targets, groups=["p1", "p1", "p2", "p3"])
    with np.load(run.test_predictions, allow_pickle=False) as saved:
        assert saved["groups"].tolist() == ["p1", "p1", "p2", "p3"]
    assert _groups(run, 4) == ["p1", "p1", "p2", "p3"]
    assert _groups(run, 5) is None  # not one id per case: not used


def test_without_groups_nothing_is_invented(tmp_path):
    run = RunFolder(tmp_path / "run")
    run.root.mkdir()
    save_test_predictions(run, np.zeros((3, 5)), np.array([0, 1, 2]))
    with np.load(run.test_predictions, allow_pickle=False) as saved:
        assert "groups" not in saved.files
    assert _groups(run, 3) is None
    # ids that do not match the cases are left out rather than misaligned
    save_test_predictions(run, np.zeros((3, 5)), np.array([0, 1, 2]), groups=["a", "b"])
    with np.load(run.test_predictions, allow_pickle=False) as saved:
        assert "groups" not in saved.files
