"""The sweep plan: architectures x inits x train sizes x seeds, each cell one `fit` run.

``DIR/plan.json`` holds the settings every cell shares (dataset, fit options, weights) and the
cells. Re-planning into the same folder keeps the cells already there and adds new ones; the
shared settings must not change (the finished cells would no longer be comparable).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from transfusion_cli import __version__
from transfusion_cli.errors import CheckpointError, ConfigError
from transfusion_cli.io import stored_path, write_json
from transfusion_cli.runfolder import PLAN_FILE, SWEEP_FORMAT, SWEEP_KIND, SweepFolder, check_name

PLAN_VERSION = 1
# FitConfig fields a cell sets itself; as pass-through fit options they are errors.
CELL_FIELDS = {"arch": "--arch", "init": "--inits", "seed": "--seeds",
               "train_size": "--train-size", "weights": "--weights", "out": "--out",
               "resume": "(re-run the same command)", "overwrite": "(a new --out)",
               "data": "--data", "selection_metric": "--metric"}


@dataclass(frozen=True)
class Cell:
    """One training run of the sweep."""

    id: str
    arch: str
    init: str  # as passed to fit: paths made absolute
    label: str  # the init as the user wrote it, for tables and legends
    seed: int
    train_size: int | None
    weights: str | None


@dataclass(frozen=True)
class CellTask:
    """One cell of the sweep in ``directory``: what an executor runs."""

    directory: Path
    cell: Cell

    @property
    def key(self) -> str:
        """``<sweep folder name>/<cell id>``, unique across the sweeps of one study."""
        return f"{Path(self.directory).name}/{self.cell.id}"


@dataclass
class Plan:
    """Settings shared by all cells, and the cells."""

    data: str
    fit: dict[str, Any]
    target_metric: float | None = None
    # Headline metric, also each cell's selection metric (fit["selection_metric"]); None: the
    # dataset's selection metric.
    metric: str | None = None
    cells: list[Cell] = field(default_factory=list)
    version: int = PLAN_VERSION
    tfx_version: str = __version__

    def shared(self) -> dict[str, Any]:
        """The settings that make cells comparable (must match across re-runs)."""
        return {"data": self.data, "fit": self.fit}

    def cell(self, cell_id: str) -> Cell:
        """The cell called ``cell_id``."""
        for cell in self.cells:
            if cell.id == cell_id:
                return cell
        known = ", ".join(c.id for c in self.cells[:5]) + (", ..." if len(self.cells) > 5 else "")
        raise ConfigError(f"No cell '{cell_id}' in the plan; its cells are {known} "
                          "(see plan.json, or --plan-only --json).")

    def to_dict(self) -> dict[str, Any]:
        """Plain data for plan.json."""
        return {"format": SWEEP_FORMAT, "version": self.version,
                "tfx_version": self.tfx_version, "data": self.data,
                "fit": self.fit, "target_metric": self.target_metric, "metric": self.metric,
                "cells": [asdict(c) for c in self.cells]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Plan:
        """Inverse of ``to_dict``."""
        return cls(data=data["data"], fit=dict(data.get("fit") or {}),
                   target_metric=data.get("target_metric"), metric=data.get("metric"),
                   cells=[Cell(**c) for c in data.get("cells", [])],
                   version=data.get("version", PLAN_VERSION),
                   tfx_version=data.get("tfx_version", "?"))


def parse_list(text: str | None, what: str) -> list[str]:
    """``"a,b, c"`` -> ``["a", "b", "c"]``; empty items are errors."""
    items = [item.strip() for item in (text or "").split(",")]
    if not text or not all(items):
        raise ConfigError(f"{what} needs a comma-separated list, got {text!r}.")
    return items


def parse_arch_inits(items: list[str] | None) -> dict[str, list[str]]:
    """``["resnet50-slim=transfusion:block2,random"]`` -> ``{"resnet50-slim": [...]}``
    (``--arch-inits ARCH=INIT,INIT``, repeatable)."""
    chosen: dict[str, list[str]] = {}
    for item in items or []:
        arch, sep, inits = item.partition("=")
        if not sep or not arch.strip():
            raise ConfigError(f"--arch-inits {item!r}: write ARCH=INIT[,INIT...], e.g. "
                              "resnet50-slim=transfusion:block2.")
        if arch.strip() in chosen:
            raise ConfigError(f"--arch-inits: '{arch.strip()}' is given twice; put all its "
                              "inits in one --arch-inits ARCH=INIT,INIT.")
        chosen[arch.strip()] = parse_list(inits, f"--arch-inits {arch.strip()}")
    return chosen


def parse_seeds(text: str | int) -> list[int]:
    """``3`` -> seeds 0, 1, 2; ``"0,4,7"`` -> exactly those seeds."""
    text = str(text).strip()
    try:
        if "," not in text:
            count = int(text)
            if count < 1:
                raise ConfigError(f"--seeds {text}: give at least 1 seed.")
            return list(range(count))
        seeds = [int(s) for s in parse_list(text, "--seeds")]
    except ValueError:
        raise ConfigError(f"--seeds {text!r}: give a count (3) or a list of seeds "
                          "(0,1,2).") from None
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"--seeds {text}: a seed is listed twice.")
    return seeds


def parse_train_sizes(text: str | None) -> list[int | None]:
    """``"5000,50000,all"`` -> ``[5000, 50000, None]`` (None: the whole training split)."""
    if text is None:
        return [None]
    sizes: list[int | None] = []
    for item in parse_list(text, "--train-size"):
        if item.lower() in ("all", "full"):
            sizes.append(None)
            continue
        try:
            value = int(item)
        except ValueError:
            raise ConfigError(f"--train-size {item!r} is not a number of images or 'all'.") \
                from None
        if value < 1:
            raise ConfigError(f"--train-size {value} must be at least 1.")
        sizes.append(value)
    return list(dict.fromkeys(sizes))


def parse_weights(items: list[str] | None, archs: list[str]) -> dict[str, str | None]:
    """``--weights PATH`` (every architecture) or ``--weights ARCH=PATH`` (repeatable)."""
    chosen: dict[str, str | None] = dict.fromkeys(archs)
    for item in items or []:
        arch, sep, path = item.partition("=")
        if sep and arch in archs:
            targets, path = [arch], path
        elif sep and not Path(item).exists():
            raise ConfigError(f"--weights {item}: '{arch}' is not one of the compared "
                              f"architectures ({', '.join(archs)}).")
        else:
            targets, path = archs, item
        resolved = Path(path).expanduser()
        if not resolved.is_file():
            raise CheckpointError(f"Weights file {resolved} (from --weights) does not exist; "
                                  "pass a tfx checkpoint or a timm weight file.")
        for target in targets:
            chosen[target] = str(resolved.resolve())
    return chosen


def slug(text: str) -> str:
    """A file-name-safe form of an arch or init name."""
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-")


def init_slug(init: str) -> str:
    """``checkpoint:/x/PRETRAINED.pt`` -> ``checkpoint-PRETRAINED``; ``transfusion:2`` ->
    ``transfusion-2``. A path argument contributes its file stem."""
    name, sep, argument = init.partition(":")
    if "/" in argument or os.sep in argument:
        argument = Path(argument).stem
    return slug(f"{name}-{argument}" if sep else name)


def cell_id(arch: str, init: str, train_size: int | None, seed: int) -> str:
    """``cbr-tiny__mean-var__nall__s0``."""
    size = "all" if train_size is None else str(train_size)
    return f"{slug(arch)}__{init_slug(init)}__n{size}__s{seed}"


def resolve_init(text: str, arch: str, weights: str | None) -> str:
    """Check an init against the registry and the architecture (the spec's own checks, then
    pretrained weights where it needs them); returns it normalised (paths made absolute)."""
    from transfusion_cli.plugins import get

    spec = get("inits", text)
    _, sep, argument = text.partition(":")
    arch_spec = get("architectures", arch)
    resolved = spec.check(argument if sep else None, arch_spec)
    if spec.needs_weights and weights is None:
        if not arch_spec.pretrained:
            raise ConfigError(f"Init '{text}' on '{arch}' needs pretrained weights: '{arch}' has "
                              "no public ImageNet weights, so pass --weights PATH (a tfx "
                              f"checkpoint of {arch}).")
        from transfusion_cli.models.pretrained import check_public_weights_offline

        check_public_weights_offline(arch_spec)
    return resolved


def make_plan(*, data: str, archs: list[str], inits: list[str], seeds: list[int],
              train_sizes: list[int | None], fit: dict[str, Any],
              weights: list[str] | None = None, target_metric: float | None = None,
              metric: str | None = None,
              arch_inits: dict[str, list[str]] | None = None) -> Plan:
    """The grid, checked: unknown names, missing weights and bad arguments fail here, before
    any training starts. Every arch of ``archs`` gets every init of ``inits``; each arch of
    ``arch_inits`` (``--arch-inits ARCH=INIT,...``) gets its own list, e.g. the paper's
    hybrid figure: resnet50 x random, imagenet, gabor plus resnet50-slim x transfusion:block2."""
    from transfusion_cli.plugins import get

    if len(set(archs)) != len(archs) or len(set(inits)) != len(inits):
        raise ConfigError("An architecture or init is listed twice; list each once.")
    pairs = [(arch, init) for arch in archs for init in inits]
    pairs += [(arch, init) for arch, own in (arch_inits or {}).items() for init in own]
    if len(set(pairs)) != len(pairs):
        arch, init = next(p for p in pairs if pairs.count(p) > 1)
        raise ConfigError(f"'{arch}' with init '{init}' is listed twice (by --arch x --inits "
                          "or --arch-inits); list each pair once.")
    archs = list(dict.fromkeys([*archs, *(arch_inits or {})]))
    for arch in archs:
        get("architectures", arch)
    get("datasets", data)
    for key in fit:
        if key in CELL_FIELDS:
            raise ConfigError(f"'{key}' is set per cell by compare-inits; use {CELL_FIELDS[key]} "
                              "instead of passing it as a fit option.")
    if len(set(archs)) != len(archs) or len(set(inits)) != len(inits):
        raise ConfigError("An architecture or init is listed twice; list each once.")
    chosen = parse_weights(weights, archs)
    cells: list[Cell] = []
    for arch, init in pairs:
        resolved = resolve_init(init, arch, chosen[arch])
        for train_size in train_sizes:
            for seed in seeds:
                cells.append(Cell(id=cell_id(arch, resolved, train_size, seed), arch=arch,
                                  init=resolved, label=init, seed=seed,
                                  train_size=train_size, weights=chosen[arch]))
    ids = [c.id for c in cells]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise ConfigError(f"Two cells would share the folder {duplicates[0]}; give checkpoint "
                          "files different names.")
    fit = dict(fit)
    if fit.get("data_dir"):  # cells (perhaps SLURM jobs) read it from any working directory
        fit["data_dir"] = stored_path(fit["data_dir"])
    return Plan(data=data, fit=selecting_by(fit, metric), target_metric=target_metric,
                metric=metric, cells=cells)


def selecting_by(fit: dict[str, Any], metric: str | None) -> dict[str, Any]:
    """The shared fit settings with ``selection_metric`` set to the headline ``metric``: every
    cell picks its best.pt by the metric the report shows (the dataset's when None)."""
    return {**fit, "selection_metric": metric} if metric else dict(fit)


def load_plan(directory: str | Path) -> Plan:
    """The plan in ``directory/plan.json``."""
    from transfusion_cli.outputs import folder_made_by_tfx

    path = SweepFolder(directory).plan
    if not path.is_file():
        raise ConfigError(f"No {PLAN_FILE} in {directory}; plan the sweep first with "
                          "`tfx compare-inits ... --out DIR` (or --plan-only).")
    if not folder_made_by_tfx(directory, SWEEP_KIND):
        raise ConfigError(f"{path} is not a plan `tfx compare-inits` wrote (no \"format\": "
                          f"\"{SWEEP_FORMAT}\"); pass the folder of a sweep tfx planned.")
    try:
        data = json.loads(path.read_text())
        plan = Plan.from_dict(data)
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path} is not a compare-inits plan ({type(exc).__name__}: {exc}); "
                          "re-plan into a new --out.") from exc
    for cell in plan.cells:  # each id names the cell's run folder and markers
        check_name(cell.id, f"{path}: cell id")
    return plan


