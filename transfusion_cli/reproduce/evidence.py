"""What the finished cells say: test AUCs per arm, paired differences with CIs, steps to target.

Reads each sweep folder (plan.json, done records, runs' ``test_predictions.npz``); trains
nothing. A paired difference compares two arms on the same test images: each arm's score is
the mean of its seeds' predicted probabilities, the CI is a paired bootstrap over test images
and the p-value DeLong's (``evaluation.paired``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from transfusion_cli.compare.plan import load_plan
from transfusion_cli.compare.report import collect
from transfusion_cli.evaluation.paired import PairedComparison, arm_scores, compare_arms
from transfusion_cli.runfolder import SweepFolder


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
    comparisons: list[PairedComparison] = field(default_factory=list)
    target: float | None = None
    missing: list[str] = field(default_factory=list)
    target_split: str = "validation"  # the split steps to target were read on
    selection_metric: str | None = None  # the validation metric that chose each best.pt

    def to_dict(self) -> dict[str, Any]:
        """Plain data."""
        return asdict(self)


@dataclass
class Evidence:
    """What a study measured, for its report: each training part's arms and paired
    differences, the representations, the source-task scores (the claims read the evidence
    file built from the same cells, ``study_evidence``)."""

    parts: dict[str, PartEvidence] = field(default_factory=dict)
    roles: dict[str, list[str]] = field(default_factory=dict)
    source_scores: dict[str, float] = field(default_factory=dict)
    source_label: str = "ImageNet"
    representations: dict[str, Any] | None = None


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
                            target_split=getattr(results, "target_split", "validation"),
                            selection_metric=results.selection_metric)
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
    sweep = SweepFolder(directory)
    done_cells = [c for c in plan.cells if sweep.done_marker(c.id).is_file()]
    for arch_a, init_a, arch_b, init_b in pairs:
        cells_a = [c for c in done_cells if (c.arch, c.label) == (arch_a, init_a)]
        cells_b = [c for c in done_cells if (c.arch, c.label) == (arch_b, init_b)]
        if not cells_a or not cells_b:
            continue
        evidence.comparisons.extend(compare_arms(
            (arch_a, init_a, arch_b, init_b),
            arm_scores([sweep.run(c.id).root for c in cells_a]),
            arm_scores([sweep.run(c.id).root for c in cells_b])))
    return evidence
