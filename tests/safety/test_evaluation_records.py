"""`tfx evaluate` keeps one record per dataset beside the model (``best.<fingerprint>.
evaluation.json``), so evaluating on other data never replaces the training data's record, and
the model card names the data its metrics came from (issue 20 item 6)."""

from __future__ import annotations

import json
import shutil

from safety_helpers import image_folder_run
from tree_snapshot import snapshot_tree, tree_changes


def test_evaluating_other_data_keeps_the_training_datas_record(tfx, tmp_path):
    data, best = image_folder_run(tmp_path)
    other = tmp_path / "other"
    shutil.copytree(data, other)
    result = tfx("evaluate", best, "--bootstrap", "20")
    assert result.exit_code == 0, result.stderr
    (own,) = best.parent.glob("best.*.evaluation.json")
    record = json.loads(own.read_text())
    assert record["data"]["name"] == "image-folder" and record["data"]["data_dir"] == str(data)
    assert own.name == f"best.{record['data']['fingerprint']}.evaluation.json"

    before = snapshot_tree(tmp_path)
    result = tfx("evaluate", best, "--data-dir", other, "--bootstrap", "20")
    assert result.exit_code == 0, result.stderr
    (added,) = tree_changes(before, snapshot_tree(tmp_path))
    elsewhere = best.parent / added.removeprefix("added run/checkpoints/")
    assert json.loads(elsewhere.read_text())["data"]["data_dir"] == str(other)

    result = tfx("export", best, "-o", tmp_path / "models" / "m.onnx")
    assert result.exit_code == 0, result.stderr
    card = (tmp_path / "models" / "m.MODEL_CARD.md").read_text()
    assert "## Test metrics\n" in card
    assert "Data: `image-folder` (folder `image-folder`; options" in card and \
        f"fingerprint {record['data']['fingerprint']}): the training data, test split" in card

    result = tfx("export", best, "-o", tmp_path / "models" / "o.onnx", "--evaluation", elsewhere)
    assert result.exit_code == 0, result.stderr
    card = (tmp_path / "models" / "o.MODEL_CARD.md").read_text()
    assert "## Test metrics on other data than the training data" in card
    assert "(folder `other`;" in card and "not the data the model was trained on" in card
