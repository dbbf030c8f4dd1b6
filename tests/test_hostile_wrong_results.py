"""Issue 11 part B: no silently wrong result; each test is one item, through the real CLI,
with the exit code, the one-line message naming the culprit and a tree snapshot."""

from __future__ import annotations

import json
import math

import fit_helpers
import numpy as np
import onnx
import pytest
from fit_helpers import one_thread
from onnx import TensorProto, helper
from PIL import Image
from registry_helpers import registry_with
from test_hostile_data_loss import FIT, error_line, image_folder, run_cli
from tree_snapshot import assert_tree_unchanged, snapshot_tree

from transfusion_cli.deploy.metadata import ModelMetadata
from transfusion_cli.train.loop import DIVERGENCE_FACTOR, divergence_bound

SIZE = 16
SMALL_FIT = ["--image-size", "16", "--batch-size", "4", "--steps", "1"]


@pytest.fixture(autouse=True)
def fakes():
    with registry_with(fit_helpers), one_thread():
        yield


def log_mean_model(path, **changes):
    """A 3-class ONNX model whose logits are log(mean of each normalised channel): finite for
    a white image, NaN for a black one (mean -1), with tfx metadata (``changes`` override it)."""
    graph = helper.make_graph(
        [helper.make_node("ReduceMean", ["image"], ["mean"], axes=[2, 3], keepdims=0),
         helper.make_node("Log", ["mean"], ["logits"])], "log-mean",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, SIZE, SIZE])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 3])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    props = ModelMetadata(task="multiclass", class_names=("none", "mild", "severe"),
                          image_size=SIZE, channels=3, mean=(0.5,) * 3, std=(0.5,) * 3,
                          fundus_crop=False, architecture="hand-made", tfx_version="0",
                          checkpoint_sha256="0" * 64, dataset="hand", selection_metric="auc",
                          referable_threshold=1).to_props()
    props.update({f"tfx.{k}": v for k, v in changes.items()})
    for key, value in props.items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(path))
    return path


def png(path, value):
    """A colour image near ``value`` (channels differ, so it is not read as grey)."""
    colour = np.clip(np.array([value, value - 5, value - 10]) if value > 127 else
                     np.array([value, value + 5, value + 10]), 0, 255)
    Image.fromarray(np.broadcast_to(colour.astype(np.uint8), (SIZE, SIZE, 3)).copy()).save(path)
    return path


def nan_tiff(path):
    array = np.full((SIZE, SIZE), 0.5, np.float32)
    array[3, 4] = np.nan
    Image.fromarray(array, mode="F").save(path)
    return path


# ----------------------------------------------------------------------------- item 6

def test_item6_non_finite_outputs_are_an_error_for_that_image_only(tmp_path, capsys):
    model = log_mean_model(tmp_path / "m.onnx")
    white, black = png(tmp_path / "white.png", 255), png(tmp_path / "black.png", 0)
    before = snapshot_tree(tmp_path)
    code, stderr = run_cli(["predict", model, white, black, "--json"], capsys)
    assert code == 1
    line = error_line(stderr)
    assert line == "Error: 1 of 2 images could not be predicted (listed above); the other 1 were."
    failed = [entry for entry in stderr.splitlines() if entry.startswith("failed: ")]
    assert len(failed) == 1 and str(black) in failed[0] and "not finite (NaN)" in failed[0]
    assert_tree_unchanged(tmp_path, before)


def test_item6_non_finite_results_never_carry_a_diagnosis(tmp_path, capsys):
    from transfusion_cli.deploy.predict import OnnxClassifier

    model = log_mean_model(tmp_path / "m.onnx")
    white, black = png(tmp_path / "white.png", 255), png(tmp_path / "black.png", 0)
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
def test_item6_metadata_is_validated_on_load(tmp_path, capsys, change, says):
    model = log_mean_model(tmp_path / "m.onnx", **change)
    white = png(tmp_path / "white.png", 255)
    before = snapshot_tree(tmp_path)
    code, stderr = run_cli(["predict", model, white, "--csv", tmp_path / "out.csv"], capsys)
    assert code == 1
    line = error_line(stderr)
    assert str(model) in line and "unusable tfx metadata" in line and says in line
    assert_tree_unchanged(tmp_path, before)


# ----------------------------------------------------------------------------- item 7

def test_item7_all_labels_masked_is_an_error_before_training(tmp_path, capsys):
    out = tmp_path / "run"
    code, stderr = run_cli(["fit", "--data", "synthetic-chest", "--image-size", "32",
                            "--option", "train_size=32", "--option", "val_size=16",
                            "--option", "test_size=16", "--option", "uncertain_fraction=1",
                            "--option", "uncertainty=u-ignore", "--steps", "2", "--out", out],
                           capsys)
    assert code == 1
    line = error_line(stderr)
    assert "training labels of 'synthetic-chest'" in line and "are masked" in line
    assert not out.exists()


def test_item7_a_single_class_is_an_error_before_training(tmp_path, capsys):
    data = image_folder(tmp_path / "D", classes=("normal",))
    before = snapshot_tree(tmp_path)
    code, stderr = run_cli(["fit", "--data", "image-folder", "--data-dir", data,
                            *SMALL_FIT, "--out", tmp_path / "run"], capsys)
    assert code == 1
    line = error_line(stderr)
    assert "has class 'normal'" in line and "one class" in line
    assert_tree_unchanged(tmp_path, before)


