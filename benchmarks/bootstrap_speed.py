"""Speed of `tfx evaluate`'s bootstrap: the per-replicate loop it used to run against the
batched case-weight computation it runs now, on the same replicates.

The reference loop is defined here (and only here): for each replicate of
``bootstrap_indices``, scikit-learn's metrics on the resampled cases
(``scores.compute_metrics``). tfx now draws the same replicates as case weights
(``bootstrap_weights``) and computes every replicate's metrics at once
(``evaluation.weighted``). Both run on synthetic scores of a five-label (CheXpert-like,
multi-label) task and of a five-grade (retina, multi-class) task, with and without patient
groups (two images per patient); the script checks that the intervals agree (to 1e-12) and
prints one JSON object with the times and the ratio measured in the same run.

    python benchmarks/bootstrap_speed.py [--n 1000] [--n-boot 2000] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np

from transfusion_cli.data.bundles import DatasetInfo
from transfusion_cli.evaluation import weighted
from transfusion_cli.evaluation.bootstrap import (
    bootstrap_indices,
    bootstrap_many,
    percentile_interval,
)
from transfusion_cli.scores import compute_metrics, metric_values

SKIP = ("threshold", "sensitivity", "specificity")


def reference_loop(logits, targets, info, strata, groups, n_boot, seed, level=0.95):
    """The old `tfx evaluate` bootstrap: one scikit-learn evaluation per replicate."""
    def compute(idx):
        values = metric_values(compute_metrics(logits[idx], targets[idx], info))
        return {k: v for k, v in values.items() if k not in SKIP}

    point = compute(np.arange(len(strata)))
    replicates = {name: [] for name in point}
    for idx in bootstrap_indices(strata, groups, n_boot, seed):
        values = compute(idx)
        for name in replicates:
            replicates[name].append(float(values.get(name, np.nan)))
    result = {}
    for name, values in replicates.items():
        low, high = percentile_interval(values, level)
        result[name] = {"value": float(point[name]), "ci_low": low, "ci_high": high,
                        "n_valid": int(np.isfinite(values).sum())}
    return result


def batched(logits, targets, info, strata, groups, n_boot, seed, level=0.95):
    """What `tfx evaluate` runs now."""
    full = {k: v for k, v in metric_values(compute_metrics(logits, targets, info)).items()
            if k not in SKIP}
    return bootstrap_many(weighted.task_metrics(logits, targets, info), strata, groups, n_boot,
                          seed, level, point=full)


def task(kind: str, n: int, rng: np.random.Generator):
    """(logits, targets, info, strata) of a synthetic five-label or five-grade task."""
    if kind == "multilabel":
        names = ("Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Pleural Effusion")
        info = DatasetInfo("bench-chest", "multilabel", names, 1, 224, (0.5,), (0.25,),
                           selection_metric="mean_auc")
        targets = (rng.random((n, 5)) < 0.3).astype(np.float64)
        targets[rng.random((n, 5)) < 0.1] = np.nan  # unlabelled findings are masked out
        logits = np.nan_to_num(targets) * 1.2 + rng.normal(0, 1, (n, 5))
        return logits, targets, info, np.zeros(n, dtype=int)
    info = DatasetInfo("bench-retina", "multiclass", ("0", "1", "2", "3", "4"), 3, 224,
                       (0.5,) * 3, (0.25,) * 3, referable_threshold=2,
                       selection_metric="referable_auc")
    targets = rng.choice(5, size=n, p=[0.6, 0.1, 0.2, 0.05, 0.05])
    logits = rng.normal(0, 1, (n, 5))
    logits[np.arange(n), targets] += 1.5
    return logits, targets, info, targets


def largest_difference(a: dict, b: dict) -> float:
    """The largest absolute difference between two results' values and interval ends."""
    worst = 0.0
    for name in a:
        for key in ("value", "ci_low", "ci_high"):
            x, y = a[name][key], b[name][key]
            if not (np.isnan(x) and np.isnan(y)):
                worst = max(worst, abs(x - y))
        if a[name]["n_valid"] != b[name]["n_valid"]:
            return float("inf")
    return worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="Test images.")
    parser.add_argument("--n-boot", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    rows = []
    for kind in ("multilabel", "multiclass"):
        logits, targets, info, strata = task(kind, args.n, rng)
        for grouped in (False, True):
            groups = [f"p{i // 2}" for i in range(args.n)] if grouped else None
            started = time.perf_counter()
            old = reference_loop(logits, targets, info, strata, groups, args.n_boot, args.seed)
            old_s = time.perf_counter() - started
            started = time.perf_counter()
            new = batched(logits, targets, info, strata, groups, args.n_boot, args.seed)
            new_s = time.perf_counter() - started
            difference = largest_difference(old, new)
            rows.append({"task": kind, "unit": "patient" if grouped else "image",
                         "metrics": len(old), "loop_s": round(old_s, 3),
                         "batched_s": round(new_s, 3), "speedup": round(old_s / new_s, 1),
                         "largest_difference": difference, "same_cis": difference <= 1e-12})
    print(json.dumps({"n": args.n, "n_boot": args.n_boot, "seed": args.seed,
                      "cpu_count": os.cpu_count(), "load_average": os.getloadavg()[0],
                      "platform": platform.platform(), "results": rows}, indent=2))
    if not all(row["same_cis"] for row in rows):
        raise SystemExit("The batched bootstrap disagrees with the reference loop.")


if __name__ == "__main__":
    main()
