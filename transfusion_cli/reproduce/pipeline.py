"""Run a study: stand-in sources, then every part's cells, then the report with verdicts.

Everything is a compare-inits cell under ``OUT/sweeps/``; a finished cell is never trained
again and an interrupted one resumes from its last.pt, so re-running the same command after a
kill carries on where it stopped.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transfusion_cli.compare.executors import CellTask, Executor
from transfusion_cli.compare.plan import load_plan
from transfusion_cli.compare.runner import cell_state
from transfusion_cli.console import info
from transfusion_cli.errors import ConfigError, TrainingError
from transfusion_cli.io import write_json, write_text
from transfusion_cli.reproduce.claims import Evidence, Verdict, all_verdicts
from transfusion_cli.reproduce.evidence import part_evidence
from transfusion_cli.reproduce.expand import (
    SweepSpec,
    source_sweeps,
    sweep_dir,
    target_sweeps,
    write_plan,
)
from transfusion_cli.reproduce.study import PRETRAINED, Study

STUDY_FILE = "study.json"
FIGURES_DIR = "figures"
TRAINING_PARTS = ("table1", "table2", "table3", "convergence")


@dataclass
class StudyResult:
    """What a run of the study produced."""

    out: Path
    verdicts: list[Verdict]
    outcomes: dict[str, str]
    evidence: Evidence


def check_out_folder(out: Path, study: Study) -> None:
    """A new folder, or one this study wrote before (tfx never writes into others)."""
    marker = out / STUDY_FILE
    if out.exists() and any(out.iterdir()) and not marker.is_file():
        raise ConfigError(f"{out} is not empty and was not written by `tfx reproduce`; choose a "
                          "new --out folder (tfx does not write into folders it did not create).")


def _run_stage(out: Path, sweeps: dict[str, SweepSpec], executor: Executor,
               stage: str) -> dict[str, str]:
    tasks: list[CellTask] = []
    skipped = 0
    for sweep in sweeps.values():
        plan = write_plan(out, sweep)
        directory = sweep_dir(out, sweep.name)
        for cell_id in sweep.cell_ids():
            cell = plan.cell(cell_id)
            if cell_state(directory, cell) == "done":
                skipped += 1
            else:
                tasks.append(CellTask(directory, cell))
    total = skipped + len(tasks)
    info(f"reproduce: {stage}: {total} cells, {skipped} already finished, {len(tasks)} to run"
         + (f" ({executor.name})" if tasks else ""))
    outcomes = executor.run(tasks) if tasks else {}
    failed = {k: v for k, v in outcomes.items() if v.startswith("failed") or v == "busy"}
    if failed:
        first, reason = next(iter(failed.items()))
        raise TrainingError(f"{len(failed)} of {len(tasks)} {stage} cells did not finish "
                            f"({first}: {reason}); fix the cause and run the same command "
                            "again (finished cells are kept).")
    return outcomes


def run_study(study: Study, out: Path, parts: list[str], executor: Executor,
              data_dirs: dict[str, str] | None = None, train: bool = True) -> StudyResult:
    """Train what ``parts`` need (unless ``train`` is False), then write the report."""
    started = time.perf_counter()
    out = Path(out)
    check_out_folder(out, study)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / STUDY_FILE, {"profile": study.name, "source": study.source,
                                  "parts": parts, "weights": study.weights})
    data_dirs = data_dirs or {}
    outcomes: dict[str, str] = {}
    sources = source_sweeps(study, parts)
    if train and sources:
        outcomes.update(_run_stage(out, sources, executor, "stand-in sources"))
    targets = target_sweeps(study, parts, out, data_dirs)
    if train:
        outcomes.update(_run_stage(out, targets, executor, "parts"))
    evidence = gather_evidence(study, out, parts, sources, targets)
    verdicts = all_verdicts(evidence)
    write_reports(study, out, evidence, verdicts, parts, sources,
                  time.perf_counter() - started)
    return StudyResult(out, verdicts, outcomes, evidence)


def _pairs(study: Study, part_name: str) -> list[tuple[str, str, str, str]]:
    part = study.parts[part_name]
    pairs = []
    if "random" in part.inits and PRETRAINED in part.inits:
        pairs += [(a, "random", a, PRETRAINED) for a in part.archs]
    if part_name == "table1":
        for init in [i for i in ("random", PRETRAINED) if i in part.inits]:
            pairs += [(big, init, small, init) for big in study.roles["standard"]
                      for small in study.roles["small"]
                      if big in part.archs and small in part.archs]
    return pairs


def _source_scores(study: Study, out: Path, sources: dict[str, SweepSpec]) -> tuple[dict, str]:
    if study.source_scores:
        return dict(study.source_scores), "ImageNet"
    from transfusion_cli.compare.report import collect

    scores: dict[str, float] = {}
    label = ""
    for sweep in sources.values():
        directory = sweep_dir(out, sweep.name)
        if not (directory / "plan.json").is_file():
            continue
        results = collect(directory, load_plan(directory))
        for group in results.groups:
            if group.test_mean is not None and group.arch not in scores:
                scores[group.arch] = float(group.test_mean)
                label = f"stand-in source task ({sweep.data} {results.metric})"
        break  # the first source: the one table1's dataset uses
    return scores, label or "source task"


def gather_evidence(study: Study, out: Path, parts: list[str], sources: dict[str, SweepSpec],
                    targets: dict[str, SweepSpec]) -> Evidence:
    """Read every part's finished cells."""
    evidence = Evidence(roles=study.roles, margin=study.margin)
    for name in parts:
        sweep = next((s for s in targets.values() if s.part_cells(name)), None)
        if sweep is None:
            continue
        directory = sweep_dir(out, sweep.name)
        if not (directory / "plan.json").is_file():
            continue
        if name in TRAINING_PARTS:
            evidence.parts[name] = part_evidence(name, directory, sweep.part_cells(name),
                                                 _pairs(study, name))
        else:
            evidence.representations = _representations(study, directory, sweep)
    evidence.source_scores, evidence.source_label = _source_scores(study, out, sources)
    return evidence