def merge_plan(directory: str | Path, plan: Plan) -> Plan:
    """Write ``plan`` to ``directory``, keeping the cells of a plan already there; the
    folder must be new, empty or a sweep tfx made (``outputs.claim_folder``)."""
    from transfusion_cli.outputs import claim_folder

    claim_folder(directory, SWEEP_KIND)
    path = SweepFolder(directory).plan
    if path.is_file():
        saved = load_plan(directory)
        if saved.fit.get("data_dir"):  # a plan written before data_dir was stored absolute
            saved.fit["data_dir"] = stored_path(saved.fit["data_dir"])
        if saved.shared() != plan.shared():
            differences = _differences(saved.shared(), plan.shared())
            raise ConfigError(f"{directory} holds a sweep with other settings ({differences}); "
                              "its cells would not be comparable. Use a new --out, or the "
                              "same settings.")
        known = {c.id for c in plan.cells}
        merged = [c for c in saved.cells if c.id not in known] + plan.cells
        order = {c.id: i for i, c in enumerate(saved.cells)}
        merged.sort(key=lambda c: order.get(c.id, len(order)))
        plan.cells = merged
    write_json(path, plan.to_dict())
    return plan


def _differences(old: dict[str, Any], new: dict[str, Any]) -> str:
    """``lr: 0.001 -> 0.01`` style summary of what changed."""
    flat_old = {"data": old["data"], **old["fit"]}
    flat_new = {"data": new["data"], **new["fit"]}
    changed = [f"{k}: {flat_old.get(k)!r} -> {flat_new.get(k)!r}"
               for k in sorted(set(flat_old) | set(flat_new)) if flat_old.get(k) != flat_new.get(k)]
    return "; ".join(changed[:3])


def fit_overrides(plan: Plan, cell: Cell, run_dir: Path) -> dict[str, Any]:
    """The FitConfig fields of one cell: the shared fit options plus the cell's own."""
    return {**plan.fit, "data": plan.data, "arch": cell.arch, "init": cell.init,
            "seed": cell.seed, "train_size": cell.train_size, "weights": cell.weights,
            "out": str(run_dir)}


def check_metric(plan: Plan) -> None:
    """A --metric the dataset's task does not report (or that cannot pick a checkpoint: the
    cells select best.pt by it) is a ConfigError before any training (builds the dataset as
    the cells will, so its task and class names are known)."""
    if not plan.metric:
        return
    from transfusion_cli.data.build import build_dataset
    from transfusion_cli.train.choices import check_selection_metric

    fit = plan.fit
    bundle = build_dataset(plan.data, data_dir=fit.get("data_dir"),
                           image_size=fit.get("image_size"), seed=fit.get("data_seed") or 0,
                           options=fit.get("options") or {},
                           skip_bad_images=bool(fit.get("skip_bad_images")))
    check_selection_metric(plan.metric, bundle.info, "--metric")
