"""`tfx export`: parity with PyTorch, metadata, quantisation, atomic failure, CLI errors."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from export_helpers import (
    SHARED_DATA,
    FakeDatasets,
    chest_info,
    colour_png,
    make_ckpt,
    retina_info,
)
from sklearn.metrics import roc_auc_score

from transfusion_cli.data.build import build_dataset
from transfusion_cli.data.bundles import normalize
from transfusion_cli.deploy.export import ExportSettings, export_checkpoint, report_path
from transfusion_cli.deploy.metadata import ModelMetadata
from transfusion_cli.errors import ConfigError, DataError, ExportError
from transfusion_cli.models.checkpoint import build_model, file_sha256, load_checkpoint


@pytest.fixture(autouse=True)
def registry(fake_registry):
    fake_registry(FakeDatasets())


def real_images(name: str, size: int, start: int, count: int) -> torch.Tensor:
    """uint8 images of the fake dataset's validation split (independent of export's own)."""
    val = build_dataset(name, image_size=size).val
    return torch.stack([val[i][0] for i in range(start, start + count)])


def check_against_pytorch(ckpt, model_path, size, name="fake-retina"):
    """Independent parity: a fresh onnxruntime session on the written file vs PyTorch, on
    images the export did not use, at a batch size it did not use."""
    checkpoint = load_checkpoint(ckpt)
    model = build_model(checkpoint).eval()
    info = retina_info(size) if name == "fake-retina" else chest_info(size)
    images = real_images(name, size, 8, 5)
    with torch.inference_mode():
        expected = model(normalize(images, info, checkpoint["arch"]["in_chans"])).numpy()
    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    got = session.run(None, {"image": normalize(images, info).numpy()})[0]
    return float(np.abs(got - expected).max())


@pytest.mark.parametrize(("arch", "size"), [("cbr-tiny", 32), ("cbr-tiny", 48),
                                            ("cbr-tiny", 64), ("cbr-small", 48)])
def test_cbr_fp32_parity(tmp_path, arch, size):
    ckpt = make_ckpt(tmp_path / "m.pt", arch, retina_info(size))
    out = tmp_path / "model.onnx"
    report = export_checkpoint(ExportSettings(checkpoint=ckpt, out=out, latency_runs=1))
    parity = report["parity"]["fp32"]
    assert parity["passed"] and parity["max_abs_diff"] <= 1e-4
    assert set(parity) >= {"batch_1", "batch_8"}
    assert check_against_pytorch(ckpt, out, size) <= 1e-4
    model = onnx.load(str(out))
    assert [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")] == [17]
    dims = [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", 3, size, size]
    out_dims = model.graph.output[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in out_dims] == ["batch", 5]
    assert not any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt", "model.MODEL_CARD.md",
                                                          "model.export.json", "model.onnx"]
    written = json.loads(report_path(out).read_text())
    assert written["settings"]["opset"] == 17 and written["settings"]["dynamic_batch"]
    assert written["sizes"]["fp32_bytes"] == out.stat().st_size
    assert written["latency"]["onnxruntime_fp32"]["median_ms"] > 0


def test_resnet50_parity_and_opset(tmp_path):
    """ResNet50: 50 layers of float32 arithmetic move logits by a few 1e-4 in PyTorch itself
    (against float64), so it is exported with --tolerance 1e-3; the ONNX model must then be as
    close to the float64 truth as PyTorch fp32 is."""
    ckpt = make_ckpt(tmp_path / "r.pt", "resnet50", retina_info(32))
    out = tmp_path / "resnet50.onnx"
    report = export_checkpoint(ExportSettings(checkpoint=ckpt, out=out, opset=18,
                                              latency_runs=1, tolerance=1e-3))
    assert report["parity"]["fp32"]["passed"]
    assert check_against_pytorch(ckpt, out, 32) <= 1e-3
    model = onnx.load(str(out), load_external_data=False)
    assert [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")] == [18]
    assert not (tmp_path / "resnet50.onnx.data").exists()
    checkpoint = load_checkpoint(ckpt)
    images = normalize(real_images("fake-retina", 32, 8, 5), retina_info(32))
    model64 = build_model(checkpoint).double().eval()
    model32 = build_model(checkpoint).eval()
    with torch.inference_mode():
        truth = model64(images.double()).numpy()
        torch_error = np.abs(model32(images).numpy() - truth).max()
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    onnx_error = np.abs(session.run(None, {"image": images.numpy()})[0] - truth).max()
    assert onnx_error <= 2 * torch_error + 1e-5


def test_grayscale_data_into_three_channel_model(tmp_path):
    """A 1-channel dataset trained with in_chans=3 (e.g. for ImageNet weights): the exported
    model takes 1-channel input and adapts inside, as training's normalize does."""
    ckpt = make_ckpt(tmp_path / "c.pt", "cbr-tiny", chest_info(32), in_chans=3)
    out = tmp_path / "chest.onnx"
    report = export_checkpoint(ExportSettings(checkpoint=ckpt, out=out, latency_runs=1))
    assert report["settings"]["model_in_chans"] == 3 and report["settings"]["channels"] == 1
    model = onnx.load(str(out))
    assert model.graph.input[0].type.tensor_type.shape.dim[1].dim_value == 1
    assert check_against_pytorch(ckpt, out, 32, "fake-chest") <= 1e-4


