"""The evidence file (``tfx-evidence`` version 1): what a study measured, in the form the claim
tests read. `tfx reproduce` writes ``evidence.json`` in the study folder and
``tfx reproduce --judge FILE`` judges any such file; the paper's own numbers ship in this
format (``paper_evidence.json``). docs/reproduce-the-paper.md, "The evidence file", documents
every field.

The file says where its numbers come from (``source``): ``study`` (measured: per-seed values,
judged by the calibrated tests only) or ``published`` (a paper's summary numbers: where they
come without a spread, the published-summary rule decides; ``published_rule``).

Every string from the file is data: it is checked to be a string and shown escaped, never
interpreted. A value the claims need but the file leaves out stays out (None); nothing is
guessed.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from transfusion_cli.errors import DataError
from transfusion_cli.evaluation.claim_stats import ArmSample, patient_se

FORMAT = "tfx-evidence"
VERSION = 1
PERFORMANCE_PARTS = ("table1", "table2", "table3")
PARTS = (*PERFORMANCE_PARTS, "convergence", "representations")
PAPER_EVIDENCE = "paper_evidence.json"
STUDY, PUBLISHED = "study", "published"  # the file's ``source``: who measured the numbers


class _Reader:
    """Typed access to one mapping of the file, with the field's path in every error."""

    def __init__(self, data: Any, where: str, source: str):
        if not isinstance(data, dict):
            raise DataError(f"{source}: {where} must be a JSON object; see "
                            "docs/reproduce-the-paper.md, 'The evidence file'.")
        self.data, self.where, self.source = data, where, source

    def fail(self, key: str, expected: str) -> DataError:
        return DataError(f"{self.source}: {self.where}.{key} must be {expected}; see "
                         "docs/reproduce-the-paper.md, 'The evidence file'.")

    def text(self, key: str, default: str | None = None) -> str | None:
        value = self.data.get(key, default)
        if value is not None and not isinstance(value, str):
            raise self.fail(key, "a string")
        return value

    def number(self, key: str, low: float = -math.inf, high: float = math.inf,
               required: bool = False) -> float | None:
        value = self.data.get(key)
        if value is None and not required:
            return None
        if (isinstance(value, bool) or not isinstance(value, int | float)
                or not math.isfinite(value) or not low <= value <= high):
            raise self.fail(key, f"a number in [{low:g}, {high:g}]")
        return float(value)

    def integer(self, key: str, low: int = 0, required: bool = False) -> int | None:
        value = self.data.get(key)
        if value is None and not required:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise self.fail(key, f"an integer of at least {low}")
        return value

    def pair(self, key: str) -> tuple[float, float] | None:
        value = self.data.get(key)
        if value is None:
            return None
        if (not isinstance(value, list) or len(value) != 2 or not all(
                isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
                for v in value) or value[0] > value[1]):
            raise self.fail(key, "a pair [low, high] of finite numbers, low <= high")
        return float(value[0]), float(value[1])

    def child(self, key: str, default: Any = None) -> _Reader | None:
        value = self.data.get(key, default)
        return None if value is None else _Reader(value, f"{self.where}.{key}", self.source)

    def items(self, key: str) -> list[Any]:
        value = self.data.get(key) or []
        if not isinstance(value, list):
            raise self.fail(key, "a list")
        return value

    def names(self, key: str) -> list[str]:
        values = self.items(key)
        if not all(isinstance(v, str) for v in values):
            raise self.fail(key, "a list of strings")
        return values


@dataclass
class Arm:
    """One arm of a table: its test AUC per label over seeds."""

    arch: str
    init: str
    train_size: int | None = None
    params: int | None = None
    n_images: int | None = None
    n_patients: int | None = None
    labels: dict[str, ArmSample] = field(default_factory=dict)
    seeds: dict[str, list[float]] = field(default_factory=dict)  # per label, when given
    note: str = ""
    cite: str = ""  # where a published number is printed (e.g. "Table 1")

    def name(self) -> str:
        """``resnet50 random`` (``... n=5000`` with a training size)."""
        size = f" n={self.train_size}" if self.train_size is not None else ""
        return f"{self.arch} {self.init}{size}"


