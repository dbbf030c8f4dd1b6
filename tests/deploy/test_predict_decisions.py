"""`tfx predict` decides at the operating point `tfx evaluate` validated, says which threshold
it used and where it came from in every output, and carries warnings in CSV."""

from __future__ import annotations

import csv
import io
import json
import shutil

import onnx
import pytest
from export_helpers import FakeDatasets, fundus_png, make_ckpt, retina_info
from registry_helpers import registry_with

from transfusion_cli.deploy.decisions import (
    UNCALIBRATED_SOURCE,
    decision_rule,
    disagreement,
    operating_point_name,
)
from transfusion_cli.deploy.export import ExportSettings, export_checkpoint
from transfusion_cli.deploy.metadata import ModelMetadata
from transfusion_cli.deploy.predict import OnnxClassifier
from transfusion_cli.errors import ConfigError, ExportError
from transfusion_cli.io import csv_safe, write_json
from transfusion_cli.runfolder import evaluation_path

REFERABLE = "referable (grade >= 2)"


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A retina checkpoint evaluated at two target sensitivities, exported with that
    record; the same checkpoint exported without one; fundus photos."""
    from transfusion_cli.evaluation.evaluate import evaluate_model

    root = tmp_path_factory.mktemp("decisions")
    with registry_with(FakeDatasets()):
        ckpt = make_ckpt(root / "best.pt", "cbr-tiny", retina_info(32), seed=5)
        record, _ = evaluate_model(ckpt, n_boot=40, sensitivity=[0.9, 0.95],
                                   show_progress=False)
        write_json(evaluation_path(ckpt, record["data"]["fingerprint"]), record)
        (root / "validated").mkdir()
        export_checkpoint(ExportSettings(checkpoint=ckpt, out=root / "validated" / "m.onnx",
                                         latency_runs=1))
        plain = root / "plain"
        plain.mkdir()
        shutil.copy(ckpt, plain / "other.pt")  # no evaluation record beside this copy
        export_checkpoint(ExportSettings(checkpoint=plain / "other.pt",
                                         out=plain / "m.onnx", latency_runs=1))
    photos = [fundus_png(root / f"eye{i}.png", size=80 + 8 * i, seed=i) for i in range(4)]
    return {"record": record, "validated": root / "validated" / "m.onnx",
            "plain": plain / "m.onnx", "photos": photos, "root": root}


def test_export_stores_the_validated_operating_points(models):
    points = models["record"]["binary"][REFERABLE]["operating_points"]
    assert list(points) == ["sens90", "sens95"]
    model = onnx.load(str(models["validated"]))
    props = {p.key: p.value for p in model.metadata_props}
    stored = json.loads(props["tfx.operating_points"])[REFERABLE]
    assert list(stored) == ["sens90", "sens95"]
    for name, entry in stored.items():
        assert entry["threshold"] == points[name]["threshold"]
        assert entry["chosen_on"] == {"dataset": "fake-retina", "split": "val", "n": 40,
                                      "positives": points[name]["validation"]["positives"]}
        assert set(entry["validation"]) == {"sensitivity", "specificity"}
        assert entry["validation"]["sensitivity"]["value"] >= entry["target_sensitivity"]
        assert entry["validation"]["sensitivity"]["ci_low"] <= \
            entry["validation"]["sensitivity"]["value"]
        assert entry["test"]["split"] == "test" and entry["test"]["n"] == 16
        assert {"sensitivity", "specificity", "ppv", "npv"} <= set(entry["test"])
    card = models["validated"].with_suffix(".MODEL_CARD.md").read_text()
    assert f"{REFERABLE}, `sens90` (the default): threshold " \
           f"{stored['sens90']['threshold']:.4f}, chosen on the validation split for 90% " \
           "sensitivity (fake-retina, 40 images" in card
    assert "; on validation: sensitivity" in card and "; on test (16 images): sensitivity" in card


def test_predict_decides_at_the_validated_threshold(models):
    classifier = OnnxClassifier(models["validated"], "cpu")
    threshold = models["record"]["binary"][REFERABLE]["operating_points"]["sens90"]["threshold"]
    assert threshold != 0.5  # otherwise this test could not tell the two apart
    for result in classifier.predict_files(models["photos"]):
        assert result.threshold == threshold
        assert result.referable == (result.referable_probability >= threshold)
        assert result.threshold_source.startswith("validated: 90 % sensitivity on validation "
                                                  "(operating point sens90; fake-retina, 40")
        assert result.operating_point == "sens90"
        assert result.referable_rule == f"P(grade >= 2) >= {threshold:.4g}"
        assert result.predicted_rule == "the most probable class (argmax)"


def test_unvalidated_model_says_so(models):
    (result, *_) = OnnxClassifier(models["plain"], "cpu").predict_files(models["photos"])
    assert result.threshold == 0.5 and result.threshold_source == UNCALIBRATED_SOURCE
    assert "run tfx evaluate" in UNCALIBRATED_SOURCE and result.operating_point is None
    card = models["plain"].with_suffix(".MODEL_CARD.md").read_text()
    assert "No validated operating point: `tfx predict` decides at the uncalibrated" in card


def test_threshold_and_operating_point_overrides(tfx, models):
    path = str(models["validated"])
    photo = str(models["photos"][0])
    result = tfx("predict", path, photo, "--json", "--threshold", "0.3")
    (record,) = [json.loads(line) for line in result.stdout.splitlines()]
    assert result.exit_code == 0 and record["threshold"] == 0.3
    assert record["operating_point"] is None
    assert record["threshold_source"] == "--threshold 0.3: set by the user, not validated"
    assert record["referable"] == (record["referable_probability"] >= 0.3)
    result = tfx("predict", path, photo, "--json", "--operating-point", "sens95")
    (record,) = [json.loads(line) for line in result.stdout.splitlines()]
    sens95 = models["record"]["binary"][REFERABLE]["operating_points"]["sens95"]["threshold"]
    assert record["threshold"] == sens95 and record["operating_point"] == "sens95"
    assert record["threshold_source"].startswith("validated: 95 % sensitivity on validation")
    result = tfx("predict", path, photo, "--operating-point", "sens80")
    assert result.exit_code == 1 and result.stderr.count("\n") == 1
    assert "--operating-point 'sens80' is not stored" in result.stderr
    assert "sens90, sens95" in result.stderr
    result = tfx("predict", path, photo, "--threshold", "0.3", "--operating-point", "sens95")
    assert result.exit_code == 1 and "not both" in result.stderr
    result = tfx("predict", str(models["plain"]), photo, "--operating-point", "sens90")
    assert result.exit_code == 1 and "it has none: run `tfx evaluate CKPT`" in result.stderr


def test_table_names_rules_thresholds_and_disagreements(tfx, models):
    # At threshold 1 nothing is referable, at 0 everything is: either way every image whose
    # most probable grade says otherwise gets a note explaining the two decisions.
    grades = [int(r.predicted) for r in
              OnnxClassifier(models["validated"], "cpu").predict_files(models["photos"])]
    cut = 1.0 if max(grades) >= 2 else 0.0
    results = OnnxClassifier(models["validated"], "cpu", threshold=cut).predict_files(
        models["photos"])
    for r in results:
        assert r.referable == (cut == 0.0)
        assert (r.note is not None) == ((int(r.predicted) >= 2) != r.referable)
    noted = next(r for r in results if r.note)
    side = "at or above" if cut == 1.0 else "below"
    assert f"is {side} the referable grade 2, but P(grade >= 2)" in noted.note
    result = tfx("predict", str(models["validated"]), *map(str, models["photos"]), "--threshold",
                 f"{cut:g}")
    assert result.exit_code == 0
    assert "predicted = the most probable class (argmax)" in result.stdout
    assert f"referable = P(grade >= 2) >= {cut:g}" in result.stdout
    assert (f"threshold for referable (grade >= 2): {cut:g} (--threshold {cut:g}: set by the "
            "user") in result.stdout
    assert f"note, {noted.image}: the most probable grade" in result.stdout


def test_disagreement_both_ways():
    meta = ModelMetadata(task="multiclass", class_names=("0", "1", "2", "3", "4"),
                         image_size=32, channels=3, mean=(0.5,) * 3, std=(0.25,) * 3,
                         architecture="cbr-tiny", tfx_version="0", checkpoint_sha256="x",
                         dataset="d", selection_metric="referable_auc", referable_threshold=2)
    low = disagreement(meta, grade=1, referable_probability=0.4, referable=True, threshold=0.3)
    assert "grade (1) is below the referable grade 2, but P(grade >= 2) = 0.400 >= the " \
           "threshold 0.3, so the image is referable" in low
    assert disagreement(meta, 3, 0.6, True, 0.3) is None
    assert disagreement(meta, 1, 0.2, False, 0.3) is None
    with pytest.raises(ConfigError, match="not a probability"):
        decision_rule(meta, threshold=1.5)
    assert operating_point_name(0.9) == "sens90" and operating_point_name(0.925) == "sens92.5"


def test_plain_multiclass_takes_no_threshold():
    meta = ModelMetadata(task="multiclass", class_names=("a", "b", "c"), image_size=32,
                         channels=3, mean=(0.5,) * 3, std=(0.25,) * 3, architecture="cbr-tiny",
                         tfx_version="0", checkpoint_sha256="x", dataset="d",
                         selection_metric="auc")
    assert decision_rule(meta).thresholds == {}
    with pytest.raises(ConfigError, match="argmax"):
        decision_rule(meta, threshold=0.4)


def test_csv_has_threshold_source_and_warnings_and_no_formulas(tfx, models, tmp_path):
    tiny = fundus_png(tmp_path / "=HYPERLINK(evil).png", size=7)  # warned: far too small
    photo = models["photos"][1]
    out_csv = tmp_path / "p.csv"
    result = tfx("predict", str(models["validated"]), str(tiny), str(photo), "--csv", str(out_csv))
    assert result.exit_code == 0
    rows = list(csv.DictReader(io.StringIO(out_csv.read_text())))
    assert [r["image"] for r in rows] == [str(tiny), str(photo)]
    assert rows[0]["threshold_source"].startswith("validated: 90 % sensitivity on validation")
    assert float(rows[0]["threshold"]) == pytest.approx(
        models["record"]["binary"][REFERABLE]["operating_points"]["sens90"]["threshold"])
    assert rows[0]["operating_point"] == "sens90"
    assert "far smaller than the model's 32-pixel inputs" in rows[0]["warnings"]
    assert rows[1]["warnings"] == ""
    # A file called "=HYPERLINK(...)" with its folder is not a formula: it starts with "/" here,
    # so name it relative to check the cell itself.
    assert csv_safe("=HYPERLINK(evil).png") == "'=HYPERLINK(evil).png"
    assert csv_safe("-0.25") == "-0.25" and csv_safe(0.5) == 0.5
    assert csv_safe("@SUM(A1)") == "'@SUM(A1)" and csv_safe("+cmd") == "'+cmd"


def test_csv_cell_from_a_relative_formula_name(tfx, models, tmp_path, monkeypatch):
    shutil.copy(models["photos"][0], tmp_path / "=1+2.png")
    monkeypatch.chdir(tmp_path)
    result = tfx("predict", str(models["validated"]), "=1+2.png", "--csv", "out.csv")
    assert result.exit_code == 0
    assert (tmp_path / "out.csv").read_text().splitlines()[1].startswith("'=1+2.png,")


def test_json_keys_are_stable(tfx, models):
    result = tfx("predict", str(models["validated"]), str(models["photos"][0]), "--json")
    (record,) = [json.loads(line) for line in result.stdout.splitlines()]
    assert set(record) == {"image", "probabilities", "predicted", "predicted_rule",
                           "referable_probability", "referable", "referable_rule", "threshold",
                           "threshold_source", "operating_point", "note", "warnings",
                           "provider"}


def test_metadata_with_an_impossible_threshold_is_refused(models, tmp_path):
    model = onnx.load(str(models["validated"]))
    for prop in model.metadata_props:
        if prop.key == "tfx.operating_points":
            points = json.loads(prop.value)
            points[REFERABLE]["sens90"]["threshold"] = 1.5
            prop.value = json.dumps(points)
    bad = tmp_path / "bad.onnx"
    onnx.save(model, str(bad))
    with pytest.raises(ExportError, match="has threshold 1.5, not a probability"):
        OnnxClassifier(bad, "cpu")
