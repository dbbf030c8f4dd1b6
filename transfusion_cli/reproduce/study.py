"""A study: the paper's experiments as a YAML plan (a built-in profile or the user's copy).

Each part (table1, table2, table3, convergence, representations) asks for cells on one of the
study's datasets; cells that share a dataset and fit settings land in the same compare-inits
sweep folder (``DIR/sweeps/<dataset>``), so a cell two parts need is planned and trained once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from transfusion_cli.errors import ConfigError

PARTS = ("table1", "table2", "table3", "convergence", "representations")
PROFILES = ("smoke", "paper")
# The study's name for the pretrained arm: ImageNet weights, or the profile's stand-in.
PRETRAINED = "pretrained"
TOP_KEYS = {"name", "description", "datasets", "fit", "pretrained", "roles", "parts",
            "slurm", "source_scores", "margin", "stands_for"}
PART_KEYS = {"dataset", "archs", "inits", "arch_inits", "seeds", "train_size", "target",
             "metric", "samples", "hybrids", "fit"}
DATASET_KEYS = {"data", "options", "data_dir", "data_seed", "fit"}
PRETRAINED_KEYS = {"weights", "stand_in", "recipe"}
STAND_IN_KEYS = {"data", "fit", "options"}


@dataclass
class DatasetSpec:
    """One of the study's datasets (``retina``, ``chexpert``)."""

    key: str
    data: str
    options: dict[str, Any] = field(default_factory=dict)
    data_dir: str | None = None
    data_seed: int | None = None
    fit: dict[str, Any] = field(default_factory=dict)  # fit settings for this dataset


@dataclass
class PartSpec:
    """One part of the study."""

    name: str
    dataset: str
    archs: list[str]
    inits: list[str]
    seeds: int = 1
    train_size: int | None = None
    target: float | None = None
    metric: str | None = None
    samples: int = 256
    hybrids: list[dict[str, str]] = field(default_factory=list)
    fit: dict[str, Any] = field(default_factory=dict)
    arch_inits: dict[str, list[str]] = field(default_factory=dict)  # per-arch init lists

    def inits_of(self, arch: str) -> list[str]:
        """The inits ``arch`` is trained with in this part."""
        return self.arch_inits.get(arch, self.inits)


@dataclass
class Study:
    """The resolved YAML plan."""

    name: str
    description: str
    datasets: dict[str, DatasetSpec]
    fit: dict[str, Any]
    parts: dict[str, PartSpec]
    weights: dict[str, str]  # arch -> real (ImageNet) weights file
    stand_in: dict[str, Any] | None  # {"data": {dataset key: source dataset}, "fit": {...}}
    recipe: str
    roles: dict[str, list[str]]
    slurm: dict[str, Any]
    source_scores: dict[str, float]
    margin: float = 0.005
    source: str = ""
    stands_for: dict[str, str] = field(default_factory=dict)  # smoke arch -> paper arch

    def part_names(self) -> list[str]:
        """The parts present, in the paper's order."""
        return [p for p in PARTS if p in self.parts]


def profile_path(name: str) -> Path:
    """The file of a built-in profile."""
    return Path(str(resources.files("transfusion_cli.reproduce") / "profiles" / f"{name}.yaml"))


def _check_keys(data: dict[str, Any], allowed: set[str], where: str) -> None:
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be a mapping, got {data!r}.")
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ConfigError(f"{where}: unknown key '{unknown[0]}'; valid keys: "
                          f"{', '.join(sorted(allowed))}.")


def load_study(profile: str | Path) -> Study:
    """A built-in profile by name (``smoke``, ``paper``) or a YAML file."""
    text = str(profile)
    path = profile_path(text) if text in PROFILES else Path(text).expanduser()
    if not path.is_file():
        raise ConfigError(f"--profile {text}: no such profile; use smoke, paper or the path of "
                          "a YAML plan (copy one with `tfx reproduce --show-profile paper`).")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML ({exc}).") from None
    return parse_study(data, str(path))


