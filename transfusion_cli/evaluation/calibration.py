"""Calibration of a probability: expected calibration error and reliability-diagram data."""

from __future__ import annotations

from typing import Any

import numpy as np

DEFAULT_BINS = 10


def reliability(y_true: Any, probability: Any, bins: int = DEFAULT_BINS) -> dict[str, Any]:
    """Equal-width probability bins: per bin the count, mean predicted probability and the
    observed frequency of positives (None for empty bins), and the ECE.

    ECE = sum over bins of (bin count / n) * |observed frequency - mean predicted|.
    """
    y = np.asarray(y_true, dtype=np.float64).ravel()
    p = np.clip(np.asarray(probability, dtype=np.float64).ravel(), 0.0, 1.0)
    edges = np.linspace(0.0, 1.0, bins + 1)
    # Bin i holds edges[i] <= p < edges[i+1]; p == 1 falls in the last bin.
    which = np.minimum(np.searchsorted(edges, p, side="right") - 1, bins - 1)
    counts = np.bincount(which, minlength=bins)
    predicted = np.bincount(which, weights=p, minlength=bins)
    observed = np.bincount(which, weights=y, minlength=bins)
    filled = counts > 0
    mean_predicted = np.where(filled, predicted / np.maximum(counts, 1), np.nan)
    frequency = np.where(filled, observed / np.maximum(counts, 1), np.nan)
    ece = float(np.sum(counts[filled] / len(y) * np.abs(frequency[filled] -
                                                         mean_predicted[filled])))
    return {"ece": ece, "bins": bins, "edges": edges.tolist(), "count": counts.tolist(),
            "mean_predicted": [None if np.isnan(v) else float(v) for v in mean_predicted],
            "observed": [None if np.isnan(v) else float(v) for v in frequency]}


def expected_calibration_error(y_true: Any, probability: Any, bins: int = DEFAULT_BINS) -> float:
    """ECE with ``bins`` equal-width bins (see ``reliability``)."""
    return reliability(y_true, probability, bins)["ece"]
