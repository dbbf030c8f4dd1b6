"""`tfx export` checks every file it will write before writing the first: never one of its
inputs, never a folder, never a file tfx did not write (ONNX without tfx metadata, a report
without its format, a card without tfx's marker); each exported model gets its own card
(issue 20 items 5, 6 and 23)."""

from __future__ import annotations

import fit_helpers
import pytest
from fit_helpers import one_thread
from registry_helpers import registry_with
from safety_helpers import assert_refused
from tree_snapshot import snapshot_tree, tree_changes

FIT = ["fit", "--data", "fake-retina", "--arch", "cbr-tiny", "--image-size", "16",
       "--batch-size", "8", "--steps", "2", "--option", "n_train=32", "--option", "n_val=16"]


@pytest.fixture(autouse=True)
def fakes():
    with registry_with(fit_helpers), one_thread():
        yield


@pytest.fixture(scope="module")
def best(tfx, tmp_path_factory):
    run = tmp_path_factory.mktemp("export-outputs") / "run"
    with registry_with(fit_helpers), one_thread():
        result = tfx(*FIT, "--out", run)
    assert result.exit_code == 0, result.stderr
    return run / "checkpoints" / "best.pt"


def test_export_never_overwrites_its_own_input(best, tmp_path):
    """Item 5: --evaluation q.export.json is read, and -o q.onnx would write its report there."""
    record = tmp_path / "q.export.json"
    record.write_text('{"mine": true}\n')
    assert_refused(tmp_path, "export", best, "-o", tmp_path / "q.onnx", "--evaluation", record,
                   says=f"The report of --out {record} is also an input ({record})")


@pytest.mark.parametrize("name", ["m.onnx", "m.int8.onnx", "m.export.json", "m.MODEL_CARD.md"])
def test_a_file_tfx_did_not_write_is_never_replaced(best, tmp_path, name):
    """Item 5: an unrelated m.int8.onnx or m.export.json used to be replaced silently."""
    (tmp_path / name).write_text("the user's own file\n")
    assert_refused(tmp_path, "export", best, "-o", tmp_path / "m.onnx", "--quantize", "int8",
                   "--calibration-images", "8",
                   says=f"{tmp_path / name} exists and was not written by `tfx export`")


def test_a_folder_where_the_card_goes_is_refused_before_anything_is_written(best, tmp_path):
    """Item 23: the model and report used to be written before the card failed."""
    (tmp_path / "m.MODEL_CARD.md").mkdir()
    assert_refused(tmp_path, "export", best, "-o", tmp_path / "m.onnx",
                   says=f"The model card of --out {tmp_path / 'm.MODEL_CARD.md'} is a folder")


def test_each_exported_model_gets_its_own_card(tfx, best, tmp_path):
    """Item 6: a second export into the folder used to replace the first one's MODEL_CARD.md."""
    result = tfx("export", best, "-o", tmp_path / "a.onnx")
    assert result.exit_code == 0, result.stderr
    first = snapshot_tree(tmp_path)
    result = tfx("export", best, "-o", tmp_path / "b.onnx", "--image-size", "24")
    assert result.exit_code == 0, result.stderr
    after = snapshot_tree(tmp_path)
    assert tree_changes(first, after) == [f"added b.{suffix}"
                                          for suffix in ("MODEL_CARD.md", "export.json", "onnx")]
    for name in ("a", "b"):
        card = (tmp_path / f"{name}.MODEL_CARD.md").read_text()
        assert f"# Model card: {name}.onnx" in card
    result = tfx("export", best, "-o", tmp_path / "a.onnx")
    assert result.exit_code == 0, result.stderr
    assert sorted(p.split()[-1] for p in tree_changes(after, snapshot_tree(tmp_path))) == [
        "a.MODEL_CARD.md", "a.export.json", "a.onnx"]
