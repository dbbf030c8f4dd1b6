"""A study: the paper's experiments as a YAML plan (a built-in profile or the user's copy).

Each part (table1, table2, table3, convergence, representations) asks for cells on one of the
study's datasets; cells that share a dataset and fit settings land in the same compare-inits
sweep folder (``DIR/sweeps/<dataset>``), so a cell two parts need is planned and trained once.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from transfusion_cli.errors import ConfigError, UnknownNameError
from transfusion_cli.limits import MAX_PROFILE_BYTES
from transfusion_cli.reproduce.parts import PARTS
from transfusion_cli.reproduce.verdicts import PIPELINE_CHECK, ClaimSettings

PROFILES = ("smoke", "paper", "medmnist")
ALIASES = {"pipeline-check": "smoke"}  # other names of built-in profiles
# ``purpose``: a reproduction asks the paper's question; a pipeline check only shows that the
# code (training, evidence, claim tests, report) runs and reaches decisions.
PURPOSES = ("reproduction", PIPELINE_CHECK)
# The study's name for the pretrained arm: ImageNet weights, or the profile's stand-in.
PRETRAINED = "pretrained"


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
    split: str | None = None  # representations: the split probed (default: validation)
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
    claims: ClaimSettings = field(default_factory=ClaimSettings)  # the claim tests' settings
    source: str = ""
    stands_for: dict[str, str] = field(default_factory=dict)  # smoke arch -> paper arch
    purpose: str = PURPOSES[0]  # or PIPELINE_CHECK (every verdict says so)

    @property
    def pipeline_check(self) -> bool:
        """True when the study checks the pipeline, not the paper."""
        return self.purpose == PIPELINE_CHECK

    def part_names(self) -> list[str]:
        """The parts present, in the paper's order."""
        return [p for p in PARTS if p in self.parts]


def profile_path(name: str) -> Path:
    """The file of a built-in profile (or of its alias)."""
    name = ALIASES.get(name, name)
    return Path(str(resources.files("transfusion_cli.reproduce") / "profiles" / f"{name}.yaml"))


def resolve_profile(text: str, flag: str = "--profile") -> Path:
    """The file of profile ``text``: a built-in by name (smoke, paper), or the user's YAML
    file when ``text`` is a path (it has a folder separator or ends in .yaml / .yml). A name is
    never joined to a folder, so ``../../x`` can only be a path the user typed."""
    if text in PROFILES or text in ALIASES:
        return profile_path(text)
    looks_like_path = "/" in text or os.sep in text or text.endswith((".yaml", ".yml"))
    path = Path(text).expanduser()
    if not looks_like_path:
        raise ConfigError(f"{flag} {text}: no built-in profile of that name; use "
                          f"{' or '.join(PROFILES)}, or the path of a YAML plan (with a '/' or "
                          "ending in .yaml; copy one with `tfx reproduce --show-profile "
                          "paper`).")
    if not path.is_file():
        raise ConfigError(f"{flag} {text}: no such profile file; use {' or '.join(PROFILES)} or "
                          "the path of a YAML plan (copy one with `tfx reproduce --show-profile "
                          "paper`).")
    return path


class _NoAliasLoader(yaml.SafeLoader):
    """YAML without anchors and aliases: a profile needs none, and aliases nested a few levels
    deep expand to billions of values (the "billion laughs" file)."""

    def compose_node(self, parent, index):  # noqa: ANN001, ANN201  (PyYAML's signature)
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark
            raise ConfigError(f"{self.name}: line {mark.line + 1}: YAML aliases (*name) are not "
                              "allowed in a profile; write the values out.")
        return super().compose_node(parent, index)


def load_study(profile: str | Path) -> Study:
    """A built-in profile by name (``smoke``, ``paper``) or a YAML file."""
    path = resolve_profile(str(profile))
    try:
        if path.stat().st_size > MAX_PROFILE_BYTES:
            raise ConfigError(f"{path} is {path.stat().st_size} bytes; a profile is a short YAML "
                              f"plan (at most {MAX_PROFILE_BYTES // 1024} KiB).")
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"Cannot read the profile {path} ({exc}).") from None
    try:
        loader = _NoAliasLoader(text)
        loader.name = str(path)
        try:
            data = loader.get_single_data()
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML ({' '.join(str(exc).split())}).") from None
    return parse_study(data, str(path))


