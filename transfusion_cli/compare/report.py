"""Aggregate finished cells into the contents of report.md, results.json, results.csv and a
rich table (``compare.sweep_report`` writes the files).

Reads only files (plan.json, each run's metrics.jsonl, the runner's done/<cell>.json), so it
works on any machine that can see the folder, without torch. Per architecture x init x train
size: mean and sample standard deviation (ddof=1) over seeds of the best and the final value
of the headline metric, the steps to reach the target (the paper's convergence measure, read
on the test split when the runs scored it along training, as compare-inits' cells do), the
parameter count and the wall time per run.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from transfusion_cli.compare.plan import Cell, Plan
from transfusion_cli.console import json_safe
from transfusion_cli.io import csv_safe, read_jsonl
from transfusion_cli.runfolder import SweepFolder


def done_path(directory: Path, cell_id: str) -> Path:
    """Where the runner records a finished cell (``SweepFolder.done_marker``)."""
    return SweepFolder(directory).done_marker(cell_id)


def run_path(directory: Path, cell_id: str) -> Path:
    """The cell's fit run folder (``SweepFolder.run``)."""
    return SweepFolder(directory).run(cell_id).root


def metric_series(records: list[dict[str, Any]], metric: str) -> list[tuple[int, float]]:
    """(step, value) for each evaluation that has the metric, in step order."""
    series = {}
    for record in records:
        value = record.get(metric)
        if isinstance(value, int | float) and "step" in record:
            series[int(record["step"])] = float(value)
    return sorted(series.items())


def steps_to_reach(series: list[tuple[int, float]], target: float) -> int | None:
    """The first evaluated step whose value is at least ``target``; None if never."""
    for step, value in series:
        if not math.isnan(value) and value >= target:
            return step
    return None


@dataclass
class CellResult:
    """One finished cell."""

    id: str
    arch: str
    init: str
    seed: int
    train_size: int | None
    best: float
    final: float
    best_step: int | None
    last_step: int
    steps_to_target: int | None
    params: int | None
    wall_time_s: float | None
    test: float | None = None  # headline metric of best.pt on the test split
    curve: list[tuple[int, float]] = field(default_factory=list)
    target_split: str = "validation"  # the split steps_to_target was read on
    selection_metric: str | None = None  # the validation metric that chose best.pt


def _finite(values: list[float]) -> list[float]:
    return [v for v in values if v is not None and not math.isnan(v)]


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1; NaN for fewer than two values)."""
    values = _finite(values)
    if not values:
        return math.nan, math.nan
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, math.nan
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


@dataclass
class GroupResult:
    """Architecture x init x train size, over its seeds."""

    arch: str
    init: str
    train_size: int | None
    seeds_done: int
    seeds_planned: int
    best_mean: float
    best_std: float
    final_mean: float
    final_std: float
    test_mean: float | None
    test_std: float | None
    reached: int
    steps_to_target_mean: float | None
    steps_to_target_std: float | None
    params: int | None
    wall_time_s_mean: float | None


@dataclass
class Results:
    """Everything the report shows."""

    data: str
    metric: str
    target_metric: float | None
    groups: list[GroupResult]
    cells: list[CellResult]
    pending: list[str]
    target_split: str = "validation"  # "test", "validation" or "mixed"
    schedule: str = ""  # the learning-rate schedule the cells shared
    # The validation metric that chose each cell's best.pt ("a, b" if cells differ).
    selection_metric: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain data for results.json (NaN -> null)."""
        return json_safe({
            "data": self.data, "metric": self.metric, "target_metric": self.target_metric,
            "target_split": self.target_split, "schedule": self.schedule,
            "selection": {"metric": self.selection_metric, "split": "validation",
                          "checkpoint": "best.pt, the evaluation with the highest value"},
            "std": "sample standard deviation over seeds (ddof=1)",
            "groups": [asdict(g) for g in self.groups],
            "cells": [{k: v for k, v in asdict(c).items() if k != "curve"} for c in self.cells],
            "pending": self.pending,
        })


def headline_metric(plan: Plan, directory: Path) -> str | None:
    """The plan's --metric, else the selection metric a finished cell recorded."""
    if plan.metric:
        return plan.metric
    for cell in plan.cells:
        path = SweepFolder(directory).done_marker(cell.id)
        if path.is_file():
            metric = json.loads(path.read_text()).get("selection_metric")
            if metric:
                return metric
    return None


