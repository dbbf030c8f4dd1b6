"""A study's measurements as an evidence file (``evidence_format``): per arm and seed the test
AUC of best.pt per headline label with its patient bootstrap interval, per convergence seed
its steps to the target (censored when not reached) and its curve, and the representation
part's similarities. Reads finished cells only; trains nothing.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from transfusion_cli.compare.plan import load_plan
from transfusion_cli.compare.report import collect, metric_series
from transfusion_cli.io import read_jsonl
from transfusion_cli.reproduce.evidence_format import FORMAT, STUDY, VERSION
from transfusion_cli.runfolder import SweepFolder

N_BOOT = 2000
CI_LEVEL = 0.95


def _groups(run: Any, label_count: int) -> list[str] | None:
    """Patient ids of the saved test predictions, when the run saved them for every case."""
    path = run.test_predictions
    if not path.is_file():
        return None
    with np.load(path, allow_pickle=False) as saved:
        if "groups" not in saved.files:
            return None
        groups = [str(g) for g in saved["groups"]]
    return groups if len(groups) == label_count else None


def seed_scores(run: Any) -> dict[str, dict[str, Any]]:
    """{label: {"value", "ci95", "replicates", "key", "n_images", "n_patients"}} of one run's
    best.pt on the test split (``replicates``: its AUC on each patient bootstrap resample,
    the same resamples for every run scored on this test set); labels with one class only
    are left out."""
    from transfusion_cli.evaluation.bootstrap import percentile_interval
    from transfusion_cli.evaluation.claim_stats import auc_replicates, resampling_key
    from transfusion_cli.evaluation.paired import run_scores

    scores = run_scores(run.root) or {}
    result = {}
    for label, (y, score) in scores.items():
        if len(np.unique(y)) < 2:
            continue
        groups = _groups(run, len(y))
        value, replicates = auc_replicates(y, score, groups, n_boot=N_BOOT, seed=0)
        low, high = percentile_interval(replicates.tolist(), CI_LEVEL)
        if not math.isfinite(value) or not np.isfinite(replicates).all():
            continue
        result[label] = {"value": value, "ci95": [low, high], "replicates": replicates,
                         "key": resampling_key(y, groups, N_BOOT, 0), "n_images": int(len(y)),
                         "n_patients": len(set(groups)) if groups else None}
    return result


def _patient_bootstrap(seeds: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The arm's seed-mean AUC on each replicate minus on the whole test set (its seeds must
    share one set of resamples)."""
    if len({s["key"] for s in seeds}) != 1:
        return None
    deviations = np.mean([s["replicates"] - s["value"] for s in seeds], axis=0)
    return {"key": seeds[0]["key"], "deviations": np.round(deviations, 6).tolist()}


def performance_part(name: str, directory: Path, cell_ids: list[str], dataset: str) -> dict:
    """One table part: every finished cell's per-label test AUC, grouped into arms."""
    plan = load_plan(directory)
    wanted = set(cell_ids)
    plan.cells = [c for c in plan.cells if c.id in wanted]
    results = collect(directory, plan)
    sweep = SweepFolder(directory)
    arms: dict[tuple, dict[str, Any]] = {}
    measured: dict[tuple, dict[str, list[dict[str, Any]]]] = {}
    for cell in sorted(results.cells, key=lambda c: c.seed):
        scores = seed_scores(sweep.run(cell.id))
        if not scores:
            continue
        key = (cell.arch, cell.init, cell.train_size)
        arm = arms.setdefault(key, {"arch": cell.arch, "init": cell.init,
                                    "train_size": cell.train_size, "params": cell.params,
                                    "labels": {}})
        for label, seed in scores.items():
            arm["labels"].setdefault(label, {"seeds": []})["seeds"].append(
                {"seed": cell.seed, "value": seed["value"], "ci95": seed["ci95"]})
            measured.setdefault(key, {}).setdefault(label, []).append(seed)
            arm["n_images"] = seed["n_images"]
            if seed["n_patients"]:
                arm["n_patients"] = seed["n_patients"]
    for key, labels in measured.items():
        for label, seeds_measured in labels.items():
            boot = _patient_bootstrap(seeds_measured)
            if boot:
                arms[key]["labels"][label]["patient_bootstrap"] = boot
    unit = ("patients" if any("n_patients" in a for a in arms.values()) else
            "images (the saved test predictions carry no patient ids)")
    return {"dataset": dataset, "metric": results.metric, "split": "test",
            "note": f"per seed: best.pt on the test split; ci95: stratified bootstrap over "
                    f"{unit}, {N_BOOT} resamples, the same resamples for every arm "
                    "(patient_bootstrap: the arm's seed-mean AUC on each minus on the whole "
                    "test set)",
            "arms": [{k: v for k, v in arm.items() if v is not None} for arm in arms.values()]}