def parse_study(data: Any, source: str) -> Study:
    """Check the whole plan (``profile_schema``: types, ranges, sizes, names; then the names
    against the registry and the keys against each other) and resolve it. Nothing is
    trained or written before this passes."""
    from transfusion_cli.reproduce.profile_schema import validate_profile

    profile = validate_profile(data, source)
    datasets = {key: DatasetSpec(key=key, data=spec.data, options=dict(spec.options or {}),
                                 data_dir=spec.data_dir, data_seed=spec.data_seed,
                                 fit=dict(spec.fit or {}))
                for key, spec in (profile.datasets or {}).items()}
    parts = {}
    for name, spec in (profile.parts or {}).items():
        if spec.dataset not in datasets:
            raise ConfigError(f"{source}: parts.{name}.dataset {spec.dataset!r} is not one of the "
                              f"study's datasets ({', '.join(datasets) or 'none'}).")
        parts[name] = PartSpec(
            name=name, dataset=spec.dataset, archs=list(spec.archs),
            inits=list(spec.inits or ["random", PRETRAINED]), seeds=spec.seeds,
            train_size=spec.train_size, target=spec.target, metric=spec.metric,
            samples=spec.samples, split=spec.split,
            hybrids=[h.model_dump(exclude_none=True) for h in spec.hybrids or []],
            fit=dict(spec.fit or {}),
            arch_inits={k: list(v) for k, v in (spec.arch_inits or {}).items()})
    pretrained = profile.pretrained
    stand_in = None
    if pretrained is not None and pretrained.stand_in is not None:
        stand_in = pretrained.stand_in.model_dump(exclude_none=True)
        missing = sorted(set(datasets) - set(stand_in["data"]))
        if missing:
            raise ConfigError(f"{source}: pretrained.stand_in.data has no source dataset for "
                              f"'{missing[0]}'.")
    roles = {k: list(v) for k, v in (profile.roles or {}).items()}
    for role in ("standard", "small"):
        roles.setdefault(role, [])
    study = Study(name=profile.name or _default_name(source),
                  description=profile.description or "", datasets=datasets,
                  fit=dict(profile.fit or {}), parts=parts,
                  weights={k: v for k, v in ((pretrained and pretrained.weights) or {}).items()
                           if v},
                  stand_in=stand_in, recipe=(pretrained and pretrained.recipe) or "",
                  roles=roles, slurm=dict(profile.slurm or {}),
                  source_scores=dict(profile.source_scores or {}),
                  claims=ClaimSettings.from_mapping(profile.claims, f"{source}: claims"),
                  source=source, stands_for=dict(profile.stands_for or {}),
                  purpose=profile.purpose or PURPOSES[0])
    check_registered_names(study)
    return study


def _default_name(source: str) -> str:
    """The study's name when the profile has none: its file's stem as a plain name."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(source).stem).replace("..", "-")
    return name.strip("-._") or "study"


def check_registered_names(study: Study) -> None:
    """Every dataset, architecture, init and metric the profile names is registered (and each
    init's argument fits its architecture), before any part trains: a typo in the last part
    must not surface after the first parts have run."""
    from transfusion_cli.plugins import get

    def check(kind: str, name: str, where: str) -> Any:
        try:
            return get(kind, name)
        except UnknownNameError as exc:
            raise ConfigError(f"{study.source}: {where}: {exc}") from None

    for key, dataset in study.datasets.items():
        check("datasets", dataset.data, f"datasets.{key}.data")
    for key, data in (study.stand_in or {}).get("data", {}).items():
        if data not in study.datasets:  # a study dataset's key, or a dataset name
            check("datasets", data, f"pretrained.stand_in.data.{key}")
    for role, archs in study.roles.items():
        for arch in archs:
            check("architectures", arch, f"roles.{role}")
    for name, part in study.parts.items():
        where = f"parts.{name}"
        for arch in [*part.archs, *part.arch_inits]:
            spec = check("architectures", arch, f"{where}.archs")
            for init in part.inits_of(arch):
                if init != PRETRAINED:
                    _check_init(check, init, spec, f"{where}.inits ({arch})", study.source)
        for k, hybrid in enumerate(part.hybrids):
            spec = check("architectures", hybrid["arch"], f"{where}.hybrids[{k}].arch")
            if "weights_from" in hybrid:
                check("architectures", hybrid["weights_from"], f"{where}.hybrids[{k}]."
                      "weights_from")
            if hybrid.get("init", PRETRAINED) != PRETRAINED:
                _check_init(check, hybrid["init"], spec, f"{where}.hybrids[{k}].init",
                            study.source)
        if name == "representations" and part.metric:
            check("metrics", part.metric, f"{where}.metric")


def _check_init(check, init: str, arch_spec: Any, where: str, source: str) -> None:
    spec = check("inits", init, where)
    _, sep, argument = init.partition(":")
    try:
        spec.check(argument if sep else None, arch_spec)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {where}: {exc}") from None


def parse_data_dirs(text: str | None, study: Study) -> dict[str, str]:
    """``retina=D1,chexpert=D2`` -> {dataset key: folder, or a file for datasets that are one
    file (a MedMNIST .npz)}."""
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
        if not path.exists():
            raise ConfigError(f"--data-dir {key}={folder}: no such folder or file.")
        chosen[key] = str(path.resolve())
    return chosen


def parse_only(text: str | None, study: Study) -> list[str]:
    """``table1,convergence`` -> those parts (all the study's parts when None)."""
    if text is None:
        return study.part_names()
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:  # `--only ""` or `--only ,` would run nothing and report every claim unrun
        raise ConfigError(f"--only {text!r} names no part; give one or more of "
                          f"{', '.join(study.part_names())}, comma-separated.")
    for name in names:
        if name not in PARTS:
            raise ConfigError(f"--only {name}: unknown part; parts are {', '.join(PARTS)}.")
        if name not in study.parts:
            raise ConfigError(f"--only {name}: the profile {study.name} has no part '{name}'.")
    return [p for p in PARTS if p in names]