@dataclass
class PerformancePart:
    """table1, table2 or table3: arms scored on one test split."""

    name: str
    metric: str = "auc"
    split: str = "test"
    dataset: str = ""
    arms: list[Arm] = field(default_factory=list)
    note: str = ""

    def arm(self, arch: str, init: str) -> Arm | None:
        """The arm ``arch`` x ``init``, if measured."""
        return next((a for a in self.arms if (a.arch, a.init) == (arch, init)), None)


@dataclass
class Seed:
    """One convergence run: steps to the target (None: not reached), its length, its curve."""

    seed: int | None
    steps_to_target: float | None
    last_step: float | None
    curve: list[tuple[float, float]] = field(default_factory=list)


@dataclass
class ConvergenceArm:
    """One arm of the convergence part."""

    arch: str
    init: str
    base_arch: str | None = None  # a hybrid's source architecture (resnet50-slim: resnet50)
    seeds: list[Seed] = field(default_factory=list)
    note: str = ""
    cite: str = ""


@dataclass
class ConvergencePart:
    """Steps to a target AUC per seed; the target is absolute or a fraction of an arm's
    plateau (then every seed needs its curve)."""

    metric: str = "auc"
    split: str = "test"
    target: float | None = None
    relative: float | None = None
    relative_of: str = "pretrained"
    eval_every: float | None = None
    arms: list[ConvergenceArm] = field(default_factory=list)
    note: str = ""

    def arm(self, arch: str, init: str) -> ConvergenceArm | None:
        """The arm ``arch`` x ``init``, if measured."""
        return next((a for a in self.arms if (a.arch, a.init) == (arch, init)), None)


@dataclass
class Similarity:
    """One similarity (a block's, or an average over blocks) over seeds or network pairs."""

    sample: ArmSample
    values: list[float] | None = None
    low_data: bool = False


@dataclass
class RepresentationPart:
    """Per-block similarity to initialisation and Figure 2's top-block comparison."""

    metric: str = "cca"
    split: str = "validation"
    to_init: dict[str, dict[str, list[tuple[str, Similarity]]]] = field(default_factory=dict)
    figure2: dict[str, dict[str, Similarity]] = field(default_factory=dict)
    figure2_blocks: dict[str, list[str]] = field(default_factory=dict)
    figure2_cite: dict[str, str] = field(default_factory=dict)
    note: str = ""


@dataclass
class EvidenceFile:
    """A whole evidence file."""

    title: str = ""
    source: str = STUDY  # STUDY or PUBLISHED
    citation: str = ""
    notes: list[str] = field(default_factory=list)
    roles: dict[str, list[str]] = field(default_factory=dict)
    stands_for: dict[str, str] = field(default_factory=dict)
    source_scores: dict[str, tuple[float, tuple[float, float] | None]] = field(
        default_factory=dict)
    source_label: str = "ImageNet top-1"
    purpose: str = ""  # "pipeline-check": the verdicts test the code, not the paper
    settings: dict[str, float] = field(default_factory=dict)
    performance: dict[str, PerformancePart] = field(default_factory=dict)
    convergence: ConvergencePart | None = None
    representations: RepresentationPart | None = None

    @property
    def published(self) -> bool:
        """Whether the numbers are a paper's published summary (never a study's)."""
        return self.source == PUBLISHED


def _sample(reader: _Reader, low: float = 0.0, high: float = 1.0) -> tuple[ArmSample,
                                                                            list[float] | None]:
    """``{"seeds": [{"value", "ci95"}...]}``, ``{"values": [...]}`` or ``{"mean", "sd",
    "n"}`` (a published summary; ``n`` 0 or absent when the count is not given), each with an
    optional ``patient_se``. ``values`` entries that are null (a failed measurement) are
    skipped."""
    se = reader.number("patient_se", 0.0, 1.0)
    deviations, key = _patient_bootstrap(reader)
    if "seeds" in reader.data:
        values, intervals = [], []
        for index, item in enumerate(reader.items("seeds")):
            seed = _Reader(item, f"{reader.where}.seeds[{index}]", reader.source)
            values.append(seed.number("value", low, high, required=True))
            ci = seed.pair("ci95")
            if ci is not None:
                intervals.append(ci)
        if not values:
            raise reader.fail("seeds", "a non-empty list")
        if deviations is not None:
            se = float(np.std(deviations))
        sample = ArmSample.from_values(values, se if se is not None else patient_se(intervals))
        return replace(sample, patient_deviations=deviations, patient_key=key), values
    if "values" in reader.data:
        values = [v for v in reader.items("values") if v is not None]
        for index, value in enumerate(values):
            if (isinstance(value, bool) or not isinstance(value, int | float)
                    or not math.isfinite(value) or not low <= value <= high):
                raise reader.fail(f"values[{index}]", f"a number in [{low:g}, {high:g}]")
        if not values:
            raise reader.fail("values", "a non-empty list")
        return ArmSample.from_values([float(v) for v in values], se), [float(v) for v in values]
    mean = reader.number("mean", low, high, required=True)
    n = reader.integer("n", 0) or 0  # 0: the count is not given
    sd = reader.number("sd", 0.0)
    return ArmSample(mean, sd if n >= 2 else None, n, se), None