def convergence_part(directory: Path, cell_ids: list[str], hybrids: dict[str, str],
                     target_fraction: float) -> dict:
    """Steps to the target per seed (censored at the last step when not reached) and the
    curve each was read from (the test split when the runs scored it along training)."""
    plan = load_plan(directory)
    wanted = set(cell_ids)
    plan.cells = [c for c in plan.cells if c.id in wanted]
    results = collect(directory, plan)
    sweep = SweepFolder(directory)
    metric = results.metric
    arms: dict[tuple, dict[str, Any]] = {}
    splits = set()
    for cell in sorted(results.cells, key=lambda c: c.seed):
        metrics = sweep.run(cell.id).metrics
        records = read_jsonl(metrics) if metrics.is_file() else []
        test = metric_series(records, f"test/{metric}")
        splits.add("test" if test else "validation")
        curve = [[float(s), float(v)] for s, v in (test or cell.curve) if math.isfinite(v)]
        arm = arms.setdefault((cell.arch, cell.init), {"arch": cell.arch, "init": cell.init,
                                                       "seeds": []})
        if cell.arch in hybrids:
            arm["base_arch"] = hybrids[cell.arch]
        arm["seeds"].append({"seed": cell.seed, "steps_to_target": cell.steps_to_target,
                             "last_step": cell.last_step, "curve": curve})
        if arm["seeds"][-1]["steps_to_target"] is None:
            del arm["seeds"][-1]["steps_to_target"]
    target = ({"absolute": plan.target_metric} if plan.target_metric is not None else
              {"relative": target_fraction, "of": "pretrained"})
    eval_every = plan.fit.get("eval_every")
    return {"metric": metric, "split": splits.pop() if len(splits) == 1 else "mixed",
            "target": target, **({"eval_every": eval_every} if eval_every else {}),
            "arms": list(arms.values())}


def evidence_document(title: str, roles: dict[str, list[str]], parts: dict[str, dict],
                      settings: dict[str, float], source_scores: dict[str, float],
                      source_label: str, notes: list[str],
                      stands_for: dict[str, str]) -> dict[str, Any]:
    """The whole evidence file."""
    return {"format": FORMAT, "version": VERSION, "title": title, "source": STUDY,
            "notes": notes, "roles": roles, "stands_for": stands_for,
            "source_label": source_label,
            "source_scores": {k: {"value": float(v)} for k, v in source_scores.items()
                              if v is not None and math.isfinite(v) and 0 <= v <= 1},
            "settings": settings, "parts": parts}


def study_document(study: Any, out: Path, parts: list[str], targets: dict[str, Any],
                   evidence: Any) -> dict[str, Any]:
    """The evidence file of a study's finished cells (``evidence`` gives the representation
    numbers and the source scores already gathered for the report)."""
    from transfusion_cli.reproduce.representations import evidence_part
    from transfusion_cli.runfolder import StudyFolder

    documented: dict[str, dict] = {}
    for name in parts:
        sweep = next((s for s in targets.values() if s.part_cells(name)), None)
        folder = StudyFolder(out).sweep(sweep.name) if sweep else None
        if folder is None or not folder.is_planned():
            continue
        spec = study.parts[name]
        if name == "convergence":
            hybrids = {h["arch"]: h.get("weights_from", h["arch"]) for h in spec.hybrids}
            documented[name] = convergence_part(folder.root, sweep.part_cells(name), hybrids,
                                                study.claims.target_fraction)
        elif name == "representations":
            if evidence.representations:
                documented[name] = evidence_part(evidence.representations)
        else:
            documented[name] = performance_part(name, folder.root, sweep.part_cells(name),
                                                study.datasets[spec.dataset].data)
    notes = [f"Written by `tfx reproduce --profile {study.name}` from the finished cells; "
             "each arm's seeds are listed one by one."]
    if study.stands_for:
        notes.append("Architectures standing in for the paper's: " + ", ".join(
            f"{k} for {v}" for k, v in study.stands_for.items()) + ".")
    return evidence_document(f"tfx reproduce: {study.name}", study.roles, documented,
                             study.claims.to_dict(), evidence.source_scores,
                             evidence.source_label, notes, study.stands_for)
