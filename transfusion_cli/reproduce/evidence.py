"""What the finished cells say: test AUCs per arm, paired differences with CIs, steps to target.

Reads each sweep folder (plan.json, done records, runs' ``test_predictions.npz``); trains
nothing. A paired difference compares two arms on the same test images: each arm's score is
the mean of its seeds' predicted probabilities, the CI is a paired bootstrap over test images
(``evaluation.bootstrap.paired_auc_difference``) and the p-value DeLong's.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from transfusion_cli.compare.plan import Cell, load_plan
from transfusion_cli.compare.report import collect, done_path, run_path
from transfusion_cli.compare.runner import TEST_PREDICTIONS

N_BOOT = 1000


@dataclass
class Comparison:
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


@dataclass
class ArmResult:
    """One arch x init (x train size) of a part: test AUC over seeds."""

    arch: str
    init: str
    train_size: int | None
    seeds: int
    test_mean: float | None
    test_std: float | None
    params: int | None
    steps_to_target: float | None = None  # mean over seeds that reached it
    reached: int = 0
    last_step: int | None = None  # run length (for "not reached")


@dataclass
class PartEvidence:
    """Everything one part measured."""

    part: str
    sweep: str
    metric: str
    arms: list[ArmResult] = field(default_factory=list)
    comparisons: list[Comparison] = field(default_factory=list)
    target: float | None = None
    missing: list[str] = field(default_factory=list)
    target_split: str = "validation"  # the split steps to target were read on

    def to_dict(self) -> dict[str, Any]:
        """Plain data."""
        return asdict(self)


def headline_scores(logits: np.ndarray, targets: np.ndarray,
                    info: Any) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{label: (0/1 truth, score)} of the dataset's headline AUCs: referable DR (grade >=
    threshold, softmax mass of those grades), each finding (multi-label; unlabelled cases
    dropped) or the positive class."""
    from transfusion_cli.evaluation.scores import probabilities

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


def cell_scores(directory: Path, cell: Cell) -> dict[str, tuple[np.ndarray, np.ndarray]] | None:
    """The cell's headline test scores, None when it has no saved test predictions."""
    from transfusion_cli.models.checkpoint import checkpoint_dataset_info, load_checkpoint

    run = run_path(directory, cell.id)
    path = run / TEST_PREDICTIONS
    best = run / "checkpoints" / "best.pt"
    if not path.is_file() or not best.is_file():
        return None
    saved = np.load(path)
    info = checkpoint_dataset_info(load_checkpoint(best))
    return headline_scores(saved["logits"], saved["targets"], info)


def arm_scores(directory: Path, cells: list[Cell]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Seed-averaged headline scores of the finished cells of one arm."""
    per_cell = [s for s in (cell_scores(directory, c) for c in cells) if s]
    if not per_cell:
        return {}
    return {label: (per_cell[0][label][0], np.mean([s[label][1] for s in per_cell], axis=0))
            for label in per_cell[0]}


def compare_arms(arms: tuple[str, str, str, str], a: dict[str, tuple[np.ndarray, np.ndarray]],
                 b: dict[str, tuple[np.ndarray, np.ndarray]]) -> list[Comparison]:
    """Paired AUC difference b - a per headline label."""
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
        comparisons.append(Comparison(what=what, label=label, arch_a=arch_a, init_a=init_a,
                                      arch_b=arch_b, init_b=init_b, **{
            k: float(result[k]) for k in ("auc_a", "auc_b", "difference", "ci_low", "ci_high",
                                          "p_value")}))
    return comparisons


def _finite_or_none(value: float | None) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


def part_evidence(part: str, directory: Path, cell_ids: list[str],
                  pairs: list[tuple[str, str, str, str]]) -> PartEvidence:
    """The arms of one part (its cells in the sweep at ``directory``) and the paired
    comparisons ``pairs`` = [(arch_a, init_a, arch_b, init_b)]."""
    plan = load_plan(directory)
    wanted = set(cell_ids)
    plan.cells = [c for c in plan.cells if c.id in wanted]
    results = collect(directory, plan)
    evidence = PartEvidence(part=part, sweep=Path(directory).name, metric=results.metric,
                            target=plan.target_metric, missing=list(results.pending),
                            target_split=getattr(results, "target_split", "validation"))
    last_steps = {}
    for cell_result in results.cells:
        key = (cell_result.arch, cell_result.init, cell_result.train_size)
        last_steps[key] = max(last_steps.get(key, 0), cell_result.last_step)
    for group in results.groups:
        if group.seeds_done == 0:
            continue
        evidence.arms.append(ArmResult(
            arch=group.arch, init=group.init, train_size=group.train_size,
            seeds=group.seeds_done, test_mean=_finite_or_none(group.test_mean),
            test_std=_finite_or_none(group.test_std), params=group.params,
            steps_to_target=_finite_or_none(group.steps_to_target_mean), reached=group.reached,
            last_step=last_steps.get((group.arch, group.init, group.train_size))))
    done_cells = [c for c in plan.cells if done_path(directory, c.id).is_file()]
    for arch_a, init_a, arch_b, init_b in pairs:
        cells_a = [c for c in done_cells if (c.arch, c.label) == (arch_a, init_a)]
        cells_b = [c for c in done_cells if (c.arch, c.label) == (arch_b, init_b)]
        if not cells_a or not cells_b:
            continue
        evidence.comparisons.extend(compare_arms((arch_a, init_a, arch_b, init_b),
                                                 arm_scores(directory, cells_a),
                                                 arm_scores(directory, cells_b)))
    return evidence
