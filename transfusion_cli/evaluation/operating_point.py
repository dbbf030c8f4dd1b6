"""Operating points: a threshold chosen on validation for a target sensitivity, then applied
unchanged to the test split (sensitivity, specificity, PPV, NPV and the confusion matrix)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from sklearn.metrics import confusion_matrix, roc_curve

from transfusion_cli.errors import ConfigError, DataError

# Screening programmes for referable diabetic retinopathy ask for about 90 % sensitivity.
DEFAULT_SENSITIVITY = 0.90


def check_sensitivity(target: float) -> None:
    """A ConfigError unless ``target`` is a sensitivity an operating point can reach: (0, 1]."""
    if not 0 < target <= 1:  # NaN fails too
        raise ConfigError(f"--sensitivity must lie in (0, 1] (got {target}); 0.9 is usual.")


def threshold_for_sensitivity(y_true: Any, score: Any, target: float = DEFAULT_SENSITIVITY
                              ) -> float:
    """The highest score threshold whose sensitivity (``score >= t``) reaches ``target``.

    The highest such threshold gives the best specificity at that sensitivity.
    """
    check_sensitivity(target)
    y = np.asarray(y_true).astype(int)
    if y.min() == y.max():
        raise DataError("Cannot choose an operating point: the validation split has only "
                        f"{'positive' if y[0] else 'negative'} cases.")
    _, tpr, thresholds = roc_curve(y, np.asarray(score, dtype=np.float64))
    reached = np.flatnonzero(tpr >= target - 1e-12)
    return float(thresholds[reached[0]])  # tpr > 0 here, so never the +inf first point


def _ratio(numerator: int, denominator: int) -> float:
    return numerator / denominator if denominator else math.nan


def rates_at(y_true: Any, score: Any, threshold: float) -> dict[str, Any]:
    """Sensitivity, specificity, PPV, NPV and the confusion matrix when ``score >= threshold``
    is called positive."""
    y = np.asarray(y_true).astype(int)
    called = (np.asarray(score, dtype=np.float64) >= threshold).astype(int)
    tn, fp, fn, tp = (int(v) for v in confusion_matrix(y, called, labels=[0, 1]).ravel())
    return {"sensitivity": _ratio(tp, tp + fn), "specificity": _ratio(tn, tn + fp),
            "ppv": _ratio(tp, tp + fp), "npv": _ratio(tn, tn + fn),
            "confusion_matrix": {"tp": tp, "fp": fp, "fn": fn, "tn": tn}}
