"""The one input check of `tfx predict`, `tfx serve` and `tfx explain`: an image of the wrong
kind is an error; a model trained on synthetic data, and inputs clearly unlike the model's
training inputs, are warnings. A warning never stops a prediction."""

from __future__ import annotations

import numpy as np
from PIL import Image

from transfusion_cli.data.preprocess import prepare_image
from transfusion_cli.deploy.metadata import ModelMetadata
from transfusion_cli.errors import DataError
from transfusion_cli.registry import PreprocessSpec

# Thresholds of "clearly unlike": deliberately loose, so that ordinary photos never warn.
MAX_ASPECT = 2.0  # long side / short side; fundus photos and radiographs are 1.0-1.6
MIN_SIDE_FRACTION = 0.25  # smaller than a quarter of the model's input: upscaled blur
GRAY_SPREAD = 4.0  # mean max-min over RGB below this (of 255): a grayscale image


def synthetic_warnings(dataset: str, synthetic: bool | None = None) -> list[str]:
    """The warning for a model trained on synthetic data (``synthetic`` None: tfx's built-in
    generated datasets are named ``synthetic-*``)."""
    if synthetic is None:
        synthetic = dataset.startswith("synthetic")
    if synthetic:
        return [f"model trained on synthetic data ('{dataset}'): not for real "
                "photographs; its outputs on real images mean nothing"]
    return []


def model_warnings(metadata: ModelMetadata) -> list[str]:
    """Warnings that hold for every prediction of this model."""
    card = metadata.model_card or {}
    # None for models exported before model cards: the built-in names say it.
    return synthetic_warnings(metadata.dataset, (card.get("training_data") or {}).get("synthetic"))


def image_channels(image: Image.Image) -> int:
    """1 for grayscale content (gray modes, or colour modes with all channels equal), else 3."""
    if image.mode in ("P", "PA"):
        image = image.convert("RGBA")
    colour_bands = [band for band in image.getbands() if band != "A"]
    if len(colour_bands) == 1:
        return 1
    rgb = np.asarray(image.convert("RGB"))
    same = np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 1], rgb[..., 2])
    return 1 if same else 3


def check_image(image: Image.Image, name: str, image_size: int, channels: int, dataset: str,
                step: PreprocessSpec | None = None) -> tuple[np.ndarray, list[str]]:
    """A decoded input -> (uint8 (size, size, channels) model input, made exactly as training
    makes it, and the ways the input is unlike the training inputs); an image of the wrong
    kind (colour for a grayscale model or the reverse) is a DataError naming ``name``."""
    found = image_channels(image)
    if found != channels:
        kind = {1: "grayscale (1-channel)", 3: "colour (3-channel)"}
        raise DataError(f"{name} is a {kind[found]} image but the model expects "
                        f"{kind[channels]} images; use a model trained on such images "
                        "or convert the file.")
    prepared = prepare_image(image, image_size, channels, step)
    return prepared, image_warnings(image, image_size, channels, dataset, step)


def input_warnings(image: Image.Image, metadata: ModelMetadata,
                   step: PreprocessSpec | None = None) -> list[str]:
    """Ways in which a decoded input image is clearly unlike the model's training inputs;
    ``step``: the model's preprocessing step, whose ``input_warning`` is asked too."""
    return image_warnings(image, metadata.image_size, metadata.channels, metadata.dataset, step)


def image_warnings(image: Image.Image, image_size: int, channels: int, dataset: str,
                   step: PreprocessSpec | None = None) -> list[str]:
    """``input_warnings`` for a model described by its input size, channels and dataset."""
    found = []
    width, height = image.size
    aspect = max(width, height) / max(1, min(width, height))
    if aspect > MAX_ASPECT:
        found.append(f"image is {width}x{height} (aspect {aspect:.1f}:1); the model was "
                     f"trained on square {image_size}x{image_size} inputs, so it is squeezed")
    if min(width, height) < MIN_SIDE_FRACTION * image_size:
        found.append(f"image is {width}x{height}, far smaller than the model's "
                     f"{image_size}-pixel inputs; upscaling cannot add detail")
    if channels == 3 and image.mode not in ("L", "LA", "I", "I;16", "F", "1"):
        rgb = np.asarray(image.convert("RGB"), dtype=np.int16)
        spread = float((rgb.max(axis=2) - rgb.min(axis=2)).mean())
        if spread < GRAY_SPREAD:
            found.append("image is (nearly) grayscale, e.g. a radiograph, but the model was "
                         f"trained on colour images ('{dataset}')")
    if step is not None and step.input_warning is not None:
        warning = step.input_warning(np.asarray(image.convert("RGB")))
        if warning:
            found.append(str(warning))
    return found
