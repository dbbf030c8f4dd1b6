"""DICOM reading through the optional `pydicom` extra (`pip install tfx[dicom]`)."""

from __future__ import annotations

import os

import numpy as np
from PIL import Image

from transfusion_cli.errors import DataError


def read_dicom(path: str | os.PathLike) -> Image.Image:
    """Read a DICOM file as an 8-bit grayscale image: VOI LUT applied, MONOCHROME1 inverted.

    The modality LUT (rescale slope / intercept) comes first, as the standard orders them:
    window centre and width are given in modality units.
    """
    try:
        import pydicom
        from pydicom.pixels import apply_modality_lut, apply_voi_lut
    except ImportError:
        raise DataError(f"{path} is DICOM; install the extra: pip install 'tfx[dicom]'.") from None
    try:
        dataset = pydicom.dcmread(path)
        modality = apply_modality_lut(dataset.pixel_array, dataset)
        array = apply_voi_lut(modality, dataset).astype(np.float64)
    except Exception as exc:
        raise DataError(f"Cannot read DICOM {path} ({exc}).") from exc
    if array.ndim == 3:  # multi-frame or colour: take the first frame / average colour
        array = array.mean(axis=-1) if array.shape[-1] in (3, 4) else array[0]
    lo, hi = float(array.min()), float(array.max())
    array = (array - lo) / (hi - lo) if hi > lo else np.zeros_like(array)
    if getattr(dataset, "PhotometricInterpretation", "") == "MONOCHROME1":
        array = 1.0 - array
    return Image.fromarray((array * 255.0).round().astype(np.uint8), mode="L")
