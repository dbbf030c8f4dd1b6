"""A study's parts as compare-inits cells, grouped into sweep folders.

Two stages: the stand-in sources (the offline "pretrained" arm: each architecture first trained
on another built-in dataset), then the target sweeps, whose pretrained-arm cells start from
those sources' best.pt. Cells are identified exactly as compare-inits identifies them
(``compare.plan.cell_id``), so a cell that two parts ask for is one cell.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from transfusion_cli.compare.plan import Cell, Plan, cell_id, make_plan, merge_plan
from transfusion_cli.errors import ConfigError
from transfusion_cli.reproduce.study import PRETRAINED, DatasetSpec, Study

SWEEPS_DIR = "sweeps"
SOURCE_PREFIX = "source-"
STAND_IN_SEED = 0
# Inits whose weights come from the pretrained arm's source (ImageNet or the stand-in).
WEIGHTED_INITS = ("mean-var", "transfusion")


@dataclass(frozen=True)
class CellRequest:
    """One cell a part needs."""

    part: str
    arch: str
    init: str  # as given to fit (checkpoint:PATH for the stand-in)
    label: str  # as the report shows it (``pretrained``, ``mean-var``, ...)
    seed: int
    train_size: int | None
    weights: str | None

    @property
    def id(self) -> str:
        """The compare-inits cell id."""
        return cell_id(self.arch, self.init, self.train_size, self.seed)


@dataclass
class SweepSpec:
    """One sweep folder: a dataset, the fit settings its cells share, and its cells."""

    name: str
    data: str
    fit: dict[str, Any]
    requests: list[CellRequest] = field(default_factory=list)
    target_metric: float | None = None
    metric: str | None = None

    def cell_ids(self) -> list[str]:
        """Distinct cell ids, in request order."""
        return list(dict.fromkeys(r.id for r in self.requests))

    def part_cells(self, part: str) -> list[str]:
        """Cell ids one part asked for."""
        return list(dict.fromkeys(r.id for r in self.requests if r.part == part))


def sweep_dir(out: Path, name: str) -> Path:
    """``OUT/sweeps/<name>``."""
    return Path(out) / SWEEPS_DIR / name


def _dataset_fit(study: Study, dataset: DatasetSpec, data_dirs: dict[str, str],
                 extra: dict[str, Any]) -> dict[str, Any]:
    fit = {**study.fit, **dataset.fit, **extra}
    if dataset.options:
        fit["options"] = {**dict(fit.get("options") or {}), **dataset.options}
    folder = data_dirs.get(dataset.key) or dataset.data_dir
    if folder:
        fit["data_dir"] = str(Path(folder).expanduser())
    if dataset.data_seed is not None:
        fit["data_seed"] = dataset.data_seed
    return fit


def _sweep_name(key: str, extra: dict[str, Any]) -> str:
    if not extra:
        return key
    digest = hashlib.sha256(json.dumps(extra, sort_keys=True).encode()).hexdigest()[:6]
    return f"{key}-{digest}"


def source_sweeps(study: Study, parts: list[str]) -> dict[str, SweepSpec]:
    """The stand-in source sweeps (empty when real weights cover every architecture)."""
    sweeps: dict[str, SweepSpec] = {}
    if study.stand_in is None:
        return sweeps
    for part_name in parts:
        part = study.parts[part_name]
        archs = _pretrained_archs(study, part)
        needing = [a for a in archs if a not in study.weights]
        if not needing:
            continue
        source_data = study.stand_in["data"][part.dataset]
        name = SOURCE_PREFIX + source_data.replace("/", "-")
        fit = {**study.fit, **dict(study.stand_in.get("fit") or {})}
        if study.stand_in.get("options"):
            fit["options"] = dict(study.stand_in["options"])
        sweep = sweeps.setdefault(name, SweepSpec(name=name, data=source_data, fit=fit))
        for arch in needing:
            sweep.requests.append(CellRequest("source", arch, "random", "random", STAND_IN_SEED,
                                              None, None))
    return sweeps


def _pretrained_archs(study: Study, part) -> list[str]:
    """Architectures of ``part`` whose cells need the pretrained arm's weights."""
    archs = [a for a in part.archs if any(i == PRETRAINED or i.split(":")[0] in WEIGHTED_INITS
                                          for i in part.inits_of(a))]
    archs += [h.get("weights_from", h["arch"]) for h in part.hybrids]
    return list(dict.fromkeys(archs))


def stand_in_checkpoint(out: Path, study: Study, dataset_key: str, arch: str) -> Path:
    """The stand-in source's best.pt for ``arch`` (trained on the source dataset)."""
    source_data = study.stand_in["data"][dataset_key]
    sweep = sweep_dir(out, SOURCE_PREFIX + source_data.replace("/", "-"))
    return sweep / "runs" / cell_id(arch, "random", None, STAND_IN_SEED) / "checkpoints" / "best.pt"