def cell_result(directory: Path, cell: Cell, metric: str,
                target: float | None) -> CellResult | None:
    """The result of a finished cell (None when it has not finished)."""
    sweep = SweepFolder(directory)
    marker = sweep.done_marker(cell.id)
    if not marker.is_file():
        return None
    done = json.loads(marker.read_text())
    metrics_file = sweep.run(cell.id).metrics
    records = read_jsonl(metrics_file) if metrics_file.is_file() else []
    series = metric_series(records, metric)
    if not series:
        return None
    test_series = metric_series(records, f"test/{metric}")
    target_split = "test" if test_series else "validation"
    values = [v for _, v in series]
    finite = [(s, v) for s, v in series if not math.isnan(v)]
    best_step, best = max(finite, key=lambda sv: sv[1]) if finite else (None, math.nan)
    return CellResult(
        id=cell.id, arch=cell.arch, init=cell.label, seed=cell.seed, train_size=cell.train_size,
        best=best, final=values[-1], best_step=best_step, last_step=series[-1][0],
        steps_to_target=steps_to_reach(test_series or series, target)
        if target is not None else None,
        params=done.get("params"), wall_time_s=done.get("wall_time_s"),
        test=(done.get("test") or {}).get(metric), curve=series, target_split=target_split,
        selection_metric=done.get("selection_metric"))


def collect(directory: str | Path, plan: Plan) -> Results:
    """Read every finished cell of ``plan`` and aggregate over seeds."""
    directory = Path(directory)
    metric = headline_metric(plan, directory) or "auc"
    cells, pending = [], []
    for cell in plan.cells:
        result = cell_result(directory, cell, metric, plan.target_metric)
        (cells.append(result) if result is not None else pending.append(cell.id))
    groups = []
    keys = list(dict.fromkeys((c.arch, c.label, c.train_size) for c in plan.cells))
    for arch, init, size in keys:
        planned = [c for c in plan.cells if (c.arch, c.label, c.train_size) == (arch, init, size)]
        done = [r for r in cells if (r.arch, r.init, r.train_size) == (arch, init, size)]
        best_mean, best_std = mean_std([r.best for r in done])
        final_mean, final_std = mean_std([r.final for r in done])
        tests = [r.test for r in done if r.test is not None]
        test_mean, test_std = mean_std(tests) if tests else (None, None)
        reached = [r.steps_to_target for r in done if r.steps_to_target is not None]
        steps_mean, steps_std = mean_std([float(s) for s in reached]) if reached else (None, None)
        walls = [r.wall_time_s for r in done if r.wall_time_s is not None]
        groups.append(GroupResult(
            arch=arch, init=init, train_size=size, seeds_done=len(done),
            seeds_planned=len(planned), best_mean=best_mean, best_std=best_std,
            final_mean=final_mean, final_std=final_std, test_mean=test_mean,
            test_std=test_std, reached=len(reached),
            steps_to_target_mean=steps_mean, steps_to_target_std=steps_std,
            params=next((r.params for r in done if r.params is not None), None),
            wall_time_s_mean=mean_std(walls)[0] if walls else None))
    splits = {c.target_split for c in cells}
    selections = list(dict.fromkeys(c.selection_metric for c in cells if c.selection_metric))
    return Results(data=plan.data, metric=metric, target_metric=plan.target_metric,
                   groups=groups, cells=cells, pending=pending,
                   target_split=splits.pop() if len(splits) == 1 else
                   ("mixed" if splits else "test"), schedule=schedule_text(plan.fit),
                   selection_metric=", ".join(selections) or plan.fit.get("selection_metric"))


def schedule_text(fit: dict[str, Any]) -> str:
    """The cells' learning-rate schedule in words (the fit defaults where not given)."""
    from transfusion_cli.train.settings import BY_NAME

    scheduler = fit.get("scheduler") or BY_NAME["scheduler"].default
    warmup = fit.get("warmup_steps") or 0
    text = ("cosine decay to zero over each run's length" if scheduler == "cosine" else
            "constant learning rate")
    if warmup:
        text = f"linear warm-up over {warmup} steps, then {text}"
    eval_every = fit.get("eval_every")
    grid = f"every {eval_every} steps" if eval_every else "once per epoch"
    return f"{text}; evaluated {grid}"


def format_mean_std(mean: float | None, std: float | None, digits: int = 4) -> str:
    """``0.9123 ± 0.0040``; the mean alone for one seed; ``-`` when nothing finished."""
    if mean is None or math.isnan(mean):
        return "-"
    if std is None or math.isnan(std):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def format_steps(group: GroupResult, target: float | None) -> str:
    """Steps to target: ``120 ± 20``, ``150 (1/2 reached)`` or ``not reached``."""
    if target is None:
        return "-"
    if group.seeds_done == 0:
        return "-"
    if group.reached == 0:
        return "not reached"
    text = format_mean_std(group.steps_to_target_mean, group.steps_to_target_std, digits=0)
    if group.reached < group.seeds_done:
        text += f" ({group.reached}/{group.seeds_done} reached)"
    return text


