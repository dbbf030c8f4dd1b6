"""Preprocessing steps that dataset plugins declare (``PreprocessSpec``): a one-file third-party
plugin with its own step is trained, exported and predicted, and predict loads only that plugin
to re-apply the step; bad steps and missing plugins are clear errors."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys

import numpy as np
import onnx
import pytest
import torch
from PIL import Image
from registry_helpers import fake_distribution

from transfusion_cli.data.build import build_dataset
from transfusion_cli.data.bundles import DatasetInfo, normalize
from transfusion_cli.data.preprocess import load_prepared, prepare_image, preprocess_step
from transfusion_cli.deploy.metadata import ModelMetadata
from transfusion_cli.errors import ConfigError, DataError, ExportError
from transfusion_cli.models.checkpoint import build_model, checkpoint_dataset_info, load_checkpoint
from transfusion_cli.plugins import reset_registry
from transfusion_cli.registry import PreprocessSpec

# The whole plugin: one module, one entry point. Its step inverts the image (dark dots on a
# light background become light dots on black) and warns about blank inputs.
DOTS_PLUGIN = '''
    """Dots: light photos with or without dark dots, seen through the `invert` step."""

    from pathlib import Path

    import numpy as np

    from transfusion_cli.api import (
        DataError,
        DatasetInfo,
        DatasetSpec,
        PreprocessSpec,
        file_bundle,
        hookimpl,
    )


    def invert(image):
        return 255 - image


    def blank_warning(image):
        if image.std() < 1:
            return "the image is blank: the invert step expects dark dots on a light background"
        return None


    def build(options):
        if options.data_dir is None:
            raise DataError("dots needs --data-dir")
        paths = sorted(Path(options.data_dir).glob("*.png"))
        labels = np.array([int(path.name[0]) for path in paths])
        ids = [path.name for path in paths]
        info = DatasetInfo(name="dots", task="multiclass", class_names=("plain", "dots"),
                           channels=1, image_size=options.image_size, mean=(0.5,), std=(0.25,),
                           preprocess="invert")
        splits = {name: ([paths[i] for i in range(start, len(paths), 2)], labels[start::2],
                         ids[start::2]) for name, start in (("train", 0), ("val", 1))}
        return file_bundle(info, splits, options.skip_bad_images, "add images")


    @hookimpl
    def tfx_register_preprocessing(register):
        register(PreprocessSpec("invert", invert, "dark on light becomes light on dark",
                                input_warning=blank_warning))


    @hookimpl
    def tfx_register_datasets(register):
        register(DatasetSpec("dots", build, "plain or dotted", default_image_size=16,
                             needs_data_dir=True))
'''

PREDICT_SCRIPT = """
import json, sys
from transfusion_cli.deploy.predict import OnnxClassifier
classifier = OnnxClassifier(sys.argv[1], "cpu")
results = classifier.predict_files(sys.argv[2:])
print(json.dumps({"results": [r.to_dict() for r in results],
                  "plugins_imported": sorted(m for m in sys.modules if m.startswith("tfx_plugins")),
                  "dots_imported": "dots_plugin" in sys.modules}))
"""


def dot_images(folder, count=24, size=20):
    """``<label>_<k>.png``: light gray noise, with three dark dots for label 1."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    paths = []
    for k in range(count):
        label = k % 4 >= 2  # each split gets both classes
        image = rng.integers(190, 230, (size, size), dtype=np.uint8)
        if label:
            for row, col in rng.integers(3, size - 3, (3, 2)):
                image[row - 2: row + 2, col - 2: col + 2] = 20
        paths.append(folder / f"{int(label)}_{k:02d}.png")
        Image.fromarray(image).save(paths[-1])
    return paths


@pytest.fixture
def dots_plugin(tmp_path, monkeypatch):
    """The one-file plugin installed as a distribution (a real `tfx` entry point)."""
    site = fake_distribution(tmp_path / "site", "tfx-dots", {"dots": "dots_plugin"},
                             {"dots_plugin": DOTS_PLUGIN})
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("TFX_LOAD_PLUGINS", "dots")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(site),
                                                                   os.environ.get("PYTHONPATH")])))
    importlib.invalidate_caches()
    reset_registry(None)
    yield site
    reset_registry(None)
    sys.modules.pop("dots_plugin", None)


def torch_probabilities(checkpoint_path, paths, step):
    """The PyTorch model on the files prepared with ``step`` (None: without a step)."""
    checkpoint = load_checkpoint(checkpoint_path)
    info = checkpoint_dataset_info(checkpoint)
    arrays = np.stack([load_prepared(p, info.image_size, info.channels, step) for p in paths])
    with torch.inference_mode():
        logits = build_model(checkpoint).eval()(normalize(
            torch.from_numpy(arrays).permute(0, 3, 1, 2), info, checkpoint["arch"]["in_chans"]))
    return torch.softmax(logits.double(), dim=1).numpy()


