"""End to end: `tfx fit` (tiny) -> `tfx export RUN/checkpoints/best.pt` -> `tfx predict`, and
the ONNX predictions equal the fitted PyTorch model's for the same image files."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from export_helpers import SHARED_DATA, fundus_png
from PIL import Image

from transfusion_cli.data.bundles import normalize
from transfusion_cli.data.preprocess import load_prepared, preprocess_step
from transfusion_cli.models.checkpoint import build_model, checkpoint_dataset_info, load_checkpoint

RETINAMNIST = SHARED_DATA / "medmnist" / "retinamnist_fixture.npz"


def fitted_probabilities(ckpt, paths) -> np.ndarray:
    """What the fitted PyTorch model says about the files (training's preprocessing)."""
    checkpoint = load_checkpoint(ckpt)
    info = checkpoint_dataset_info(checkpoint)
    step = preprocess_step(info.preprocess)
    arrays = np.stack([load_prepared(p, info.image_size, info.channels, step)
                       for p in paths])
    model = build_model(checkpoint).eval()
    with torch.inference_mode():
        logits = model(normalize(torch.from_numpy(arrays).permute(0, 3, 1, 2), info,
                                 checkpoint["arch"]["in_chans"]))
    return torch.softmax(logits.double(), dim=1).numpy()


@pytest.mark.parametrize("data", ["quickstart",
                                  pytest.param("retinamnist", marks=pytest.mark.slow)])
def test_fit_export_predict(tfx, tmp_path, monkeypatch, data):
    monkeypatch.setenv("TFX_CACHE_DIR", str(tmp_path / "cache"))
    run = tmp_path / "run"
    fit_args = ["fit", "--steps", "2", "--batch-size", "8", "--image-size", "32", "--out", run]
    images = [fundus_png(tmp_path / "fundus.png", size=90)]
    if data == "quickstart":  # `tfx fit`'s default dataset (synthetic-retina), kept small
        fit_args += ["--option", "train_size=64", "--option", "val_size=40",
                     "--option", "test_size=0"]
    if data == "retinamnist":
        if not RETINAMNIST.is_file():
            pytest.skip(f"real data not available at {RETINAMNIST}")
        fit_args += ["--data", "medmnist", "--data-dir", RETINAMNIST]
        test_images = np.load(RETINAMNIST)["test_images"]
        for index in range(2):
            Image.fromarray(test_images[index]).save(tmp_path / f"real{index}.png")
            images.append(tmp_path / f"real{index}.png")
    tfx(*fit_args, check=True)
    best = run / "checkpoints" / "best.pt"
    model = tmp_path / "model.onnx"
    tfx("export", best, "--out", model, check=True)
    report = json.loads((tmp_path / "model.export.json").read_text())
    assert report["parity"]["fp32"]["passed"]
    assert report["checkpoint"]["dataset"] == ("synthetic-retina" if data == "quickstart"
                                               else "medmnist")
    predicted = tfx.subprocess("predict", model, *images, "--json", timeout=120)
    assert predicted.exit_code == 0, predicted.stderr
    assert predicted.stderr.startswith("provider: ")
    results = [json.loads(line) for line in predicted.stdout.splitlines()]  # JSON Lines
    expected = fitted_probabilities(best, images)
    names = checkpoint_dataset_info(load_checkpoint(best)).class_names
    for result, row in zip(results, expected, strict=True):
        np.testing.assert_allclose([result["probabilities"][n] for n in names], row, atol=1e-5)
        assert result["predicted"] == names[int(row.argmax())]
        assert result["referable_probability"] == pytest.approx(row[2:].sum(), abs=1e-5)
