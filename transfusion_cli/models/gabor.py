"""Synthetic Gabor filter banks for a first convolution (the paper's "synthetic Gabor" conv1).

Each filter is one Gabor function ``exp(-(x'^2 + g^2 y'^2) / (2 s^2)) cos(2 pi x' / l + p)``
(``x'`` along orientation ``t``) on ONE input channel, zero on the others. The bank walks over
orientations (fastest), phases (even cosine, odd sine), wavelengths, and the input channel
cycles with the filter index, so every colour channel sees every orientation. Filters are made
zero-mean and scaled so that the layer's weight variance equals He (fan_out) initialisation:
only the structure differs from the random init, not the scale.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

ASPECT = 0.5  # g: elongation of the envelope across the stripes
SIGMA_PER_WAVELENGTH = 0.56  # s / l: about one octave of bandwidth
MIN_WAVELENGTH = 2.5  # pixels; at 2 px the odd (sine) filter samples only zeros


@dataclass(frozen=True)
class GaborParams:
    """One filter of the bank."""

    channel: int
    theta: float  # radians, orientation of the carrier's wave vector
    wavelength: float  # pixels per cycle
    phase: float  # 0 (even) or pi/2 (odd)


def bank_grid(kernel: int, orientations: int = 8) -> tuple[list[float], list[float], list[float]]:
    """(orientations, wavelengths, phases) used for a ``kernel`` x ``kernel`` bank."""
    thetas = [math.pi * i / orientations for i in range(orientations)]
    longest = max(float(kernel), MIN_WAVELENGTH * 1.6)
    count = 2 if kernel <= 5 else 3
    wavelengths = list(np.geomspace(MIN_WAVELENGTH, longest, count))
    return thetas, [float(w) for w in wavelengths], [0.0, math.pi / 2]


def bank_params(out_channels: int, in_channels: int, kernel: int,
                orientations: int = 8) -> list[GaborParams]:
    """Parameters of each of ``out_channels`` filters."""
    thetas, wavelengths, phases = bank_grid(kernel, orientations)
    spatial = [(t, w, p) for w in wavelengths for p in phases for t in thetas]
    return [GaborParams(channel=index % in_channels, theta=spatial[index % len(spatial)][0],
                        wavelength=spatial[index % len(spatial)][1],
                        phase=spatial[index % len(spatial)][2])
            for index in range(out_channels)]


def gabor_kernel(kernel: int, theta: float, wavelength: float, phase: float) -> np.ndarray:
    """One zero-mean, unit-norm Gabor kernel (kernel x kernel, float64)."""
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
               orientations: int = 8) -> tuple[np.ndarray, list[GaborParams]]:
    """Weights (out, in, k, k), float32, with He fan_out variance, and each filter's params."""
    params = bank_params(out_channels, in_channels, kernel, orientations)
    weights = np.zeros((out_channels, in_channels, kernel, kernel), dtype=np.float64)
    for index, p in enumerate(params):
        weights[index, p.channel] = gabor_kernel(kernel, p.theta, p.wavelength, p.phase)
    he_std = math.sqrt(2.0 / (out_channels * kernel * kernel))
    # Each filter has unit norm: mean square over the tensor is out / numel.
    scale = he_std * math.sqrt(weights.size / out_channels)
    return (weights * scale).astype(np.float32), params