def _patient_bootstrap(reader: _Reader) -> tuple[np.ndarray | None, str | None]:
    """``patient_bootstrap: {"key", "deviations"}``: the arm's seed-mean AUC on each patient
    bootstrap replicate minus its value on the whole test set."""
    boot = reader.child("patient_bootstrap")
    if boot is None:
        return None, None
    key = boot.text("key")
    values = boot.items("deviations")
    if not key or len(values) < 2 or not all(
            isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
            and abs(v) <= 1 for v in values):
        raise boot.fail("deviations", "a list of at least two finite numbers in [-1, 1], "
                        "with a key")
    return np.asarray(values, dtype=np.float64), key


def _arm(reader: _Reader) -> Arm:
    arm = Arm(arch=reader.text("arch") or "", init=reader.text("init") or "",
              train_size=reader.integer("train_size", 1), params=reader.integer("params", 1),
              n_images=reader.integer("n_images", 1), n_patients=reader.integer("n_patients", 1),
              note=reader.text("note", "") or "", cite=reader.text("cite", "") or "")
    if not arm.arch or not arm.init:
        raise reader.fail("arch", "given, with init (e.g. \"resnet50\", \"random\")")
    labels = reader.child("labels", {})
    for label in labels.data:
        if not isinstance(label, str):
            raise labels.fail(str(label), "named by a string")
        sample, values = _sample(labels.child(label))
        arm.labels[label] = sample
        if values is not None:
            arm.seeds[label] = values
    return arm


def _performance(name: str, reader: _Reader) -> PerformancePart:
    part = PerformancePart(name=name, metric=reader.text("metric", "auc"),
                           split=reader.text("split", "test"),
                           dataset=reader.text("dataset", "") or "",
                           note=reader.text("note", "") or "")
    part.arms = [_arm(_Reader(item, f"{reader.where}.arms[{i}]", reader.source))
                 for i, item in enumerate(reader.items("arms"))]
    return part


def _seed(reader: _Reader) -> Seed:
    curve = []
    for index, point in enumerate(reader.items("curve")):
        if (not isinstance(point, list) or len(point) != 2 or not all(
                isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
                for v in point)):
            raise reader.fail(f"curve[{index}]", "a pair [step, value] of finite numbers")
        curve.append((float(point[0]), float(point[1])))
    seed = Seed(seed=reader.integer("seed"), steps_to_target=reader.number("steps_to_target", 0),
                last_step=reader.number("last_step", 0), curve=sorted(curve))
    if seed.steps_to_target is None and seed.last_step is None and not seed.curve:
        raise reader.fail("steps_to_target", "given, or last_step (not reached), or a curve")
    return seed


def _convergence(reader: _Reader) -> ConvergencePart:
    part = ConvergencePart(metric=reader.text("metric", "auc"), split=reader.text("split", "test"),
                           eval_every=reader.number("eval_every", 0),
                           note=reader.text("note", "") or "")
    target = reader.child("target", {})
    part.target = target.number("absolute", 0.0, 1.0)
    part.relative = target.number("relative", 0.0, 1.0)
    part.relative_of = target.text("of", "pretrained") or "pretrained"
    for index, item in enumerate(reader.items("arms")):
        arm_reader = _Reader(item, f"{reader.where}.arms[{index}]", reader.source)
        arm = ConvergenceArm(arch=arm_reader.text("arch") or "", init=arm_reader.text("init") or "",
                             base_arch=arm_reader.text("base_arch"),
                             note=arm_reader.text("note", "") or "",
                             cite=arm_reader.text("cite", "") or "")
        if not arm.arch or not arm.init:
            raise arm_reader.fail("arch", "given, with init")
        arm.seeds = [_seed(_Reader(s, f"{arm_reader.where}.seeds[{i}]", reader.source))
                     for i, s in enumerate(arm_reader.items("seeds"))]
        part.arms.append(arm)
    return part


