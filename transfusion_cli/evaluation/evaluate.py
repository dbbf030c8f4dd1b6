"""`tfx evaluate`: a model (``.pt`` checkpoint or exported ``.onnx``) on a split of its dataset,
every task metric with a patient-level bootstrap CI, an operating point chosen on validation,
calibration, and (two models) the paired AUC difference with its CI and a paired test's p-value
(DeLong's, or Obuchowski's clustered test when the split has patient ids)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from transfusion_cli import __version__
from transfusion_cli.data.bundles import DatasetInfo
from transfusion_cli.deploy.decisions import operating_point_name, referable_question
from transfusion_cli.errors import ConfigError, DataError
from transfusion_cli.evaluation import weighted
from transfusion_cli.evaluation.bootstrap import (
    DELONG,
    OBUCHOWSKI,
    bootstrap_many,
    paired_auc_difference,
)
from transfusion_cli.evaluation.calibration import reliability
from transfusion_cli.evaluation.operating_point import (
    DEFAULT_SENSITIVITY,
    check_sensitivity,
    rates_at,
    threshold_for_sensitivity,
)
from transfusion_cli.limits import IMAGE_SIZE_CEILING
from transfusion_cli.runfolder import EVALUATION_FORMAT
from transfusion_cli.scores import compute_metrics, metric_values, probabilities

DEFAULT_BOOTSTRAP = 2000
EVAL_BATCH = 64


@dataclass
class SplitScores:
    """One model's outputs on one split of a dataset."""

    model: str
    kind: str  # "checkpoint" or "onnx"
    info: DatasetInfo
    split: str
    logits: np.ndarray
    targets: np.ndarray
    groups: list[str] | None  # patient id per image, when the dataset has them
    facts: dict[str, Any] = field(default_factory=dict)  # architecture, init, sha256, ...
    # The data scored: DataSource.describe() and its fingerprint (None: not known).
    data: dict[str, Any] | None = None

    @property
    def n(self) -> int:
        """Number of images scored."""
        return len(self.targets)


@dataclass
class BinaryProblem:
    """A yes/no question the model answers with a probability (referable DR, one label, ...)."""

    name: str
    y: np.ndarray  # 0/1
    score: np.ndarray  # probability of 1
    keep: np.ndarray  # which images take part (multi-label masks unlabelled ones out)


# ---------------------------------------------------------------------------- models


def _model_kind(path: Path) -> str:
    if not path.is_file():
        raise ConfigError(f"Model {path} does not exist; pass a checkpoint (.pt, e.g. "
                          "RUN/checkpoints/best.pt) or an exported model (.onnx).")
    suffix = path.suffix.lower()
    if suffix in (".pt", ".pth"):
        return "checkpoint"
    if suffix == ".onnx":
        return "onnx"
    raise ConfigError(f"Model {path} is neither a checkpoint (.pt) nor an ONNX export (.onnx).")


class _Model:
    """A checkpoint or ONNX model that turns uint8 image batches (N, C, H, W) into logits."""

    def __init__(self, path: Path):
        self.path, self.kind = path, _model_kind(path)
        if self.kind == "checkpoint":
            self._load_checkpoint()
        else:
            self._load_onnx()

    def _load_checkpoint(self) -> None:
        from transfusion_cli.models.checkpoint import file_sha256
        from transfusion_cli.models.runtime import make_runtime
        from transfusion_cli.models.trained import load_trained

        trained = load_trained(self.path, "auto")
        self.checkpoint, self.info, self.model = trained.checkpoint, trained.info, trained.model
        self.image_size = self.info.image_size
        self.runtime = make_runtime(trained.device, None, False)
        self.in_chans = trained.in_chans
        self.facts = {"architecture": trained.arch, "init": trained.init, "step": trained.step,
                      "sha256": file_sha256(self.path)}

    def _load_onnx(self) -> None:
        from transfusion_cli.deploy.predict import OnnxClassifier
        from transfusion_cli.models.checkpoint import file_sha256

        self.classifier = OnnxClassifier(self.path)
        meta = self.classifier.metadata
        self.checkpoint = {}
        self.image_size = meta.image_size
        self.info = DatasetInfo(
            name=meta.dataset, task=meta.task, class_names=tuple(meta.class_names),
            channels=meta.channels, image_size=meta.image_size, mean=tuple(meta.mean),
            std=tuple(meta.std), referable_threshold=meta.referable_threshold,
            selection_metric=meta.selection_metric, preprocess=meta.preprocess)
        # The model card records how the training data were built (seed, options).
        training = (meta.model_card or {}).get("training_data") or {}
        self.data_seed = int(training.get("data_seed") or 0)
        self.info = dataclasses.replace(self.info, options=dict(training.get("options") or {}))
        self.facts = {"architecture": meta.architecture, "precision": meta.precision,
                      "checkpoint_sha256": meta.checkpoint_sha256, "sha256": file_sha256(self.path)}

    def logits(self, images) -> np.ndarray:
        """uint8 torch tensor (N, C, H, W) -> float logits (N, outputs)."""
        if self.kind == "onnx":
            return self.classifier.logits(images.permute(0, 2, 3, 1).numpy())
        import torch

        from transfusion_cli.data.bundles import normalize

        with torch.inference_mode():
            x = self.runtime.layout(normalize(self.runtime.to_device(images), self.info,
                                              self.in_chans))
            with self.runtime.autocast():
                return self.model(x).float().cpu().numpy()


