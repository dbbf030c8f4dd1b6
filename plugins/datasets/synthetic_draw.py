"""Vectorised numpy drawing primitives for the synthetic datasets, resolution-independent.

Scenes are described in normalised coordinates (x, y in [-1, 1], y pointing down) and
rendered at any pixel size. Blobs are sums of isotropic Gaussians; a Gaussian is separable,
so K of them render as one (H, K) @ (K, W) matrix product. Lines are splatted onto the pixel
grid and blurred, one blur per width step. Features thinner than
a pixel are widened to the pixel size with their "ink" (integral) conserved, as a camera's
blur would, so the same scene is fainter, not missing, at low resolution.
"""

from __future__ import annotations

import functools

import numpy as np

SQRT_2PI = float(np.sqrt(2 * np.pi))
# Narrowest rendered Gaussian, in pixels: narrower ones alias between pixel centres.
MIN_SIGMA_PIXELS = 0.5
# Line widths are rendered in steps of this ratio (one blur per step in use).
WIDTH_STEP = 1.25


class Canvas:
    """Pixel-centre coordinates of a square image of ``size`` pixels, plus the camera blur."""

    def __init__(self, size: int, blur: float = 0.0):
        self.size = size
        self.pixel = 2.0 / size  # one pixel in normalised units
        self.coords = ((np.arange(size, dtype=np.float32) + 0.5) * self.pixel - 1.0)
        self.x = self.coords[None, :]
        self.y = self.coords[:, None]
        self.blur = float(blur)

    def effective_sigma(self, sigma: np.ndarray) -> np.ndarray:
        """Gaussian width after camera blur, at least ``MIN_SIGMA_PIXELS`` pixels."""
        sigma = np.sqrt(np.square(sigma) + self.blur ** 2)
        return np.maximum(sigma, MIN_SIGMA_PIXELS * self.pixel).astype(np.float32)

    def blobs(self, xs, ys, sigmas, amplitudes, layers=None, count: int = 1) -> np.ndarray:
        """Sum of isotropic Gaussian blobs (peak ``amplitudes``, integral kept when widened):
        (H, W), or (count, H, W) with blob i summed into map ``layers[i]``."""
        xs, ys = np.asarray(xs, np.float32), np.asarray(ys, np.float32)
        sigmas = np.broadcast_to(np.asarray(sigmas, np.float32), xs.shape)
        wide = self.effective_sigma(sigmas)
        peak = np.broadcast_to(np.asarray(amplitudes, np.float32), xs.shape) * (sigmas / wide) ** 2
        gx = np.exp(-np.square(self.coords[None, :] - xs[:, None]) / (2 * wide[:, None] ** 2))
        gy = np.exp(-np.square(self.coords[None, :] - ys[:, None]) / (2 * wide[:, None] ** 2))
        if layers is None:
            return ((gy * peak[:, None]).T @ gx).astype(np.float32)
        weights = np.zeros((count, len(xs)), np.float32)
        weights[layers, np.arange(len(xs))] = peak
        return np.matmul(gy.T[None] * weights[:, None, :], gx).astype(np.float32)

    def polylines(self, points: np.ndarray, valid: np.ndarray, sigmas: np.ndarray,
                  strengths, layers: np.ndarray | None = None, count: int = 1) -> np.ndarray:
        """Sum of lines along padded polylines ``points (V, n, 2)`` where ``valid (V, n)``, with
        Gaussian cross-section ``sigmas (V, n)`` and peak ``strengths`` (ink conserved):
        (H, W), or (count, H, W) with polyline v drawn into map ``layers[v]``."""
        return self.splat(*self.line_ink(points, valid, sigmas, strengths, layers), count=count,
                          stacked=layers is not None)

    def line_ink(self, points: np.ndarray, valid: np.ndarray, sigmas: np.ndarray, strengths,
                 layers: np.ndarray | None = None) -> tuple[np.ndarray, ...]:
        """The ``(xy, ink, sigma, layer)`` deposits that draw ``polylines``; several sets can
        be concatenated and splatted at once."""
        segment = valid[:, 1:] & valid[:, :-1]
        if not segment.any():
            empty = np.zeros(0, np.float32)
            return np.zeros((0, 2), np.float32), empty, empty, np.zeros(0, int)
        start, end = points[:, :-1][segment], points[:, 1:][segment]
        sigma = sigmas[:, :-1][segment]
        strength = np.broadcast_to(np.asarray(strengths, np.float32), valid.shape)[:, :-1][segment]
        layer = np.broadcast_to((np.zeros(len(valid), int) if layers is None else layers)[:, None],
                                valid.shape)[:, :-1][segment]
        lengths = np.sqrt(np.square(end - start).sum(axis=1))
        pieces = max(int(np.ceil(lengths.max() / (0.7 * self.pixel))), 1)
        t = (np.arange(pieces, dtype=np.float32) + 0.5) / pieces
        dense = start[:, None, :] + (end - start)[:, None, :] * t[None, :, None]
        # Ink of a line piece: strength * sigma * sqrt(2 pi) per unit length (in pixels).
        ink = strength * (sigma / self.pixel) * SQRT_2PI * (lengths / self.pixel) / pieces
        return (dense.reshape(-1, 2), np.repeat(ink, pieces).astype(np.float32),
                np.repeat(sigma, pieces).astype(np.float32), np.repeat(layer, pieces))

    def splat(self, xy: np.ndarray, ink: np.ndarray, sigma: np.ndarray,
              layer: np.ndarray | None = None, count: int = 1, stacked: bool = True
              ) -> np.ndarray:
        """Deposit ``ink`` (intensity x pixels) at points into map ``layer`` and blur each by its
        ``sigma``, quantised to a few widths so that one blur serves many points:
        (count, H, W), or (H, W) when not ``stacked``."""
        out = np.zeros((count, self.size, self.size), np.float32)
        if len(xy):
            layer = np.zeros(len(xy), int) if layer is None else layer
            wide = self.effective_sigma(sigma) / self.pixel
            bins = np.round(np.log(wide / MIN_SIGMA_PIXELS) / np.log(WIDTH_STEP)).astype(int)
            pixels = (xy + 1.0) / self.pixel - 0.5
            for level in np.unique(bins):
                chosen = bins == level
                grid = bilinear_splat(pixels[chosen], ink[chosen], layer[chosen], count,
                                      self.size)
                blur = gaussian_matrix(self.size, MIN_SIGMA_PIXELS * WIDTH_STEP ** level)
                out += blur @ grid @ blur.T
        return out if stacked else out[0]

    def edge(self, signed_distance: np.ndarray, soft: float = 0.0) -> np.ndarray:
        """Anti-aliased inside mask (1 inside, 0 outside) from a signed distance (< 0 inside),
        blurred over at least a pixel, the camera blur, and ``soft``."""
        soft = max(self.pixel, self.blur * 2.0, soft)
        return smoothstep(soft, -soft, signed_distance)

    def smooth_noise(self, cells: np.ndarray) -> np.ndarray:
        """Bilinear upsampling of a small random grid (drawn by the caller, size-independent)."""
        n = cells.shape[0]
        position = (self.coords + 1.0) / 2.0 * (n - 1)
        low = np.clip(np.floor(position).astype(int), 0, n - 2)
        frac = (position - low).astype(np.float32)
        rows = cells[low] * (1 - frac)[:, None] + cells[low + 1] * frac[:, None]
        return rows[:, low] * (1 - frac)[None, :] + rows[:, low + 1] * frac[None, :]


