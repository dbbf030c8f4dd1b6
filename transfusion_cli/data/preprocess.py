"""Image preprocessing shared by training and `tfx predict`: numpy and Pillow only, no torch.

Training (dataset loaders) and deployment (ONNX predict) call the same functions, so an image
file gives the same model input in both: decode, convert channels, apply the dataset's
preprocessing step if it names one (``PreprocessSpec``, registered by a plugin), resize.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import numpy as np
from PIL import Image, UnidentifiedImageError

from transfusion_cli.data.pixels import max_image_pixels, pixel_count
from transfusion_cli.errors import ConfigError, DataError
from transfusion_cli.limits import MAX_IMAGE_PIXELS_ENV

if TYPE_CHECKING:
    from transfusion_cli.registry import PreprocessSpec

RESAMPLE = Image.Resampling.BILINEAR
# Reduced-scale JPEG decoding (``read_image(min_size=...)``) changes prepared pixels by at most
# this mean absolute difference in uint8 levels from a full decode (measured 0.8 on a
# 4752x3168 quality-95 fundus JPEG at 587 px, benchmarks/image_cache.py; tested in
# tests/data/test_fundus_decode.py): the DCT scaling averages like the resize filter it
# replaces, but the two are not bit-identical (single pixels on the crop's edge differ by up
# to ~80).
DRAFT_TOLERANCE = 2.0
# The image files tfx reads, by suffix: the same list for training (image-folder / csv datasets),
# `tfx predict` and export's calibration folders, since all decode through ``read_image``.
# Pillow's photo and scan formats (WebP and GIF included: a palette or alpha channel is
# converted like any other mode), and DICOM.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".dcm")
# What ``read_image_bytes`` decodes (besides DICOM): the Pillow formats of ``IMAGE_SUFFIXES``;
# never Pillow's other formats (EPS, PDF, ...).
MEMORY_FORMATS = ("PNG", "JPEG", "BMP", "TIFF", "WEBP", "GIF")
# check_pixel_count refuses such images with a clear message; Pillow's warning would only add
# a Python traceback-style line to stderr first.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


def read_image(path: str | os.PathLike, min_size: int | None = None) -> Image.Image:
    """Open an image file (PNG, JPEG, ...; DICOM through pydicom) fully decoded.

    ``min_size``: a JPEG may be decoded at a reduced DCT scale (1/2, 1/4, 1/8, libjpeg's
    ``Image.draft``), the smallest whose both sides are still >= ``min_size``: several times
    faster for full-size photos that are resized down anyway (see ``DRAFT_TOLERANCE``).
    """
    path = Path(path)
    if path.suffix.lower() == ".dcm":
        from transfusion_cli.data.dicom import read_dicom

        return reject_non_finite(read_dicom(path), path)
    try:
        return _decode(path, path, min_size)
    except FileNotFoundError:
        raise DataError(f"Image {path} does not exist.") from None


def read_image_bytes(data: bytes, name: str, min_size: int | None = None) -> Image.Image:
    """``read_image`` for a file's content held in memory (`tfx serve`): the type comes from the
    content (DICOM preamble, else one of ``MEMORY_FORMATS``), never from ``name``, which only
    names the image in messages. Nothing is written to disk."""
    if is_dicom(data):
        from transfusion_cli.data.dicom import read_dicom

        return reject_non_finite(read_dicom(io.BytesIO(data), name=name), name)
    return _decode(io.BytesIO(data), name, min_size, formats=MEMORY_FORMATS)


def is_dicom(data: bytes) -> bool:
    """A DICOM file (Part 10): a 128-byte preamble, then ``DICM``."""
    return data[128:132] == b"DICM"


def _decode(source: str | os.PathLike | BinaryIO, name: str | os.PathLike,
            min_size: int | None, formats: tuple[str, ...] | None = None) -> Image.Image:
    """Open and fully decode with Pillow: pixel count checked from the header first."""
    try:
        with Image.open(source, formats=formats) as image:
            check_pixel_count(image, name)  # from the header, before anything is decoded
            if min_size and image.format == "JPEG":
                image.draft(image.mode, (min_size, min_size))
            image.load()
            decoded = image.copy()
    except Image.DecompressionBombError as exc:  # Pillow's own refusal (> 2x its limit)
        raise DataError(f"Image {name} is too large to decode safely ({exc}); downscale it or "
                        "leave it out.") from None
    except FileNotFoundError:
        raise
    except UnidentifiedImageError as exc:
        if formats:  # content of an unknown type (a text file named .png)
            raise DataError(f"Cannot read image {name}: its content is not {', '.join(formats)} "
                            "or DICOM; is it a complete image file?") from None
        raise DataError(f"Cannot read image {name} ({exc}); is it a complete image file?") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"Cannot read image {name} ({exc}); is it a complete image file?") from exc
    return reject_non_finite(decoded, name)


def check_pixel_count(image: Image.Image, path: str | os.PathLike) -> None:
    """A DataError for an image larger than ``max_image_pixels()`` (a decompression bomb: a
    few hundred KB on disk that decode to gigabytes)."""
    width, height = image.size
    limit = max_image_pixels()
    if width * height > limit:
        raise DataError(f"Image {path} is {width}x{height} ({pixel_count(width * height)}), "
                        f"more than tfx decodes ({pixel_count(limit)}; a possible "
                        f"decompression bomb). Downscale it, or raise {MAX_IMAGE_PIXELS_ENV}.")


def reject_non_finite(image: Image.Image, path: str | os.PathLike) -> Image.Image:
    """A float image with NaN or infinite pixels is a DataError (scaling would turn it into a
    black image that still gets trained on or predicted)."""
    if image.mode == "F" or "F" in image.getbands():
        array = np.asarray(image, dtype=np.float64)
        bad = int(np.count_nonzero(~np.isfinite(array)))
        if bad:
            raise DataError(f"Image {path} has {bad} NaN or infinite pixel(s) of "
                            f"{array.size}; fix or remove the file.")
    return image


def to_channels(image: Image.Image, channels: int) -> Image.Image:
    """Convert to grayscale ('L') for 1 channel or 'RGB' for 3 (16-bit and palettes too)."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        array = np.asarray(image, dtype=np.float64)
        lo, hi = float(array.min()), float(array.max())
        scaled = (array - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(array)
        image = Image.fromarray(scaled.round().astype(np.uint8), mode="L")
    if channels == 1:
        return image.convert("L")
    if channels == 3:
        return image.convert("RGB")
    raise DataError(f"Unsupported channel count {channels}; tfx reads 1- or 3-channel images.")


def preprocess_step(name: str | None, plugin: str | None = None) -> PreprocessSpec | None:
    """The registered preprocessing step called ``name`` (None: no step).

    ``plugin``: the plugin that registered it (an exported model records it); then only that
    installed plugin is loaded, not all of them, so `tfx predict` imports no torch for a step
    whose plugin imports none. Without it, or when that plugin is not installed, the
    process-wide registry is used.
    """
    if name is None:
        return None
    from transfusion_cli.plugins import get_registry, load_plugin

    registry = load_plugin(plugin) if plugin else None
    if registry is None or name not in registry.names("preprocessing"):
        registry = get_registry()
    if name not in registry.names("preprocessing"):
        origin = f" (from plugin '{plugin}')" if plugin else ""
        raise ConfigError(f"Preprocessing step '{name}'{origin} is not installed: install the "
                          "plugin that registers it (`tfx plugins` lists the installed "
                          "plugins, `tfx list preprocessing` the steps).")
    return registry.get("preprocessing", name)


def apply_step(step: PreprocessSpec, image: np.ndarray) -> np.ndarray:
    """``step.apply(image)``, checked: a step must return a non-empty uint8 image."""
    result = step.apply(image)
    if not (isinstance(result, np.ndarray) and result.dtype == np.uint8
            and result.ndim == image.ndim and result.shape[2:] == image.shape[2:]
            and min(result.shape[:2]) > 0):
        found = (f"{result.dtype} array of shape {result.shape}"
                 if isinstance(result, np.ndarray) else type(result).__name__)
        raise DataError(f"Preprocessing step '{step.name}' returned a {found} for a "
                        f"{image.dtype} image of shape {image.shape}; a step must return a "
                        "non-empty uint8 image with the same channels (fix the plugin).")
    return result


def prepare_image(image: Image.Image, image_size: int, channels: int,
                  step: PreprocessSpec | None = None) -> np.ndarray:
    """Decoded image -> uint8 array (image_size, image_size, channels), as models are fed;
    ``step``: the dataset's preprocessing step, applied before resizing."""
    image = to_channels(image, channels)
    if step is not None:
        image = Image.fromarray(apply_step(step, np.asarray(image)))
    if image.size != (image_size, image_size):
        image = image.resize((image_size, image_size), RESAMPLE)
    array = np.asarray(image, dtype=np.uint8)
    return array[..., None] if array.ndim == 2 else array


def load_prepared(path: str | os.PathLike, image_size: int, channels: int,
                  step: PreprocessSpec | None = None) -> np.ndarray:
    """Read and prepare one image file (see ``prepare_image``); JPEGs are decoded at the
    smallest DCT scale still >= ``image_size`` on both sides (``read_image``)."""
    return prepare_image(read_image(path, min_size=image_size), image_size, channels, step)


def normalize_array(batch: np.ndarray, mean: tuple[float, ...], std: tuple[float, ...]
                    ) -> np.ndarray:
    """uint8 (N, H, W, C) -> float32 (N, C, H, W) normalised, as the training loop does."""
    x = batch.astype(np.float32) / 255.0
    x = (x - np.asarray(mean, dtype=np.float32)) / np.asarray(std, dtype=np.float32)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))
