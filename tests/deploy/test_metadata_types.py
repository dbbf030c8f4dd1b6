"""Every field of a model's tfx metadata is type-checked on load: tampered metadata is one
`Error:` line in predict and in evaluate, never a crash (issue 20, item 16)."""

from __future__ import annotations

import json

import pytest
from input_files import flat_png, log_mean_model
from tree_snapshot import assert_tree_unchanged, snapshot_tree


def card(**training) -> str:
    return json.dumps({"training_data": training})


@pytest.mark.parametrize(("change", "says"), [
    ({"model_card": "[1, 2]"}, "model card '(1, 2)' is not a mapping"),
    ({"model_card": '"text"'}, "model card 'text' is not a mapping"),
    ({"dataset": "7"}, "dataset '7' is not one line of text"),
    ({"architecture": '["a"]'}, "architecture"),
    ({"selection_metric": "null"}, "selection_metric"),
    ({"tfx_version": '"1\\n2"'}, "tfx_version"),
    ({"model_card": card(data_seed="zero")}, "training_data.data_seed 'zero' is not a whole"),
    ({"model_card": card(options=["a"])}, "training_data.options"),
    ({"model_card": card(options={"k": {"nested": 1}})}, "training_data.options"),
    ({"model_card": card(synthetic="yes")}, "training_data.synthetic"),
    ({"model_card": json.dumps({"training_data": [1]})}, "training_data"),
    ({"model_card": json.dumps({"selection_warnings": "one"})}, "selection_warnings"),
    ({"model_card": json.dumps({"preprocessing": {"step_description": 5}})},
     "step description"),
    ({"task": '["multiclass"]'}, "task"),
    ({"channels": '"3"'}, "channels"),
    ({"precision": "{}"}, "precision"),
])
@pytest.mark.parametrize("command", ["predict", "evaluate"])
def test_tampered_metadata_is_one_error(tfx, tmp_path, change, says, command):
    model = log_mean_model(tmp_path / "m.onnx", **change)
    image = flat_png(tmp_path / "a.png", 255)
    before = snapshot_tree(tmp_path)
    args = ([model, image, "--csv", tmp_path / "out.csv"] if command == "predict" else
            [model, "--out", tmp_path / "eval"])
    result = tfx(command, *args)
    assert result.exit_code == 1 and result.stdout == ""
    line = result.error_line()
    assert str(model) in line and "unusable tfx metadata" in line and says in line, line
    assert_tree_unchanged(tmp_path, before)


def test_untampered_metadata_with_a_card_loads(tfx, tmp_path):
    model = log_mean_model(tmp_path / "m.onnx", model_card=card(
        name="hand", train_images=10, synthetic=False, data_seed=0, options={"a": 1}))
    result = tfx("predict", model, flat_png(tmp_path / "a.png", 255))
    assert result.exit_code == 0, result.stderr