def parse_study(data: Any, source: str) -> Study:
    """Check and resolve a plan's mapping."""
    _check_keys(data, TOP_KEYS, source)
    datasets = {}
    for key, spec in (data.get("datasets") or {}).items():
        _check_keys(spec, DATASET_KEYS, f"{source}: datasets.{key}")
        if "data" not in spec:
            raise ConfigError(f"{source}: datasets.{key} needs 'data' (a dataset name, "
                              "`tfx list datasets`).")
        datasets[key] = DatasetSpec(key=key, data=spec["data"],
                                    options=dict(spec.get("options") or {}),
                                    data_dir=spec.get("data_dir"), data_seed=spec.get("data_seed"),
                                    fit=dict(spec.get("fit") or {}))
    parts = {}
    for name, spec in (data.get("parts") or {}).items():
        if name not in PARTS:
            raise ConfigError(f"{source}: unknown part '{name}'; parts are {', '.join(PARTS)}.")
        _check_keys(spec, PART_KEYS, f"{source}: parts.{name}")
        dataset = spec.get("dataset")
        if dataset not in datasets:
            raise ConfigError(f"{source}: parts.{name}.dataset {dataset!r} is not one of the "
                              f"study's datasets ({', '.join(datasets) or 'none'}).")
        if not spec.get("archs"):
            raise ConfigError(f"{source}: parts.{name} needs 'archs'.")
        parts[name] = PartSpec(
            name=name, dataset=dataset, archs=list(spec["archs"]),
            inits=list(spec.get("inits") or ["random", PRETRAINED]),
            seeds=int(spec.get("seeds", 1)), train_size=spec.get("train_size"),
            target=spec.get("target"), metric=spec.get("metric"),
            samples=int(spec.get("samples", 256)), hybrids=list(spec.get("hybrids") or []),
            fit=dict(spec.get("fit") or {}),
            arch_inits={k: list(v) for k, v in (spec.get("arch_inits") or {}).items()})
    pretrained = data.get("pretrained") or {}
    _check_keys(pretrained, PRETRAINED_KEYS, f"{source}: pretrained")
    stand_in = pretrained.get("stand_in")
    if stand_in is not None:
        _check_keys(stand_in, STAND_IN_KEYS, f"{source}: pretrained.stand_in")
        missing = sorted(set(d.key for d in datasets.values()) - set(stand_in.get("data") or {}))
        if missing:
            raise ConfigError(f"{source}: pretrained.stand_in.data has no source dataset for "
                              f"'{missing[0]}'.")
    roles = {k: list(v) for k, v in (data.get("roles") or {}).items()}
    for role in ("standard", "small"):
        roles.setdefault(role, [])
    return Study(name=str(data.get("name") or Path(source).stem),
                 description=str(data.get("description") or ""), datasets=datasets,
                 fit=dict(data.get("fit") or {}), parts=parts,
                 weights={k: str(v) for k, v in (pretrained.get("weights") or {}).items() if v},
                 stand_in=stand_in, recipe=str(pretrained.get("recipe") or ""), roles=roles,
                 slurm=dict(data.get("slurm") or {}),
                 source_scores={k: float(v) for k, v in (data.get("source_scores") or {}).items()},
                 margin=float(data.get("margin", 0.005)), source=source,
                 stands_for={k: str(v) for k, v in (data.get("stands_for") or {}).items()})


def parse_data_dirs(text: str | None, study: Study) -> dict[str, str]:
    """``retina=D1,chexpert=D2`` -> {dataset key: folder}."""
    if not text:
        return {}
    chosen = {}
    for item in text.split(","):
        key, sep, folder = item.strip().partition("=")
        if not sep or not folder:
            raise ConfigError(f"--data-dir {item!r}: write KEY=FOLDER, e.g. retina=~/eyepacs.")
        if key not in study.datasets:
            raise ConfigError(f"--data-dir {key}=...: '{key}' is not one of the study's "
                              f"datasets ({', '.join(study.datasets)}).")
        path = Path(folder).expanduser()
        if not path.is_dir():
            raise ConfigError(f"--data-dir {key}={folder}: no such folder.")
        chosen[key] = str(path.resolve())
    return chosen


def parse_only(text: str | None, study: Study) -> list[str]:
    """``table1,convergence`` -> those parts (all the study's parts when None)."""
    if not text:
        return study.part_names()
    names = [n.strip() for n in text.split(",") if n.strip()]
    for name in names:
        if name not in PARTS:
            raise ConfigError(f"--only {name}: unknown part; parts are {', '.join(PARTS)}.")
        if name not in study.parts:
            raise ConfigError(f"--only {name}: the profile {study.name} has no part '{name}'.")
    return [p for p in PARTS if p in names]