def dataset_groups(dataset) -> list[str] | None:
    """The patient id of each image of a split (its optional ``groups`` attribute), or None."""
    groups = getattr(dataset, "groups", None)
    if groups is None and hasattr(dataset, "dataset") and hasattr(dataset, "indices"):
        inner = dataset_groups(dataset.dataset)
        return None if inner is None else [inner[i] for i in dataset.indices]
    return None if groups is None else [str(g) for g in groups]


def _source_for(model: _Model, data: str | None, data_dir: str | Path | None,
                options: dict[str, Any] | None, strict: bool = True):
    """The dataset the model is scored on: ``data``/``data_dir``/``options`` where given,
    else the one recorded in the model, as its training built it."""
    from transfusion_cli.data.source import DataSource
    from transfusion_cli.plugins import get

    name = data or model.info.name
    if model.checkpoint and name == model.info.name and not options:
        from transfusion_cli.data.batches import checkpoint_source

        return checkpoint_source(model.checkpoint, model.info,
                                 Path(data_dir) if data_dir else None, strict)
    spec_options = get("datasets", name).options
    options = dict(options or {})
    seed = 0
    if not options and name == model.info.name:  # as the model's training built it
        options = {k: v for k, v in (model.info.options or {}).items() if k in spec_options}
        seed = getattr(model, "data_seed", 0)
    return DataSource.named(name, data_dir, options, seed)


def _bundle_for(model: _Model, data: str | None, data_dir: str | Path | None,
                options: dict[str, Any] | None):
    source = _source_for(model, data, data_dir, options)
    bundle = source.build(model.image_size, max_size=IMAGE_SIZE_CEILING)  # the model's size
    return bundle, source


def evaluation_source(path: str | Path, data: str | None = None,
                      data_dir: str | Path | None = None, options: dict[str, Any] | None = None):
    """The ``DataSource`` `evaluate_model` reads with these arguments, found without building
    it: its ``input_roots`` are what the output guard keeps `tfx evaluate`'s files out of,
    its ``fingerprint`` keys the record beside the model."""
    return _source_for(_Model(Path(path)), data, data_dir, options, strict=False)


def _check_compatible(model: _Model, info: DatasetInfo) -> None:
    mine = model.info
    if info.task != mine.task or tuple(info.class_names) != tuple(mine.class_names):
        raise DataError(f"{model.path} predicts {mine.task} {list(mine.class_names)} but dataset "
                        f"'{info.name}' has {info.task} {list(info.class_names)}; evaluate on "
                        "a dataset with the same classes.")


def predict_split(path: str | Path, data: str | None = None, data_dir: str | Path | None = None,
                  split: str = "test", options: dict[str, Any] | None = None,
                  splits: tuple[str, ...] = (), show_progress: bool = True,
                  _model: _Model | None = None, _bundle=None) -> dict[str, SplitScores]:
    """Outputs of the model at ``path`` on ``split`` (and on each of ``splits``) of its
    dataset (default: the one recorded in the model), keyed by split name."""
    from transfusion_cli.data.batches import split_batches
    from transfusion_cli.progress import track

    model = _model or _Model(Path(path))
    bundle, source = _bundle or _bundle_for(model, data, data_dir, options)
    data_facts = {**source.describe(), "fingerprint": source.fingerprint}
    _check_compatible(model, bundle.info)
    result = {}
    for name in dict.fromkeys((split, *splits)):
        dataset = bundle.split(name)
        if len(dataset) == 0:
            raise DataError(f"The {name} split of '{bundle.info.name}' is empty; nothing to "
                            "evaluate.")
        logits, targets = [], []
        with track(f"evaluate {Path(path).name} on {name}", total=len(dataset), unit="images",
                   enabled=show_progress) as task:
            for images, target in split_batches(dataset, batch_size=EVAL_BATCH):
                logits.append(model.logits(images))
                targets.append(target.numpy())
                task.advance(len(images))
        result[name] = SplitScores(str(path), model.kind, bundle.info, name,
                                   np.concatenate(logits).astype(np.float64),
                                   np.concatenate(targets), dataset_groups(dataset),
                                   dict(model.facts), dict(data_facts))
    return result


