"""Validation metrics of a classifier (numpy + scikit-learn only; no torch), and the
probabilities behind them (``probabilities``: also what `tfx predict` reports, so scikit-learn
is imported on first use of a metric, never by `tfx predict`).

``compute_metrics(logits, targets, info)`` returns one flat dict per evaluation:

- multiclass: ``auc`` (macro one-vs-rest), ``accuracy``, ``kappa`` (quadratic weighted) and,
  when ``info.referable_threshold`` is set, ``referable_auc`` (grade >= threshold against the
  rest, scored by the softmax mass of those grades: the paper's referable-DR AUC);
- multilabel: ``auc/<label>`` per label (NaN targets masked out) and ``mean_auc``;
- binary (one logit): ``auc`` and ``sensitivity`` / ``specificity`` at ``threshold``, the
  Youden-optimal probability threshold on these very predictions.

A metric that cannot be computed (a single class present) is NaN, and
``result["nan_reasons"][name]`` says why. A mean taken over fewer classes or labels than the
model has (some cannot be scored) says which were left out in ``result["notes"][name]``.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from transfusion_cli.errors import DataError

if TYPE_CHECKING:  # data.py imports torch; this module must not
    from transfusion_cli.data.bundles import DatasetInfo

NAN = float("nan")


def probabilities(logits: np.ndarray, task: str) -> np.ndarray:
    """Softmax over classes (multiclass), elementwise sigmoid otherwise; float64 (scipy's
    numerically stable forms)."""
    from scipy.special import expit, softmax

    logits = np.asarray(logits, dtype=np.float64)
    return softmax(logits, axis=1) if task == "multiclass" else expit(logits)


def _binary_auc(y: np.ndarray, score: np.ndarray, positive: str = "positive",
                negative: str = "negative") -> tuple[float, str | None]:
    """ROC AUC of 0/1 labels, or NaN with the reason when only one class is present."""
    from sklearn.metrics import roc_auc_score

    if len(y) == 0:
        return NAN, "no validation examples to score"
    positives = int(y.sum())
    if positives == 0 or positives == len(y):
        only = positive if positives else negative
        return NAN, f"only {only} examples among the {len(y)} validation targets"
    return float(roc_auc_score(y, score)), None


def _multiclass(probs: np.ndarray, y: np.ndarray, info: DatasetInfo,
                result: dict[str, Any]) -> None:
    from sklearn.metrics import accuracy_score, roc_auc_score

    names, k = info.class_names, probs.shape[1]
    present = [c for c in range(k) if (y == c).any()]
    # Macro one-vs-rest AUC: the mean of one binary AUC per class (what sklearn's
    # multi_class="ovr", average="macro" computes), over the classes that can be scored.
    if len(present) < 2:
        result["auc"] = NAN
        result["nan_reasons"]["auc"] = (f"only {len(present)} class present in the validation "
                                        "targets; one-vs-rest AUC needs at least 2")
    elif len(present) == k == 2:  # sklearn takes the positive-class score for two classes
        result["auc"] = float(roc_auc_score(y, probs[:, 1]))
    elif len(present) == k:
        result["auc"] = float(roc_auc_score(y, probs, multi_class="ovr", average="macro",
                                            labels=list(range(k))))
    else:
        result["auc"] = float(np.mean([roc_auc_score(y == c, probs[:, c]) for c in present]))
        missing = [names[c] for c in range(k) if c not in present]
        result["notes"]["auc"] = ("macro over the classes present; absent from the validation "
                                  f"targets: {', '.join(missing)}")
    predictions = probs.argmax(axis=1)
    result["accuracy"] = float(accuracy_score(y, predictions))
    result["kappa"] = _quadratic_kappa(y, predictions, k, result)
    threshold = info.referable_threshold
    if threshold is not None:
        referable = probs[:, threshold:].sum(axis=1)
        value, reason = _binary_auc((y >= threshold).astype(int), referable,
                                    f"referable (grade >= {threshold})", "non-referable")
        result["referable_auc"] = value
        if reason:
            result["nan_reasons"]["referable_auc"] = reason


def _quadratic_kappa(y: np.ndarray, predictions: np.ndarray, k: int,
                     result: dict[str, Any]) -> float:
    """Cohen's kappa with quadratic weights; NaN when chance disagreement is zero."""
    from sklearn.metrics import cohen_kappa_score

    true_hist = np.bincount(y, minlength=k)
    pred_hist = np.bincount(predictions, minlength=k)
    grades = np.arange(k)
    weights = (grades[:, None] - grades[None, :]) ** 2
    if (weights * np.outer(true_hist, pred_hist)).sum() == 0:
        result["nan_reasons"]["kappa"] = ("targets and predictions all fall in one and the same "
                                          "class; kappa is undefined")
        return NAN
    return float(cohen_kappa_score(y, predictions, weights="quadratic", labels=list(range(k))))


