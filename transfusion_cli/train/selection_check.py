"""Is the validation split big enough to pick the best checkpoint? `tfx fit` picks ``best.pt``
by the dataset's selection metric on validation; on a handful of images that choice is noise
(a checkpoint picked at "referable AUC 1.0000" on 12 images scored 0.35 on test).

tfx's rule (the paper is silent; stated in docs and in every warning): warn at the start when
the smaller side of the selection question (referable vs not, positive vs negative, the
rarest class or label) has fewer than ``MIN_CASES`` validation images, and at each new best
when the 95 % bootstrap CI of the selection metric on validation (``N_BOOT`` stratified
resamples of images) is wider than ``MAX_CI_WIDTH``. The warnings go to env.json (start),
metrics.jsonl and best.pt's metrics (``selection_ci``, ``selection_warnings``), and from there
into the model card of an exported model.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from transfusion_cli.data.bundles import DatasetInfo
from transfusion_cli.scores import compute_metrics

MIN_CASES = 30
MAX_CI_WIDTH = 0.10
N_BOOT = 200
LEVEL = 0.95


def smaller_side(targets: np.ndarray, info: DatasetInfo) -> tuple[int, str]:
    """(count, what) of the rarest side of the question the selection metric scores."""
    if info.task == "multilabel":
        y = np.asarray(targets, dtype=np.float64).reshape(len(targets), -1)
        counts = []
        for index, name in enumerate(info.class_names):
            labelled = y[~np.isnan(y[:, index]), index]
            positives = int(labelled.sum())
            counts.append((min(positives, len(labelled) - positives), f"'{name}' cases"))
        return min(counts)
    y = np.asarray(targets).reshape(-1).astype(int)
    if info.task == "multiclass" and info.referable_threshold is not None:
        positives = int((y >= info.referable_threshold).sum())
        return min(positives, len(y) - positives), "referable or non-referable images"
    if info.task == "binary":
        positives = int(y.sum())
        return min(positives, len(y) - positives), "positive or negative images"
    counts = np.bincount(y, minlength=len(info.class_names))
    rarest = int(np.argmin(counts))
    return int(counts[rarest]), f"images of class '{info.class_names[rarest]}'"


def small_split_warnings(targets: np.ndarray, info: DatasetInfo) -> list[str]:
    """The start-of-fit warning when the validation split has too few cases (else [])."""
    count, what = smaller_side(targets, info)
    if count >= MIN_CASES:
        return []
    return [f"the validation split has only {count} {what} (tfx warns below {MIN_CASES}): "
            f"the checkpoint chosen by {info.selection_metric} on it is unreliable; use a "
            "larger validation split"]


def selection_ci(logits: np.ndarray, targets: np.ndarray, info: DatasetInfo,
                 n_boot: int = N_BOOT, seed: int = 0) -> dict[str, Any]:
    """The selection metric on validation with its percentile bootstrap CI (stratified by
    the first target column's class; multi-label: not stratified)."""
    metric = info.selection_metric
    value = compute_metrics(logits, targets, info).get(metric, math.nan)
    flat = np.asarray(targets)
    strata = (np.zeros(len(flat), dtype=int) if info.task == "multilabel"
              else flat.reshape(len(flat), -1)[:, 0].astype(int))
    rng = np.random.default_rng(seed)
    groups = [np.flatnonzero(strata == s) for s in np.unique(strata)]
    values = []
    for _ in range(n_boot):
        idx = np.concatenate([g[rng.integers(0, len(g), len(g))] for g in groups])
        result = compute_metrics(logits[idx], flat[idx], info).get(metric, math.nan)
        if isinstance(result, float) and math.isfinite(result):
            values.append(result)
    if not values:
        return {"metric": metric, "value": value, "ci_low": math.nan, "ci_high": math.nan,
                "width": math.nan, "n_boot": n_boot, "level": LEVEL}
    low, high = np.quantile(values, [(1 - LEVEL) / 2, (1 + LEVEL) / 2])
    return {"metric": metric, "value": value, "ci_low": float(low), "ci_high": float(high),
            "width": float(high - low), "n_boot": n_boot, "level": LEVEL}


def ci_warning(ci: dict[str, Any], n: int) -> str | None:
    """The warning when the selection metric's CI is wider than ``MAX_CI_WIDTH`` (or cannot
    be computed), else None."""
    width = ci.get("width", math.nan)
    if isinstance(width, float) and math.isfinite(width) and width <= MAX_CI_WIDTH:
        return None
    shown = (f"{ci['value']:.4f} (95% CI {ci['ci_low']:.3f} to {ci['ci_high']:.3f}, width "
             f"{width:.3f})" if math.isfinite(width) else f"{ci['value']} (no CI: too few "
             "cases of one side)")
    return (f"best {ci['metric']} on the {n} validation images is {shown}; tfx warns above a "
            f"width of {MAX_CI_WIDTH}: the checkpoint was picked on a split too small to tell "
            "checkpoints apart, so expect a lower test score")