def test_a_one_file_plugin_step_is_trained_exported_and_predicted(tfx, dots_plugin, tmp_path):
    images = dot_images(tmp_path / "dots")
    run, model = tmp_path / "run", tmp_path / "model.onnx"
    tfx("fit", "--data", "dots", "--data-dir", tmp_path / "dots", "--arch", "cbr-tiny", "--steps",
        "2", "--batch-size", "4", "--out", run, check=True)
    best = run / "checkpoints" / "best.pt"
    info = checkpoint_dataset_info(load_checkpoint(best))
    assert info.preprocess == "invert"
    step = preprocess_step("invert")
    # Training saw the images through the plugin's step (the cache holds stepped pixels).
    train = build_dataset("dots", data_dir=tmp_path / "dots", image_size=16).train
    stepped = load_prepared(train.paths[0], 16, 1, step)
    np.testing.assert_array_equal(train[0][0].numpy(), stepped.transpose(2, 0, 1))
    assert not np.array_equal(stepped, load_prepared(train.paths[0], 16, 1))

    tfx("export", best, "--out", model, check=True)
    props = onnx.load(str(model)).metadata_props
    metadata = ModelMetadata.from_props({p.key: p.value for p in props})
    assert (metadata.preprocess, metadata.preprocess_plugin) == ("invert", "dots")

    blank = tmp_path / "blank.png"
    Image.fromarray(np.full((20, 20), 200, np.uint8)).save(blank)
    predicted = subprocess.run([sys.executable, "-c", PREDICT_SCRIPT, model, *images[:4], blank],
                               capture_output=True, text=True, timeout=120)
    assert predicted.returncode == 0, predicted.stderr
    out = json.loads(predicted.stdout)
    # Only the plugin behind the step was loaded, none of the built-in ones.
    assert out["dots_imported"] and out["plugins_imported"] == []
    results = out["results"]
    expected = torch_probabilities(best, [*images[:4], blank], step)
    unstepped = torch_probabilities(best, [*images[:4], blank], None)
    for result, row in zip(results, expected, strict=True):
        np.testing.assert_allclose([result["probabilities"][n] for n in info.class_names], row,
                                   atol=1e-5)
    assert np.abs(expected - unstepped).max() > 1e-4  # the step changes what the model sees
    assert results[-1]["warnings"] == ["the image is blank: the invert step expects dark dots "
                                       "on a light background"]
    assert results[0]["warnings"] == []  # the field is always there (docs/deploy.md)


def test_predict_names_the_missing_plugin(tmp_path, dots_plugin, monkeypatch):
    monkeypatch.setenv("TFX_LOAD_PLUGINS", "")  # the plugin is no longer installed
    reset_registry(None)
    with pytest.raises(ConfigError, match="Preprocessing step 'invert' \\(from plugin 'dots'\\) "
                                          "is not installed: install the plugin"):
        preprocess_step("invert", "dots")


def test_a_step_that_returns_no_image_is_an_error():
    bad = PreprocessSpec("bad", lambda image: image.astype(np.float32))
    gray = Image.fromarray(np.full((8, 8), 100, np.uint8))
    with pytest.raises(DataError, match="step 'bad' returned a float32 array .*fix the plugin"):
        prepare_image(gray, 8, 1, bad)
    empty = PreprocessSpec("empty", lambda image: image[:0])
    with pytest.raises(DataError, match="step 'empty' returned"):
        prepare_image(gray, 8, 1, empty)


def test_model_files_name_steps_as_plain_names():
    base = {"format": "tfx-onnx", "format_version": 2, "task": "binary",
            "class_names": ["x"], "image_size": 16, "channels": 1, "mean": [0.5], "std": [0.2],
            "architecture": "a", "tfx_version": "0", "checkpoint_sha256": "0",
            "dataset": "d", "selection_metric": "auc"}
    props = {f"tfx.{k}": json.dumps(v) for k, v in base.items()}
    assert ModelMetadata.from_props(props).preprocess is None
    hostile = {**props, "tfx.preprocess": json.dumps("\x1b[31mred"),
               "tfx.preprocess_plugin": json.dumps("x")}
    with pytest.raises(ExportError, match="preprocess .* is not a plain name"):
        ModelMetadata.from_props(hostile)
    with pytest.raises(ExportError, match="given together"):
        ModelMetadata.from_props({**props, "tfx.preprocess": json.dumps("invert")})
    # Version 1 files recorded the built-in fundus crop as a flag.
    old = {**props, "tfx.format_version": "1", "tfx.fundus_crop": "true"}
    legacy = ModelMetadata.from_props(old)
    assert (legacy.preprocess, legacy.preprocess_plugin) == ("fundus_crop", "fundus")
    assert ModelMetadata.from_props({**old, "tfx.fundus_crop": "false"}).preprocess is None


def test_checkpoints_of_tfx_0_1_name_the_fundus_step():
    from export_helpers import retina_info

    old = {**retina_info().to_dict(), "fundus_crop": True}
    del old["preprocess"]
    assert DatasetInfo.from_dict(old).preprocess == "fundus_crop"
    assert DatasetInfo.from_dict({**old, "fundus_crop": False}).preprocess is None
