"""Image preprocessing shared by training and `tfx predict`: numpy and Pillow only, no torch.

Training (dataset loaders) and deployment (ONNX predict) call the same functions, so an image
file gives the same model input in both.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from transfusion_cli.errors import ConfigError, DataError

RESAMPLE = Image.Resampling.BILINEAR
# Pixels darker than this fraction of the image's bright level count as background when
# cropping a fundus photo to its circular field of view.
FUNDUS_BACKGROUND_FRACTION = 0.08
# Images above this many pixels are refused before decoding (Pillow's own default limit).
MAX_PIXELS_ENV = "TFX_MAX_IMAGE_PIXELS"
DEFAULT_MAX_PIXELS = 89_478_485
# Reduced-scale JPEG decoding (``read_image(min_size=...)``) changes prepared pixels by at most
# this mean absolute difference in uint8 levels from a full decode (measured 0.8 on a
# 4752x3168 quality-95 fundus JPEG at 587 px, benchmarks/image_cache.py; tested in
# tests/test_perf_decode.py): the DCT scaling averages like the resize filter it replaces, but
# the two are not bit-identical (single pixels on the crop's edge differ by up to ~80).
DRAFT_TOLERANCE = 2.0
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
        with Image.open(path) as image:
            check_pixel_count(image, path)  # from the header, before anything is decoded
            if min_size and image.format == "JPEG":
                image.draft(image.mode, (min_size, min_size))
            image.load()
            decoded = image.copy()
    except FileNotFoundError:
        raise DataError(f"Image {path} does not exist.") from None
    except Image.DecompressionBombError as exc:  # Pillow's own refusal (> 2x its limit)
        raise DataError(f"Image {path} is too large to decode safely ({exc}); downscale it or "
                        "leave it out.") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"Cannot read image {path} ({exc}); is it a complete image file?") from exc
    return reject_non_finite(decoded, path)


def max_image_pixels() -> int:
    """Largest image (width x height) tfx decodes: $TFX_MAX_IMAGE_PIXELS, else Pillow's limit."""
    value = os.environ.get(MAX_PIXELS_ENV, "").strip()
    if value:
        try:
            limit = int(float(value))
        except ValueError:
            raise ConfigError(f"{MAX_PIXELS_ENV}={value!r} is not a number; set a pixel count "
                              "such as 200000000, or unset it.") from None
        if limit > 0:
            return limit
    return int(Image.MAX_IMAGE_PIXELS or DEFAULT_MAX_PIXELS)


def check_pixel_count(image: Image.Image, path: str | os.PathLike) -> None:
    """A DataError for an image larger than ``max_image_pixels()`` (a decompression bomb: a
    few hundred KB on disk that decode to gigabytes)."""
    width, height = image.size
    limit = max_image_pixels()
    if width * height > limit:
        raise DataError(f"Image {path} is {width}x{height} ({width * height / 1e6:.0f} million "
                        f"pixels), more than tfx decodes ({limit / 1e6:.0f} million; a possible "
                        f"decompression bomb). Downscale it, or raise {MAX_PIXELS_ENV}.")


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


def _field_of_view(image: np.ndarray) -> np.ndarray | None:
    """Mask of pixels brighter than a fraction of the 99th-percentile gray level (None: black).

    For uint8 images the percentile and threshold come from a histogram of the channel sums
    (exact integers): the same mask as the float computation below, several times faster on
    full-resolution photos.
    """
    if image.dtype != np.uint8:
        gray = image.mean(axis=2) if image.ndim == 3 else image.astype(np.float32)
        bright = float(np.percentile(gray, 99))
        return gray > FUNDUS_BACKGROUND_FRACTION * bright if bright > 0 else None
    channels = image.shape[2] if image.ndim == 3 else 1
    if image.ndim == 3:
        levels = image[..., 0].astype(np.uint16)
        for channel in range(1, channels):
            levels += image[..., channel]
    else:
        levels = image
    cumulative = np.cumsum(np.bincount(levels.ravel(), minlength=255 * channels + 1))
    gray_values = np.arange(len(cumulative)) / channels  # what image.mean(axis=2) gives
    # np.percentile(gray, 99), 'linear' method: interpolate between two order statistics.
    position = 0.99 * (int(cumulative[-1]) - 1)
    low = int(np.floor(position))
    a = gray_values[np.searchsorted(cumulative, low, side="right")]
    b = gray_values[np.searchsorted(cumulative, min(low + 1, int(cumulative[-1]) - 1),
                                    side="right")]
    bright = a + (b - a) * (position - low)
    if bright <= 0:
        return None
    above = np.flatnonzero(gray_values > FUNDUS_BACKGROUND_FRACTION * bright)
    return levels >= above[0] if len(above) else np.zeros(levels.shape, dtype=bool)


def field_of_view_fraction(image: np.ndarray) -> float:
    """Share of pixels inside the fundus field of view (the mask ``fundus_crop`` crops to);
    0 for a black image. A fundus photo has a dark surround, so well under 1."""
    mask = _field_of_view(image)
    return 0.0 if mask is None else float(np.count_nonzero(mask)) / mask.size


def fundus_crop(image: np.ndarray) -> np.ndarray:
    """Crop a fundus photo (H, W[, C] uint8) to its circular field of view, padded square."""
    mask = _field_of_view(image)
    if mask is None:
        return image
    height, width = mask.shape
    rows = np.flatnonzero(np.count_nonzero(mask, axis=1) / width > 0.01)
    cols = np.flatnonzero(np.count_nonzero(mask, axis=0) / height > 0.01)
    if len(rows) == 0 or len(cols) == 0:
        return image
    cropped = image[rows[0]: rows[-1] + 1, cols[0]: cols[-1] + 1]
    height, width = cropped.shape[:2]
    side = max(height, width)
    padded = np.zeros((side, side) + cropped.shape[2:], dtype=cropped.dtype)
    top, left = (side - height) // 2, (side - width) // 2
    padded[top: top + height, left: left + width] = cropped
    return padded


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


def prepare_image(image: Image.Image, image_size: int, channels: int,
                  crop_fundus: bool = False) -> np.ndarray:
    """Decoded image -> uint8 array (image_size, image_size, channels), as models are fed."""
    image = to_channels(image, channels)
    if crop_fundus:
        image = Image.fromarray(fundus_crop(np.asarray(image)))
    if image.size != (image_size, image_size):
        image = image.resize((image_size, image_size), RESAMPLE)
    array = np.asarray(image, dtype=np.uint8)
    return array[..., None] if array.ndim == 2 else array


def load_prepared(path: str | os.PathLike, image_size: int, channels: int,
                  crop_fundus: bool = False) -> np.ndarray:
    """Read and prepare one image file (see ``prepare_image``); JPEGs are decoded at the
    smallest DCT scale still >= ``image_size`` on both sides (``read_image``)."""
    return prepare_image(read_image(path, min_size=image_size), image_size, channels,
                         crop_fundus)


def normalize_array(batch: np.ndarray, mean: tuple[float, ...], std: tuple[float, ...]
                    ) -> np.ndarray:
    """uint8 (N, H, W, C) -> float32 (N, C, H, W) normalised, as the training loop does."""
    x = batch.astype(np.float32) / 255.0
    x = (x - np.asarray(mean, dtype=np.float32)) / np.asarray(std, dtype=np.float32)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))
