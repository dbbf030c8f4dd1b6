"""Image preprocessing shared by training and `tfx predict`: numpy and Pillow only, no torch.

Training (dataset loaders) and deployment (ONNX predict) call the same functions, so an image
file gives the same model input in both.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from transfusion_cli.errors import DataError

RESAMPLE = Image.Resampling.BILINEAR
# Pixels darker than this fraction of the image's bright level count as background when
# cropping a fundus photo to its circular field of view.
FUNDUS_BACKGROUND_FRACTION = 0.08


def read_image(path: str | os.PathLike) -> Image.Image:
    """Open an image file (PNG, JPEG, ...; DICOM through pydicom) fully decoded."""
    path = Path(path)
    if path.suffix.lower() == ".dcm":
        from transfusion_cli.data.dicom import read_dicom

        return read_dicom(path)
    try:
        with Image.open(path) as image:
            image.load()
            return image.copy()
    except FileNotFoundError:
        raise DataError(f"Image {path} does not exist.") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"Cannot read image {path} ({exc}); is it a complete image file?") from exc


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
    """Read and prepare one image file (see ``prepare_image``)."""
    return prepare_image(read_image(path), image_size, channels, crop_fundus)


def normalize_array(batch: np.ndarray, mean: tuple[float, ...], std: tuple[float, ...]
                    ) -> np.ndarray:
    """uint8 (N, H, W, C) -> float32 (N, C, H, W) normalised, as the training loop does."""
    x = batch.astype(np.float32) / 255.0
    x = (x - np.asarray(mean, dtype=np.float32)) / np.asarray(std, dtype=np.float32)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))