# ---------------------------------------------------------------------------- metrics


def binary_problems(scores: SplitScores) -> list[BinaryProblem]:
    """The yes/no questions of the task: referable DR (grades >= threshold), the positive
    class (binary), each label (multi-label) or each class against the rest (multi-class)."""
    info = scores.info
    probs = probabilities(scores.logits, info.task)
    every = np.ones(scores.n, dtype=bool)
    if info.task == "binary":
        return [BinaryProblem(info.class_names[-1], scores.targets.reshape(-1).astype(int),
                              probs.reshape(-1), every)]
    if info.task == "multilabel":
        targets = np.asarray(scores.targets, dtype=np.float64).reshape(scores.n, -1)
        problems = []
        for index, name in enumerate(info.class_names):
            keep = ~np.isnan(targets[:, index])
            problems.append(BinaryProblem(name, np.nan_to_num(targets[:, index]).astype(int),
                                          probs[:, index], keep))
        return problems
    y = scores.targets.reshape(-1).astype(int)
    if info.referable_threshold is not None:
        t = info.referable_threshold
        return [BinaryProblem(referable_question(t), (y >= t).astype(int),
                              probs[:, t:].sum(axis=1), every)]
    return [BinaryProblem(name, (y == c).astype(int), probs[:, c], every)
            for c, name in enumerate(info.class_names)]


def _strata(scores: SplitScores) -> np.ndarray:
    """What the bootstrap stratifies by: the class (multi-class), the label (binary), or one
    stratum for multi-label targets."""
    if scores.info.task == "multilabel":
        return np.zeros(scores.n, dtype=int)
    return scores.targets.reshape(-1).astype(int)


def _task_point(full: dict[str, Any]) -> dict[str, float]:
    """The task metrics on every case that get a CI (``weighted.task_metrics`` computes the
    same names per replicate)."""
    # Youden threshold etc. are properties of the set, not scores to put a CI on.
    return {k: v for k, v in metric_values(full).items()
            if k not in ("threshold", "sensitivity", "specificity")}


def _rates_with_cis(y: np.ndarray, s: np.ndarray, groups: list[str] | None, threshold: float,
                    keys: tuple[str, ...], n_boot: int, seed: int, level: float
                    ) -> dict[str, Any]:
    """``keys`` of ``rates_at`` at ``threshold``, each with its bootstrap CI."""
    at = rates_at(y, s, threshold)
    return bootstrap_many(weighted.rates(y, s, threshold, keys), y, groups, n_boot, seed, level,
                          point={k: at[k] for k in keys})


def _operating_point(problem: BinaryProblem, val: BinaryProblem | None, scores: SplitScores,
                     sensitivity: float, n_boot: int, seed: int, level: float,
                     val_groups: list[str] | None = None) -> dict[str, Any]:
    if val is None:
        return {"note": "no validation split to choose the threshold on"}
    val_keep = np.flatnonzero(val.keep)
    y_val, s_val = val.y[val_keep], val.score[val_keep]
    threshold = threshold_for_sensitivity(y_val, s_val, sensitivity)
    keep = np.flatnonzero(problem.keep)
    y, s = problem.y[keep], problem.score[keep]
    groups = None if scores.groups is None else [scores.groups[i] for i in keep]
    at = rates_at(y, s, threshold)
    cis = _rates_with_cis(y, s, groups, threshold, ("sensitivity", "specificity", "ppv", "npv"),
                          n_boot, seed, level)
    # The split the threshold was chosen on, with its own CIs: `tfx export` stores both.
    kept_val_groups = None if val_groups is None else [val_groups[i] for i in val_keep]
    validation = {"split": "val", "n": int(len(y_val)), "positives": int(y_val.sum()),
                  **_rates_with_cis(y_val, s_val, kept_val_groups, threshold,
                                    ("sensitivity", "specificity"), n_boot, seed, level)}
    return {"name": operating_point_name(sensitivity), "target_sensitivity": sensitivity,
            "threshold": threshold, "chosen_on": "val",
            "val_sensitivity": validation["sensitivity"]["value"], "validation": validation,
            **cis, "confusion_matrix": at["confusion_matrix"]}


