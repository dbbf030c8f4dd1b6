"""`tfx evaluate`: a model (``.pt`` checkpoint or exported ``.onnx``) on a split of its dataset,
every task metric with a patient-level bootstrap CI, an operating point chosen on validation,
calibration, and (two models) the paired AUC difference with its CI and DeLong p-value."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from transfusion_cli import __version__
from transfusion_cli.data.bundles import DatasetInfo
from transfusion_cli.errors import ConfigError, DataError
from transfusion_cli.evaluation.bootstrap import bootstrap_many, paired_auc_difference
from transfusion_cli.evaluation.calibration import reliability
from transfusion_cli.evaluation.operating_point import (
    DEFAULT_SENSITIVITY,
    rates_at,
    threshold_for_sensitivity,
)
from transfusion_cli.evaluation.scores import compute_metrics, metric_values, probabilities

FORMAT = "tfx-evaluation"
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
        from transfusion_cli.models.checkpoint import (
            build_model,
            checkpoint_dataset_info,
            file_sha256,
            load_checkpoint,
        )
        from transfusion_cli.train.runtime import make_runtime, select_device

        self.checkpoint = load_checkpoint(self.path)
        self.info = checkpoint_dataset_info(self.checkpoint)
        self.image_size = self.info.image_size
        self.runtime = make_runtime(select_device("auto"), None, False)
        self.model = build_model(self.checkpoint).to(self.runtime.device).eval()
        self.in_chans = int(self.checkpoint["arch"]["in_chans"])
        self.facts = {"architecture": self.checkpoint["arch"]["name"],
                      "init": (self.checkpoint.get("init") or {}).get("name", "random"),
                      "step": self.checkpoint.get("step"), "sha256": file_sha256(self.path)}

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
            selection_metric=meta.selection_metric, fundus_crop=meta.fundus_crop)
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


def _bundle_for(model: _Model, data: str | None, data_dir: str | Path | None,
                options: dict[str, Any] | None):
    from transfusion_cli.data.build import build_dataset
    from transfusion_cli.registry import get

    name = data or model.info.name
    if model.checkpoint and name == model.info.name and not options:
        from transfusion_cli.deploy.export import checkpoint_dataset

        return checkpoint_dataset(model.checkpoint, model.info, model.image_size,
                                  Path(data_dir) if data_dir else None)
    spec_options = get("datasets", name).options
    options = dict(options or {})
    seed = 0
    if not options and name == model.info.name:  # as the model's training built it
        options = {k: v for k, v in (model.info.options or {}).items() if k in spec_options}
        seed = getattr(model, "data_seed", 0)
    return build_dataset(name, data_dir=data_dir, image_size=model.image_size, seed=seed,
                         options=options)


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
    from transfusion_cli.deploy.export import split_batches
    from transfusion_cli.progress import track

    model = _model or _Model(Path(path))
    bundle = _bundle or _bundle_for(model, data, data_dir, options)
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
                                   dict(model.facts))
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
        return [BinaryProblem(f"referable (grade >= {t})", (y >= t).astype(int),
                              probs[:, t:].sum(axis=1), every)]
    return [BinaryProblem(name, (y == c).astype(int), probs[:, c], every)
            for c, name in enumerate(info.class_names)]


def _strata(scores: SplitScores) -> np.ndarray:
    """What the bootstrap stratifies by: the class (multi-class), the label (binary), or one
    stratum for multi-label targets."""
    if scores.info.task == "multilabel":
        return np.zeros(scores.n, dtype=int)
    return scores.targets.reshape(-1).astype(int)


def _task_metrics(scores: SplitScores) -> Callable[[np.ndarray], dict[str, float]]:
    def compute(idx: np.ndarray) -> dict[str, float]:
        values = metric_values(compute_metrics(scores.logits[idx], scores.targets[idx],
                                               scores.info))
        # Youden threshold etc. are properties of the set, not scores to put a CI on.
        return {k: v for k, v in values.items()
                if k not in ("threshold", "sensitivity", "specificity")}
    return compute


def _operating_point(problem: BinaryProblem, val: BinaryProblem | None, scores: SplitScores,
                     sensitivity: float, n_boot: int, seed: int, level: float) -> dict[str, Any]:
    if val is None:
        return {"note": "no validation split to choose the threshold on"}
    y_val, s_val = val.y[val.keep], val.score[val.keep]
    threshold = threshold_for_sensitivity(y_val, s_val, sensitivity)
    keep = np.flatnonzero(problem.keep)
    y, s = problem.y[keep], problem.score[keep]
    groups = None if scores.groups is None else [scores.groups[i] for i in keep]
    at = rates_at(y, s, threshold)

    def compute(idx: np.ndarray) -> dict[str, float]:
        rates = rates_at(y[idx], s[idx], threshold)
        return {k: rates[k] for k in ("sensitivity", "specificity", "ppv", "npv")}

    cis = bootstrap_many(compute, y, groups, n_boot, seed, level)
    return {"target_sensitivity": sensitivity, "threshold": threshold,
            "chosen_on": "val", "val_sensitivity": rates_at(y_val, s_val, threshold)[
                "sensitivity"], **cis, "confusion_matrix": at["confusion_matrix"]}


def evaluate_scores(scores: SplitScores, val: SplitScores | None = None,
                    n_boot: int = DEFAULT_BOOTSTRAP, seed: int = 0,
                    sensitivity: float = DEFAULT_SENSITIVITY, level: float = 0.95,
                    show_progress: bool = False) -> dict[str, Any]:
    """The evaluation record of one model's outputs (see ``evaluate_model``)."""
    from transfusion_cli.progress import track

    if n_boot < 1:
        raise ConfigError(f"--bootstrap {n_boot} must be at least 1 (2000 is usual).")
    full = compute_metrics(scores.logits, scores.targets, scores.info)
    with track("bootstrap", total=n_boot, unit="resamples", enabled=show_progress) as task:
        metrics = bootstrap_many(_task_metrics(scores), _strata(scores), scores.groups, n_boot,
                                 seed, level, progress=task.advance)
    problems = binary_problems(scores)
    val_problems = binary_problems(val) if val is not None else [None] * len(problems)
    binary = {}
    for problem, val_problem in zip(problems, val_problems, strict=True):
        keep = problem.keep
        y, s = problem.y[keep], problem.score[keep]
        entry: dict[str, Any] = {"n": int(keep.sum()), "positives": int(y.sum()),
                                 "prevalence": float(y.mean()) if len(y) else math.nan}
        if 0 < y.sum() < len(y):
            entry["operating_point"] = _operating_point(problem, val_problem, scores,
                                                        sensitivity, n_boot, seed, level)
        entry["calibration"] = reliability(y, s)
        binary[problem.name] = entry
    return {
        "format": FORMAT, "tfx_version": __version__, "model": scores.model,
        "model_kind": scores.kind, **scores.facts, "dataset": scores.info.name,
        "task": scores.info.task, "split": scores.split, "n": scores.n,
        "patients": len(set(scores.groups)) if scores.groups is not None else None,
        "bootstrap": {"n_boot": n_boot, "seed": seed, "level": level,
                      "unit": "patient" if scores.groups is not None else "image",
                      "stratified_by": "class" if scores.info.task != "multilabel" else None,
                      "interval": "percentile"},
        "metrics": metrics, "nan_reasons": full.get("nan_reasons", {}), "binary": binary,
    }


