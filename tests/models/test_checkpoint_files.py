"""Reading a checkpoint a user points at (models/checkpoint.py): empty, malformed, a folder, a
pickled payload, non-finite weights: one line naming the file and what is wrong, nothing
written."""

from __future__ import annotations

import copy
import os

import pytest
import torch
from input_files import SMALL
from tree_snapshot import assert_tree_unchanged, snapshot_tree


@pytest.mark.parametrize("command", [
    ["filters", "{ckpt}", "--out", "{tmp}/f.png"],
    ["similarity", "{ckpt}", "{good}"],
    ["export", "{ckpt}", "--out", "{tmp}/m.onnx"],
    ["fit", *SMALL, "--steps", "1", "--init", "transfusion:block1", "--weights", "{ckpt}",
     "--out", "{tmp}/run"],
])
def test_an_empty_checkpoint_is_one_line_in_every_command(tfx, tiny_run, tmp_path, command):
    empty = tmp_path / "empty.pt"
    empty.touch()
    before = snapshot_tree(tmp_path)
    args = [part.format(ckpt=empty, tmp=tmp_path, good=tiny_run / "checkpoints" / "best.pt")
            for part in command]
    result = tfx(*args)
    assert result.exit_code == 1
    line = result.error_line()
    assert str(empty) in line and "empty (0 bytes)" in line
    assert_tree_unchanged(tmp_path, before)


MALFORMED = {
    "format_version_text": (lambda c: c.update(format_version="1"), "format_version"),
    "no_arch": (lambda c: c.pop("arch"), "'arch'"),
    "no_dataset": (lambda c: c.pop("dataset"), "'dataset'"),
    "negative_classes": (lambda c: c["arch"].update(num_classes=-1), "num_classes is -1"),
    "huge_classes": (lambda c: c["arch"].update(num_classes=10**7), "num_classes is 10000000"),
    "dataset_not_a_dataset": (lambda c: c["dataset"].pop("task"), "'dataset' entry"),
    "state_not_tensors": (lambda c: c.update(state_dict={"w": [1, 2]}), "state_dict"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_checkpoint_fields_are_named(tfx, tiny_run, tmp_path, case):
    edit, expected = MALFORMED[case]
    checkpoint = copy.deepcopy(torch.load(tiny_run / "checkpoints" / "best.pt", weights_only=True))
    edit(checkpoint)
    path = tmp_path / f"{case}.pt"
    torch.save(checkpoint, path)
    before = snapshot_tree(tmp_path)
    result = tfx("filters", path, "--out", tmp_path / "f.png")
    assert result.exit_code == 1
    line = result.error_line()
    assert str(path) in line and expected in line
    assert_tree_unchanged(tmp_path, before)


def test_non_finite_weights_name_the_layer(tfx, tiny_run, tmp_path):
    checkpoint = torch.load(tiny_run / "checkpoints" / "best.pt", weights_only=True)
    key = next(k for k in checkpoint["state_dict"] if k.endswith("weight"))
    checkpoint["state_dict"][key][0] = float("nan")
    broken = tmp_path / "nan.pt"
    torch.save(checkpoint, broken)
    before = snapshot_tree(tmp_path)
    for args in (["filters", broken, "--out", tmp_path / "f.png"],
                 ["similarity", tiny_run / "checkpoints" / "init.pt", broken, "--measure",
                  "svcca"]):
        result = tfx(*args)
        assert result.exit_code == 1 and result.stdout == ""
        line = result.error_line()
        assert f"'{key}'" in line and "NaN" in line and str(broken) in line
    assert_tree_unchanged(tmp_path, before)


def test_a_folder_given_as_checkpoint_is_called_a_folder(tfx, tiny_run):
    result = tfx("filters", tiny_run, "--out", tiny_run.parent / "f.png")
    assert result.exit_code == 1
    line = result.error_line()
    assert "is a folder" in line and "does not exist" not in line
    assert not (tiny_run.parent / "f.png").exists()


def test_a_pickled_payload_is_refused_unrun(tfx, tmp_path):
    class Payload:
        def __reduce__(self):
            return (os.system, ("echo owned",))

    evil = tmp_path / "evil.pt"
    torch.save({"format": "tfx-checkpoint", "x": Payload()}, evil)
    before = snapshot_tree(tmp_path)
    result = tfx("filters", evil, "--out", tmp_path / "f.png")
    assert result.exit_code == 1 and "owned" not in result.stdout
    line = result.error_line()
    assert "weights_only" not in line and "Refused to load" in line and str(evil) in line
    assert line.endswith(".")  # a whole sentence, not cut mid-word
    assert_tree_unchanged(tmp_path, before)
