"""`tfx evaluate` end to end: a tiny synthetic-retina run, its checkpoint and its ONNX export
give the same metrics; the export's model card carries them; predict warns on the model."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def small_run(tfx, tmp_path_factory):
    """`tfx fit` on a small synthetic-retina (32 px, a few steps), evaluated and exported."""
    root = tmp_path_factory.mktemp("evaluate")
    mp = pytest.MonkeyPatch()
    mp.setenv("TFX_CACHE_DIR", str(root / "cache"))
    run = root / "run"
    tfx("fit", "--steps", "4", "--batch-size", "16", "--image-size", "32", "--out", run, "--option",
        "train_size=64", "--option", "val_size=40", "--option", "test_size=40", check=True)
    yield root, run / "checkpoints" / "best.pt"
    mp.undo()


def evaluate_json(tfx, *args):
    """The record `tfx evaluate ARGS --json` prints (30 bootstrap replicates)."""
    return json.loads(tfx("evaluate", *args, "--bootstrap", "30", "--json", check=True).stdout)


def test_checkpoint_and_onnx_export_evaluate_alike(tfx, small_run):
    root, best = small_run
    record = evaluate_json(tfx, best, "--out", root / "eval")
    assert record["split"] == "test" and record["n"] == 40
    assert record["dataset"] == "synthetic-retina"
    for name in ("auc", "accuracy", "kappa", "referable_auc"):
        entry = record["metrics"][name]
        assert entry["ci_low"] <= entry["value"] <= entry["ci_high"], name
    point = record["binary"]["referable (grade >= 2)"]["operating_point"]
    assert point["chosen_on"] == "val" and point["val_sensitivity"] >= 0.9
    cm = point["confusion_matrix"]
    assert sum(cm.values()) == 40
    for figure in ("roc_referable.png", "pr_referable.png", "reliability_referable.png"):
        assert Image.open(root / "eval" / figure).size[0] > 300
    # for the model card: one record per dataset, keyed by its fingerprint
    assert (best.parent / f"best.{record['data']['fingerprint']}.evaluation.json").is_file()

    tfx("export", best, "--out", root / "model.onnx", "--json", check=True)
    onnx_record = evaluate_json(tfx, root / "model.onnx")
    for name, entry in record["metrics"].items():
        assert onnx_record["metrics"][name]["value"] == pytest.approx(entry["value"], abs=1e-3)
    assert onnx_record["model_kind"] == "onnx"

    card = (root / "model.MODEL_CARD.md").read_text()
    assert "## Test metrics" in card and "95% CI" in card
    assert "synthetic images, not on real photographs" in card
    assert "`sens90` (the default): threshold" in card
    # The card names the data its metrics came from: the training data's test split here.
    assert f"fingerprint {record['data']['fingerprint']}): the training data, test split" in card


def test_two_models_give_the_paired_difference(tfx, small_run):
    _, best = small_run
    init = best.parent / "init.pt"
    result = evaluate_json(tfx, init, best)
    comparison = result["comparison"]["auc"]["referable (grade >= 2)"]
    assert comparison["difference"] == pytest.approx(comparison["auc_b"] - comparison["auc_a"])
    assert comparison["ci_low"] <= comparison["difference"] <= comparison["ci_high"]
    assert 0 <= comparison["p_value"] <= 1
    assert len(result["evaluations"]) == 2


def test_predict_warns_about_a_synthetic_model_and_unlike_inputs(tfx, small_run):
    root, _ = small_run
    model = root / "model.onnx"
    if not model.is_file():
        pytest.skip("the export test did not run")
    samples = root / "samples"
    tfx("data", "save", "--data", "synthetic-retina", "--n", "2", "--image-size", "32", "--option",
        "test_size=40", "-o", samples, check=True)
    gray = np.full((40, 120, 3), 128, np.uint8)  # grayscale, 3:1, no fundus disc
    Image.fromarray(gray).save(root / "gray.png")
    # A 3:1 colour image.
    Image.fromarray(np.random.default_rng(0).integers(120, 255, (40, 120, 3), np.uint8)).save(
        root / "wide.png")
    predicted = tfx("predict", model, samples, root / "wide.png", "--json", check=True)
    lines = [json.loads(line) for line in predicted.stdout.splitlines() if line.strip()]
    assert len(lines) == 3
    for line in lines:
        assert any("synthetic data" in w for w in line["warnings"])
    wide = lines[-1]["warnings"]
    assert any("aspect 3.0:1" in w for w in wide)
    assert len(wide) == 2  # synthetic model, aspect (synthetic-retina has no fundus crop)
    assert "not for real photographs" in predicted.stderr
    refused = tfx("predict", model, root / "gray.png", "--json")  # refused, not diagnosed
    assert "predicted" not in refused.stdout


def test_evaluate_wrong_model_path_is_one_line(tfx, tmp_path):
    result = tfx("evaluate", tmp_path / "missing.pt")
    assert result.exit_code == 1
    err = result.stderr.strip()
    assert len(err.splitlines()) == 1 and "does not exist" in err


def test_the_command_prints_the_library_record(tfx, small_run):
    """`tfx evaluate` is `evaluate_model` printed: the same record, one threshold rule."""
    from transfusion_cli.console import json_safe
    from transfusion_cli.evaluation.evaluate import evaluate_model

    _, best = small_run
    for split in ("test", "val"):
        printed = evaluate_json(tfx, best, "--split", split, "--seed", "3")
        record, _ = evaluate_model(best, split=split, n_boot=30, seed=3, show_progress=False)
        assert printed == json.loads(json.dumps(json_safe(record), default=str))
    point = printed["binary"]["referable (grade >= 2)"]["operating_point"]
    assert "optimistic" in point["note"]  # --split val: chosen on the split it is measured on


def test_the_command_defaults_are_the_library_defaults():
    from transfusion_cli.commands import evaluate_cmd
    from transfusion_cli.evaluation import evaluate, operating_point

    assert evaluate_cmd.DEFAULT_BOOTSTRAP == evaluate.DEFAULT_BOOTSTRAP
    assert evaluate_cmd.DEFAULT_SENSITIVITY == operating_point.DEFAULT_SENSITIVITY


def test_the_python_example_in_docs_evaluate_runs(small_run, monkeypatch, capsys):
    """docs/evaluate.md's Python block, run as written in a folder holding the two runs it
    names (the tiny run's init.pt stands in for the random model)."""
    import re
    import shutil
    from pathlib import Path

    root, best = small_run
    folder = root / "docs-example"
    for run, checkpoint in (("random", best.parent / "init.pt"), ("imagenet", best)):
        (folder / "runs" / run / "checkpoints").mkdir(parents=True)
        shutil.copy(checkpoint, folder / "runs" / run / "checkpoints" / "best.pt")
    docs = Path(__file__).resolve().parents[2] / "docs" / "evaluate.md"
    (example,) = re.findall(r"```python\n(.*?)```", docs.read_text(), flags=re.S)
    monkeypatch.chdir(folder)
    exec(compile(example, str(docs), "exec"), {})
    lines = capsys.readouterr().out.splitlines()
    assert re.fullmatch(r"referable AUC \d\.\d{3} \(\d\.\d{3} to \d\.\d{3}\)", lines[0]), lines
    question, difference, p_value = lines[1].rsplit(" ", 2)
    assert question == "referable (grade >= 2)" and -1 <= float(difference) <= 1
    assert 0 <= float(p_value) <= 1


def test_a_run_reads_its_data_folder_from_any_working_directory(tfx, tmp_path, monkeypatch):
    """`--data-dir` typed relative is stored absolute: `tfx evaluate` from another folder
    reads the training data, not whatever sits there at the same relative path; a moved
    folder is a one-line error naming the flag."""
    import torch
    import yaml
    from input_files import image_folder

    monkeypatch.setenv("TFX_CACHE_DIR", str(tmp_path / "cache"))
    project, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    image_folder(project / "data", per_class=25, size=36)
    image_folder(elsewhere / "data", per_class=10, size=36)  # a decoy at the same relative path
    monkeypatch.chdir(project)
    tfx("fit", "--data", "image-folder", "--data-dir", "data", "--arch", "cbr-tiny", "--image-size",
        "32", "--steps", "2", "--batch-size", "8", "--out", "run", check=True)
    stored = str((project / "data").resolve())
    assert yaml.safe_load((project / "run" / "config.yaml").read_text())["data_dir"] == stored
    best = project / "run" / "checkpoints" / "best.pt"
    assert torch.load(best, weights_only=True)["config"]["data_dir"] == stored

    monkeypatch.chdir(elsewhere)
    here = evaluate_json(tfx, "../project/run/checkpoints/best.pt")
    monkeypatch.chdir(project)
    there = evaluate_json(tfx, best)
    assert here["n"] == there["n"] == 10  # the test fifth of 50 images, not of the decoy's 20
    assert here["metrics"] == there["metrics"]

    (project / "data").rename(project / "moved")
    monkeypatch.chdir(elsewhere)
    result = tfx("evaluate", best, "--bootstrap", "30", "--json")
    line = result.error_line()
    assert result.exit_code != 0 and "--data-dir" in line and stored in line
    assert "does not exist" in line
    moved = evaluate_json(tfx, best, "--data-dir", project / "moved")
    assert moved["metrics"] == there["metrics"]
    from transfusion_cli.data.batches import trained_data_dir
    from transfusion_cli.errors import DataError

    with pytest.raises(DataError, match="relative to the folder .* pass --data-dir"):
        trained_data_dir("image-folder", "data")  # as an older tfx stored it
