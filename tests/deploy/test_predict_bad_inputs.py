"""`tfx predict` on what it cannot trust (non-finite outputs, unusable metadata, NaN pixels,
a decompression bomb): an error for that image only, never a diagnosis."""

from __future__ import annotations

import json
import math

import pytest
from input_files import bomb_png, flat_png, image_folder, log_mean_model, nan_tiff
from tree_snapshot import assert_tree_unchanged, snapshot_tree


@pytest.mark.slow
def test_predict_goes_on_after_a_decompression_bomb(tfx, tiny_run, tmp_path):
    model = tmp_path / "m.onnx"
    result = tfx("export", tiny_run / "checkpoints" / "best.pt", "--out", model)
    assert result.exit_code == 0, result.stderr
    images = image_folder(tmp_path / "images", per_class=1, size=32)
    bomb = bomb_png(images / "normal" / "bomb.png")
    result = tfx("predict", model, images, "--json")
    assert result.exit_code == 1 and str(bomb) in result.stderr and "1 of 3 images" in result.stderr
    results = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    assert len([r for r in results if not r.get("error")]) == 2


def test_nonfinite_output_is_an_error_for_that_image_only(tfx, tmp_path):
    model = log_mean_model(tmp_path / "m.onnx")
    white, black = flat_png(tmp_path / "white.png", 255), flat_png(tmp_path / "black.png", 0)
    before = snapshot_tree(tmp_path)
    result = tfx("predict", model, white, black, "--json")
    assert result.exit_code == 1
    line = result.error_line()
    assert line == "Error: 1 of 2 images could not be predicted (listed above); the other 1 were."
    failed = [entry for entry in result.stderr.splitlines() if entry.startswith("failed: ")]
    assert len(failed) == 1 and str(black) in failed[0] and "not finite (NaN)" in failed[0]
    assert_tree_unchanged(tmp_path, before)


def test_nonfinite_results_carry_no_diagnosis(tmp_path, capsys):
    from transfusion_cli.deploy.predict import OnnxClassifier

    model = log_mean_model(tmp_path / "m.onnx")
    white, black = flat_png(tmp_path / "white.png", 255), flat_png(tmp_path / "black.png", 0)
    good, bad = OnnxClassifier(model, "cpu").predict_files([white, black])
    assert good.error is None and good.referable is not None
    assert all(math.isfinite(p) for p in good.probabilities.values())
    assert bad.error and bad.predicted is None and bad.referable is None
    assert bad.to_dict() == {"image": str(black), "error": bad.error}


@pytest.mark.parametrize(("change", "says"), [
    ({"referable_threshold": "7"}, "referable threshold 7 must be a class index from 1 to 2"),
    ({"class_names": "[]"}, "must be a non-empty list of names"),
    ({"class_names": '["a", "a", "b"]'}, "repeat a name"),
    ({"image_size": "0"}, "image size 0 is not an integer"),
    ({"image_size": '"16"'}, "image size '16' is not an integer"),
    ({"mean": "[0.5, 0.5]"}, "channels 3 with mean/std"),
    ({"std": "[0.5, 0.0, 0.5]"}, "std positive"),
])
def test_unusable_metadata_is_refused_on_load(tfx, tmp_path, change, says):
    model = log_mean_model(tmp_path / "m.onnx", **change)
    white = flat_png(tmp_path / "white.png", 255)
    before = snapshot_tree(tmp_path)
    result = tfx("predict", model, white, "--csv", tmp_path / "out.csv")
    assert result.exit_code == 1
    line = result.error_line()
    assert str(model) in line and "unusable tfx metadata" in line and says in line
    assert_tree_unchanged(tmp_path, before)


def test_a_nan_tiff_is_an_error_naming_the_file(tfx, tmp_path):
    model = log_mean_model(tmp_path / "m.onnx")
    tiff, white = nan_tiff(tmp_path / "scan.tiff"), flat_png(tmp_path / "white.png", 255)
    before = snapshot_tree(tmp_path)
    result = tfx("predict", model, tiff, white, "--json")
    assert result.exit_code == 1
    failed = [entry for entry in result.stderr.splitlines() if entry.startswith("failed: ")]
    assert len(failed) == 1 and f"Image {tiff} has 1 NaN or infinite pixel" in failed[0]
    assert result.error_line().startswith("Error: 1 of 2 images could not be predicted")
    assert_tree_unchanged(tmp_path, before)
