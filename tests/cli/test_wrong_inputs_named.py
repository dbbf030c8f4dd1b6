"""Bad values that used to reach an "internal error", or a misleading one, are one `Error:`
line naming the flag or file, before any work (issue 20: found beyond the listed items)."""

from __future__ import annotations

import pytest
from input_files import SMALL
from tree_snapshot import assert_tree_unchanged, snapshot_tree

from transfusion_cli.limits import MAX_SEED


@pytest.mark.parametrize("args", [
    ["evaluate", "model.pt", "--seed", "-1"],  # numpy: "expected non-negative integer"
    ["figures", "layers", "sweep", "-o", "figs", "--seed", str(2**70)],  # torch: overflow
    ["similarity", "a.pt", "b.pt", "--seed", "-1"],
])
def test_a_seed_outside_numpy_range_is_a_usage_error(tfx, tmp_path, monkeypatch, args):
    monkeypatch.chdir(tmp_path)
    result = tfx(*args)
    assert result.exit_code == 2 and result.stdout == ""
    line = result.error_line()
    assert "'--seed'" in line and f"see `tfx {args[0]} --help`" in line


@pytest.mark.parametrize(("flag", "value", "says"), [
    ("--seed", str(2**70), f"--seed must be at most {MAX_SEED}, got"),
    ("--data-seed", "-1", "--data-seed must be 0 or more, got -1"),
])
def test_fit_seeds_are_checked_before_any_work(tfx, tmp_path, flag, value, says):
    before = snapshot_tree(tmp_path)
    result = tfx("fit", *SMALL, "--steps", "1", flag, value, "--out", tmp_path / "run")
    assert result.exit_code == 1 and says in result.error_line()
    assert_tree_unchanged(tmp_path, before)


def test_an_onnx_model_given_for_a_checkpoint_is_named_as_such(tfx, tmp_path):
    model = tmp_path / "m.onnx"
    model.write_bytes(b"\x08\x07not really")
    before = snapshot_tree(tmp_path)
    for args in (["explain", model, tmp_path / "eye.png", "--out", tmp_path / "h"],
                 ["export", model, "-o", tmp_path / "again.onnx"]):
        result = tfx(*args)
        assert result.exit_code == 1
        line = result.error_line()
        assert f"{model} is an ONNX model written by `tfx export`, not a checkpoint" in line
        assert "Unsupported operand" not in line
    assert_tree_unchanged(tmp_path, before)


def test_a_checkpoint_given_to_predict_is_named_as_such(tfx, tmp_path):
    model = tmp_path / "best.pt"
    model.write_bytes(b"PK\x03\x04 a zip, as torch.save writes")
    image = tmp_path / "eye.png"
    image.write_bytes(b"")
    before = snapshot_tree(tmp_path)
    result = tfx("predict", model, image)
    assert result.exit_code == 1
    line = result.error_line()
    assert f"{model} is a PyTorch checkpoint, not an ONNX model; export it first" in line
    assert_tree_unchanged(tmp_path, before)


@pytest.mark.parametrize("only", [",", " , ", ""])
def test_reproduce_only_with_no_part_is_refused(tfx, tmp_path, monkeypatch, only):
    """`--only ,` ran no part and still wrote a study folder and a report of unrun claims."""
    monkeypatch.chdir(tmp_path)
    result = tfx("reproduce", "--only", only, "-o", "study")
    assert result.exit_code == 1
    line = result.error_line()
    assert "names no part; give one or more of table1" in line
    assert list(tmp_path.iterdir()) == []
