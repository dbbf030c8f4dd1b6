"""`tfx predict`: no torch, same predictions as PyTorch for the same files, bad inputs."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from export_helpers import (
    SHARED_DATA,
    FakeDatasets,
    binary_info,
    chest_info,
    colour_png,
    fundus_png,
    gray_png,
    make_ckpt,
    retina_info,
)
from PIL import Image
from registry_helpers import registry_with

from transfusion_cli.data.bundles import normalize
from transfusion_cli.data.preprocess import load_prepared, preprocess_step
from transfusion_cli.deploy.export import ExportSettings, export_checkpoint
from transfusion_cli.deploy.predict import OnnxClassifier, collect_images
from transfusion_cli.errors import ConfigError, ExportError
from transfusion_cli.models.checkpoint import build_model, load_checkpoint


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Exported retina (fundus crop, referable), chest (1-channel data, 3-channel model) and
    binary models, with their checkpoints, and some image files."""
    root = tmp_path_factory.mktemp("predict")
    made = {}
    with registry_with(FakeDatasets()):
        for name, info, in_chans in (("retina", retina_info(32), 3), ("chest", chest_info(40), 3),
                                     ("binary", binary_info(32), 1)):
            ckpt = make_ckpt(root / f"{name}.pt", "cbr-tiny", info, in_chans=in_chans, seed=3)
            out = root / f"{name}.onnx"
            export_checkpoint(ExportSettings(checkpoint=ckpt, out=out, latency_runs=1))
            made[name] = (ckpt, out)
    images = root / "images"
    images.mkdir()
    made["fundus"] = [fundus_png(images / f"fundus{i}.png", size=80 + 8 * i, seed=i)
                      for i in range(3)]
    made["gray"] = [gray_png(images / f"gray{i}.png", size=30 + 7 * i, seed=i) for i in range(3)]
    return made


def pytorch_probabilities(ckpt, paths) -> np.ndarray:
    """The training path: load_prepared -> torch normalize -> PyTorch model -> softmax/sigmoid."""
    checkpoint = load_checkpoint(ckpt)
    from transfusion_cli.models.checkpoint import checkpoint_dataset_info

    info = checkpoint_dataset_info(checkpoint)
    step = preprocess_step(info.preprocess)
    arrays = np.stack([load_prepared(p, info.image_size, info.channels, step)
                       for p in paths])
    images = torch.from_numpy(arrays).permute(0, 3, 1, 2)
    model = build_model(checkpoint).eval()
    with torch.inference_mode():
        logits = model(normalize(images, info, checkpoint["arch"]["in_chans"]))
    if info.task == "multiclass":
        return torch.softmax(logits.double(), dim=1).numpy()
    return torch.sigmoid(logits.double()).numpy()


def test_retina_predictions_match_pytorch_on_fundus_files(models):
    ckpt, model_path = models["retina"]
    paths = models["fundus"]
    # The fundus crop really changes the input (so this test exercises it).
    assert not np.array_equal(load_prepared(paths[0], 32, 3, preprocess_step("fundus_crop")),
                              load_prepared(paths[0], 32, 3))
    classifier = OnnxClassifier(model_path, "cpu")
    assert (classifier.metadata.preprocess, classifier.metadata.preprocess_plugin) == (
        "fundus_crop", "fundus")
    assert classifier.step.name == "fundus_crop" and classifier.provider == "CPUExecutionProvider"
    results = classifier.predict_files(paths, batch_size=2)
    expected = pytorch_probabilities(ckpt, paths)
    names = retina_info().class_names
    for result, row in zip(results, expected, strict=True):
        got = np.array([result.probabilities[n] for n in names])
        np.testing.assert_allclose(got, row, atol=1e-5)
        assert result.predicted == names[int(row.argmax())]
        assert result.referable_probability == pytest.approx(row[2:].sum(), abs=1e-5)
        assert result.referable == (row[2:].sum() >= 0.5)