def test_metadata_round_trip(tmp_path):
    info = retina_info(32)
    ckpt = make_ckpt(tmp_path / "m.pt", "cbr-tiny", info)
    out = tmp_path / "model.onnx"
    export_checkpoint(ExportSettings(checkpoint=ckpt, out=out, image_size=40, latency_runs=1))
    props = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    from_onnx = ModelMetadata.from_props(props)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    from_ort = ModelMetadata.from_props(session.get_modelmeta().custom_metadata_map)
    assert from_onnx == from_ort
    assert from_onnx.task == "multiclass" and from_onnx.class_names == info.class_names
    assert from_onnx.referable_threshold == 2
    assert (from_onnx.preprocess, from_onnx.preprocess_plugin) == ("fundus_crop", "fundus")
    assert from_onnx.mean == info.mean and from_onnx.std == info.std
    assert from_onnx.channels == 3 and from_onnx.image_size == 40
    assert from_onnx.architecture == "cbr-tiny" and from_onnx.dataset == "fake-retina"
    assert from_onnx.checkpoint_sha256 == file_sha256(ckpt)
    assert from_onnx.selection_metric == "referable_auc" and from_onnx.precision == "fp32"
    import transfusion_cli

    assert from_onnx.tfx_version == transfusion_cli.__version__
    assert json.loads(props["tfx.class_names"]) == list(info.class_names)
    chest = ModelMetadata.from_props(ModelMetadata(**{**from_onnx.__dict__,
                                                      "referable_threshold": None}).to_props())
    assert chest.referable_threshold is None


def referable_auc(logits: np.ndarray, grades: np.ndarray) -> float:
    """Independent reference: sklearn AUC of grade >= 2 vs softmax mass of grades >= 2."""
    probs = torch.softmax(torch.from_numpy(logits).double(), dim=1).numpy()
    return float(roc_auc_score(grades >= 2, probs[:, 2:].sum(axis=1)))


def val_logits(model_path, size):
    val = build_dataset("fake-retina", image_size=size).val
    images = torch.stack([val[i][0] for i in range(len(val))])
    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    return session.run(None, {"image": normalize(images, retina_info(size)).numpy()})[0], \
        np.asarray(val.labels)


