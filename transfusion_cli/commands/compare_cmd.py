"""`tfx compare-inits`: architectures x inits x seeds x train sizes, one table and one plot."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Any

import typer

from transfusion_cli.app import app
from transfusion_cli.commands.fit_cmd import Device, Optimizer, Scheduler
from transfusion_cli.console import info, print_json

FIT = "fit options (passed to every cell)"
GRID = "the grid"


def _value(option: Any) -> Any:
    return option.value if isinstance(option, StrEnum) else option


@app.command("compare-inits")
def compare_inits_command(
    data: str = typer.Option(None, "--data", "-d", rich_help_panel=GRID,
                             help="Dataset (`tfx list datasets`). Default: synthetic-retina."),
    arch: str = typer.Option("cbr-tiny", "--arch", "-a", rich_help_panel=GRID,
                             help="Architectures, comma-separated (cbr-tiny,resnet50)."),
    inits: str = typer.Option("random,gabor", "--inits", rich_help_panel=GRID,
                              help="Inits, comma-separated: random, imagenet, mean-var, "
                              "transfusion:K, checkpoint:PATH, gabor (`tfx list inits`)."),
    seeds: str = typer.Option("3", "--seeds", rich_help_panel=GRID,
                              help="A count N (seeds 0..N-1) or a list of seeds (0,4,7)."),
    train_size: str = typer.Option(None, "--train-size", rich_help_panel=GRID,
                                   help="Training-set sizes, comma-separated (5000,50000,all). "
                                   "Default: all."),
    weights: list[str] = typer.Option(None, "--weights", rich_help_panel=GRID,
                                      help="Pretrained weights for imagenet / mean-var / "
                                      "transfusion: PATH, or ARCH=PATH per architecture "
                                      "(repeatable)."),
    target_metric: float = typer.Option(None, "--target-metric",
                                        help="Report the steps each run needs to reach this "
                                        "value of the headline metric (e.g. 0.91)."),
    metric: str = typer.Option(None, "--metric", help="Headline metric key (default: the "
                               "dataset's selection metric, e.g. referable_auc)."),
    jobs: int = typer.Option(1, "--jobs", "-j", help="Cells run at once: one per GPU when "
                             "there are GPUs, else CPU processes sharing the cores."),
    out: Path = typer.Option(None, "--out", help="Sweep folder (default: "
                             "runs/compare-inits-<data>). Re-running skips finished cells and "
                             "resumes interrupted ones."),
    plan_only: bool = typer.Option(False, "--plan-only", help="Write DIR/plan.json and list "
                                   "the cells; train nothing (for cluster array jobs)."),
    cell: str = typer.Option(None, "--cell", help="Run only this cell of DIR/plan.json "
                             "(an array-job task)."),
    report: Path = typer.Option(None, "--report", help="Only aggregate what has finished in "
                                "this sweep folder."),
    json_output: bool = typer.Option(False, "--json", help="Print JSON (results, or the "
                                     "plan with --plan-only) on stdout."),
    config: Path = typer.Option(None, "--config", "-c", rich_help_panel=FIT,
                                help="YAML fit config; flags win over its values."),
    data_dir: Path = typer.Option(None, "--data-dir", rich_help_panel=FIT,
                                  help="Folder of the dataset's files."),
    option: list[str] = typer.Option(None, "--option", "-o", rich_help_panel=FIT,
                                     help="Dataset option KEY=VALUE (repeatable)."),
    data_seed: int = typer.Option(None, "--data-seed", rich_help_panel=FIT,
                                  help="Seed of the data (synthetic content, split, subset)."),
    skip_bad_images: bool = typer.Option(False, "--skip-bad-images", rich_help_panel=FIT,
                                         help="Leave out unreadable images."),
    epochs: int = typer.Option(None, "--epochs", rich_help_panel=FIT, help="Epochs per run."),
    steps: int = typer.Option(None, "--steps", rich_help_panel=FIT,
                              help="Optimizer steps per run (instead of --epochs)."),
    batch_size: int = typer.Option(None, "--batch-size", "-b", rich_help_panel=FIT,
                                   help="Images per step."),
    lr: float = typer.Option(None, "--lr", rich_help_panel=FIT, help="Peak learning rate."),
    optimizer: Optimizer = typer.Option(None, "--optimizer", rich_help_panel=FIT,
                                        help="adam or sgd."),
    momentum: float = typer.Option(None, "--momentum", rich_help_panel=FIT,
                                   help="SGD momentum."),
    scheduler: Scheduler = typer.Option(None, "--scheduler", rich_help_panel=FIT,
                                        help="cosine or constant."),
    weight_decay: float = typer.Option(None, "--weight-decay", rich_help_panel=FIT,
                                       help="L2 weight decay."),
    image_size: int = typer.Option(None, "--image-size", rich_help_panel=FIT,
                                   help="Image side in pixels."),
    in_chans: int = typer.Option(None, "--in-chans", rich_help_panel=FIT,
                                 help="Model input channels."),
    device: Device = typer.Option(None, "--device", rich_help_panel=FIT,
                                  help="auto, cpu or cuda."),
    amp: bool = typer.Option(None, "--amp/--no-amp", rich_help_panel=FIT,
                             help="Mixed precision (default: on for CUDA)."),
    workers: int = typer.Option(None, "--workers", rich_help_panel=FIT,
                                help="Data-loading processes per run."),
    eval_every: int = typer.Option(None, "--eval-every", rich_help_panel=FIT,
                                   help="Evaluate every N steps (the curves' resolution)."),
    deterministic: bool = typer.Option(False, "--deterministic", rich_help_panel=FIT,
                                       help="Deterministic algorithms."),
) -> None:
    """Compare initialisations: a resumable grid of fit runs, one table and one plot.

    Every architecture x init x train size x seed is a normal `fit` run in DIR/runs/<cell>/;
    writes DIR/report.md, results.json, results.csv and curves.png, and prints the table.
    """
    from transfusion_cli.compare import load_plan, make_plan, merge_plan
    from transfusion_cli.compare.plan import parse_list, parse_seeds, parse_train_sizes
    from transfusion_cli.errors import ConfigError

    if report is not None:
        plan = load_plan(report)
        if target_metric is not None:
            plan.target_metric = target_metric
        if metric:
            plan.metric = metric
        _finish(report, plan, json_output)
        return
    if cell is not None:
        if out is None:
            raise ConfigError("--cell needs --out DIR: the sweep folder holding plan.json.")
        plan = load_plan(out)
        _run_one(out, plan, plan.cell(cell), json_output)
        return
    if jobs < 1:
        raise ConfigError(f"--jobs must be at least 1, got {jobs}.")
    fit_options = _fit_options(config, {
        "data_dir": str(data_dir) if data_dir else None,
        "options": _dataset_options(option),
        "data_seed": data_seed, "skip_bad_images": skip_bad_images or None,
        "epochs": epochs, "steps": steps, "batch_size": batch_size, "lr": lr,
        "optimizer": _value(optimizer), "momentum": momentum, "scheduler": _value(scheduler),
        "weight_decay": weight_decay, "image_size": image_size, "in_chans": in_chans,
        "device": _value(device), "amp": amp, "workers": workers, "eval_every": eval_every,
        "deterministic": deterministic or None,
    })
    data = data or fit_options.pop("data", None) or "synthetic-retina"
    fit_options.pop("data", None)
    plan = make_plan(data=data, archs=parse_list(arch, "--arch"),
                     inits=parse_list(inits, "--inits"), seeds=parse_seeds(seeds),
                     train_sizes=parse_train_sizes(train_size), fit=fit_options,
                     weights=weights, target_metric=target_metric, metric=metric)
    requested = [c.id for c in plan.cells]
    directory = out or Path("runs") / f"compare-inits-{data.replace('/', '-')}"
    plan = merge_plan(directory, plan)
    if plan_only:
        _show_plan(directory, plan, requested, json_output)
        return
    from transfusion_cli.compare.runner import run_sweep, select_cells

    try:
        outcomes = run_sweep(directory, plan, select_cells(plan, requested), jobs=jobs)
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


def _dataset_options(pairs: list[str] | None) -> dict[str, str] | None:
    from transfusion_cli.data.build import parse_option_pairs

    return parse_option_pairs(pairs) if pairs else None


def _fit_options(config: Path | None, flags: dict[str, Any]) -> dict[str, Any]:
    """The shared fit settings: the --config file's, then the flags given."""
    from transfusion_cli.compare.plan import CELL_FIELDS
    from transfusion_cli.console import warn
    from transfusion_cli.train import load_config_file, resolve_config

    settings: dict[str, Any] = {}
    if config is not None:
        settings = load_config_file(config)
        dropped = sorted(k for k in settings if k in CELL_FIELDS and k != "data")
        if dropped:
            warn(f"{config}: ignoring {', '.join(dropped)} (compare-inits sets them per cell).")
        settings = {k: v for k, v in settings.items() if k not in dropped}
    given = {k: v for k, v in flags.items() if v is not None}
    if given.get("steps") is not None:
        settings.pop("epochs", None)
    if given.get("epochs") is not None:
        settings.pop("steps", None)
    settings.update(given)
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
         f"one cell with: tfx compare-inits --out {directory} --cell CELL_ID; aggregate with: "
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
        console = out
        if not out.is_terminal:  # piped or redirected: wide enough never to wrap
            from rich.console import Console

            console = Console(width=200, highlight=False)
        console.print(rich_table(results))
    info(f"Report: {Path(directory) / 'report.md'} (also results.json, results.csv"
         f"{', curves.png' if results.cells else ''}); {len(results.cells)} of "
         f"{len(plan.cells)} cells finished.")
