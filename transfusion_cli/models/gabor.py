"""Synthetic Gabor filter banks for a first convolution (the paper's "synthetic Gabor" conv1).

As in the authors' figure, every filter is a grayscale image repeated unchanged across the
input channels (R, G and B see the same kernel), and the bank has two halves: the first
``ceil(out / 2)`` filters are low-frequency, the rest high-frequency. For ResNet50's conv1
(64 filters, 7x7) that is two 4 x 8 grids: 8 orientations x 2 phases x 2 wavelengths each.

Each kernel is ``exp(-(x'^2 + g^2 y'^2) / (2 s^2)) cos(2 pi x' / l + p)`` on a ``k x k`` grid
centred on the kernel, with ``x'`` along the orientation ``t`` and ``y'`` across it:

- orientations ``t``: ``pi * i / 8``, i = 0..7 (0, 22.5, ..., 157.5 degrees);
- phases ``p``: 0 (even, cosine) and pi/2 (odd, sine);
- wavelengths ``l`` (pixels per cycle): four values spaced geometrically from 2.5 px to
  ``max(k, 4)`` px (7x7: 2.5, 3.5, 5.0, 7.0); the two longest form the low-frequency half,
  the two shortest the high-frequency half;
- envelope: ``s = 0.56 l`` (about one octave of bandwidth), aspect ``g = 0.5``.

Within a half the filter index walks orientations fastest, then phases, then wavelengths,
and wraps around when a half has more than 32 filters. Each kernel is made zero-mean and
unit-norm, then the whole layer is scaled so that its weight variance equals He (fan_out)
initialisation: only the structure differs from the random init, not the scale. The paper
does not give its sizes, orientations, frequencies or sigmas; these are tfx's choices.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

ASPECT = 0.5  # g: elongation of the envelope across the stripes
SIGMA_PER_WAVELENGTH = 0.56  # s / l: about one octave of bandwidth
MIN_WAVELENGTH = 2.5  # pixels; at 2 px the odd (sine) filter samples only zeros
ORIENTATIONS = 8
PHASES = (0.0, math.pi / 2)


@dataclass(frozen=True)
class GaborParams:
    """One filter of the bank (the same kernel on every input channel)."""

    band: str  # "low" or "high" frequency half of the bank
    theta: float  # radians, orientation of the carrier's wave vector
    wavelength: float  # pixels per cycle
    phase: float  # 0 (even) or pi/2 (odd)
    sigma: float  # pixels, width of the Gaussian envelope along the carrier


def band_wavelengths(kernel: int) -> dict[str, list[float]]:
    """Wavelengths (pixels) of the low- and high-frequency halves for a ``kernel`` bank."""
    longest = max(float(kernel), MIN_WAVELENGTH * 1.6)
    values = [float(w) for w in np.geomspace(MIN_WAVELENGTH, longest, 4)]
    return {"low": values[2:], "high": values[:2]}


def bank_params(out_channels: int, kernel: int,
                orientations: int = ORIENTATIONS) -> list[GaborParams]:
    """Parameters of each of ``out_channels`` filters: low-frequency half first."""
    thetas = [math.pi * i / orientations for i in range(orientations)]
    bands = band_wavelengths(kernel)
    sizes = {"low": (out_channels + 1) // 2, "high": out_channels // 2}
    params = []
    for band in ("low", "high"):
        grid = [(t, w, p) for w in bands[band] for p in PHASES for t in thetas]
        for index in range(sizes[band]):
            theta, wavelength, phase = grid[index % len(grid)]
            params.append(GaborParams(band=band, theta=theta, wavelength=wavelength,
                                      phase=phase, sigma=SIGMA_PER_WAVELENGTH * wavelength))
    return params


def gabor_kernel(kernel: int, theta: float, wavelength: float, phase: float) -> np.ndarray:
    """One zero-mean, unit-norm grayscale Gabor kernel (kernel x kernel, float64)."""
    half = (kernel - 1) / 2
    y, x = np.mgrid[-half:half + 1, -half:half + 1]
    along = x * math.cos(theta) + y * math.sin(theta)
    across = -x * math.sin(theta) + y * math.cos(theta)
    sigma = SIGMA_PER_WAVELENGTH * wavelength
    envelope = np.exp(-(along ** 2 + (ASPECT * across) ** 2) / (2 * sigma ** 2))
    values = envelope * np.cos(2 * math.pi * along / wavelength + phase)
    values = values - values.mean()
    norm = np.linalg.norm(values)
    return values / norm if norm > 0 else values


def gabor_bank(out_channels: int, in_channels: int, kernel: int,
               orientations: int = ORIENTATIONS) -> tuple[np.ndarray, list[GaborParams]]:
    """Weights (out, in, k, k), float32, each filter's grayscale kernel repeated over the
    ``in_channels``, with He fan_out variance; and each filter's parameters."""
    params = bank_params(out_channels, kernel, orientations)
    kernels = np.stack([gabor_kernel(kernel, p.theta, p.wavelength, p.phase) for p in params])
    weights = np.repeat(kernels[:, None], in_channels, axis=1)
    he_std = math.sqrt(2.0 / (out_channels * kernel * kernel))
    mean_square = float(np.mean(weights ** 2))
    scale = he_std / math.sqrt(mean_square) if mean_square > 0 else 0.0
    return (weights * scale).astype(np.float32), params
