"""DICOM reading through the optional `pydicom` extra (`pip install transfusion-cli[dicom]`)."""

from __future__ import annotations

import os
from typing import BinaryIO

import numpy as np
from PIL import Image

from transfusion_cli.data.pixels import max_image_pixels, pixel_count
from transfusion_cli.errors import DataError


def read_dicom(path: str | os.PathLike | BinaryIO, name: str | None = None) -> Image.Image:
    """Read a DICOM file (a path, or a binary file object named ``name`` in messages) as an
    8-bit grayscale image: VOI LUT applied, MONOCHROME1 inverted.

    The modality LUT (rescale slope / intercept) comes first, as the standard orders them:
    window centre and width are given in modality units.
    """
    name = name if name is not None else str(path)
    try:
        import pydicom
        from pydicom.pixels import apply_modality_lut, apply_voi_lut
    except ImportError:
        raise DataError(f"{name} is DICOM; install the extra: "
                        "pip install 'transfusion-cli[dicom]'.") from None
    try:
        dataset = pydicom.dcmread(path)
        pixels = (int(getattr(dataset, "Rows", 0) or 0) * int(getattr(dataset, "Columns", 0) or 0)
                  * int(getattr(dataset, "NumberOfFrames", 1) or 1))
        if pixels > max_image_pixels():  # before the pixel data are decoded
            raise DataError(f"DICOM {name} holds {pixel_count(pixels)}, more than tfx "
                            f"decodes ({pixel_count(max_image_pixels())}); downscale it or leave "
                            "it out.")
        modality = apply_modality_lut(dataset.pixel_array, dataset)
        array = apply_voi_lut(modality, dataset).astype(np.float64)
    except DataError:
        raise
    except Exception as exc:
        raise DataError(f"Cannot read DICOM {name} ({exc}).") from exc
    if array.ndim == 3:  # multi-frame or colour: take the first frame / average colour
        array = array.mean(axis=-1) if array.shape[-1] in (3, 4) else array[0]
    lo, hi = float(array.min()), float(array.max())
    array = (array - lo) / (hi - lo) if hi > lo else np.zeros_like(array)
    if getattr(dataset, "PhotometricInterpretation", "") == "MONOCHROME1":
        array = 1.0 - array
    return Image.fromarray((array * 255.0).round().astype(np.uint8), mode="L")
