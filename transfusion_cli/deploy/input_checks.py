"""Warnings for `tfx predict`: a model trained on synthetic data, and inputs clearly unlike the
model's training inputs. A warning never stops a prediction; an unusable input is an error."""

from __future__ import annotations

import numpy as np
from PIL import Image

from transfusion_cli.data.preprocess import field_of_view_fraction
from transfusion_cli.deploy.metadata import ModelMetadata

# Thresholds of "clearly unlike": deliberately loose, so that ordinary photos never warn.
MAX_ASPECT = 2.0  # long side / short side; fundus photos and radiographs are 1.0-1.6
MIN_SIDE_FRACTION = 0.25  # smaller than a quarter of the model's input: upscaled blur
GRAY_SPREAD = 4.0  # mean max-min over RGB below this (of 255): a grayscale image
FOV_RANGE = (0.10, 0.97)  # a fundus field of view covers part of the frame, not all of it


def model_warnings(metadata: ModelMetadata) -> list[str]:
    """Warnings that hold for every prediction of this model."""
    card = metadata.model_card or {}
    synthetic = (card.get("training_data") or {}).get("synthetic")
    if synthetic is None:  # exported before model cards: the built-in names say it
        synthetic = metadata.dataset.startswith("synthetic")
    if synthetic:
        return [f"model trained on synthetic data ('{metadata.dataset}'): not for real "
                "photographs; its outputs on real images mean nothing"]
    return []


def input_warnings(image: Image.Image, metadata: ModelMetadata) -> list[str]:
    """Ways in which a decoded input image is clearly unlike the model's training inputs."""
    found = []
    width, height = image.size
    aspect = max(width, height) / max(1, min(width, height))
    if aspect > MAX_ASPECT:
        found.append(f"image is {width}x{height} (aspect {aspect:.1f}:1); the model was "
                     f"trained on square {metadata.image_size}x{metadata.image_size} inputs, so "
                     "it is squeezed")
    if min(width, height) < MIN_SIDE_FRACTION * metadata.image_size:
        found.append(f"image is {width}x{height}, far smaller than the model's "
                     f"{metadata.image_size}-pixel inputs; upscaling cannot add detail")
    if metadata.channels == 3 and image.mode not in ("L", "LA", "I", "I;16", "F", "1"):
        rgb = np.asarray(image.convert("RGB"), dtype=np.int16)
        spread = float((rgb.max(axis=2) - rgb.min(axis=2)).mean())
        if spread < GRAY_SPREAD:
            found.append("image is (nearly) grayscale, e.g. a radiograph, but the model was "
                         f"trained on colour images ('{metadata.dataset}')")
    if metadata.fundus_crop:
        fraction = field_of_view_fraction(np.asarray(image.convert("RGB")))
        if not FOV_RANGE[0] <= fraction <= FOV_RANGE[1]:
            found.append("no fundus field of view found (no round bright disc on a dark "
                         f"surround; {fraction:.0%} of the frame is bright): is this a fundus "
                         "photograph?")
    return found
