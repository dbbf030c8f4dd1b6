"""Run a study: stand-in sources, then every part's cells, then the report with verdicts.

Everything is a compare-inits cell under ``OUT/sweeps/``; a finished cell is never trained
again and an interrupted one resumes from its last.pt, so re-running the same command after a
kill carries on where it stopped.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transfusion_cli.compare.executors import Executor
from transfusion_cli.compare.plan import CellTask, load_plan
from transfusion_cli.compare.runner import cell_state
from transfusion_cli.console import info
from transfusion_cli.errors import TrainingError
from transfusion_cli.io import write_json, write_text
from transfusion_cli.outputs import claim_folder
from transfusion_cli.reproduce.claims import judge
from transfusion_cli.reproduce.evidence import Evidence, part_evidence
from transfusion_cli.reproduce.evidence_format import parse_evidence
from transfusion_cli.reproduce.expand import (
    SweepSpec,
    build_plan,
    check_sweeps,
    pretrained_archs,
    public_weights,
    source_sweeps,
    target_sweeps,
    write_plan,
)
from transfusion_cli.reproduce.study import PRETRAINED, Study
from transfusion_cli.reproduce.verdicts import PIPELINE_CHECK, Verdict
from transfusion_cli.runfolder import STUDY_FORMAT, STUDY_KIND, StudyFolder

TRAINING_PARTS = ("table1", "table2", "table3", "convergence")


@dataclass
class StudyResult:
    """What a run of the study produced."""

    out: Path
    verdicts: list[Verdict]
    outcomes: dict[str, str]
    evidence: Evidence


def _run_stage(out: Path, sweeps: dict[str, SweepSpec], executor: Executor,
               stage: str) -> dict[str, str]:
    tasks: list[CellTask] = []
    skipped = 0
    for sweep in sweeps.values():
        plan = write_plan(out, sweep)
        directory = StudyFolder(out).sweep(sweep.name).root
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
    claim_folder(out, STUDY_KIND)  # new, empty, or a study tfx made (its study.json says so)
    data_dirs = data_dirs or {}
    # Everything that can be checked before training is, before the first file is written.
    sources = source_sweeps(study, parts, data_dirs)
    targets = target_sweeps(study, parts, out, data_dirs)
    check_sweeps(study, [*sources.values(), *targets.values()])
    for sweep in sources.values():
        build_plan(sweep)
    out.mkdir(parents=True, exist_ok=True)
    write_json(StudyFolder(out).study, {"format": STUDY_FORMAT, "profile": study.name,
                                        "source": study.source, "parts": parts,
                                        "weights": study.weights})
    outcomes: dict[str, str] = {}
    if train and sources:
        outcomes.update(_run_stage(out, sources, executor, "stand-in sources"))
    if train:
        outcomes.update(_run_stage(out, targets, executor, "parts"))
    evidence = gather_evidence(study, out, parts, sources, targets)
    verdicts = judge_study(study, out, parts, targets, evidence)
    write_reports(study, out, evidence, verdicts, parts, sources,
                  time.perf_counter() - started)
    return StudyResult(out, verdicts, outcomes, evidence)


def judge_study(study: Study, out: Path, parts: list[str], targets: dict[str, SweepSpec],
                evidence: Evidence) -> list[Verdict]:
    """Write the study's evidence file (``evidence.json``) and judge it."""
    from transfusion_cli.reproduce.study_evidence import study_document

    path = StudyFolder(out).evidence
    document = study_document(study, out, parts, targets, evidence)
    if study.pipeline_check:  # every verdict of it, here and under --judge, says so
        document["purpose"] = PIPELINE_CHECK
    write_json(path, document)
    return judge(parse_evidence(json.loads(json.dumps(document, default=str)), str(path)),
                 study.claims)


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
        folder = StudyFolder(out).sweep(sweep.name)
        if not folder.is_planned():
            continue
        directory = folder.root
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
    evidence = Evidence(roles=study.roles)
    for name in parts:
        sweep = next((s for s in targets.values() if s.part_cells(name)), None)
        if sweep is None:
            continue
        folder = StudyFolder(out).sweep(sweep.name)
        if not folder.is_planned():
            continue
        directory = folder.root
        if name in TRAINING_PARTS:
            evidence.parts[name] = part_evidence(name, directory, sweep.part_cells(name),
                                                 _pairs(study, name))
        else:
            evidence.representations = _representations(study, directory, sweep)
    evidence.source_scores, evidence.source_label = _source_scores(study, out, sources)
    return evidence


def _representations(study: Study, directory: Path,
                     sweep: SweepSpec) -> dict[str, Any] | None:
    from transfusion_cli.reproduce.representations import DEFAULT_MEASURE, representation_evidence

    part = study.parts["representations"]
    return representation_evidence(directory, sweep.part_cells("representations"), part.archs,
                                   measure=part.metric or DEFAULT_MEASURE, samples=part.samples,
                                   split=part.split or "val")


def pretrained_note(study: Study, parts: list[str], sources: dict[str, SweepSpec]) -> str:
    """How the pretrained arm was made, for the report."""
    from transfusion_cli.plugins import get

    notes = [f"{arch}: ImageNet weights from {path}" for arch, path in study.weights.items()]
    archs = dict.fromkeys(a for p in parts for a in pretrained_archs(study, study.parts[p])
                          if a not in study.weights)
    if study.stand_in is not None:
        for arch in archs:
            found, how = public_weights(arch)
            if found or get("architectures", arch).pretrained:
                notes.append(f"{arch}: {how}")
    for sweep in sources.values():
        stand_ins = ", ".join(dict.fromkeys(r.arch for r in sweep.requests))
        fit = ", ".join(f"{k}={v}" for k, v in sorted(sweep.fit.items())
                        if k not in ("options", "data_dir"))
        options = ", ".join(f"{k}={v}" for k, v in sorted((sweep.fit.get("options") or {})
                                                           .items()))
        data = f"{sweep.data} ({options})" if options else sweep.data
        notes.append(f"STAND-IN, not ImageNet (no ImageNet weights here): {stand_ins} first "
                     f"trained from random init on {data} ({fit}); that best.pt is the "
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

    study_folder = StudyFolder(out)
    figures = save_figures(evidence.representations, study_folder.figures) \
        if evidence.representations else {}
    text = markdown_report(study, evidence, verdicts, figures,
                           pretrained_note(study, parts, sources), wall_s)
    write_text(study_folder.report, text)
    write_text(study_folder.report_html,
               markdown_to_html(text, out, f"tfx reproduce: {study.name}",
                                figures=figures.values()))
    write_json(study_folder.verdicts, {
        "verdicts": [v.to_dict() for v in verdicts],
        "claim_settings": study.claims.to_dict(),
        "parts": {k: v.to_dict() for k, v in evidence.parts.items()},
        "representations": {k: v for k, v in (evidence.representations or {}).items()
                            if k != "filters"},
        "source_scores": evidence.source_scores})
