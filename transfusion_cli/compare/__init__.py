"""`tfx compare-inits`: plan a grid of fit runs, run it resumably, report and plot it."""

from transfusion_cli.compare.plan import Cell, Plan, load_plan, make_plan, merge_plan
from transfusion_cli.compare.report import Results, collect
from transfusion_cli.compare.sweep_report import write_report

__all__ = ["Cell", "Plan", "Results", "collect", "load_plan", "make_plan", "merge_plan",
           "write_report"]