def pretrained_source(out: Path, study: Study, dataset_key: str, arch: str) -> tuple[str, str]:
    """(init, weights) of the pretrained arm for ``arch``: real weights (``imagenet``), the
    architecture's public weights, or the stand-in (``checkpoint:PATH``)."""
    from transfusion_cli.registry import get

    if arch in study.weights:
        return "imagenet", str(Path(study.weights[arch]).expanduser().resolve())
    if study.stand_in is not None:
        path = stand_in_checkpoint(out, study, dataset_key, arch).resolve()
        return f"checkpoint:{path}", str(path)
    if get("architectures", arch).pretrained:
        return "imagenet", ""
    recipe = f" ({study.recipe})" if study.recipe else ""
    raise ConfigError(f"The pretrained arm of {arch} needs ImageNet weights and {arch} has no "
                      f"public ones: produce them with the pretraining recipe{recipe}, then set "
                      f"pretrained.weights.{arch} in a copy of the profile or pass --weights "
                      f"{arch}=PATH.")


def target_sweeps(study: Study, parts: list[str], out: Path,
                  data_dirs: dict[str, str]) -> dict[str, SweepSpec]:
    """The target sweeps of ``parts``: every cell each part needs, de-duplicated by id."""
    sweeps: dict[str, SweepSpec] = {}
    for part_name in parts:
        part = study.parts[part_name]
        dataset = study.datasets[part.dataset]
        name = _sweep_name(dataset.key, part.fit)
        fit = _dataset_fit(study, dataset, data_dirs, part.fit)
        sweep = sweeps.setdefault(name, SweepSpec(name=name, data=dataset.data, fit=fit))
        if sweep.fit != fit:
            raise ConfigError(f"Parts on dataset '{dataset.key}' disagree on fit settings; give "
                              "the differing part its own 'fit' so it gets its own sweep.")
        if part.target is not None:
            sweep.target_metric = part.target
        if part.metric and part_name != "representations":  # there: a similarity metric
            sweep.metric = part.metric
        seeds = range(part.seeds)
        for arch in part.archs:
            for init in part.inits_of(arch):
                init_text, weights = _init_for(out, study, dataset.key, arch, init)
                for seed in seeds:
                    sweep.requests.append(CellRequest(part_name, arch, init_text, init, seed,
                                                      part.train_size, weights))
        for hybrid in part.hybrids:
            source_arch = hybrid.get("weights_from", hybrid["arch"])
            init = hybrid.get("init", PRETRAINED)
            _, weights = pretrained_source(out, study, dataset.key, source_arch)
            init_text = "imagenet" if init == PRETRAINED else init
            for seed in seeds:
                sweep.requests.append(CellRequest(part_name, hybrid["arch"], init_text, init,
                                                  seed, part.train_size, weights or None))
    return sweeps


def _init_for(out: Path, study: Study, dataset_key: str, arch: str,
              init: str) -> tuple[str, str | None]:
    if init == PRETRAINED:
        text, weights = pretrained_source(out, study, dataset_key, arch)
        return text, weights or None
    if init.split(":")[0] in WEIGHTED_INITS:
        _, weights = pretrained_source(out, study, dataset_key, arch)
        return init, weights or None
    return init, None


def build_plan(sweep: SweepSpec) -> Plan:
    """The compare-inits plan of a sweep, checked (unknown names, missing files) by
    ``make_plan`` one request group at a time."""
    cells: dict[str, Cell] = {}
    groups: dict[tuple, list[int]] = {}
    labels: dict[tuple, str] = {}
    for request in sweep.requests:
        key = (request.arch, request.init, request.train_size, request.weights)
        groups.setdefault(key, [])
        if request.seed not in groups[key]:
            groups[key].append(request.seed)
        labels[key] = request.label
    for (arch, init, train_size, weights), seeds in groups.items():
        plan = make_plan(data=sweep.data, archs=[arch], inits=[init], seeds=sorted(seeds),
                         train_sizes=[train_size], fit=sweep.fit,
                         weights=[weights] if weights else None)
        for cell in plan.cells:
            cells.setdefault(cell.id, replace(cell, label=labels[(arch, init, train_size,
                                                                  weights)]))
    return Plan(data=sweep.data, fit=dict(sweep.fit), target_metric=sweep.target_metric,
                metric=sweep.metric, cells=list(cells.values()))


def write_plan(out: Path, sweep: SweepSpec) -> Plan:
    """Plan ``sweep`` into ``OUT/sweeps/<name>``, keeping cells planned there before."""
    directory = sweep_dir(out, sweep.name)
    directory.mkdir(parents=True, exist_ok=True)
    return merge_plan(directory, build_plan(sweep))
