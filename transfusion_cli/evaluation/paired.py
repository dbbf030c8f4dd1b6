"""Two arms compared on the same test images: each arm's headline scores averaged over its
seeds' runs, the AUC difference with a paired bootstrap CI (``bootstrap.paired_auc_difference``)
and DeLong's p-value. `tfx compare-inits` (each init against random) and `tfx reproduce` (the
paper's pairs) both use it; it reads run folders, so it knows nothing of sweeps or plans."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from transfusion_cli.runfolder import RunFolder

N_BOOT = 1000

Scores = dict[str, tuple[np.ndarray, np.ndarray]]  # {label: (0/1 truth, score)}


@dataclass
class PairedComparison:
    """AUC of arm b minus arm a on the same test images."""

    what: str  # e.g. "cbr-small, pretrained - random"
    label: str  # the task's label ("referable", "Edema")
    arch_a: str
    init_a: str
    arch_b: str
    init_b: str
    auc_a: float
    auc_b: float
    difference: float
    ci_low: float
    ci_high: float
    p_value: float

    def text(self) -> str:
        """``0.003 [-0.004, 0.010], p = 0.41``."""
        return (f"{self.difference:+.3f} [{self.ci_low:+.3f}, {self.ci_high:+.3f}], "
                f"p = {self.p_value:.2g}")


def headline_scores(logits: np.ndarray, targets: np.ndarray, info: Any) -> Scores:
    """{label: (0/1 truth, score)} of the dataset's headline AUCs: referable DR (grade >=
    threshold, softmax mass of those grades), each finding (multi-label; unlabelled cases
    dropped) or the positive class."""
    from transfusion_cli.scores import probabilities

    probs = probabilities(logits, info.task)
    if info.task == "multiclass":
        y = np.asarray(targets).astype(int)
        if info.referable_threshold is not None:
            t = info.referable_threshold
            return {"referable": ((y >= t).astype(int), probs[:, t:].sum(axis=1))}
        return {str(name): ((y == k).astype(int), probs[:, k])
                for k, name in enumerate(info.class_names)}
    if info.task == "binary":
        return {"positive": (np.asarray(targets).reshape(-1).astype(int), probs.reshape(-1))}
    scores = {}
    targets = np.asarray(targets, dtype=np.float64)
    for k, name in enumerate(info.class_names):
        keep = ~np.isnan(targets[:, k])
        scores[str(name)] = (targets[keep, k].astype(int), probs[keep, k])
    return scores


def run_scores(run: str | os.PathLike) -> Scores | None:
    """The run's headline test scores, None when it saved no test predictions."""
    from transfusion_cli.models.checkpoint import checkpoint_dataset_info, load_checkpoint

    folder = RunFolder(run)
    if not folder.test_predictions.is_file() or not folder.best.is_file():
        return None
    saved = np.load(folder.test_predictions)
    info = checkpoint_dataset_info(load_checkpoint(folder.best))
    return headline_scores(saved["logits"], saved["targets"], info)


def arm_scores(runs: list[str | os.PathLike]) -> Scores:
    """Seed-averaged headline scores of the runs (one per seed) of one arm that saved any."""
    per_run = [s for s in (run_scores(r) for r in runs) if s]
    if not per_run:
        return {}
    return {label: (per_run[0][label][0], np.mean([s[label][1] for s in per_run], axis=0))
            for label in per_run[0]}


def compare_arms(arms: tuple[str, str, str, str], a: Scores, b: Scores) -> list[PairedComparison]:
    """Paired AUC difference b - a per headline label; ``arms`` = (arch_a, init_a, arch_b,
    init_b). A label is skipped when the arms were not scored on the same images or the truth
    has a single class."""
    from transfusion_cli.evaluation.bootstrap import paired_auc_difference

    arch_a, init_a, arch_b, init_b = arms
    what = (f"{arch_b}, {init_b} - {init_a}" if arch_a == arch_b
            else f"{init_a}: {arch_b} - {arch_a}")
    comparisons = []
    for label in a:
        if label not in b:
            continue
        y, score_a = a[label]
        y_b, score_b = b[label]
        if len(y) != len(y_b) or not np.array_equal(y, y_b) or len(np.unique(y)) < 2:
            continue
        result = paired_auc_difference(y, score_a, score_b, n_boot=N_BOOT, seed=0)
        comparisons.append(PairedComparison(
            what=what, label=label, arch_a=arch_a, init_a=init_a, arch_b=arch_b, init_b=init_b,
            **{k: float(result[k])
               for k in ("auc_a", "auc_b", "difference", "ci_low", "ci_high", "p_value")}))
    return comparisons