def evaluate_scores(scores: SplitScores, val: SplitScores | None = None,
                    n_boot: int = DEFAULT_BOOTSTRAP, seed: int = 0,
                    sensitivity: float | Sequence[float] = DEFAULT_SENSITIVITY,
                    level: float = 0.95, show_progress: bool = False) -> dict[str, Any]:
    """The evaluation record of one model's outputs (see ``evaluate_model``); ``sensitivity``:
    one target or several (one operating point each, the first is ``operating_point``)."""
    from transfusion_cli.progress import track

    targets = _sensitivities(sensitivity)
    if n_boot < 1:
        raise ConfigError(f"--bootstrap {n_boot} must be at least 1 (2000 is usual).")
    full = compute_metrics(scores.logits, scores.targets, scores.info)
    with track("bootstrap", total=n_boot, unit="resamples", enabled=show_progress) as task:
        metrics = bootstrap_many(weighted.task_metrics(scores.logits, scores.targets,
                                                       scores.info),
                                 _strata(scores), scores.groups, n_boot, seed, level,
                                 progress=task.advance, point=_task_point(full))
    problems = binary_problems(scores)
    val_problems = binary_problems(val) if val is not None else [None] * len(problems)
    binary = {}
    for problem, val_problem in zip(problems, val_problems, strict=True):
        keep = problem.keep
        y, s = problem.y[keep], problem.score[keep]
        entry: dict[str, Any] = {"n": int(keep.sum()), "positives": int(y.sum()),
                                 "prevalence": float(y.mean()) if len(y) else math.nan}
        if 0 < y.sum() < len(y):
            points = [_operating_point(problem, val_problem, scores, target, n_boot, seed,
                                       level, val.groups if val is not None else None)
                      for target in targets]
            entry["operating_point"] = points[0]
            if "threshold" in points[0]:
                entry["operating_points"] = {point["name"]: point for point in points}
        entry["calibration"] = reliability(y, s)
        binary[problem.name] = entry
    return {
        "format": EVALUATION_FORMAT, "tfx_version": __version__, "model": scores.model,
        "model_kind": scores.kind, **scores.facts, "dataset": scores.info.name,
        "data": scores.data,
        "task": scores.info.task, "split": scores.split, "n": scores.n,
        "patients": len(set(scores.groups)) if scores.groups is not None else None,
        "bootstrap": {"n_boot": n_boot, "seed": seed, "level": level,
                      "unit": "patient" if scores.groups is not None else "image",
                      "stratified_by": "class" if scores.info.task != "multilabel" else None,
                      "interval": "percentile"},
        "metrics": metrics, "nan_reasons": full.get("nan_reasons", {}), "binary": binary,
    }


def _sensitivities(sensitivity: float | Sequence[float]) -> list[float]:
    """The target sensitivities, in order, without repeats (at least one)."""
    values = [sensitivity] if isinstance(sensitivity, int | float) else list(sensitivity)
    values = list(dict.fromkeys(float(v) for v in values)) or [DEFAULT_SENSITIVITY]
    for value in values:
        check_sensitivity(value)
    names = [operating_point_name(v) for v in values]
    if len(set(names)) != len(names):
        raise ConfigError(f"--sensitivity values {values} name the same operating point twice "
                          "(names round to 0.1 %); give distinct targets.")
    return values


def predict_with_val(path: str | Path, data: str | None = None,
                     data_dir: str | Path | None = None, split: str = "test",
                     options: dict[str, Any] | None = None, show_progress: bool = True
                     ) -> dict[str, SplitScores]:
    """``predict_split`` on ``split`` and, when the dataset has one, the validation split
    (where operating points are chosen)."""
    model = _Model(Path(path))
    bundle, source = _bundle_for(model, data, data_dir, options)
    extra = ("val",) if split != "val" and bundle.val is not None and len(bundle.val) else ()
    return predict_split(path, data, data_dir, split, options, extra, show_progress, model,
                         (bundle, source))


def evaluate_model(path: str | Path, data: str | None = None,
                   data_dir: str | Path | None = None, split: str = "test",
                   n_boot: int = DEFAULT_BOOTSTRAP, seed: int = 0,
                   sensitivity: float | Sequence[float] = DEFAULT_SENSITIVITY,
                   level: float = 0.95, options: dict[str, Any] | None = None,
                   show_progress: bool = True
                   ) -> tuple[dict[str, Any], dict[str, SplitScores]]:
    """Evaluate one model on ``split``; returns (record, outputs per split).

    The record holds every task metric with its bootstrap CI (``metrics[name] = {value,
    ci_low, ci_high, n_valid}``), and per yes/no question (``binary``) the prevalence, the
    operating point chosen on the validation split for ``sensitivity`` and applied unchanged
    to ``split`` (several targets: ``operating_points`` by name, e.g. ``sens90``), and the
    calibration (ECE, reliability bins).
    """
    _sensitivities(sensitivity)  # checked before any inference
    outputs = predict_with_val(path, data, data_dir, split, options, show_progress)
    # Never on the evaluated split unless it is the validation split itself (noted below).
    record = evaluate_scores(outputs[split], outputs.get("val"), n_boot, seed, sensitivity,
                             level, show_progress)
    if split == "val":
        for entry in record["binary"].values():
            for point in [entry.get("operating_point"),
                          *(entry.get("operating_points") or {}).values()]:
                if point is not None:
                    point["note"] = ("threshold chosen on the very split it is measured on "
                                     "(optimistic)")
    return record, outputs


