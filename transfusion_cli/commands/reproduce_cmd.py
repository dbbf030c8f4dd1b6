"""`tfx reproduce`: the paper's experiments as one resumable study, with a verdict per claim."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from transfusion_cli.app import app, examples
from transfusion_cli.commands.options import (
    Executor,
    data_dir_option,
    executor_option,
    json_option,
    out_option,
    with_slurm_flags,
)
from transfusion_cli.console import info, print_json
from transfusion_cli.runfolder import OUTPUTS_DIR, StudyFolder

if TYPE_CHECKING:
    from transfusion_cli.reproduce.verdicts import Verdict

SLURM = "SLURM (--executor slurm; flags win over the profile's slurm: section)"
EXAMPLES = examples(
    "tfx reproduce --profile smoke -o runs/smoke   # pipeline check: synthetic data, CPU",
    "tfx reproduce --profile medmnist --data-dir retina=DIR,pneumonia=DIR -o runs/medmnist",
    "tfx reproduce --profile paper --data-dir retina=/data/eyepacs,chexpert=/data/chexpert "
    "--jobs 8 -o runs/paper",
    "tfx reproduce --profile paper --executor slurm --partition gpu -o runs/paper",
    "tfx reproduce --show-profile paper > my-study.yaml   # copy, edit, --profile it",
    "tfx reproduce --judge runs/paper/evidence.json   # the verdicts of any evidence file")


@app.command("reproduce", epilog=EXAMPLES)
@with_slurm_flags(SLURM)
def reproduce_command(
    profile: str = typer.Option("smoke", "--profile", "-p", help="smoke (pipeline check: "
                                "synthetic, CPU, minutes), medmnist (RetinaMNIST + "
                                "PneumoniaMNIST, real images, a laptop), paper (EyePACS + "
                                "CheXpert at the paper's sizes) or "
                                "the path of your own YAML plan."),
    out: Path = out_option(None, "Study folder. Re-running the same command resumes.",
                           show_default="runs/reproduce-<profile>"),
    data_dir: str = data_dir_option("Dataset folders (or files, e.g. a MedMNIST .npz): "
                                    "retina=D1,chexpert=D2 (keys as in the profile)."),
    only: str = typer.Option(None, "--only", help="Parts to run, comma-separated: table1, "
                             "table2, table3, convergence, representations."),
    executor: Executor = executor_option("this machine"),
    jobs: int = typer.Option(1, "--jobs", "-j", help="Cells at once: local processes (one per "
                             "GPU when there are GPUs), or the SLURM array's limit."),
    weights: list[str] = typer.Option(None, "--weights", help="Real ImageNet weights ARCH=PATH "
                                      "(repeatable); replaces the profile's stand-in for ARCH."),
    report_only: bool = typer.Option(False, "--report-only", help="Train nothing; write the "
                                     "report from the cells finished so far."),
    show_profile: str = typer.Option(None, "--show-profile", help="Print a built-in profile's "
                                     "YAML (to copy and edit) and exit."),
    json_output: bool = json_option("Print the verdicts as JSON."),
    judge: str = typer.Option(None, "--judge", metavar="EVIDENCE", help="Train nothing: judge "
                              "an evidence file (a study's evidence.json or its folder, or 'paper' "
                              "for the paper's published numbers) and print the verdict per "
                              "claim."),
    slurm_flags: dict | None = None,
) -> None:
    """Reproduce the paper: every table, the convergence study and the representation
    analysis as compare-inits cells, then report.md / report.html with a verdict per claim."""
    from transfusion_cli.compare.executors import SlurmOptions, make_executor
    from transfusion_cli.compare.plan import parse_weights
    from transfusion_cli.errors import ConfigError
    from transfusion_cli.reproduce import load_study, run_study
    from transfusion_cli.reproduce.study import (
        ALIASES,
        PROFILES,
        parse_data_dirs,
        parse_only,
        profile_path,
    )
    from transfusion_cli.runfolder import check_name

    if judge is not None:
        _print_judgement(judge, json_output)
        return
    if show_profile is not None:
        if show_profile not in PROFILES and show_profile not in ALIASES:  # a name, never a path
            raise ConfigError(f"--show-profile {show_profile}: no built-in profile of that name; "
                              f"the built-in profiles are {', '.join(PROFILES)}.")
        sys.stdout.write(profile_path(show_profile).read_text())
        return
    study = load_study(profile)
    parts = parse_only(only, study)
    dirs = parse_data_dirs(data_dir, study)
    if weights:
        archs = [w.partition("=")[0] for w in weights]
        if any("=" not in w for w in weights):
            raise ConfigError("--weights takes ARCH=PATH (one architecture per flag).")
        study.weights.update({k: v for k, v in parse_weights(weights, archs).items() if v})
    out = out or Path(OUTPUTS_DIR) / f"reproduce-{check_name(study.name, 'study name')}"
    slurm = SlurmOptions.from_dict(study.slurm, f"{study.source}: slurm").overridden(
        **(slurm_flags or {}))
    runner = make_executor(executor, jobs=jobs, log_folder=StudyFolder(out).slurm_logs,
                             slurm=slurm)
    started = time.perf_counter()
    try:
        result = run_study(study, Path(out), parts, runner, dirs, train=not report_only)
    except KeyboardInterrupt:
        info(f"Interrupted; finished cells are kept. Run the same command again to resume "
             f"(study folder {out}).")
        raise
    if json_output:
        print_json({"out": str(out), "wall_time_s": time.perf_counter() - started,
                    "verdicts": [v.to_dict() for v in result.verdicts]})
    else:
        _print_lines(result.verdicts)
    info(f"Report: {StudyFolder(out).report} and report.html ({time.perf_counter() - started:.0f}"
         " s).")


def _print_judgement(spec: str, json_output: bool) -> None:
    """``--judge``: the verdicts of an evidence file: a table on a terminal, a line per claim
    when piped, or JSON."""
    from transfusion_cli.console import out
    from transfusion_cli.reproduce.claims import judge_file
    from transfusion_cli.reproduce.verdict_report import provenance_text, rich_table, verdicts_data

    evidence, settings, verdicts = judge_file(spec)
    if json_output:
        print_json({"evidence": spec, "title": evidence.title, "source": evidence.source,
                    **verdicts_data(verdicts, settings)})
        return
    title = f"Verdicts: {evidence.title or spec}"
    if out.is_terminal:
        out.print(rich_table(verdicts, title))
    else:  # a pipe or a file: a table as wide as its longest reason helps nobody
        out.print(title, soft_wrap=True)
        _print_lines(verdicts)
    out.print(provenance_text(evidence.source, settings))


def _print_lines(verdicts: list[Verdict]) -> None:
    """One line per claim on stdout (``Verdict.line``), file strings shown as text."""
    from transfusion_cli.console import out

    for verdict in verdicts:
        out.print(verdict.line(), soft_wrap=True)