def test_item7_an_empty_class_folder_is_not_silently_dropped(tmp_path, capsys):
    data = image_folder(tmp_path / "D", classes=("mild", "none", "severe"))
    for image in (data / "mild").iterdir():
        image.unlink()
    before = snapshot_tree(tmp_path)
    code, stderr = run_cli(["fit", "--data", "image-folder", "--data-dir", data,
                            *SMALL_FIT, "--out", tmp_path / "run"], capsys)
    assert code == 1
    line = error_line(stderr)
    assert f"Class folder {data / 'mild'}/ holds no images" in line and "'mild'" in line
    assert_tree_unchanged(tmp_path, before)


# ----------------------------------------------------------------------------- item 8

def test_item8_compare_inits_metric_is_checked_before_any_training(tmp_path, capsys):
    out = tmp_path / "sweep"
    args = ["compare-inits", "--data", "fake-retina", "--arch", "cbr-tiny", "--inits",
            "random", "--seeds", "1", "--image-size", "32", "--option", "n_train=16",
            "--option", "n_val=8", "--steps", "1", "--out", out]
    code, stderr = run_cli([*args, "--metric", "bogus"], capsys)
    assert code == 1
    line = error_line(stderr)
    assert "--metric 'bogus' is not a metric of dataset 'fake-retina'" in line
    assert "referable_auc" in line
    assert not out.exists()
    code, stderr = run_cli([*args, "--metric", "kappa", "--plan-only"], capsys)
    assert code == 0, stderr


# ----------------------------------------------------------------------------- item 9

def test_item9_a_diverging_adam_run_stops_like_a_non_finite_one(tmp_path, capsys):
    out = tmp_path / "run"
    code, stderr = run_cli([*FIT, "--lr", "1e6", "--steps", "3", "--eval-every", "3",
                            "--out", out], capsys)
    assert code == 1
    line = error_line(stderr)
    assert line.startswith("Error: Loss ") and "training stopped" in line
    assert "Lower --lr (now 1e+06)" in line and str(out / "checkpoints" / "last.pt") in line
    records = (out / "metrics.jsonl")
    assert not records.exists() or records.read_text() == ""  # no AUC from a diverged model


def test_item9_divergence_bound_is_relative_to_the_start_and_to_chance():
    from transfusion_cli.data.bundles import DatasetInfo

    info = DatasetInfo("x", "multiclass", ("a", "b", "c", "d", "e"), 3, 32, (0.5,) * 3,
                       (0.5,) * 3)
    assert divergence_bound(2.0, info) == DIVERGENCE_FACTOR * 2.0
    # A nearly perfect start (fine-tuning) is not held to 1000x of a tiny loss.
    assert divergence_bound(1e-4, info) == pytest.approx(DIVERGENCE_FACTOR * math.log(5))


# ----------------------------------------------------------------------------- item 10

def test_item10_a_nan_tiff_is_an_error_naming_the_file(tmp_path, capsys):
    model = log_mean_model(tmp_path / "m.onnx")
    tiff, white = nan_tiff(tmp_path / "scan.tiff"), png(tmp_path / "white.png", 255)
    before = snapshot_tree(tmp_path)
    code, stderr = run_cli(["predict", model, tiff, white, "--json"], capsys)
    assert code == 1
    failed = [entry for entry in stderr.splitlines() if entry.startswith("failed: ")]
    assert len(failed) == 1 and f"Image {tiff} has 1 NaN or infinite pixel" in failed[0]
    assert error_line(stderr).startswith("Error: 1 of 2 images could not be predicted")
    assert_tree_unchanged(tmp_path, before)


def test_item10_a_nan_tiff_stops_training_naming_the_file(tmp_path, capsys):
    data = image_folder(tmp_path / "D")
    tiff = nan_tiff(data / "sick" / "bad.tiff")
    before = snapshot_tree(data)
    code, stderr = run_cli(["fit", "--data", "image-folder", "--data-dir", data, "--option",
                            "channels=1", *SMALL_FIT, "--out", tmp_path / "run"], capsys)
    assert code == 1
    assert str(tiff) in error_line(stderr) and "NaN" in stderr
    assert_tree_unchanged(data, before)  # images are read lazily: only the new run is written


def test_item10_a_csv_listing_an_image_twice_is_an_error_naming_the_rows(tmp_path, capsys):
    data = image_folder(tmp_path / "D")
    rows = [f"normal/{i}.png,normal" for i in range(6)] + \
        [f"sick/{i}.png,sick" for i in range(6)] + ["./normal/2.png,sick"]
    manifest = data / "labels.csv"
    manifest.write_text("path,label\n" + "\n".join(rows) + "\n")
    before = snapshot_tree(tmp_path)
    code, stderr = run_cli(["fit", "--data", "csv", "--data-dir", manifest, "--image-size",
                            "16", "--batch-size", "4", "--steps", "1", "--out",
                            tmp_path / "run"], capsys)
    assert code == 1
    line = error_line(stderr)
    assert f"{manifest} line 14" in line and "listed twice (first on line 4)" in line
    assert_tree_unchanged(tmp_path, before)


def test_item10_the_duplicate_check_is_public_api():
    import transfusion_cli.api as api

    assert "reject_duplicates" in api.__all__
    assert json.dumps(api.reject_duplicates.__doc__)