def compare_scores(a: SplitScores, b: SplitScores, n_boot: int = DEFAULT_BOOTSTRAP,
                   seed: int = 0, level: float = 0.95) -> dict[str, Any]:
    """AUC of model b minus model a per yes/no question on the same images: paired bootstrap
    CI (same resamples for both) and the paired test's p-value: DeLong's, or Obuchowski's
    clustered test when the images carry patient ids (``p_method`` in each entry)."""
    if a.n != b.n or not np.array_equal(np.nan_to_num(np.asarray(a.targets, dtype=float)),
                                        np.nan_to_num(np.asarray(b.targets, dtype=float))):
        counts = (f"{a.n} and {b.n} images" if a.n != b.n else
                  f"both {b.split} splits hold {a.n} images, but their labels differ")
        raise DataError(f"{a.model} and {b.model} were scored on different images ({counts}: "
                        "the models' data differ, e.g. another data seed or split option); "
                        "compare models of the same dataset and split.")
    result = {}
    for pa, pb in zip(binary_problems(a), binary_problems(b), strict=True):
        keep = np.flatnonzero(pa.keep)
        y = pa.y[keep]
        if y.min() == y.max():
            result[pa.name] = {"note": "only one class present; AUC undefined"}
            continue
        groups = None if a.groups is None else [a.groups[i] for i in keep]
        result[pa.name] = paired_auc_difference(y, pa.score[keep], pb.score[keep], groups,
                                                n_boot, seed, level)
    return {"model_a": a.model, "model_b": b.model, "split": a.split, "n": a.n,
            "difference": "AUC(b) - AUC(a)",
            "p_value": DELONG if a.groups is None else OBUCHOWSKI,
            "auc": result}


def compare_model_aucs(path_a: str | Path, path_b: str | Path, data: str | None = None,
                       data_dir: str | Path | None = None, split: str = "test",
                       n_boot: int = DEFAULT_BOOTSTRAP, seed: int = 0, level: float = 0.95,
                       options: dict[str, Any] | None = None, show_progress: bool = True
                       ) -> dict[str, Any]:
    """``compare_scores`` of two model files predicted on the same split: each yes/no
    question's AUC difference with a paired bootstrap CI and the paired test's p-value."""
    a = predict_split(path_a, data, data_dir, split, options, show_progress=show_progress)
    b = predict_split(path_b, data or a[split].info.name, data_dir, split, options,
                      show_progress=show_progress)
    return compare_scores(a[split], b[split], n_boot, seed, level)


def write_figures(record: dict[str, Any], scores: SplitScores, out: str | Path) -> list[Path]:
    """ROC, precision-recall and reliability PNGs per yes/no question into ``out``."""
    from transfusion_cli.evaluation.plots import pr_figure, reliability_figure, roc_figure, slug

    out = Path(out)
    written = []
    metrics = record["metrics"]
    for problem in binary_problems(scores):
        entry = record["binary"][problem.name]
        y, s = problem.y[problem.keep], problem.score[problem.keep]
        if not 0 < y.sum() < len(y):
            continue
        key = _auc_key(scores.info, problem.name)
        auc = metrics.get(key)
        ci = (auc["value"], auc["ci_low"], auc["ci_high"]) if auc else None
        stem = slug(problem.name)
        written.append(roc_figure(record, problem.name, y, s, ci, out / f"roc_{stem}.png"))
        written.append(pr_figure(record, problem.name, y, s, out / f"pr_{stem}.png"))
        written.append(reliability_figure(record, problem.name, out / f"reliability_{stem}.png"))
        entry["figures"] = [str(p) for p in written[-3:]]
    return written


def _auc_key(info: DatasetInfo, name: str) -> str | None:
    if info.task == "multilabel":
        return f"auc/{name}"
    if info.task == "binary":
        return "auc"
    return "referable_auc" if info.referable_threshold is not None else None