def predict_with_val(path: str | Path, data: str | None = None,
                     data_dir: str | Path | None = None, split: str = "test",
                     options: dict[str, Any] | None = None, show_progress: bool = True
                     ) -> dict[str, SplitScores]:
    """``predict_split`` on ``split`` and, when the dataset has one, the validation split
    (where operating points are chosen)."""
    model = _Model(Path(path))
    bundle = _bundle_for(model, data, data_dir, options)
    extra = ("val",) if split != "val" and bundle.val is not None and len(bundle.val) else ()
    return predict_split(path, data, data_dir, split, options, extra, show_progress, model,
                         bundle)


def evaluate_model(path: str | Path, data: str | None = None,
                   data_dir: str | Path | None = None, split: str = "test",
                   n_boot: int = DEFAULT_BOOTSTRAP, seed: int = 0,
                   sensitivity: float = DEFAULT_SENSITIVITY, level: float = 0.95,
                   options: dict[str, Any] | None = None, show_progress: bool = True
                   ) -> tuple[dict[str, Any], dict[str, SplitScores]]:
    """Evaluate one model on ``split``; returns (record, outputs per split).

    The record holds every task metric with its bootstrap CI (``metrics[name] = {value,
    ci_low, ci_high, n_valid}``), and per yes/no question (``binary``) the prevalence, the
    operating point chosen on the validation split for ``sensitivity`` and applied unchanged
    to ``split``, and the calibration (ECE, reliability bins).
    """
    outputs = predict_with_val(path, data, data_dir, split, options, show_progress)
    record = evaluate_scores(outputs[split], outputs.get("val", outputs[split]), n_boot, seed,
                             sensitivity, level, show_progress)
    if "val" in outputs and split == "val":
        for entry in record["binary"].values():
            if "operating_point" in entry:
                entry["operating_point"]["note"] = ("threshold chosen on the very split it is "
                                                    "measured on (optimistic)")
    return record, outputs


def compare_scores(a: SplitScores, b: SplitScores, n_boot: int = DEFAULT_BOOTSTRAP,
                   seed: int = 0, level: float = 0.95) -> dict[str, Any]:
    """AUC of model b minus model a per yes/no question on the same images: paired bootstrap
    CI (same resamples for both) and the DeLong test p-value."""
    if a.n != b.n or not np.array_equal(np.nan_to_num(np.asarray(a.targets, dtype=float)),
                                        np.nan_to_num(np.asarray(b.targets, dtype=float))):
        raise DataError(f"{a.model} and {b.model} were scored on different images ({a.n} and "
                        f"{b.n}); compare models of the same dataset and split.")
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
            "difference": "AUC(b) - AUC(a)", "p_value": "DeLong test, two-sided",
            "auc": result}


def compare_models(path_a: str | Path, path_b: str | Path, data: str | None = None,
                   data_dir: str | Path | None = None, split: str = "test",
                   n_boot: int = DEFAULT_BOOTSTRAP, seed: int = 0, level: float = 0.95,
                   options: dict[str, Any] | None = None, show_progress: bool = True
                   ) -> dict[str, Any]:
    """``compare_scores`` of two models predicted on the same split."""
    a = predict_split(path_a, data, data_dir, split, options, show_progress=show_progress)
    b = predict_split(path_b, data or a[split].info.name, data_dir, split, options,
                      show_progress=show_progress)
    return compare_scores(a[split], b[split], n_boot, seed, level)


def evaluation_path(model: str | Path) -> Path:
    """Where `tfx evaluate` records its result beside a model: ``best.pt`` ->
    ``best.evaluation.json`` (`tfx export` reads it for the model card)."""
    model = Path(model)
    return model.with_name(model.stem + ".evaluation.json")


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