def table_rows(results: Results) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the results table, as text."""
    target = results.target_metric
    has_test = any(g.test_mean is not None for g in results.groups)
    header = ["arch", "init", "train size", "seeds", f"best val {results.metric}",
              f"final val {results.metric}",
              *([f"test {results.metric} (best.pt by val {results.selection_metric})"]
                if has_test else []),
              f"steps to {_short_split(results.target_split)}{results.metric} ≥ {target:g}"
              if target is not None else "steps to target", "params", "wall time/run"]
    rows = []
    for g in results.groups:
        rows.append([
            g.arch, g.init, "all" if g.train_size is None else str(g.train_size),
            f"{g.seeds_done}/{g.seeds_planned}",
            format_mean_std(g.best_mean, g.best_std), format_mean_std(g.final_mean, g.final_std),
            *([format_mean_std(g.test_mean, g.test_std)] if has_test else []),
            format_steps(g, target),
            f"{g.params:,}" if g.params is not None else "-",
            f"{g.wall_time_s_mean:.0f} s" if g.wall_time_s_mean is not None else "-",
        ])
    return header, rows


def _short_split(split: str) -> str:
    return {"test": "test ", "validation": "val "}.get(split, "")


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    """A GitHub-flavoured markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def rich_table(results: Results):
    """The table for stdout."""
    from rich.table import Table

    header, rows = table_rows(results)
    table = Table(title=f"compare-inits on {results.data}", title_justify="left")
    for name in header:
        table.add_column(name, justify="left" if name in ("arch", "init") else "right")
    for row in rows:
        table.add_row(*row)
    return table


def markdown_report(results: Results, plan: Plan, has_plot: bool) -> str:
    """report.md."""
    header, rows = table_rows(results)
    fit = ", ".join(f"{k}={v}" for k, v in sorted(plan.fit.items())) or "fit defaults"
    lines = [
        f"# compare-inits: {results.data}",
        "",
        f"Headline metric: `{results.metric}` (higher is better). Mean ± sample standard "
        f"deviation (ddof=1) over seeds. best val = the highest validation value over the "
        f"run's evaluations, final val = the last evaluation; test = the run's best.pt "
        f"scored once on the test split, as the paper reports.",
        selection_text(results),
    ]
    if results.target_metric is not None:
        split = {"test": "the test split", "validation": "the validation split",
                 "mixed": "the test split where a run scored it, else validation"}[
            results.target_split]
        lines.append(f"Steps to target: the first evaluated training step at which `"
                     f"{results.metric}` ≥ {results.target_metric:g} on {split} (mean over the "
                     "seeds that reached it; \"not reached\" when none did within the run). "
                     f"Learning-rate schedule: {results.schedule}.")
        if "cosine" in results.schedule:
            lines.append("Under a cosine schedule the step at which a run reaches the target "
                         "depends on the run's planned length; use `--scheduler constant` for "
                         "convergence comparisons.")
    lines += ["", f"Fit options shared by every cell: {fit}.", "", markdown_table(header, rows)]
    if has_plot:
        lines += ["", "![validation curves](curves.png)", "",
                  "curves.png: validation metric against training steps, one colour per init, "
                  "mean over seeds with the min-max band, one panel per architecture."]
    if results.pending:
        lines += ["", f"Not finished ({len(results.pending)} cells, not in the table): "
                  + ", ".join(results.pending)]
    return "\n".join(lines) + "\n"


def selection_text(results: Results) -> str:
    """How each cell's best.pt was chosen, in one sentence for report.md."""
    chosen = results.selection_metric
    text = ("Checkpoint selection: each run's best.pt is its evaluation with the highest "
            f"validation {f'`{chosen}`' if chosen else 'value of the dataset selection metric'}")
    if chosen is None or chosen == results.metric:
        return text + "."
    return (text + f", not of the headline `{results.metric}` (the report was asked for "
            "another --metric than the cells were trained with, or the cells were planned "
            "before compare-inits selected by its headline metric).")


def csv_text(results: Results) -> str:
    """results.csv: one row per architecture x init x train size."""
    buffer = io.StringIO()
    columns = ["arch", "init", "train_size", "seeds_done", "seeds_planned", "best_mean",
               "best_std", "final_mean", "final_std", "test_mean", "test_std",
               "target_metric", "reached",
               "steps_to_target_mean", "steps_to_target_std", "params", "wall_time_s_mean"]
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for group in results.groups:
        row = {k: v for k, v in asdict(group).items() if k in columns}
        row["target_metric"] = results.target_metric
        row["train_size"] = "all" if group.train_size is None else group.train_size
        writer.writerow({k: csv_safe("" if v is None or (isinstance(v, float) and math.isnan(v))
                                     else v) for k, v in row.items()})
    return buffer.getvalue()