def test_int8_quantisation_reports_metric_size_latency(tmp_path):
    ckpt = make_ckpt(tmp_path / "m.pt", "cbr-tiny", retina_info(32))
    out = tmp_path / "model.onnx"
    report = export_checkpoint(ExportSettings(checkpoint=ckpt, out=out, quantize="int8",
                                              calibration_images=24, latency_runs=2))
    # --out names the fp32 model; the int8 one goes beside it, and the report lists both.
    int8_out = tmp_path / "model.int8.onnx"
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "m.pt", "model.MODEL_CARD.md", "model.export.json", "model.int8.onnx", "model.onnx"]
    assert report["files"] == {"fp32": str(out), "int8": str(int8_out),
                               "report": str(tmp_path / "model.export.json"),
                               "model_card": str(tmp_path / "model.MODEL_CARD.md")}
    fp32_model = onnx.load(str(out))
    assert ModelMetadata.from_props({p.key: p.value for p in fp32_model.metadata_props}
                                    ).precision == "fp32"
    assert "QuantizeLinear" not in {n.op_type for n in fp32_model.graph.node}
    assert report["sizes"]["fp32_bytes"] == out.stat().st_size
    out = int8_out
    model = onnx.load(str(out))
    ops = {n.op_type for n in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= ops
    # Per-channel weights: the first conv's weight scale has one entry per output channel.
    inits = {t.name: t for t in model.graph.initializer}
    int8_weights = [t for t in inits.values() if t.data_type == onnx.TensorProto.INT8
                    and len(t.dims) == 4]
    assert int8_weights and int8_weights[0].dims[0] == 32
    scales = [n for n in model.graph.node if n.op_type == "DequantizeLinear"
              and n.input[0] == int8_weights[0].name]
    assert list(inits[scales[0].input[1]].dims) == [32]
    assert ModelMetadata.from_props({p.key: p.value for p in model.metadata_props}).precision \
        == "int8"
    assert report["settings"]["int8"]["calibration_images"] == 24
    assert report["settings"]["int8"]["format"] == "QDQ"
    assert report["sizes"]["int8_bytes"] == out.stat().st_size
    assert report["sizes"]["int8_bytes"] < 0.35 * report["sizes"]["fp32_bytes"]
    assert report["latency"]["onnxruntime_int8"]["median_ms"] > 0
    metric = report["metric"]
    assert metric["name"] == "referable_auc" and metric["images"] == 40
    logits, grades = val_logits(out, 32)
    assert metric["int8"] == pytest.approx(referable_auc(logits, grades), abs=1e-9)
    model_pt = build_model(load_checkpoint(ckpt)).eval()
    val = build_dataset("fake-retina", image_size=32).val
    with torch.inference_mode():
        ref = model_pt(normalize(torch.stack([val[i][0] for i in range(len(val))]),
                                 retina_info(32))).numpy()
    assert metric["fp32"] == pytest.approx(referable_auc(ref, grades), abs=1e-6)
    assert metric["drop"] == pytest.approx(metric["fp32"] - metric["int8"])
    assert report["parity"]["int8"]["max_abs_diff"] < 0.5


def test_fp16_keeps_float32_io(tmp_path):
    ckpt = make_ckpt(tmp_path / "m.pt", "cbr-tiny", retina_info(32))
    fp32_out = tmp_path / "half.onnx"
    report = export_checkpoint(ExportSettings(checkpoint=ckpt, out=fp32_out, quantize="fp16",
                                              latency_runs=1))
    out = tmp_path / "half.fp16.onnx"
    assert report["files"]["fp16"] == str(out) and fp32_out.is_file()
    model = onnx.load(str(out))
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert model.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    conv_weights = [t for t in model.graph.initializer if len(t.dims) == 4]
    assert conv_weights and all(t.data_type == onnx.TensorProto.FLOAT16 for t in conv_weights)
    assert 0.4 < report["sizes"]["ratio"] < 0.6
    assert report["parity"]["fp16"]["max_abs_diff"] < 1e-2
    logits, grades = val_logits(out, 32)
    assert report["metric"]["fp16"] == pytest.approx(referable_auc(logits, grades), abs=1e-9)
    assert report_path(fp32_out).is_file()


def test_calibration_from_a_folder(tmp_path):
    ckpt = make_ckpt(tmp_path / "m.pt", "cbr-tiny", retina_info(32))
    folder = tmp_path / "calib"
    folder.mkdir()
    for seed in range(5):
        colour_png(folder / f"{seed}.png", seed=seed)
    report = export_checkpoint(ExportSettings(checkpoint=ckpt, out=tmp_path / "q.onnx",
                                              quantize="int8", calibration_data=str(folder),
                                              latency_runs=1))
    assert report["settings"]["int8"]["calibration_images"] == 5
    assert report["settings"]["int8"]["calibration_data"] == f"folder {folder}"


def test_calibration_dataset_with_other_channels_is_refused(tmp_path):
    ckpt = make_ckpt(tmp_path / "m.pt", "cbr-tiny", retina_info(32))
    with pytest.raises(DataError, match="1-channel"):
        export_checkpoint(ExportSettings(checkpoint=ckpt, out=tmp_path / "q.onnx",
                                         quantize="int8", calibration_data="fake-chest"))
    assert list(tmp_path.iterdir()) == [ckpt]


def test_failed_parity_writes_nothing(tmp_path):
    ckpt = make_ckpt(tmp_path / "m.pt", "cbr-tiny", retina_info(32))
    mine = tmp_path / "mine"  # the user's folder stays; the two export made below it go
    mine.mkdir()
    out = mine / "new" / "deeper" / "model.onnx"
    with pytest.raises(ExportError, match="disagree.*nothing was written"):
        export_checkpoint(ExportSettings(checkpoint=ckpt, out=out, tolerance=0.0))
    assert sorted(tmp_path.iterdir()) == [ckpt, mine]
    assert list(mine.iterdir()) == []  # no model, no report, no temp folder, no empty folder


def test_float32_rounding_is_named_when_parity_fails(tmp_path):
    """A tolerance below float32 rounding fails, and the message says it is rounding (PyTorch
    fp32 vs float64) and which --tolerance would pass."""
    ckpt = make_ckpt(tmp_path / "m.pt", "cbr-tiny", retina_info(32))
    with pytest.raises(ExportError, match=r"itself is .* off float64.*--tolerance"):
        export_checkpoint(ExportSettings(checkpoint=ckpt, out=tmp_path / "m.onnx",
                                         tolerance=1e-9))


def test_settings_are_validated(tmp_path):
    ckpt = make_ckpt(tmp_path / "m.pt", "cbr-tiny", retina_info(32))
    for bad in (dict(opset=11), dict(opset=99), dict(image_size=4), dict(quantize="int4"),
                dict(out=tmp_path / "model.pt"), dict(out=tmp_path), dict(tolerance=-1.0),
                dict(tolerance=float("nan"))):
        with pytest.raises(ConfigError):
            export_checkpoint(ExportSettings(checkpoint=ckpt, **{"out": tmp_path / "m.onnx",
                                                                 **bad}))


def test_cli_export_json_and_summary(tfx, tmp_path):
    ckpt = make_ckpt(tmp_path / "m.pt", "cbr-tiny", chest_info(32))
    out = tmp_path / "model.onnx"
    result = tfx("export", str(ckpt), "--out", str(out), "--json", "--quantize", "int8",
                 "--calibration-images", "16")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["metric"]["name"] == "mean_auc" and "int8" in report["metric"]
    assert report == json.loads(report_path(out).read_text().replace("NaN", "null"))
    assert "int8: calibrating" in result.stderr
    result = tfx("export", str(ckpt), "--out", str(out), "--quantize", "int8",
                 "--calibration-images", "16")
    assert result.exit_code == 0 and "onnxruntime fp32" in result.stdout
    assert "onnxruntime int8" in result.stdout
    assert (f"wrote {out} (fp32), {out.with_suffix('.int8.onnx')} (int8) and the report "
            f"{report_path(out)}") in result.stdout


@pytest.mark.parametrize(("args", "message"), [
    (["--opset", "9"], "--opset 9 is not supported"),
    (["--image-size", "3"], "too small"),
])
def test_cli_export_bad_settings(tfx, tmp_path, args, message):
    ckpt = make_ckpt(tmp_path / "m.pt", "cbr-tiny", retina_info(32))
    result = tfx("export", str(ckpt), "--out", str(tmp_path / "m.onnx"), *args)
    assert result.exit_code == 1 and message in result.stderr
    assert result.stderr.startswith("Error: ") and result.stderr.count("\n") == 1


def test_cli_export_not_a_checkpoint(tfx, tmp_path):
    bogus = tmp_path / "bogus.pt"
    bogus.write_bytes(b"not a checkpoint")
    result = tfx("export", str(bogus), "--out", str(tmp_path / "m.onnx"))
    assert result.exit_code == 1 and result.stderr.startswith("Error: Cannot read")
    assert result.stderr.count("\n") == 1
    result = tfx("export", str(tmp_path / "none.pt"))
    assert result.exit_code == 1 and "does not exist" in result.stderr


def test_cli_export_dataset_not_registered(tfx, tmp_path):
    info = retina_info(32)
    ckpt = make_ckpt(tmp_path / "m.pt", "cbr-tiny", info.__class__(
        **{**info.to_dict(), "name": "retina-from-elsewhere", "class_names": info.class_names,
           "mean": info.mean, "std": info.std}))
    result = tfx("export", str(ckpt), "--out", str(tmp_path / "m.onnx"))
    assert result.exit_code == 1 and "Unknown dataset 'retina-from-elsewhere'" in result.stderr
    assert not (tmp_path / "m.onnx").exists()


def test_real_retinamnist_export_with_int8(tmp_path, monkeypatch):
    """Real fundus images (RetinaMNIST fixture): the dataset folder comes from the checkpoint's
    fit config, as for a model trained with `tfx fit --data medmnist --data-dir ...`."""
    npz = SHARED_DATA / "medmnist" / "retinamnist_fixture.npz"
    if not npz.is_file():
        pytest.skip(f"real data not available at {npz}")
    monkeypatch.setenv("TFX_CACHE_DIR", str(tmp_path / "cache"))
    bundle = build_dataset("medmnist", data_dir=npz, image_size=32)
    ckpt = make_ckpt(tmp_path / "m.pt", "cbr-tiny", bundle.info,
                     config={"data": "medmnist", "data_dir": str(npz.resolve()), "data_seed": 0,
                             "options": {}})
    out = tmp_path / "retinamnist.onnx"
    report = export_checkpoint(ExportSettings(checkpoint=ckpt, out=out, quantize="int8",
                                              latency_runs=1))
    assert report["parity"]["fp32"]["passed"]
    assert report["metric"]["name"] == "referable_auc" and report["metric"]["images"] == 10
    logits, _ = val_logits_of(out.with_suffix(".int8.onnx"), bundle)
    grades = np.asarray(bundle.val.labels).reshape(-1)
    assert report["metric"]["int8"] == pytest.approx(referable_auc(logits, grades), abs=1e-9)


def val_logits_of(model_path, bundle):
    images = torch.stack([bundle.val[i][0] for i in range(len(bundle.val))])
    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    return session.run(None, {"image": normalize(images, bundle.info).numpy()})[0], None


def exports_like_pytorch(tmp_path, arch: str) -> None:
    """A checkpoint of ``arch`` exports, passes the parity check and predicts as PyTorch does."""
    size = 80 if arch == "inception-v3" else 32  # Inception-v3 needs >= 75 px
    ckpt = make_ckpt(tmp_path / "m.pt", arch, chest_info(size), in_chans=3)
    out = tmp_path / "model.onnx"
    # Deep models: float32 rounding alone moves logits by ~1e-4 (see the ResNet50 test).
    tolerance = 1e-4 if arch.startswith("cbr") else 1e-3
    report = export_checkpoint(ExportSettings(checkpoint=ckpt, out=out, latency_runs=1,
                                              tolerance=tolerance))
    assert report["parity"]["fp32"]["passed"]
    assert check_against_pytorch(ckpt, out, size, "fake-chest") <= tolerance


@pytest.mark.slow
def test_every_registered_architecture_exports(tmp_path, registered_architecture):
    exports_like_pytorch(tmp_path, registered_architecture)


@pytest.mark.slow
def test_an_architecture_of_the_timm_pattern_exports(tmp_path):
    exports_like_pytorch(tmp_path, "timm/resnet18")