def smoothstep(edge0: float, edge1: float, x: np.ndarray) -> np.ndarray:
    """Hermite step from 0 at ``edge0`` to 1 at ``edge1`` (either order)."""
    t = np.clip((x - edge0) / (edge1 - edge0), 0.0, 1.0)
    return (t * t * (3.0 - 2.0 * t)).astype(np.float32)


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Float image in [0, 1] -> uint8."""
    return np.clip(image * 255.0 + 0.5, 0, 255).astype(np.uint8)


def bilinear_splat(pixels: np.ndarray, weights: np.ndarray, layer: np.ndarray, count: int,
                   size: int) -> np.ndarray:
    """Accumulate ``weights`` at sub-pixel positions ``(x, y)`` into (count, size, size) maps."""
    low = np.floor(pixels).astype(np.int64)
    frac = (pixels - low).astype(np.float32)
    cols = low[:, 0][None, :] + np.array([0, 1, 0, 1])[:, None]
    rows = low[:, 1][None, :] + np.array([0, 0, 1, 1])[:, None]
    fx, fy = frac[:, 0][None, :], frac[:, 1][None, :]
    shares = np.concatenate([(1 - fx) * (1 - fy), fx * (1 - fy), (1 - fx) * fy, fx * fy])
    keep = (cols >= 0) & (cols < size) & (rows >= 0) & (rows < size)
    flat = (layer[None, :] * size + rows) * size + cols
    grid = np.bincount(flat[keep], (shares * weights[None, :])[keep], minlength=count * size * size)
    return grid.astype(np.float32).reshape(count, size, size)


@functools.lru_cache(maxsize=64)
def gaussian_matrix(size: int, sigma: float) -> np.ndarray:
    """(size, size) matrix that blurs along one axis with a normalised Gaussian of ``sigma``
    pixels (columns sum to one inside the image)."""
    offsets = np.arange(size, dtype=np.float32)
    kernel = np.exp(-np.square(offsets[:, None] - offsets[None, :]) / (2 * sigma ** 2))
    kernel /= kernel.sum(axis=0, keepdims=True)
    return kernel.astype(np.float32)


def walks(rng: np.random.Generator, starts: np.ndarray, headings: np.ndarray,
          lengths: np.ndarray, curvatures: np.ndarray, wiggle: float, step: float = 0.02
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """V smooth random curves at once: ``(points (V, n, 2), headings (V, n), valid (V, n))``,
    turning at ``curvatures`` radians per unit length plus Brownian ``wiggle``; the draws do
    not depend on the image size."""
    count = max(int(np.ceil(float(np.max(lengths, initial=0.0)) / step)) + 1, 2)
    turns = (curvatures[:, None] * step
             + wiggle * np.sqrt(step) * rng.standard_normal((len(starts), count - 1)))
    angles = headings[:, None] + np.concatenate([np.zeros((len(starts), 1)),
                                                 np.cumsum(turns, axis=1)], axis=1)
    moves = step * np.stack([np.cos(angles[:, :-1]), np.sin(angles[:, :-1])], axis=2)
    points = starts[:, None, :] + np.concatenate(
        [np.zeros((len(starts), 1, 2)), np.cumsum(moves, axis=1)], axis=1)
    valid = np.arange(count)[None, :] * step <= lengths[:, None]
    return points.astype(np.float32), angles.astype(np.float32), valid
