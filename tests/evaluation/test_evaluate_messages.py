"""`tfx evaluate` says what it did and what was wrong: the optimistic-threshold note on the
validation split, --sensitivity checked as the flags are read, and two models scored on
different images told apart from a count mismatch (issue 20, items 15 and 24)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fit_helpers import one_thread
from input_files import SMALL
from tree_snapshot import assert_tree_unchanged, snapshot_tree

from transfusion_cli.errors import ConfigError

NOTE = "threshold chosen on the very split it is measured on (optimistic)"


@pytest.fixture(scope="module")
def runs(tfx, tmp_path_factory) -> Path:
    """run-a (data seed 0) and run-b (data seed 1): the same sizes, different images."""
    root = tmp_path_factory.mktemp("evaluate-messages")
    with one_thread():
        for name, seed in (("run-a", "0"), ("run-b", "1")):
            result = tfx("fit", *SMALL, "--steps", "1", "--data-seed", seed, "--out", root / name)
            assert result.exit_code == 0, result.stderr
    return root


def best(runs: Path, name: str = "run-a") -> Path:
    return runs / name / "checkpoints" / "best.pt"


def test_the_validation_split_note_is_printed_for_every_operating_point(tfx, runs):
    """Item 15: the library's note was in the JSON but not in the printed result."""
    with one_thread():
        result = tfx("evaluate", best(runs), "--split", "val", "--bootstrap", "20", "--sensitivity",
                     "0.9", "--sensitivity", "0.8")
    assert result.exit_code == 0, result.stderr
    chosen = [line for line in result.stdout.splitlines() if "chosen on val for 90%" in line]
    also = [line for line in result.stdout.splitlines() if line.strip().startswith("also sens80")]
    assert len(chosen) == 1 and chosen[0].endswith(NOTE)
    assert len(also) == 1 and also[0].endswith(NOTE)
    with one_thread():
        result = tfx("evaluate", best(runs), "--split", "test", "--bootstrap", "20")
    # chosen on val, measured on test
    assert result.exit_code == 0 and "optimistic" not in result.stdout


@pytest.mark.parametrize("value", ["0", "-0.1", "1.5", "nan"])
def test_a_sensitivity_outside_0_to_1_is_refused_before_any_inference(tfx, runs, monkeypatch,
                                                                     value):
    """Item 24: --sensitivity 0 passed the flag and was refused after all inference."""
    from transfusion_cli.evaluation import evaluate

    def no_inference(*_args, **_kwargs):
        raise AssertionError("inference ran")

    monkeypatch.setattr(evaluate, "predict_with_val", no_inference)
    before = snapshot_tree(runs)
    result = tfx("evaluate", best(runs), "--sensitivity", "0.9", "--sensitivity", value, "--out",
                 runs / "eval")
    assert result.exit_code == 2 and result.stdout == ""  # a usage error
    line = result.error_line()
    assert "--sensitivity" in line and "(0, 1]" in line and value in line
    assert_tree_unchanged(runs, before)
    with pytest.raises(ConfigError, match=r"--sensitivity must lie in \(0, 1\]"):
        evaluate.evaluate_model(best(runs), sensitivity=[0.9, float(value)])


def test_a_sensitivity_of_one_is_a_target(tfx, runs):
    with one_thread():
        result = tfx("evaluate", best(runs), "--bootstrap", "20", "--sensitivity", "1")
    assert result.exit_code == 0, result.stderr
    assert "for 100% sensitivity (val 1.000)" in result.stdout


def test_models_scored_on_different_images_of_one_size_are_told_so(tfx, runs):
    """Item 24: "were scored on different images (32 and 32)"."""
    before = snapshot_tree(runs)
    with one_thread():
        result = tfx("evaluate", best(runs), best(runs, "run-b"), "--bootstrap", "20")
    assert result.exit_code == 1
    line = result.error_line()
    assert "(32 and 32)" not in line
    assert "both test splits hold 32 images, but their labels differ" in line
    assert "data seed" in line
    assert_tree_unchanged(runs, before)