def _multilabel(probs: np.ndarray, y: np.ndarray, info: DatasetInfo,
                result: dict[str, Any]) -> None:
    scored = []
    for index, name in enumerate(info.class_names):
        mask = ~np.isnan(y[:, index])
        value, reason = _binary_auc(y[mask, index].astype(int), probs[mask, index],
                                    f"positive '{name}'", f"negative '{name}'")
        result[f"auc/{name}"] = value
        if reason:
            result["nan_reasons"][f"auc/{name}"] = reason + " (masked labels left out)"
        else:
            scored.append(name)
    if not scored:
        result["mean_auc"] = NAN
        result["nan_reasons"]["mean_auc"] = "no label could be scored (see the per-label reasons)"
        return
    result["mean_auc"] = float(np.mean([result[f"auc/{name}"] for name in scored]))
    if len(scored) < len(info.class_names):
        left_out = [n for n in info.class_names if n not in scored]
        result["notes"]["mean_auc"] = ("mean over the labels that could be scored; left out: "
                                       + ", ".join(left_out))


def _binary(probs: np.ndarray, y: np.ndarray, result: dict[str, Any]) -> None:
    from sklearn.metrics import roc_curve

    score = probs.reshape(-1)
    labels = y.reshape(-1).astype(int)
    auc, reason = _binary_auc(labels, score)
    result["auc"] = auc
    if reason:
        for key in ("auc", "sensitivity", "specificity", "threshold"):
            result[key] = NAN
            result["nan_reasons"][key] = reason
        return
    fpr, tpr, thresholds = roc_curve(labels, score)
    # Youden's J = sensitivity + specificity - 1; the first ROC point (threshold +inf, nothing
    # called positive) is not a usable operating point.
    youden = tpr[1:] - fpr[1:]
    best = 1 + int(np.argmax(youden))
    result["sensitivity"] = float(tpr[best])
    result["specificity"] = float(1.0 - fpr[best])
    result["threshold"] = float(thresholds[best])


def compute_metrics(logits: np.ndarray, targets: np.ndarray, info: DatasetInfo) -> dict[str, Any]:
    """Every validation metric of ``info.task`` for ``logits`` (N, num_outputs) vs ``targets``."""
    logits = np.asarray(logits, dtype=np.float64)
    if logits.ndim == 1:
        logits = logits[:, None]
    if logits.shape[1] != info.num_outputs:
        raise DataError(f"Got {logits.shape[1]} outputs per example but dataset '{info.name}' "
                        f"needs {info.num_outputs}; was the model built for another dataset?")
    if len(targets) != len(logits):
        raise DataError(f"{len(logits)} predictions but {len(targets)} targets.")
    if not np.isfinite(logits).all():
        raise DataError("The model produced non-finite outputs (NaN/inf); metrics cannot be "
                        "computed. Lower the learning rate or check the input data.")
    result: dict[str, Any] = {"nan_reasons": {}, "notes": {}}
    probs = probabilities(logits, info.task)
    if info.task == "multiclass":
        _multiclass(probs, np.asarray(targets).reshape(-1).astype(np.int64), info, result)
    elif info.task == "multilabel":
        _multilabel(probs, np.asarray(targets, dtype=np.float64).reshape(len(logits), -1), info,
                    result)
    else:
        _binary(probs, np.asarray(targets, dtype=np.float64), result)
    if not result["notes"]:
        del result["notes"]
    return result


def metric_values(metrics: dict[str, Any]) -> dict[str, float]:
    """Only the numeric entries of a metrics dict (no ``nan_reasons`` / ``notes``)."""
    return {k: v for k, v in metrics.items() if isinstance(v, int | float)}


def is_better(value: float, best: float | None) -> bool:
    """Higher is better; NaN never wins, and anything beats no best yet."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return False
    return best is None or (isinstance(best, float) and math.isnan(best)) or value > best


def metric_names(info: DatasetInfo) -> list[str]:
    """The validation metrics ``compute_metrics`` reports for ``info``'s task (higher is
    better for every one; the losses are logged beside them)."""
    if info.task == "multiclass":
        return ["auc", "accuracy", "kappa"] + (
            ["referable_auc"] if info.referable_threshold is not None else [])
    if info.task == "multilabel":
        return [f"auc/{name}" for name in info.class_names] + ["mean_auc"]
    return ["auc", "sensitivity", "specificity", "threshold"]
