"""`tfx reproduce`: the paper's experiments as one resumable study, with a verdict per claim."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import typer

from transfusion_cli.app import app
from transfusion_cli.console import info, print_json

SLURM = "SLURM (--executor slurm)"
EXAMPLES = ("Examples:\n\n"
            "  tfx reproduce --profile smoke -o runs/smoke   # every part, synthetic data, CPU\n\n"
            "  tfx reproduce --profile paper --data-dir retina=/data/eyepacs,"
            "chexpert=/data/chexpert --jobs 8 -o runs/paper\n\n"
            "  tfx reproduce --profile paper --executor slurm --partition gpu -o runs/paper\n\n"
            "  tfx reproduce --show-profile paper > my-study.yaml   # copy, edit, --profile it")


@app.command("reproduce", epilog=EXAMPLES)
def reproduce_command(
    profile: str = typer.Option("smoke", "--profile", "-p", help="smoke (synthetic, CPU, "
                                "minutes), paper (EyePACS + CheXpert at the paper's sizes) or "
                                "the path of your own YAML plan."),
    out: Path = typer.Option(None, "--out", "-o", help="Study folder (default: "
                             "runs/reproduce-<profile>). Re-running the same command resumes."),
    data_dir: str = typer.Option(None, "--data-dir", help="Dataset folders: "
                                 "retina=D1,chexpert=D2 (keys as in the profile)."),
    only: str = typer.Option(None, "--only", help="Parts to run, comma-separated: table1, "
                             "table2, table3, convergence, representations."),
    executor: str = typer.Option("local", "--executor", help="local (this machine) or slurm "
                                 "(a job array through submitit: pip install 'tfx[slurm]')."),
    jobs: int = typer.Option(1, "--jobs", "-j", help="Cells at once: local processes (one per "
                             "GPU when there are GPUs), or the SLURM array's limit."),
    weights: list[str] = typer.Option(None, "--weights", help="Real ImageNet weights ARCH=PATH "
                                      "(repeatable); replaces the profile's stand-in for ARCH."),
    report_only: bool = typer.Option(False, "--report-only", help="Train nothing; write the "
                                     "report from the cells finished so far."),
    show_profile: str = typer.Option(None, "--show-profile", help="Print a built-in profile's "
                                     "YAML (to copy and edit) and exit."),
    json_output: bool = typer.Option(False, "--json", help="Print the verdicts as JSON."),
    partition: str = typer.Option(None, "--partition", rich_help_panel=SLURM,
                                  help="SLURM partition."),
    time_min: int = typer.Option(None, "--time-min", rich_help_panel=SLURM,
                                 help="Time limit per cell in minutes (a cell that runs out is "
                                 "requeued and resumes)."),
    gpus_per_cell: int = typer.Option(None, "--gpus-per-cell", rich_help_panel=SLURM,
                                      help="GPUs per cell job."),
    cpus_per_cell: int = typer.Option(None, "--cpus-per-cell", rich_help_panel=SLURM,
                                      help="CPUs per cell job."),
    constraint: str = typer.Option(None, "--constraint", rich_help_panel=SLURM,
                                   help="SLURM --constraint (e.g. a100)."),
    cluster: str = typer.Option(None, "--slurm-cluster", hidden=True,
                                help="submitit backend: slurm, local or debug (for tests)."),
) -> None:
    """Reproduce the paper: every table, the convergence study and the representation
    analysis as compare-inits cells, then report.md / report.html with a verdict per claim."""
    from transfusion_cli.compare.executors import SlurmOptions, make_executor
    from transfusion_cli.compare.plan import parse_weights
    from transfusion_cli.errors import ConfigError
    from transfusion_cli.reproduce import load_study, run_study
    from transfusion_cli.reproduce.study import parse_data_dirs, parse_only, profile_path

    if show_profile is not None:
        path = profile_path(show_profile)
        if not path.is_file():
            raise ConfigError(f"--show-profile {show_profile}: built-in profiles are smoke and "
                              "paper.")
        sys.stdout.write(path.read_text())
        return
    study = load_study(profile)
    parts = parse_only(only, study)
    dirs = parse_data_dirs(data_dir, study)
    if weights:
        archs = [w.partition("=")[0] for w in weights]
        if any("=" not in w for w in weights):
            raise ConfigError("--weights takes ARCH=PATH (one architecture per flag).")
        study.weights.update({k: v for k, v in parse_weights(weights, archs).items() if v})
    out = out or Path("runs") / f"reproduce-{study.name}"
    slurm = SlurmOptions.from_dict(study.slurm, f"{study.source}: slurm").overridden(
        partition=partition, time_min=time_min, gpus_per_cell=gpus_per_cell,
        cpus_per_cell=cpus_per_cell, constraint=constraint, cluster=cluster)
    runner = make_executor(executor, jobs=jobs, log_folder=Path(out) / "slurm", slurm=slurm)
    started = time.perf_counter()
    try:
        result = run_study(study, Path(out), parts, runner, dirs, train=not report_only)
    except KeyboardInterrupt:
        info(f"Interrupted; finished cells are kept. Run the same command again to resume "
             f"(study folder {out}).")
        raise
    if json_output:
        print_json({"out": str(out), "wall_time_s": time.perf_counter() - started,
                    "verdicts": [v.__dict__ for v in result.verdicts]})
    else:
        for verdict in result.verdicts:
            sys.stdout.write(verdict.line() + "\n")
    info(f"Report: {Path(out) / 'report.md'} and report.html ({time.perf_counter() - started:.0f}"
         " s).")