def _similarity(reader: _Reader) -> Similarity:
    sample, values = _sample(reader, 0.0, 1.0)
    low_data = reader.data.get("low_data", False)
    if not isinstance(low_data, bool):
        raise reader.fail("low_data", "true or false")
    return Similarity(sample, values, low_data)


def _representations(reader: _Reader) -> RepresentationPart:
    part = RepresentationPart(metric=reader.text("metric", "cca"),
                              split=reader.text("split", "validation"),
                              note=reader.text("note", "") or "")
    to_init = reader.child("to_init", {})
    for arch in to_init.data:
        inits = to_init.child(arch)
        for init in inits.data:
            blocks = []
            for index, item in enumerate(inits.items(init)):
                block = _Reader(item, f"{inits.where}.{init}[{index}]", reader.source)
                blocks.append((block.text("block") or f"block{index}", _similarity(block)))
            part.to_init.setdefault(str(arch), {})[str(init)] = blocks
    figure2 = reader.child("figure2", {})
    for arch in figure2.data:
        entry = figure2.child(arch)
        part.figure2_blocks[str(arch)] = entry.names("blocks")
        part.figure2_cite[str(arch)] = entry.text("cite", "") or ""
        part.figure2[str(arch)] = {key: _similarity(entry.child(key))
                                   for key in ("pretrained_vs_random", "random_vs_random")
                                   if key in entry.data}
    return part


def parse_evidence(data: Any, source: str) -> EvidenceFile:
    """Check and read an evidence file's JSON value (``source`` names it in errors)."""
    top = _Reader(data, "(top)", source)
    if top.data.get("format") != FORMAT or top.data.get("version") != VERSION:
        raise DataError(f"{source} is not a tfx evidence file (it needs \"format\": "
                        f"\"{FORMAT}\" and \"version\": {VERSION}); `tfx reproduce` writes one "
                        "as evidence.json in its study folder.")
    source = top.text("source", STUDY)
    if source not in (STUDY, PUBLISHED):
        raise top.fail("source", f'"{STUDY}" (measured: per-seed values, the calibrated tests '
                       f'only) or "{PUBLISHED}" (a paper\'s summary numbers)')
    evidence = EvidenceFile(title=top.text("title", "") or "", source=source,
                            citation=top.text("citation", "") or "", notes=top.names("notes"),
                            source_label=top.text("source_label", "ImageNet top-1") or "",
                            purpose=top.text("purpose", "") or "")
    roles = top.child("roles", {})
    evidence.roles = {str(k): roles.names(k) for k in roles.data}
    stands_for = top.child("stands_for", {})
    evidence.stands_for = {str(k): stands_for.text(k) or "" for k in stands_for.data}
    scores = top.child("source_scores", {})
    for arch in scores.data:
        entry = scores.child(arch)
        evidence.source_scores[str(arch)] = (entry.number("value", 0.0, 1.0, required=True),
                                             entry.pair("ci95"))
    settings = top.child("settings", {})
    evidence.settings = {str(k): settings.number(k, required=True) for k in settings.data}
    parts = top.child("parts", {})
    for name in parts.data:
        if name not in PARTS:
            raise parts.fail(str(name), f"one of {', '.join(PARTS)}")
        if name in PERFORMANCE_PARTS:
            evidence.performance[name] = _performance(name, parts.child(name))
        elif name == "convergence":
            evidence.convergence = _convergence(parts.child(name))
        else:
            evidence.representations = _representations(parts.child(name))
    return evidence


def load_evidence(path: str | os.PathLike) -> EvidenceFile:
    """Read and check an evidence file."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"--judge {path}: no such file; give an evidence.json written by `tfx "
                        "reproduce` (or `--judge paper` for the paper's own numbers).")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path} is not valid JSON ({exc}).") from None
    return parse_evidence(data, str(path))


def paper_evidence_path() -> Path:
    """The shipped evidence file of the paper's published numbers."""
    return Path(str(resources.files("transfusion_cli.reproduce") / PAPER_EVIDENCE))
