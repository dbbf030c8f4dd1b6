"""How many pixels tfx decodes, and how a pixel count reads in a message."""

from __future__ import annotations

from PIL import Image

from transfusion_cli import env
from transfusion_cli.limits import DEFAULT_MAX_IMAGE_PIXELS, MAX_IMAGE_PIXELS_ENV


def max_image_pixels() -> int:
    """Largest image (width x height) tfx decodes: $TFX_MAX_IMAGE_PIXELS, else Pillow's limit."""
    limit = env.value(MAX_IMAGE_PIXELS_ENV)
    return limit if limit is not None else int(Image.MAX_IMAGE_PIXELS or DEFAULT_MAX_IMAGE_PIXELS)


def pixel_count(pixels: int) -> str:
    """``pixels`` for a message: "179 million pixels", or the exact count below a million."""
    return f"{pixels / 1e6:.3g} million pixels" if pixels >= 1e6 else f"{pixels:,} pixels"
