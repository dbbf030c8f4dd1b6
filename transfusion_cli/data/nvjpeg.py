"""JPEG batches decoded on a CUDA GPU (nvjpeg, through ``torchvision.io.decode_jpeg``).

Opt-in with ``TFX_JPEG_DECODER=nvjpeg`` (cache filling only; measured by
``benchmarks/gpu_suite.py``). Each photo is decoded at full size on the GPU, box-averaged down
to the size libjpeg's reduced DCT scale would give on the CPU (``preprocess.read_image(
min_size=...)``: the smallest 1/1, 1/2, 1/4 or 1/8 scale with both sides >= the target), then
prepared on the CPU exactly as every other image (channels, preprocessing step, resize), so
the cached pixels stay within ``preprocess.DRAFT_TOLERANCE`` of a full CPU decode.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from transfusion_cli import env

DECODER_ENV = "TFX_JPEG_DECODER"
JPEG_SUFFIXES = (".jpg", ".jpeg")
DCT_SCALES = (8, 4, 2, 1)


def nvjpeg_requested() -> bool:
    """Whether ``TFX_JPEG_DECODER=nvjpeg`` asks for GPU decoding and CUDA is there."""
    if env.value(DECODER_ENV) != "nvjpeg":
        return False
    import torch

    return torch.cuda.is_available()


def reduced_size(width: int, height: int, min_size: int) -> tuple[int, int]:
    """(width, height) at the smallest DCT scale whose both sides are still >= ``min_size``."""
    for scale in DCT_SCALES:
        size = (math.ceil(width / scale), math.ceil(height / scale))
        if min(size) >= min_size or scale == 1:
            return size
    return width, height


def decode_reduced(paths: Sequence[Path], min_size: int, device: str = "cuda"
                   ) -> list[Image.Image]:
    """RGB JPEGs decoded on ``device`` in one batch and reduced as ``reduced_size`` says."""
    import torch
    import torch.nn.functional as F

    with warnings.catch_warnings():
        # torchvision 0.29 deprecates its image codecs in favour of TorchCodec; they still ship
        # nvjpeg batch decoding, and tfx pins torchvision with torch.
        warnings.simplefilter("ignore", DeprecationWarning)
        from torchvision.io import ImageReadMode, decode_jpeg

        data = [torch.frombuffer(bytearray(Path(path).read_bytes()), dtype=torch.uint8)
                for path in paths]
        decoded = decode_jpeg(data, mode=ImageReadMode.RGB, device=device)
    images = []
    for image in decoded:
        height, width = image.shape[1:]
        new_width, new_height = reduced_size(width, height, min_size)
        if (new_width, new_height) != (width, height):
            # "area" over an integer factor is the box average the DCT scaling approximates.
            image = F.interpolate(image[None].float(), size=(new_height, new_width),
                                  mode="area")[0].round_().clamp_(0, 255).to(torch.uint8)
        images.append(Image.fromarray(np.ascontiguousarray(image.permute(1, 2, 0).cpu())))
    return images
