"""`tfx compare-inits`: architectures x inits x seeds x train sizes, one table and one plot."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import typer

from transfusion_cli.app import app, examples
from transfusion_cli.commands.fit_flags import with_fit_flags
from transfusion_cli.compare.plan import CELL_FIELDS
from transfusion_cli.console import info, print_json
from transfusion_cli.train.settings import SETTINGS, merge_layer

FIT = "fit options (passed to every cell)"
GRID = "the grid"
SLURM = "SLURM (--executor slurm)"
# Every fit setting that compare-inits does not set per cell is one of its flags.
PASSED_THROUGH = [s.name for s in SETTINGS if s.name not in CELL_FIELDS]
EXAMPLES = examples(
    "tfx compare-inits --data synthetic-retina --inits random,gabor --seeds 3 --epochs 2 "
    "-o runs/sweep",
    "tfx compare-inits --report runs/sweep   [dim]# aggregate what has finished[/dim]")


@app.command("compare-inits", epilog=EXAMPLES)
@with_fit_flags(PASSED_THROUGH, panel=FIT)
def compare_inits_command(
    data: str = typer.Option(None, "--data", "-d", rich_help_panel=GRID,
                             help="Dataset (`tfx list datasets`).",
                             show_default="the --config file's, else synthetic-retina"),
    arch: str = typer.Option("cbr-tiny", "--arch", "-a", rich_help_panel=GRID,
                             help="Architectures, comma-separated (cbr-tiny,resnet50)."),
    inits: str = typer.Option("random,gabor", "--inits", rich_help_panel=GRID,
                              help="Inits, comma-separated: random, imagenet, mean-var, "
                              "transfusion:K, checkpoint:PATH, gabor (`tfx list inits`)."),
    arch_inits: list[str] = typer.Option(None, "--arch-inits", rich_help_panel=GRID,
                                         metavar="ARCH=INIT,...",
                                         help="An architecture with its own inits, besides "
                                         "--arch x --inits (repeatable), e.g. "
                                         "resnet50-slim=transfusion:block2."),
    seeds: str = typer.Option("3", "--seeds", rich_help_panel=GRID,
                              help="A count N (seeds 0..N-1) or a list of seeds (0,4,7)."),
    train_size: str = typer.Option(None, "--train-size", rich_help_panel=GRID,
                                   help="Training-set sizes, comma-separated (5000,50000,all).",
                                   show_default="all"),
    weights: list[str] = typer.Option(None, "--weights", rich_help_panel=GRID,
                                      help="Pretrained weights for imagenet / mean-var / "
                                      "transfusion: PATH, or ARCH=PATH per architecture "
                                      "(repeatable)."),
    target_metric: float = typer.Option(None, "--target-metric",
                                        help="Report the steps each run needs to reach this "
                                        "value of the headline metric (e.g. 0.91)."),
    metric: str = typer.Option(None, "--metric", help="Headline metric key.",
                               show_default="the dataset's selection metric, e.g. referable_auc"),
    jobs: int = typer.Option(1, "--jobs", "-j", help="Cells run at once: one per GPU when "
                             "there are GPUs, else CPU processes sharing the cores."),
    out: Path = typer.Option(None, "--out", "-o", help="Sweep folder. Re-running skips "
                             "finished cells and resumes interrupted ones.",
                             show_default="runs/compare-inits-<data>"),
    plan_only: bool = typer.Option(False, "--plan-only", help="Write DIR/plan.json and list "
                                   "the cells; train nothing (for cluster array jobs)."),
    cell: str = typer.Option(None, "--cell", help="Run only this cell of DIR/plan.json "
                             "(an array-job task)."),
    cell_index: int = typer.Option(None, "--cell-index", help="Run only the cell at this "
                                   "0-based position of DIR/plan.json (e.g. "
                                   "$SLURM_ARRAY_TASK_ID)."),
    executor: str = typer.Option("local", "--executor", help="local (this machine, --jobs) "
                                 "or slurm (a job array through submitit: pip install "
                                 "'tfx[slurm]')."),
    partition: str = typer.Option(None, "--partition", rich_help_panel=SLURM,
                                  help="SLURM partition."),
    time_min: int = typer.Option(None, "--time-min", rich_help_panel=SLURM,
                                 help="Time limit per cell in minutes (requeued on time-out "
                                 "and pre-emption; the cell resumes from last.pt)."),
    gpus_per_cell: int = typer.Option(None, "--gpus-per-cell", rich_help_panel=SLURM,
                                      help="GPUs per cell job."),
    constraint: str = typer.Option(None, "--constraint", rich_help_panel=SLURM,
                                   help="SLURM --constraint (e.g. a100)."),
    slurm_cluster: str = typer.Option(None, "--slurm-cluster", hidden=True,
                                      help="submitit backend: slurm, local or debug (tests)."),
    report: Path = typer.Option(None, "--report", help="Only aggregate what has finished in "
                                "this sweep folder."),
    json_output: bool = typer.Option(False, "--json", help="Print JSON (results, or the "
                                     "plan with --plan-only) on stdout."),
    config: Path = typer.Option(None, "--config", "-c", rich_help_panel=FIT,
                                help="YAML fit config; flags win over its values."),
    fit_flags: dict | None = None,
) -> None:
    """Compare initialisations: a resumable grid of fit runs, one table and one plot.

    Every architecture x init x train size x seed is a normal `fit` run in DIR/runs/<cell>/;
    writes DIR/report.md, results.json, results.csv and curves.png, and prints the table.
    """
    from transfusion_cli.compare import load_plan, make_plan, merge_plan
    from transfusion_cli.compare.plan import (
        check_metric,
        parse_arch_inits,
        parse_list,
        parse_seeds,
        parse_train_sizes,
    )
    from transfusion_cli.data.build import resolve_data_dir
    from transfusion_cli.errors import ConfigError
    from transfusion_cli.outputs import refuse_overwriting_inputs

    if target_metric is not None and not math.isfinite(target_metric):
        raise ConfigError(f"--target-metric {target_metric} is not a finite number; give the "
                          "metric value runs should reach, e.g. --target-metric 0.91.")
    if report is not None:
        plan = load_plan(report)
        if target_metric is not None:
            plan.target_metric = target_metric
        if metric:
            plan.metric = metric
        _finish(report, plan, json_output)
        return
    if cell is not None or cell_index is not None:
        if out is None:
            flag = "--cell" if cell is not None else "--cell-index"
            raise ConfigError(f"{flag} needs --out DIR: the sweep folder holding plan.json.")
        plan = load_plan(out)
        _run_one(out, plan, plan.cell(cell) if cell is not None else
                 _cell_at(plan, cell_index), json_output)
        return
    if plan_only and out is not None and (Path(out) / "plan.json").is_file() \
            and not fit_flags and not _grid_given():
        plan = load_plan(out)  # list an existing sweep without repeating its flags
        _show_plan(out, plan, [c.id for c in plan.cells], json_output)
        return
    if jobs < 1:
        raise ConfigError(f"--jobs must be at least 1, got {jobs}.")
    fit_options = _fit_options(config, fit_flags or {})
    data_dir = fit_options.get("data_dir")
    data = data or fit_options.pop("data", None) or SETTINGS[0].default
    fit_options.pop("data", None)
    plan = make_plan(data=data, archs=parse_list(arch, "--arch"),
                     inits=parse_list(inits, "--inits"), seeds=parse_seeds(seeds),
                     train_sizes=parse_train_sizes(train_size), fit=fit_options,
                     weights=weights, target_metric=target_metric, metric=metric,
                     arch_inits=parse_arch_inits(arch_inits))
    check_metric(plan)
    requested = [c.id for c in plan.cells]
    directory = out or Path("runs") / f"compare-inits-{data.replace('/', '-')}"
    refuse_overwriting_inputs({"--out": directory}, data_dirs=[resolve_data_dir(data, data_dir)])
    plan = merge_plan(directory, plan)
    if plan_only:
        _show_plan(directory, plan, requested, json_output)
        return
    from transfusion_cli.compare.runner import run_sweep, select_cells

    try:
        outcomes = run_sweep(directory, plan, select_cells(plan, requested), jobs=jobs,
                             executor=_executor(executor, jobs, directory, partition,
                                                time_min, gpus_per_cell, constraint,
                                                slurm_cluster))
    except KeyboardInterrupt:
        info(f"Interrupted; finished cells are kept. Run the same command again to resume "
             f"(sweep folder {directory}).")
        raise
    _finish(directory, plan, json_output)
    failed = {cell_id: outcome for cell_id, outcome in outcomes.items()
              if outcome.startswith("failed")}
    if failed:
        from transfusion_cli.errors import TrainingError

        first, reason = next(iter(failed.items()))
        raise TrainingError(f"{len(failed)} of {len(requested)} cells failed ({first}: "
                            f"{reason.removeprefix('failed: ')}); the report holds the others. "
                            "Fix the cause and run the same command again.")


def _cell_at(plan, index: int):
    from transfusion_cli.errors import ConfigError

    if not 0 <= index < len(plan.cells):
        raise ConfigError(f"--cell-index {index} is out of range: the plan has "
                          f"{len(plan.cells)} cells (0 to {len(plan.cells) - 1}).")
    return plan.cells[index]


def _grid_given() -> bool:
    """Whether any grid flag (or --config) was given on the command line."""
    try:
        from typer._click.core import ParameterSource
        from typer._click.globals import get_current_context
    except ImportError:
        from click import get_current_context
        from click.core import ParameterSource
    context = get_current_context(silent=True)
    if context is None:
        return True
    names = ("data", "arch", "inits", "arch_inits", "seeds", "train_size", "weights",
             "target_metric", "metric", "config")
    return any(context.get_parameter_source(name) not in (None, ParameterSource.DEFAULT)
               for name in names)


def _executor(name: str, jobs: int, directory: Path, partition: str | None,
              time_min: int | None, gpus: int | None, constraint: str | None,
              cluster: str | None):
    """None for the local runner, else the SLURM executor (compare.executors)."""
    from transfusion_cli.compare.executors import SlurmOptions, make_executor

    if name == "local":
        return None
    options = SlurmOptions().overridden(partition=partition, time_min=time_min,
                                        gpus_per_cell=gpus, constraint=constraint,
                                        cluster=cluster)
    return make_executor(name, jobs=jobs, log_folder=Path(directory) / "slurm", slurm=options)


def _fit_options(config: Path | None, flags: dict[str, Any]) -> dict[str, Any]:
    """The shared fit settings: the --config file's, then the flags given."""
    from transfusion_cli.console import warn
    from transfusion_cli.train import load_config_file, resolve_config

    settings: dict[str, Any] = {}
    if config is not None:
        settings = load_config_file(config)
        dropped = sorted(k for k in settings if k in CELL_FIELDS and k != "data")
        if dropped:
            warn(f"{config}: ignoring {', '.join(dropped)} (compare-inits sets them per cell).")
        settings = {k: v for k, v in settings.items() if k not in dropped}
    merged = merge_layer(settings, {k: v for k, v in flags.items() if v is not None}, "flags")
    settings = {k: v for k, v in merged.items() if v is not None}
    resolve_config(None, settings)  # type and range checks now, before any cell starts
    return settings