def _representations(study: Study, directory: Path, sweep: SweepSpec) -> dict[str, Any]:
    from transfusion_cli.reproduce.representations import representation_evidence

    part = study.parts["representations"]
    plan = load_plan(directory)
    wanted = set(sweep.part_cells("representations"))
    cells = [c for c in plan.cells if c.id in wanted]
    return representation_evidence(directory, cells, part.archs, metric=part.metric or "svcca",
                                   samples=part.samples)


def pretrained_note(study: Study, parts: list[str], sources: dict[str, SweepSpec]) -> str:
    """How the pretrained arm was made, for the report."""
    notes = [f"{arch}: ImageNet weights from {path}" for arch, path in study.weights.items()]
    for sweep in sources.values():
        archs = ", ".join(dict.fromkeys(r.arch for r in sweep.requests))
        fit = ", ".join(f"{k}={v}" for k, v in sorted(sweep.fit.items()) if k != "options")
        notes.append(f"STAND-IN, not ImageNet (offline, no ImageNet weights): {archs} first "
                     f"trained from random init on {sweep.data} ({fit}); that best.pt is the "
                     "`checkpoint:PATH` init of every \"pretrained\" cell and the weights of "
                     "mean-var / transfusion")
    if not notes:
        notes.append("the architectures' public ImageNet weights (timm)")
    return "; ".join(notes) + "."


def write_reports(study: Study, out: Path, evidence: Evidence, verdicts: list[Verdict],
                  parts: list[str], sources: dict[str, SweepSpec], wall_s: float) -> None:
    """report.md, report.html, verdicts.json and the figures."""
    from transfusion_cli.reproduce.report import markdown_report, markdown_to_html
    from transfusion_cli.reproduce.representations import save_figures

    figures = save_figures(evidence.representations, out / FIGURES_DIR) \
        if evidence.representations else {}
    text = markdown_report(study, evidence, verdicts, figures,
                           pretrained_note(study, parts, sources), wall_s)
    write_text(out / "report.md", text)
    write_text(out / "report.html", markdown_to_html(text, out, f"tfx reproduce: {study.name}"))
    write_json(out / "verdicts.json", {
        "verdicts": [v.__dict__ for v in verdicts],
        "parts": {k: v.to_dict() for k, v in evidence.parts.items()},
        "representations": {k: v for k, v in (evidence.representations or {}).items()
                            if k != "filters"},
        "source_scores": evidence.source_scores})
