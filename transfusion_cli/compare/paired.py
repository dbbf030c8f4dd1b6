"""Every init against the baseline init (``InitSpec.baseline``: the paper's ``random``) on the
test split, paired on the same test images: the AUC
difference with its paired bootstrap CI and the DeLong p-value (`tfx evaluate`'s statistics),
for the compare-inits report. Reads the runs' ``test_predictions.npz``; scores are averaged
over the seeds of an arm, as `tfx reproduce` does."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from transfusion_cli.compare.plan import Plan
from transfusion_cli.plugins import get_registry
from transfusion_cli.runfolder import SweepFolder


def paired_vs_random(directory: str | Path, plan: Plan) -> list[dict[str, Any]]:
    """One row per (architecture, train size, init other than the baseline, headline label)."""
    from transfusion_cli.evaluation.paired import arm_scores, compare_arms  # numpy: lazily

    baseline_name = get_registry().baseline_init().name
    sweep = SweepFolder(directory)
    rows = []
    keys = list(dict.fromkeys((c.arch, c.train_size) for c in plan.cells))
    for arch, size in keys:
        cells = [c for c in plan.cells if (c.arch, c.train_size) == (arch, size)]
        baseline = arm_scores([sweep.run(c.id).root for c in cells if c.label == baseline_name])
        if not baseline:
            continue
        for init in dict.fromkeys(c.label for c in cells if c.label != baseline_name):
            other = arm_scores([sweep.run(c.id).root for c in cells if c.label == init])
            for comparison in compare_arms((arch, baseline_name, arch, init), baseline, other):
                rows.append({"train_size": size, **asdict(comparison)})
    return rows


def paired_markdown(rows: list[dict[str, Any]]) -> str:
    """The report.md section (empty when no run saved test predictions)."""
    if not rows:
        return ""
    base = rows[0]["init_a"]
    lines = ["", f"## Each init against {base} on the test split (paired)", "",
             f"AUC of the init minus AUC of {base} on the same test images (scores averaged "
             "over seeds), 95% CI from a paired bootstrap, p from DeLong's test (two-sided).",
             "", f"| architecture | train size | init | label | AUC {base} | AUC init | "
             "difference | 95% CI | DeLong p |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        size = "all" if r["train_size"] is None else r["train_size"]
        lines.append(f"| {r['arch_b']} | {size} | {r['init_b']} | {r['label']} | "
                     f"{r['auc_a']:.4f} | {r['auc_b']:.4f} | {r['difference']:+.4f} | "
                     f"{r['ci_low']:+.4f} to {r['ci_high']:+.4f} | {r['p_value']:.3g} |")
    return "\n".join(lines) + "\n"
