"""Text output of `tfx similarity`: per-layer tables, cross matrices, JSON rows."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from transfusion_cli.similarity.analysis import PairResult


def format_value(value: float) -> str:
    """Four decimals; NaN as 'nan'."""
    return "nan" if value is None or math.isnan(value) else f"{value:.4f}"


def text_table(title: str, header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A plain aligned table (first column left, others right) under a title line."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows,
                                                                         strict=True)]

    def line(cells: Sequence[str]) -> str:
        parts = [str(c).ljust(w) if i == 0 else str(c).rjust(w)
                 for i, (c, w) in enumerate(zip(cells, widths, strict=True))]
        return "  ".join(parts).rstrip()

    return "\n".join([title, line(header), *(line(r) for r in rows)])


def layer_table(title: str, results: Sequence[PairResult], metrics: Sequence[str],
                baseline: bool = False) -> str:
    """layer, neurons, points, one column per metric (and its null baseline)."""
    header = ["layer", "neurons", "points"]
    for metric in metrics:
        header += [metric, f"{metric}_null"] if baseline else [metric]
    rows = []
    for result in results:
        layer = result.layer_a if result.layer_a == result.layer_b else \
            f"{result.layer_a}/{result.layer_b}"
        plan = result.plan
        neurons = str(plan.neurons_a) if plan.neurons_a == plan.neurons_b \
            else f"{plan.neurons_a}/{plan.neurons_b}"
        cells = [layer, neurons, str(plan.points)]
        for metric in metrics:
            cells.append(format_value(result.metrics[metric].value))
            if baseline:
                null = result.baseline.get(metric)
                cells.append(format_value(null.value) if null is not None else "-")
        rows.append(cells)
    return text_table(title, header, rows)


def cross_table(title: str, matrix: Any, layers_a: Sequence[str],
                layers_b: Sequence[str]) -> str:
    """One metric as a matrix: rows are A's layers, columns B's layers."""
    rows = [[name, *(format_value(float(v)) for v in matrix[i])]
            for i, name in enumerate(layers_a)]
    return text_table(title, ["A \\ B", *layers_b], rows)


def json_rows(comparison: str, results: Sequence[PairResult],
              metrics: Sequence[str]) -> list[dict[str, Any]]:
    """One object per layer pair: comparison, layer, neurons, points, one key per metric."""
    return [{"comparison": comparison, **result.row(metrics)} for result in results]
