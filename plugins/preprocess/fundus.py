"""The ``fundus_crop`` preprocessing step: crop a fundus photo to its circular field of view.

Datasets of retinal photographs name it (``retina``, ``folders`` with ``fundus_crop=true``).
This module imports no torch: `tfx predict` loads it to re-apply the step.
"""

from __future__ import annotations

import numpy as np

from transfusion_cli.api import PreprocessSpec, hookimpl

# Pixels darker than this fraction of the image's bright level count as background.
BACKGROUND_FRACTION = 0.08
# A fundus field of view covers part of the frame, not all of it: outside this range of the
# frame's area, `tfx predict` warns that the input may not be a fundus photo.
FIELD_OF_VIEW_RANGE = (0.10, 0.97)


def _field_of_view(image: np.ndarray) -> np.ndarray | None:
    """Mask of pixels brighter than a fraction of the 99th-percentile gray level (None: black).

    For uint8 images the percentile and threshold come from a histogram of the channel sums
    (exact integers): the same mask as the float computation below, several times faster on
    full-resolution photos.
    """
    if image.dtype != np.uint8:
        gray = image.mean(axis=2) if image.ndim == 3 else image.astype(np.float32)
        bright = float(np.percentile(gray, 99))
        return gray > BACKGROUND_FRACTION * bright if bright > 0 else None
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
    above = np.flatnonzero(gray_values > BACKGROUND_FRACTION * bright)
    return levels >= above[0] if len(above) else np.zeros(levels.shape, dtype=bool)


def field_of_view_fraction(image: np.ndarray) -> float:
    """Share of pixels inside the fundus field of view (the mask ``fundus_crop`` crops to);
    0 for a black image. A fundus photo has a dark surround, so well under 1."""
    mask = _field_of_view(image)
    return 0.0 if mask is None else float(np.count_nonzero(mask)) / mask.size


def field_of_view_mask(image: np.ndarray) -> np.ndarray:
    """Boolean (H, W) mask of the fundus field of view (all false for a black image): where
    heatmap overlays may draw."""
    mask = _field_of_view(image)
    return np.zeros(image.shape[:2], dtype=bool) if mask is None else mask


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


def not_a_fundus_warning(image: np.ndarray) -> str | None:
    """A warning for an (H, W, 3) uint8 input with no fundus field of view, else None."""
    fraction = field_of_view_fraction(image)
    low, high = FIELD_OF_VIEW_RANGE
    if low <= fraction <= high:
        return None
    return ("no fundus field of view found (no round bright disc on a dark surround; "
            f"{fraction:.0%} of the frame is bright): is this a fundus photograph?")


FUNDUS_CROP = PreprocessSpec(
    "fundus_crop", fundus_crop,
    "crop a fundus photo to its circular field of view (dark surround removed), padded square",
    input_warning=not_a_fundus_warning, field_of_view=field_of_view_mask)


@hookimpl
def tfx_register_preprocessing(register):
    register(FUNDUS_CROP)
