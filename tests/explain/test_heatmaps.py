"""Heatmaps without torch. The class-activation-map output `tfx export` adds gives,
through onnxruntime alone, the Grad-CAM that PyTorch computes with a backward pass; overlays
are drawn on one scale, with a colour bar, only inside the field of view."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import numpy as np
import onnx
import pytest
import torch
from export_helpers import (
    FakeDatasets,
    binary_info,
    chest_info,
    fundus_png,
    gray_png,
    make_ckpt,
    retina_info,
)
from PIL import Image
from registry_helpers import registry_with

from transfusion_cli.data.bundles import adapt_channels
from transfusion_cli.data.preprocess import load_prepared, normalize_array, preprocess_step
from transfusion_cli.deploy.export import ExportSettings, export_checkpoint
from transfusion_cli.deploy.heatmaps import field_of_view
from transfusion_cli.deploy.metadata import HEATMAP_NAME
from transfusion_cli.deploy.overlays import OverlayText, overlay_png
from transfusion_cli.deploy.predict import OnnxClassifier
from transfusion_cli.errors import ExportError
from transfusion_cli.models.trained import load_trained

CASES = {  # name: (architecture, info, in_chans)
    "retina": ("cbr-tiny", retina_info(32), 3),
    "chest": ("cbr-tiny", chest_info(40), 3),  # 1-channel data, 3-channel model
    "binary": ("cbr-tiny", binary_info(32), 1),
    "resnet18": ("timm/resnet18", retina_info(64), 3),  # a timm model: GAP + fc as well
}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("heatmaps")
    made = {}
    with registry_with(FakeDatasets()):
        for name, (arch, info, in_chans) in CASES.items():
            ckpt = make_ckpt(root / f"{name}.pt", arch, info, in_chans=in_chans, seed=2)
            out = root / name / "m.onnx"
            out.parent.mkdir()
            report = export_checkpoint(ExportSettings(checkpoint=ckpt, out=out, latency_runs=1))
            made[name] = (ckpt, out, report)
    images = root / "images"
    images.mkdir()
    made["fundus"] = [fundus_png(images / f"f{i}.png", size=70 + 10 * i, seed=i)
                      for i in range(3)]
    made["gray"] = [gray_png(images / f"g{i}.png", size=48, seed=i) for i in range(3)]
    return made


def torch_grad_cam(ckpt, paths) -> np.ndarray:
    """Grad-CAM with a backward pass in PyTorch: gradients of the explained score (the same
    choice as `tfx explain`) at the last feature maps, averaged per channel."""
    from transfusion_cli.evaluation.explain import explained_target

    trained = load_trained(ckpt, "cpu")
    info, model = trained.info, trained.model
    step = preprocess_step(info.preprocess)
    maps = []
    for path in paths:
        prepared = load_prepared(path, info.image_size, info.channels, step)
        x = adapt_channels(torch.from_numpy(normalize_array(prepared[None], info.mean,
                                                            info.std)), trained.in_chans)
        features = model.forward_features(x).detach().requires_grad_(True)
        logits = model.forward_head(features) if hasattr(model, "forward_head") else \
            model.head(torch.flatten(model.pool(features), 1))
        target, _, _ = explained_target(info, logits[0].detach())
        target(logits[0]).backward()
        weights = features.grad.mean(dim=(2, 3), keepdim=True)
        maps.append(torch.relu((weights * features).sum(dim=1))[0].detach().double().numpy())
    return np.stack(maps)


@pytest.mark.parametrize("name", list(CASES))
def test_onnx_grad_cam_equals_the_torch_backward_pass(models, name):
    ckpt, model_path, report = models[name]
    assert report["heatmap"]["output"] == HEATMAP_NAME
    # float32 rounding, relative to the maps' size (a sum over up to 512 channels)
    assert report["heatmap"]["max_abs_diff"] < 1e-4 * max(1.0, report["heatmap"]["max_abs"])
    paths = models["gray"] if CASES[name][1].channels == 1 else models["fundus"]
    results = OnnxClassifier(model_path, "cpu").predict_files(paths, heatmaps=True)
    got = np.stack([r.heatmap for r in results])
    expected = torch_grad_cam(ckpt, paths)
    assert got.shape == expected.shape
    assert expected.max() > 0  # a map with something on it
    scale = float(expected.max())
    difference = float(np.abs(got - expected).max())
    print(f"{name}: ONNX vs torch Grad-CAM max abs diff {difference:.2e} (map max {scale:.3g})")
    assert difference <= 1e-4 * max(scale, 1.0)


def test_onnx_grad_cam_equals_the_grad_cam_package(models):
    """The `tfx explain` path (grad-cam's GradCAM without its per-image rescaling)."""
    pytest.importorskip("pytorch_grad_cam")
    from pytorch_grad_cam import GradCAM

    from transfusion_cli.evaluation.explain import explained_target, unscaled

    ckpt, model_path, _ = models["retina"]
    trained = load_trained(ckpt, "cpu")
    info, model = trained.info, trained.model
    cam = unscaled(GradCAM)(model=model, target_layers=[model.block4])
    results = OnnxClassifier(model_path, "cpu").predict_files(models["fundus"], heatmaps=True)
    step = preprocess_step(info.preprocess)
    for path, result in zip(models["fundus"], results, strict=True):
        x = torch.from_numpy(normalize_array(load_prepared(path, 32, 3, step)[None], info.mean,
                                             info.std))
        with torch.no_grad():
            target, description, score = explained_target(info, model(x)[0])
        assert description == result.heatmap_target
        assert score == pytest.approx(result.heatmap_score, abs=1e-5)
        np.testing.assert_allclose(result.heatmap, cam(input_tensor=x, targets=[target])[0],
                                   atol=1e-5)


def test_a_model_without_pooled_linear_head_gets_no_heatmap(tfx, tmp_path):
    """ConvNeXt normalises after pooling: not GAP + linear, so no CAM output (and it says so)."""
    with registry_with(FakeDatasets()):
        ckpt = make_ckpt(tmp_path / "c.pt", "timm/convnext_atto", retina_info(32), seed=0)
        report = export_checkpoint(ExportSettings(checkpoint=ckpt, out=tmp_path / "c.onnx",
                                                  latency_runs=1, tolerance=1e-3))
    assert report["heatmap"]["output"] is None and "global average pooling" in \
        report["heatmap"]["note"]
    graph = onnx.load(str(tmp_path / "c.onnx")).graph
    assert [o.name for o in graph.output] == ["logits"]
    photo = fundus_png(tmp_path / "eye.png")
    result = tfx("predict", str(tmp_path / "c.onnx"), str(photo), "--heatmaps",
                 str(tmp_path / "maps"))
    assert result.exit_code == 1 and result.stderr.count("\n") == 1
    assert "has no heatmap output" in result.stderr
    assert not (tmp_path / "maps").exists()
    with pytest.raises(ExportError, match="no heatmap output"):
        OnnxClassifier(tmp_path / "c.onnx", "cpu").predict_files([photo], heatmaps=True)


def test_predict_heatmaps_cli_writes_overlays_on_the_models_scale(tfx, models, tmp_path):
    _, model_path, report = models["retina"]
    out = tmp_path / "maps"
    result = tfx("predict", str(model_path), *map(str, models["fundus"]), "--heatmaps", str(out),
                 "--json")
    assert result.exit_code == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    for record, path in zip(records, models["fundus"], strict=True):
        heatmap = record["heatmap"]
        assert heatmap["file"] == str(out / f"{path.stem}.heatmap.png")
        assert heatmap["target"] == "referable probability (grades >= 2)"
        assert heatmap["score"] == pytest.approx(record["referable_probability"])
        picture = Image.open(heatmap["file"])
        assert picture.format == "PNG" and picture.width >= 400
    classifier = OnnxClassifier(model_path, "cpu")
    assert classifier.metadata.heatmap_scale == report["heatmap"]["scale"] > 0
    vmax, what = classifier.heatmap_scale([])
    assert vmax == report["heatmap"]["scale"] and what == "fixed scale of this model"


def test_predict_heatmaps_into_a_file_is_refused_before_inference(tfx, models, tmp_path,
                                                                   monkeypatch):
    def no_work(*_args, **_kwargs):
        raise AssertionError("predicted before checking --heatmaps")

    monkeypatch.setattr(OnnxClassifier, "predict_files", no_work)
    _, model_path, _ = models["retina"]
    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    result = tfx("predict", str(model_path), str(models["fundus"][0]), "--heatmaps", str(notes))
    assert result.exit_code == 1 and result.stderr.count("\n") == 1, result.stderr
    assert f"--heatmaps {notes} is a file; give a folder for the heatmap overlays" in result.stderr
    assert notes.read_text() == "mine"


def test_predict_heatmaps_never_replace_a_png_tfx_did_not_draw(tfx, models, tmp_path,
                                                              monkeypatch):
    _, model_path, _ = models["retina"]
    image = models["fundus"][0]
    out = tmp_path / "maps"
    out.mkdir()
    mine = out / f"{image.stem}.heatmap.png"
    mine.write_bytes(b"the user's own")

    def no_work(*_args, **_kwargs):
        raise AssertionError("predicted before checking --heatmaps")

    monkeypatch.setattr(OnnxClassifier, "predict_files", no_work)
    result = tfx("predict", str(model_path), str(image), "--heatmaps", str(out))
    assert result.exit_code == 1 and result.stderr.count("\n") == 1, result.stderr
    assert f"--heatmaps {mine} exists and was not written by tfx" in result.stderr
    assert mine.read_bytes() == b"the user's own"


def test_overlay_draws_nothing_outside_the_mask():
    """Two renders that differ only in the heatmap differ only inside the mask."""
    size = 64
    image = np.full((size, size, 3), 90, np.uint8)
    mask = np.zeros((size, size), bool)
    mask[:, : size // 2] = True  # the left half is the field of view
    text = OverlayText("title", "bar")
    cold = np.asarray(Image.open(io.BytesIO(overlay_png(image, np.zeros((4, 4)), text, 1.0,
                                                        mask))).convert("RGB"), np.int16)
    hot = np.asarray(Image.open(io.BytesIO(overlay_png(image, np.ones((4, 4)), text, 1.0,
                                                       mask))).convert("RGB"), np.int16)
    changed = np.abs(hot - cold).sum(axis=2) > 0
    # The image's columns in the figure: the non-white run of its middle row, left of the
    # colour bar.
    middle = cold[cold.shape[0] // 2, : int(0.78 * cold.shape[1])]
    image_cols = np.flatnonzero((middle != 255).any(axis=1))
    left, right = image_cols.min(), image_cols.max()
    in_image = changed[:, left: right + 1]
    assert not changed[:, : left].any()  # nothing left of the image either
    half, pixel = (right - left) // 2, -(-(right - left) // size)  # one input pixel, shown
    assert in_image[:, : half - pixel].any()  # the heatmap shows inside the mask
    # and nowhere outside it (display smoothing reaches at most one input pixel across)
    assert not in_image[:, half + pixel:].any()


def test_fundus_field_of_view_mask(models):
    prepared = load_prepared(models["fundus"][0], 64, 3, preprocess_step("fundus_crop"))
    mask = field_of_view(prepared, preprocess_step("fundus_crop"))
    assert mask.shape == (64, 64) and mask[32, 32] and not mask[0, 0]
    assert field_of_view(prepared, None) is None


def test_overlay_text_carries_the_synthetic_warning(models, monkeypatch):
    import transfusion_cli.deploy.overlays as overlays

    _, model_path, _ = models["retina"]
    classifier = OnnxClassifier(model_path, "cpu")
    classifier.model_warnings = ["model trained on synthetic data ('x')"]
    seen = []
    monkeypatch.setattr(overlays, "overlay_png", lambda *a, **k: seen.append(a) or b"png")
    (result,) = classifier.predict_files(models["fundus"][:1], heatmaps=True)
    classifier.overlay_png(result, classifier.prepare(models["fundus"][0]))
    text = seen[0][2]
    assert text.warning == "model trained on synthetic data ('x')"
    assert f"predicted {result.predicted} (p " in text.title
    assert "referable p" in text.title and result.heatmap_target in text.title


NO_TORCH_HEATMAPS = """
import importlib.abc, json, sys
class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "torchvision", "timm", "onnx", "sklearn"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, Blocker())
from transfusion_cli.cli import main
main(["predict", *sys.argv[1:], "--json"])
"""


def test_predict_heatmaps_need_no_torch(models, tmp_path):
    _, model_path, _ = models["chest"]
    run = subprocess.run([sys.executable, "-c", NO_TORCH_HEATMAPS, str(model_path),
                          str(models["gray"][0]), "--heatmaps", str(tmp_path / "maps")],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    (record,) = [json.loads(line) for line in run.stdout.splitlines()]
    assert record["heatmap"]["target"].startswith("logit of the most probable label")
    assert (tmp_path / "maps" / "g0.heatmap.png").is_file()
