"""Write a sweep's report files: report.md, results.json, results.csv and curves.png, from
``report`` (the aggregated results), ``plot`` (the curves) and ``paired`` (each init against
random on the test split)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from transfusion_cli.compare.paired import paired_markdown
from transfusion_cli.compare.plan import Plan
from transfusion_cli.compare.report import Results, collect, csv_text, markdown_report
from transfusion_cli.io import write_json, write_text
from transfusion_cli.runfolder import SweepFolder


def _paired_or_warn(directory: Path, plan: Plan) -> list[dict[str, Any]]:
    """``paired_vs_random``; a failure leaves the rest of the report standing."""
    from transfusion_cli.compare.paired import paired_vs_random
    from transfusion_cli.console import warn
    from transfusion_cli.errors import TfxError

    try:
        return paired_vs_random(directory, plan)
    except (TfxError, ImportError, OSError, ValueError) as exc:
        warn(f"no paired test-split comparison in the report ({exc})")
        return []


def write_report(directory: str | Path, plan: Plan) -> Results:
    """Write report.md, results.json, results.csv and curves.png into ``directory``."""
    from transfusion_cli.compare.plot import plot_curves  # numpy and matplotlib: lazily

    directory = Path(directory)
    sweep = SweepFolder(directory)
    results = collect(directory, plan)
    has_plot = plot_curves(results, sweep.curves)
    paired = _paired_or_warn(directory, plan)
    write_text(sweep.report, markdown_report(results, plan, has_plot) + paired_markdown(paired))
    write_json(sweep.results_json, {**results.to_dict(), "paired_vs_random": paired})
    write_text(sweep.results_csv, csv_text(results))
    return results
