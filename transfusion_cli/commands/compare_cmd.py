"""`tfx compare-inits`: architectures x inits x seeds x train sizes, one table and one plot."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import typer

from transfusion_cli.app import app, examples
from transfusion_cli.commands.fit_flags import with_fit_flags
from transfusion_cli.commands.options import (
    Executor,
    executor_option,
    json_option,
    out_option,
    was_given,
    with_slurm_flags,
)
from transfusion_cli.compare.plan import CELL_FIELDS
from transfusion_cli.console import info, print_json
from transfusion_cli.runfolder import OUTPUTS_DIR, SweepFolder
from transfusion_cli.train.settings import SETTINGS, merge_layer

FIT = "fit options (passed to every cell)"
GRID = "the grid"
# Every fit setting that compare-inits does not set per cell is one of its flags.
PASSED_THROUGH = [s.name for s in SETTINGS if s.name not in CELL_FIELDS]
# The flags that define the grid: listing an existing plan (--plan-only) takes none of them.
GRID_FLAGS = ("data", "arch", "inits", "arch_inits", "seeds", "train_size", "weights",
              "target_metric", "metric", "config")
EXAMPLES = examples(
    "tfx compare-inits --data synthetic-retina --inits random,gabor --seeds 3 --epochs 2 "
    "-o runs/sweep",
    "tfx compare-inits --report runs/sweep   # aggregate what has finished")


@app.command("compare-inits", epilog=EXAMPLES)
@with_fit_flags(PASSED_THROUGH, panel=FIT)
@with_slurm_flags()
def compare_inits_command(
    ctx: typer.Context,
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
    metric: str = typer.Option(None, "--metric", help="Headline metric: the classification "
                               "score the table and curves report (auc, kappa, auc/LABEL, ...).",
                               show_default="the dataset's selection metric, e.g. referable_auc"),
    jobs: int = typer.Option(1, "--jobs", "-j", min=1, help="Cells run at once: one per GPU "
                             "when there are GPUs, else CPU processes sharing the cores; with "
                             "--executor slurm, the array's limit."),
    out: Path = out_option(None, "Sweep folder. Re-running skips finished cells and resumes "
                           "interrupted ones.", show_default="runs/compare-inits-<data>"),
    plan_only: bool = typer.Option(False, "--plan-only", help="Write DIR/plan.json and list "
                                   "the cells; train nothing (for cluster array jobs)."),
    cell: str = typer.Option(None, "--cell", help="Run only this cell of DIR/plan.json "
                             "(an array-job task)."),
    cell_index: int = typer.Option(None, "--cell-index", help="Run only the cell at this "
                                   "0-based position of DIR/plan.json (e.g. "
                                   "$SLURM_ARRAY_TASK_ID)."),
    executor: Executor = executor_option("this machine, --jobs"),
    report: Path = typer.Option(None, "--report", help="Only aggregate what has finished in "
                                "this sweep folder."),
    json_output: bool = json_option("Print JSON (results, or the plan with --plan-only) on "
                                    "stdout."),
    config: Path = typer.Option(None, "--config", "-c", rich_help_panel=FIT,
                                help="YAML fit config; flags win over its values."),
    fit_flags: dict | None = None,
    slurm_flags: dict | None = None,
) -> None:
    """Compare initialisations: a resumable grid of fit runs, one table and one plot.

    Every architecture x init x train size x seed is a normal `fit` run in DIR/runs/<cell>/;
    writes DIR/report.md, results.json, results.csv and curves.png, and prints the table.
    """
    _check_target_metric(target_metric)
    if report is not None:
        _report(report, target_metric, metric, json_output)
    elif cell is not None or cell_index is not None:
        _run_one(out, cell, cell_index, json_output)
    elif plan_only and out is not None and SweepFolder(out).is_planned() \
            and not fit_flags and not _grid_given(ctx):
        _show_existing_plan(out, json_output)
    else:
        # The executor and its SLURM settings are checked before plan.json is written.
        _executor(executor, jobs, out or Path(OUTPUTS_DIR), slurm_flags or {})
        directory, plan, requested = _plan_sweep(
            data=data, arch=arch, inits=inits, arch_inits=arch_inits, seeds=seeds,
            train_size=train_size, weights=weights, target_metric=target_metric, metric=metric,
            out=out, config=config, fit_flags=fit_flags or {})
        if plan_only:
            _show_plan(directory, plan, requested, json_output)
        else:
            _run_sweep(directory, plan, requested, jobs, executor, slurm_flags or {},
                       json_output)


def _check_target_metric(target_metric: float | None) -> None:
    from transfusion_cli.errors import ConfigError

    if target_metric is not None and not math.isfinite(target_metric):
        raise ConfigError(f"--target-metric {target_metric} is not a finite number; give the "
                          "metric value runs should reach, e.g. --target-metric 0.91.")


def _report(directory: Path, target_metric: float | None, metric: str | None,
            json_output: bool) -> None:
    """--report DIR: aggregate what has finished (the target and headline metric may change)."""
    from transfusion_cli.compare import load_plan
    from transfusion_cli.compare.plan import check_metric

    plan = load_plan(directory)
    if target_metric is not None:
        plan.target_metric = target_metric
    if metric:
        plan.metric = metric
        check_metric(plan)  # as planning checks it: a metric the dataset does not report
    _refuse_losing_finished_cells(directory, plan)
    _finish(directory, plan, json_output)


def _refuse_losing_finished_cells(directory: Path, plan) -> None:
    """A report that would leave out cells the runner recorded as finished (their metrics
    lack the headline metric) is refused, and the report already there stays."""
    from transfusion_cli.compare.report import collect
    from transfusion_cli.errors import ConfigError

    results = collect(directory, plan)
    reported = {cell.id for cell in results.cells}
    lost = [cell.id for cell in plan.cells if cell.id not in reported
            and SweepFolder(directory).done_marker(cell.id).is_file()]
    if lost:
        raise ConfigError(f"{len(lost)} finished cell{'s' if len(lost) > 1 else ''} of "
                          f"{directory} ({lost[0]}"
                          f"{', ...' if len(lost) > 1 else ''}) recorded no '{results.metric}'; "
                          "the report was left as it was. Choose a --metric they recorded "
                          "(see their metrics.jsonl).")


def _run_one(out: Path | None, cell: str | None, cell_index: int | None,
             json_output: bool) -> None:
    """--cell ID / --cell-index N: one cell of an existing plan (an array-job task)."""
    from transfusion_cli.compare import load_plan
    from transfusion_cli.compare.runner import run_cell
    from transfusion_cli.errors import ConfigError

    if out is None:
        flag = "--cell" if cell is not None else "--cell-index"
        raise ConfigError(f"{flag} needs --out DIR: the sweep folder holding plan.json.")
    plan = load_plan(out)
    chosen = plan.cell(cell) if cell is not None else _cell_at(plan, cell_index)
    outcome = run_cell(out, plan, chosen)
    if json_output:
        print_json({"cell": chosen.id, "outcome": outcome})
    else:
        info(f"{chosen.id}: {outcome}")


def _cell_at(plan, index: int):
    from transfusion_cli.errors import ConfigError

    if not 0 <= index < len(plan.cells):
        raise ConfigError(f"--cell-index {index} is out of range: the plan has "
                          f"{len(plan.cells)} cells (0 to {len(plan.cells) - 1}).")
    return plan.cells[index]


def _grid_given(ctx: typer.Context) -> bool:
    """Whether any grid flag (or --config) was given on the command line."""
    return any(was_given(ctx, name) for name in GRID_FLAGS)


def _show_existing_plan(directory: Path, json_output: bool) -> None:
    """--plan-only --out DIR alone: list a planned sweep without repeating its flags."""
    from transfusion_cli.compare import load_plan

    plan = load_plan(directory)
    _show_plan(directory, plan, [c.id for c in plan.cells], json_output)


def _plan_sweep(*, data: str | None, arch: str, inits: str, arch_inits: list[str] | None,
                seeds: str, train_size: str | None, weights: list[str] | None,
                target_metric: float | None, metric: str | None, out: Path | None,
                config: Path | None, fit_flags: dict[str, Any]):
    """The grid of the flags merged into DIR/plan.json: (folder, plan, requested cell ids)."""
    from transfusion_cli.compare import make_plan, merge_plan
    from transfusion_cli.compare.plan import (
        check_metric,
        parse_arch_inits,
        parse_list,
        parse_seeds,
        parse_train_sizes,
    )
    from transfusion_cli.data.source import DataSource
    from transfusion_cli.outputs import claim_folder, refuse_overwriting_inputs
    from transfusion_cli.runfolder import SWEEP_KIND

    fit_options = _fit_options(config, fit_flags)
    data_dir = fit_options.get("data_dir")
    data = data or fit_options.pop("data", None) or SETTINGS[0].default
    fit_options.pop("data", None)
    plan = make_plan(data=data, archs=parse_list(arch, "--arch"),
                     inits=parse_list(inits, "--inits"), seeds=parse_seeds(seeds),
                     train_sizes=parse_train_sizes(train_size), fit=fit_options,
                     weights=weights, target_metric=target_metric, metric=metric,
                     arch_inits=parse_arch_inits(arch_inits))
    requested = [c.id for c in plan.cells]
    directory = out or Path(OUTPUTS_DIR) / f"compare-inits-{data.replace('/', '-')}"
    refuse_overwriting_inputs({"--out": directory}, data_dirs=DataSource.named(
        data, data_dir, fit_options.get("options")).input_roots())
    claim_folder(directory, SWEEP_KIND)  # before the dataset is built (check_metric)
    check_metric(plan)
    return directory, merge_plan(directory, plan), requested


def _run_sweep(directory: Path, plan, requested: list[str], jobs: int, executor: str,
               slurm_flags: dict[str, Any], json_output: bool) -> None:
    """Train the requested cells (resuming, skipping finished ones), then report."""
    from transfusion_cli.compare.runner import run_sweep, select_cells
    from transfusion_cli.errors import TrainingError

    try:
        outcomes = run_sweep(directory, plan, select_cells(plan, requested), jobs=jobs,
                             executor=_executor(executor, jobs, directory, slurm_flags))
    except KeyboardInterrupt:
        info(f"Interrupted; finished cells are kept. Run the same command again to resume "
             f"(sweep folder {directory}).")
        raise
    _finish(directory, plan, json_output)
    failed = {cell_id: outcome for cell_id, outcome in outcomes.items()
              if outcome.startswith("failed")}
    if failed:
        first, reason = next(iter(failed.items()))
        raise TrainingError(f"{len(failed)} of {len(requested)} cells failed ({first}: "
                            f"{reason.removeprefix('failed: ')}); the report holds the others. "
                            "Fix the cause and run the same command again.")


def _executor(name: str, jobs: int, directory: Path, slurm_flags: dict[str, Any]):
    """None for the local runner, else the SLURM executor (compare.executors)."""
    from transfusion_cli.compare.executors import SlurmOptions, make_executor

    if name == "local":
        return None
    return make_executor(name, jobs=jobs, log_folder=SweepFolder(directory).slurm_logs,
                         slurm=SlurmOptions().overridden(**slurm_flags))


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


def _finish(directory: Path, plan, json_output: bool) -> None:
    from transfusion_cli.compare import write_report
    from transfusion_cli.compare.report import rich_table
    from transfusion_cli.console import out

    results = write_report(directory, plan)
    if json_output:
        print_json(results.to_dict())
    else:
        out.print(rich_table(results))  # full width when piped (console.DataConsole)
    info(f"Report: {SweepFolder(directory).report} (also results.json, results.csv"
         f"{', curves.png' if results.cells else ''}); {len(results.cells)} of "
         f"{len(plan.cells)} cells finished.")