def test_chest_predictions_match_pytorch_on_gray_files(models):
    ckpt, model_path = models["chest"]
    paths = models["gray"]
    results = OnnxClassifier(model_path, "cpu").predict_files(paths)
    expected = pytorch_probabilities(ckpt, paths)
    names = chest_info().class_names
    for result, row in zip(results, expected, strict=True):
        np.testing.assert_allclose([result.probabilities[n] for n in names], row, atol=1e-5)
        assert result.predicted == [n for n, p in zip(names, row, strict=True) if p >= 0.5]
        assert result.referable_probability is None and "referable" not in result.to_dict()


def test_binary_predictions(models):
    ckpt, model_path = models["binary"]
    results = OnnxClassifier(model_path, "cpu").predict_files(models["gray"])
    expected = pytorch_probabilities(ckpt, models["gray"])[:, 0]
    for result, p in zip(results, expected, strict=True):
        assert result.probabilities["abnormal"] == pytest.approx(p, abs=1e-5)
        assert result.probabilities["normal"] == pytest.approx(1 - p, abs=1e-5)
        assert result.predicted == ("abnormal" if p >= 0.5 else "normal")


def json_lines(text: str) -> list[dict]:
    """`tfx predict --json` output: exactly one JSON object on each line."""
    records = [json.loads(line) for line in text.splitlines()]
    assert all(isinstance(r, dict) for r in records)
    return records


NO_TORCH_MODULE = """
import json, sys
from transfusion_cli.deploy.predict import OnnxClassifier
results = OnnxClassifier(sys.argv[1], "auto").predict_files(sys.argv[2:])
print(json.dumps([r.to_dict() for r in results]))
print("TORCH_IMPORTED=" + str("torch" in sys.modules))
"""

NO_TORCH_CLI = """
import atexit, sys
atexit.register(lambda: print("TORCH_IMPORTED=" + str("torch" in sys.modules), file=sys.stderr))
from transfusion_cli.cli import main
main(["predict", *sys.argv[1:], "--json"])
"""


