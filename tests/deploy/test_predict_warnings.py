"""`tfx predict`'s warnings: synthetic-data models and inputs unlike the training inputs."""

from __future__ import annotations

import numpy as np
from PIL import Image
from tfx_plugins.preprocess.fundus import FUNDUS_CROP

from transfusion_cli.deploy.input_checks import input_warnings, model_warnings
from transfusion_cli.deploy.metadata import ModelMetadata


def metadata(dataset="retina", card=None, channels=3):
    return ModelMetadata(task="multiclass", class_names=("0", "1", "2", "3", "4"),
                         image_size=64, channels=channels, mean=(0.5,) * channels,
                         std=(0.25,) * channels, preprocess="fundus_crop",
                         preprocess_plugin="fundus",
                         architecture="cbr-tiny", tfx_version="0", checkpoint_sha256="x",
                         dataset=dataset, selection_metric="referable_auc",
                         referable_threshold=2, model_card=card)


def fundus(size=(96, 96)) -> Image.Image:
    width, height = size
    rows, cols = np.ogrid[:height, :width]
    disc = (rows - height / 2) ** 2 + (cols - width / 2) ** 2 <= (0.45 * min(size)) ** 2
    image = np.zeros((height, width, 3), np.uint8)
    image[disc] = [200, 90, 40]
    return Image.fromarray(image)


def test_synthetic_models_warn_from_card_or_name():
    assert "not for real photographs" in model_warnings(metadata("synthetic-retina"))[0]
    card = {"training_data": {"synthetic": True}}
    assert model_warnings(metadata("my-data", card))
    assert model_warnings(metadata("retina", {"training_data": {"synthetic": False}})) == []


def test_a_fundus_photo_gives_no_input_warning():
    assert input_warnings(fundus(), metadata(), FUNDUS_CROP) == []
    assert input_warnings(fundus((120, 96)), metadata(), FUNDUS_CROP) == []  # 5:4 is ordinary


def test_unlike_inputs_are_named():
    meta = metadata()
    assert any("aspect" in w for w in input_warnings(fundus((300, 100)), meta))
    assert any("far smaller" in w for w in input_warnings(fundus((12, 12)), meta))
    gray = np.repeat(np.random.default_rng(0).integers(0, 255, (80, 80, 1), np.uint8), 3, 2)
    gray[..., 0] = np.clip(gray[..., 0].astype(int) + 1, 0, 255)  # JPEG-like tint
    warned = input_warnings(Image.fromarray(gray), meta)
    assert any("grayscale" in w for w in warned)
    bright = Image.fromarray(np.full((80, 80, 3), (200, 150, 100), np.uint8))  # no dark rim
    # The model's preprocessing step adds its own check (fundus_crop: a field of view).
    assert any("field of view" in w for w in input_warnings(bright, meta, FUNDUS_CROP))
    assert input_warnings(bright, meta) == []