def _show_plan(directory: Path, plan, requested: list[str], json_output: bool) -> None:
    if json_output:
        print_json({"out": str(directory), **plan.to_dict()})
        return
    import sys

    from transfusion_cli.compare.runner import cell_state

    # One "CELL_ID<TAB>state" line per cell: plain text for array-job scripts.
    sys.stdout.write("".join(f"{cell.id}\t{cell_state(Path(directory), cell)}\n"
                             for cell in plan.cells))
    sys.stdout.flush()
    info(f"Plan with {len(plan.cells)} cells written to {Path(directory) / 'plan.json'}. Run "
         f"one cell with: tfx compare-inits --out {directory} --cell CELL_ID (or --cell-index N, "
         f"0-based); aggregate with: "
         f"tfx compare-inits --report {directory}")


def _run_one(directory: Path, plan, cell, json_output: bool) -> None:
    from transfusion_cli.compare.runner import run_cell

    outcome = run_cell(directory, plan, cell)
    if json_output:
        print_json({"cell": cell.id, "outcome": outcome})
    else:
        info(f"{cell.id}: {outcome}")


def _finish(directory: Path, plan, json_output: bool) -> None:
    from transfusion_cli.compare import write_report
    from transfusion_cli.compare.report import rich_table
    from transfusion_cli.console import out

    results = write_report(directory, plan)
    if json_output:
        print_json(results.to_dict())
    else:
        out.print(rich_table(results))  # full width when piped (console.DataConsole)
    info(f"Report: {Path(directory) / 'report.md'} (also results.json, results.csv"
         f"{', curves.png' if results.cells else ''}); {len(results.cells)} of "
         f"{len(plan.cells)} cells finished.")