def test_predict_module_never_imports_torch(models):
    _, model_path = models["retina"]
    run = subprocess.run([sys.executable, "-c", NO_TORCH_MODULE, str(model_path),
                          *map(str, models["fundus"])], capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.strip().splitlines()
    assert lines[-1] == "TORCH_IMPORTED=False"
    assert len(json.loads(lines[0])) == 3


def test_predict_cli_never_imports_torch(models):
    _, model_path = models["chest"]
    run = subprocess.run([sys.executable, "-c", NO_TORCH_CLI, str(model_path),
                          str(models["gray"][0])], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "TORCH_IMPORTED=False" in run.stderr
    assert json_lines(run.stdout)[0]["image"] == str(models["gray"][0])


@pytest.mark.skipif(shutil.which("tfx") is None, reason="the tfx console script is not installed")
def test_tfx_console_script_never_imports_torch(models):
    """The installed `tfx` script: Python's import profiler lists every module it imports."""
    _, model_path = models["retina"]
    run = subprocess.run(["tfx", "predict", str(model_path), str(models["fundus"][0]), "--json"],
                         capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPROFILEIMPORTTIME": "1"})
    assert run.returncode == 0, run.stderr[-2000:]
    imported = {line.rsplit("|", 1)[-1].strip() for line in run.stderr.splitlines()
                if line.startswith("import time:")}
    assert "onnxruntime" in imported and "transfusion_cli.deploy.predict" in imported
    assert not {m for m in imported if m == "torch" or m.startswith("torch.")}
    assert json_lines(run.stdout)[0]["image"] == str(models["fundus"][0])


def test_bad_images_are_listed_and_the_rest_predicted(tfx, models, tmp_path):
    _, model_path = models["retina"]
    unreadable = tmp_path / "broken.png"
    unreadable.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    gray = gray_png(tmp_path / "xray.png")
    missing = tmp_path / "missing.png"
    good = [str(p) for p in models["fundus"]]
    args = ["predict", str(model_path), good[0], str(unreadable), good[1], str(gray),
            str(missing), good[2], "--json", "--batch-size", "2"]
    result = tfx(*args)
    assert result.exit_code == 1
    results = json_lines(result.stdout)  # JSON Lines: one object per image, one per line
    assert [r["image"] for r in results] == args[2:8]  # input order kept across batches
    assert [("error" in r) for r in results] == [False, True, False, True, True, False]
    failures = [line for line in result.stderr.splitlines() if line.startswith("failed: ")]
    assert len(failures) == 3
    assert "broken.png" in failures[0] and "Cannot read image" in failures[0]
    assert "xray.png is a grayscale (1-channel) image but the model expects colour" in failures[1]
    assert "missing.png does not exist" in failures[2]
    assert result.stderr.strip().splitlines()[-1] == ("Error: 3 of 6 images could not be predicted "
                                               "(listed above); the other 3 were.")


def test_colour_image_for_a_grayscale_model_is_refused(tfx, models, tmp_path):
    _, model_path = models["chest"]
    colour = colour_png(tmp_path / "photo.png")
    gray_as_rgb = tmp_path / "gray_rgb.png"
    Image.open(models["gray"][0]).convert("RGB").save(gray_as_rgb)  # gray content, RGB mode
    result = tfx("predict", str(model_path), str(colour), str(gray_as_rgb), "--json")
    assert result.exit_code == 1
    assert ("photo.png is a colour (3-channel) image but the model expects grayscale"
            in result.stderr)
    assert "error" not in json_lines(result.stdout)[1]


def test_not_an_onnx_file(tfx, models, tmp_path):
    ckpt, _ = models["retina"]
    result = tfx("predict", str(ckpt), str(models["fundus"][0]))
    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: {ckpt} is a PyTorch checkpoint, not an ONNX model")
    assert result.stderr.count("\n") == 1
    result = tfx("predict", str(tmp_path / "nothing.onnx"), str(models["fundus"][0]))
    assert result.exit_code == 1 and "does not exist" in result.stderr
    assert result.stderr.count("\n") == 1


def test_onnx_without_tfx_metadata(tfx, models, tmp_path):
    _, model_path = models["retina"]
    model = onnx.load(str(model_path))
    del model.metadata_props[:]
    plain = tmp_path / "plain.onnx"
    onnx.save(model, str(plain))
    result = tfx("predict", str(plain), str(models["fundus"][0]))
    assert result.exit_code == 1 and "has no tfx metadata" in result.stderr
    assert result.stderr.count("\n") == 1


def test_metadata_that_contradicts_the_graph(models, tmp_path):
    _, model_path = models["retina"]
    model = onnx.load(str(model_path))
    for prop in model.metadata_props:
        if prop.key == "tfx.image_size":
            prop.value = "33"
    wrong = tmp_path / "wrong.onnx"
    onnx.save(model, str(wrong))
    with pytest.raises(ExportError, match="does not fit its tfx metadata"):
        OnnxClassifier(wrong, "cpu")


def cuda_works(model_path) -> bool:
    """Whether onnxruntime can really run on CUDA here (not just list the provider)."""
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return False
    from transfusion_cli.deploy.ort_session import create_session

    try:
        return create_session(model_path, "cuda").provider == "CUDAExecutionProvider"
    except ConfigError:
        return False


def test_provider_cuda_fails_clearly_without_cuda(tfx, models):
    _, model_path = models["retina"]
    if cuda_works(model_path):
        pytest.skip("CUDA works here; the failure path cannot be shown")
    result = tfx("predict", str(model_path), str(models["fundus"][0]), "--provider", "cuda")
    assert result.exit_code == 1 and result.stdout == ""
    assert result.stderr.startswith("Error: --provider cuda:") and "--provider cpu" in result.stderr
    assert result.stderr.count("\n") == 1
    result = tfx("predict", str(model_path), str(models["fundus"][0]))
    assert result.exit_code == 0 and result.stderr.startswith("provider: CPUExecutionProvider (")


def test_provider_cuda_when_onnxruntime_has_no_cuda(models, monkeypatch):
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CPUExecutionProvider"])
    _, model_path = models["retina"]
    with pytest.raises(ConfigError, match="no CUDAExecutionProvider.*install onnxruntime-gpu"):
        OnnxClassifier(model_path, "cuda")
    auto = OnnxClassifier(model_path, "auto")
    assert auto.provider == "CPUExecutionProvider" and "onnxruntime-gpu" in \
        auto.runtime.fallback_reason


@pytest.mark.gpu
def test_provider_cuda_runs_on_the_gpu(models):
    ckpt, model_path = models["retina"]
    if not cuda_works(model_path):
        pytest.skip("no usable CUDA provider")
    results = OnnxClassifier(model_path, "cuda").predict_files(models["fundus"])
    expected = pytorch_probabilities(ckpt, models["fundus"])
    names = retina_info().class_names
    for result, row in zip(results, expected, strict=True):
        np.testing.assert_allclose([result.probabilities[n] for n in names], row, atol=1e-3)


def test_folders_csv_and_table(tfx, models, tmp_path):
    _, model_path = models["retina"]
    folder = tmp_path / "photos"
    (folder / "nested").mkdir(parents=True)
    shutil.copy(models["fundus"][0], folder / "b.png")
    shutil.copy(models["fundus"][1], folder / "nested" / "a.png")
    (folder / "notes.txt").write_text("not an image")
    assert collect_images([folder]) == [str(folder / "b.png"), str(folder / "nested" / "a.png")]
    out_csv = tmp_path / "out" / "predictions.csv"
    result = tfx("predict", str(model_path), str(folder), "--csv", str(out_csv))
    # the table (its layout depends on the width)
    assert result.exit_code == 0 and result.stdout.count("\n") >= 6
    rows = list(csv.DictReader(io.StringIO(out_csv.read_text())))
    assert [r["image"] for r in rows] == [str(folder / "b.png"), str(folder / "nested" / "a.png")]
    results = OnnxClassifier(model_path, "cpu").predict_files([folder / "b.png"])
    assert float(rows[0]["prob_2"]) == pytest.approx(results[0].probabilities["2"], abs=1e-6)
    assert rows[0]["referable"] == str(results[0].referable) and rows[0]["error"] == ""
    empty = tmp_path / "empty"
    empty.mkdir()
    result = tfx("predict", str(model_path), str(empty))
    assert result.exit_code == 1 and "holds no image files" in result.stderr


def test_csv_lists_failures(tfx, models, tmp_path):
    _, model_path = models["chest"]
    out_csv = tmp_path / "p.csv"
    result = tfx("predict", str(model_path), str(models["gray"][0]), str(tmp_path / "gone.png"),
                 "--csv", str(out_csv))
    assert result.exit_code == 1
    rows = list(csv.DictReader(io.StringIO(out_csv.read_text())))
    assert rows[0]["error"] == "" and rows[0]["prob_Edema"]
    assert "gone.png does not exist" in rows[1]["error"] and rows[1]["prob_Edema"] == ""


def test_real_fundus_and_chest_files_match_pytorch(models):
    """Real files: a full-resolution fundus photo (fundus crop + resize from 1411 px) and NIH
    chest X-ray PNGs, predicted by onnxruntime and by the training path in PyTorch."""
    fundus = SHARED_DATA / "fundus_cc0" / "retina.jpg"
    xrays = sorted((SHARED_DATA / "nih_cxr14_mini" / "images").glob("*.png"))[:3]
    if not fundus.is_file() or not xrays:
        pytest.skip(f"real data not available under {SHARED_DATA}")
    for name, paths in (("retina", [fundus]), ("chest", xrays)):
        ckpt, model_path = models[name]
        results = OnnxClassifier(model_path, "cpu").predict_files(paths)
        expected = pytorch_probabilities(ckpt, paths)
        for result, row in zip(results, expected, strict=True):
            assert result.error is None
            np.testing.assert_allclose(list(result.probabilities.values()), row, atol=1e-5)
