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

from transfusion_cli.compare.plan import (
    Cell,
    Plan,
    cell_id,
    make_plan,
    merge_plan,
    selecting_by,
)
from transfusion_cli.errors import ConfigError
from transfusion_cli.reproduce.study import PRETRAINED, DatasetSpec, Study
from transfusion_cli.runfolder import SOURCE_SWEEP_PREFIX, StudyFolder

SOURCE_PREFIX = SOURCE_SWEEP_PREFIX
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


def source_sweeps(study: Study, parts: list[str],
                  data_dirs: dict[str, str] | None = None) -> dict[str, SweepSpec]:
    """The stand-in source sweeps (empty when real weights cover every architecture). A
    stand-in source is a dataset name, or the key of another of the study's datasets (its
    data, options and folder; e.g. PneumoniaMNIST as the source of the RetinaMNIST parts)."""
    sweeps: dict[str, SweepSpec] = {}
    if study.stand_in is None:
        return sweeps
    for part_name in parts:
        part = study.parts[part_name]
        archs = pretrained_archs(study, part)
        needing = [a for a in archs if a not in study.weights and not public_weights(a)[0]]
        if not needing:
            continue
        source_data = study.stand_in["data"][part.dataset]
        name = _source_name(source_data)
        extra = dict(study.stand_in.get("fit") or {})
        if source_data in study.datasets:
            dataset = study.datasets[source_data]
            fit = _dataset_fit(study, dataset, data_dirs or {}, extra)
            source_data = dataset.data
        else:
            fit = {**study.fit, **extra}
        if study.stand_in.get("options"):
            fit["options"] = {**dict(fit.get("options") or {}), **study.stand_in["options"]}
        sweep = sweeps.setdefault(name, SweepSpec(name=name, data=source_data, fit=fit))
        for arch in needing:
            sweep.requests.append(CellRequest("source", arch, "random", "random", STAND_IN_SEED,
                                              None, None))
    return sweeps


def pretrained_archs(study: Study, part) -> list[str]:
    """Architectures of ``part`` whose cells need the pretrained arm's weights."""
    archs = [a for a in part.archs if any(i == PRETRAINED or i.split(":")[0] in WEIGHTED_INITS
                                          for i in part.inits_of(a))]
    archs += [h.get("weights_from", h["arch"]) for h in part.hybrids]
    return list(dict.fromkeys(archs))


def _source_name(source_data: str) -> str:
    return SOURCE_PREFIX + source_data.replace("/", "-")


def stand_in_checkpoint(out: Path, study: Study, dataset_key: str, arch: str) -> Path:
    """The stand-in source's best.pt for ``arch`` (trained on the source dataset)."""
    sweep = StudyFolder(out).sweep(_source_name(study.stand_in["data"][dataset_key]))
    return sweep.run(cell_id(arch, "random", None, STAND_IN_SEED)).best


_PUBLIC: dict[str, tuple[bool, str]] = {}


def public_weights(arch: str) -> tuple[bool, str]:
    """(available, how or why not) for ``arch``'s public ImageNet weights (timm): a file in the
    local weights folder, else one download into Hugging Face's cache (not with downloads off).
    Asked once per architecture and process."""
    if arch not in _PUBLIC:
        _PUBLIC[arch] = _find_public_weights(arch)
    return _PUBLIC[arch]


def _find_public_weights(arch: str) -> tuple[bool, str]:
    from transfusion_cli.models.pretrained import WEIGHT_SUFFIXES, offline, weights_dir
    from transfusion_cli.plugins import get

    tag = get("architectures", arch).pretrained
    if not tag:
        return False, f"{arch} has no public ImageNet weights"
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(tag)
    cfg = cfg.to_dict() if cfg is not None else {}
    name = ".".join(p for p in (cfg.get("architecture"), cfg.get("tag")) if p) or tag
    for suffix in WEIGHT_SUFFIXES:
        if (weights_dir() / f"{name}{suffix}").is_file():
            return True, f"timm's ImageNet weights {name} from {weights_dir()}"
    if offline():
        return False, (f"downloads are off (TFX_OFFLINE/HF_HUB_OFFLINE) and {name} is not in "
                       f"{weights_dir()}")
    if not cfg.get("hf_hub_id"):
        return False, f"timm has no download address for {name}"
    try:
        from huggingface_hub import hf_hub_download

        hf_hub_download(cfg["hf_hub_id"], cfg.get("hf_hub_filename") or "model.safetensors")
    except Exception as exc:  # any network or hub failure: the stand-in takes over, labelled
        first = " ".join(str(exc).split()).split(". ")[0][:120]
        return False, f"the download of {name} failed ({type(exc).__name__}: {first})"
    return True, f"timm's ImageNet weights {name} (downloaded)"


def pretrained_source(out: Path, study: Study, dataset_key: str, arch: str) -> tuple[str, str]:
    """(init, weights) of the pretrained arm for ``arch``: real weights (``imagenet``), the
    architecture's public weights, or the stand-in (``checkpoint:PATH``)."""
    from transfusion_cli.plugins import get

    if arch in study.weights:
        return "imagenet", str(Path(study.weights[arch]).expanduser().resolve())
    if study.stand_in is not None and public_weights(arch)[0]:
        return "imagenet", ""
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


def check_sweeps(study: Study, sweeps: list[SweepSpec]) -> None:
    """Each sweep's fit settings and headline metric, checked as its cells will use them,
    before anything is trained or written: a bad value in a profile's ``fit`` fails now, not
    after the stand-in stage has trained."""
    from transfusion_cli.compare.plan import CELL_FIELDS, check_metric
    from transfusion_cli.train import resolve_config

    where = (f"{study.source}: the fit settings of the '{{name}}' sweep (profile keys fit, "
             "datasets.KEY.fit, parts.PART.fit, pretrained.stand_in.fit)")
    for sweep in sweeps:
        for key in sweep.fit:
            if key in CELL_FIELDS:
                raise ConfigError(f"{where.format(name=sweep.name)}: '{key}' is set per cell by "
                                  "the study; remove it.")
        request = sweep.requests[0] if sweep.requests else None
        cell = {"data": sweep.data, "seed": STAND_IN_SEED, "init": "random",
                "arch": request.arch if request else None,
                "train_size": request.train_size if request else None}
        try:
            resolve_config(None, {**sweep.fit, **{k: v for k, v in cell.items() if v}})
            check_metric(Plan(data=sweep.data, fit=sweep.fit, metric=sweep.metric))
        except ConfigError as exc:
            message = str(exc).removeprefix("flags: ")
            raise ConfigError(f"{where.format(name=sweep.name)}: {message}") from None


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
    # Cells select best.pt by the metric the sweep reports (selecting_by).
    return Plan(data=sweep.data, fit=selecting_by(sweep.fit, sweep.metric),
                target_metric=sweep.target_metric, metric=sweep.metric,
                cells=list(cells.values()))


def write_plan(out: Path, sweep: SweepSpec) -> Plan:
    """Plan ``sweep`` into ``OUT/sweeps/<name>``, keeping cells planned there before."""
    directory = StudyFolder(out).sweep(sweep.name).root
    directory.mkdir(parents=True, exist_ok=True)
    return merge_plan(directory, build_plan(sweep))
