"""`tfx evaluate` end to end: a tiny synthetic-retina run, its checkpoint and its ONNX export
give the same metrics; the export's model card carries them; predict warns on the model."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from transfusion_cli.cli import main

pytest.importorskip("onnxruntime")


def cli(args):
    try:
        main([str(a) for a in args])
    except SystemExit as exc:
        assert exc.code in (0, None), f"tfx {' '.join(map(str, args))} exited with {exc.code}"


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """`tfx fit` on a small synthetic-retina (32 px, a few steps), evaluated and exported."""
    root = tmp_path_factory.mktemp("evaluate")
    mp = pytest.MonkeyPatch()
    mp.setenv("TFX_CACHE_DIR", str(root / "cache"))
    run = root / "run"
    cli(["fit", "--steps", "4", "--batch-size", "16", "--image-size", "32", "--out", run,
         "--option", "train_size=64", "--option", "val_size=40", "--option", "test_size=40"])
    yield root, run / "checkpoints" / "best.pt"
    mp.undo()


def evaluate_json(capsys, *args):
    capsys.readouterr()
    cli(["evaluate", *args, "--bootstrap", "30", "--json"])
    return json.loads(capsys.readouterr().out)


def test_checkpoint_and_onnx_export_evaluate_alike(tiny_run, capsys):
    root, best = tiny_run
    record = evaluate_json(capsys, best, "--out", root / "eval")
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
    assert (best.parent / "best.evaluation.json").is_file()  # for the model card

    capsys.readouterr()
    cli(["export", best, "--out", root / "model.onnx", "--json"])
    capsys.readouterr()
    onnx_record = evaluate_json(capsys, root / "model.onnx")
    for name, entry in record["metrics"].items():
        assert onnx_record["metrics"][name]["value"] == pytest.approx(entry["value"], abs=1e-3)
    assert onnx_record["model_kind"] == "onnx"

    card = (root / "MODEL_CARD.md").read_text()
    assert "## Test metrics" in card and "95% CI" in card
    assert "synthetic images, not on real photographs" in card
    assert "Operating point for referable" in card


def test_two_models_give_the_paired_difference(tiny_run, capsys):
    _, best = tiny_run
    init = best.parent / "init.pt"
    result = evaluate_json(capsys, init, best)
    comparison = result["comparison"]["auc"]["referable (grade >= 2)"]
    assert comparison["difference"] == pytest.approx(comparison["auc_b"] - comparison["auc_a"])
    assert comparison["ci_low"] <= comparison["difference"] <= comparison["ci_high"]
    assert 0 <= comparison["p_value"] <= 1
    assert len(result["evaluations"]) == 2


def test_predict_warns_about_a_synthetic_model_and_unlike_inputs(tiny_run, capsys):
    root, _ = tiny_run
    model = root / "model.onnx"
    if not model.is_file():
        pytest.skip("the export test did not run")
    samples = root / "samples"
    cli(["data", "save", "--data", "synthetic-retina", "--n", "2", "--image-size", "32",
         "--option", "test_size=40", "-o", samples])
    gray = np.full((40, 120, 3), 128, np.uint8)  # grayscale, 3:1, no fundus disc
    Image.fromarray(gray).save(root / "gray.png")
    # A 3:1 colour image.
    Image.fromarray(np.random.default_rng(0).integers(120, 255, (40, 120, 3), np.uint8)).save(
        root / "wide.png")
    capsys.readouterr()
    cli(["predict", model, samples, root / "wide.png", "--json"])
    captured = capsys.readouterr()
    lines = [json.loads(line) for line in captured.out.splitlines() if line.strip()]
    assert len(lines) == 3
    for line in lines:
        assert any("synthetic data" in w for w in line["warnings"])
    wide = lines[-1]["warnings"]
    assert any("aspect 3.0:1" in w for w in wide)
    assert len(wide) == 2  # synthetic model, aspect (synthetic-retina has no fundus crop)
    assert "not for real photographs" in captured.err
    with pytest.raises(SystemExit):  # a grayscale image is refused, not diagnosed
        main(["predict", str(model), str(root / "gray.png"), "--json"])
    out = capsys.readouterr().out
    assert "predicted" not in out


def test_evaluate_wrong_model_path_is_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate", str(tmp_path / "missing.pt")])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "does not exist" in err
