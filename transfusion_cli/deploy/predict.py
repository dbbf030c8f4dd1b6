"""`tfx predict`: classify image files with an exported model using onnxruntime, numpy and
Pillow only (this module must never import torch; a test checks it).

Preprocessing comes from the model's tfx metadata and goes through the very functions the
training datasets use (``transfusion_cli.data.preprocess``), so an image file gives the same model
input here as in `tfx fit`.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from transfusion_cli.data.preprocess import (
    IMAGE_SUFFIXES,
    normalize_array,
    preprocess_step,
    read_image,
    read_image_bytes,
)
from transfusion_cli.deploy.decisions import (
    UNCALIBRATED_THRESHOLD,
    DecisionRule,
    decision_rule,
    disagreement,
    questions,
)
from transfusion_cli.deploy.heatmaps import batch_scale, explained_score, field_of_view, grad_cam
from transfusion_cli.deploy.input_checks import check_image, model_warnings
from transfusion_cli.deploy.metadata import ModelMetadata
from transfusion_cli.deploy.ort_session import Session, create_session
from transfusion_cli.errors import DataError, ExportError, TfxError
from transfusion_cli.io import csv_safe
from transfusion_cli.scores import probabilities

# Without a validated operating point (or --threshold), a label (multi-label, binary) or
# "referable" is called positive at this uncalibrated probability (deploy/decisions.py).
DECISION_THRESHOLD = UNCALIBRATED_THRESHOLD
HEATMAP_SUFFIX = ".heatmap.png"  # <image stem>.heatmap.png: predict --heatmaps' overlay names


@dataclass
class ImageResult:
    """The prediction for one image file, or why it could not be made."""

    image: str
    probabilities: dict[str, float] = field(default_factory=dict)
    # Class name (multi-class, binary) or list of positive label names (multi-label).
    predicted: str | list[str] | None = None
    referable_probability: float | None = None
    referable: bool | None = None
    error: str | None = None
    # Why this prediction may not mean what it seems (synthetic-data model, unlike input).
    warnings: list[str] = field(default_factory=list)
    # How ``predicted`` and ``referable`` were decided, at which threshold, from where
    # (multi-label: one threshold, source and operating point per label).
    predicted_rule: str | None = None
    referable_rule: str | None = None
    threshold: float | dict[str, float] | None = None
    threshold_source: str | dict[str, str] | None = None
    operating_point: str | dict[str, str | None] | None = None
    # Why the grade and the referable decision point different ways (None when they agree).
    note: str | None = None
    # --heatmaps: Grad-CAM (h, w) of ``heatmap_target`` (deploy/heatmaps.py), its value,
    # and where its overlay was written.
    heatmap: np.ndarray | None = field(default=None, repr=False)
    heatmap_target: str | None = None
    heatmap_score: float | None = None
    heatmap_file: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain data for --json (keys listed in docs/deploy.md): failures carry only
        ``image`` and ``error``."""
        if self.error is not None:
            return {"image": self.image, "error": self.error}
        data: dict[str, Any] = {"image": self.image, "probabilities": self.probabilities,
                                "predicted": self.predicted,
                                "predicted_rule": self.predicted_rule}
        if self.referable_probability is not None:
            data["referable_probability"] = self.referable_probability
            data["referable"] = self.referable
            data["referable_rule"] = self.referable_rule
        data.update(threshold=self.threshold, threshold_source=self.threshold_source,
                    operating_point=self.operating_point, note=self.note,
                    warnings=list(self.warnings))
        if self.heatmap_target is not None:
            data["heatmap"] = {"target": self.heatmap_target, "score": self.heatmap_score,
                               "max": float(self.heatmap.max()) if self.heatmap is not None
                               else None, "file": self.heatmap_file}
        return data


def json_record(result: ImageResult, provider: str) -> dict[str, Any]:
    """One image's record as `tfx predict --json` prints it and `tfx serve` answers it."""
    return dict(result.to_dict(), provider=provider) if result.error is None else result.to_dict()


class OnnxClassifier:
    """An exported tfx model in an onnxruntime session, with its metadata."""

    def __init__(self, path: str | os.PathLike, provider: str = "auto",
                 threads: int | None = None, threshold: float | None = None,
                 operating_point: str | None = None):
        self.path = Path(path)
        self.runtime: Session = create_session(self.path, provider, threads)
        session = self.runtime.session
        props = session.get_modelmeta().custom_metadata_map
        self.metadata = ModelMetadata.from_props(props, source=str(self.path))
        self._check_signature()
        self.model_warnings = model_warnings(self.metadata)
        # The dataset's preprocessing step, from the plugin that registered it.
        self.step = preprocess_step(self.metadata.preprocess, self.metadata.preprocess_plugin)
        # The validated operating point, unless --threshold / --operating-point override it.
        self.rule: DecisionRule = decision_rule(self.metadata, threshold, operating_point)
        outputs = [o.name for o in session.get_outputs()]
        self.heatmap_output = (self.metadata.heatmap_output
                               if self.metadata.heatmap_output in outputs[1:] else None)

    def _check_signature(self) -> None:
        """The graph's input and output must be what the metadata describes."""
        inputs, outputs = self.runtime.session.get_inputs(), self.runtime.session.get_outputs()
        meta = self.metadata
        expected = [meta.channels, meta.image_size, meta.image_size]
        shape = list(inputs[0].shape) if len(inputs) == 1 else []
        # Symbolic dimensions (the batch axis) are strings; fixed ones must match.
        fits = len(shape) == 4 and all(not isinstance(found, int) or found == wanted
                                       for found, wanted in zip(shape[1:], expected, strict=True))
        if not fits:
            raise ExportError(f"{self.path}: its input {[i.shape for i in inputs]} does not fit "
                              f"its tfx metadata ({meta.channels}x{meta.image_size}x"
                              f"{meta.image_size}); re-export it with `tfx export CKPT`.")
        out_dim = outputs[0].shape[-1] if outputs and outputs[0].shape else None
        if isinstance(out_dim, int) and out_dim != meta.num_outputs:
            raise ExportError(f"{self.path}: {out_dim} outputs but its tfx metadata names "
                              f"{meta.num_outputs}; re-export it with `tfx export CKPT`.")

    @property
    def provider(self) -> str:
        """The execution provider that runs the model."""
        return self.runtime.provider

    def prepare(self, path: str | os.PathLike) -> np.ndarray:
        """Image file -> uint8 (size, size, channels), exactly as the training data are made."""
        # Reduced-scale JPEG decoding, as the training cache decodes (load_prepared).
        return self.prepare_decoded(read_image(path, min_size=self.metadata.image_size),
                                    str(path))[0]

    def prepare_decoded(self, image: Image.Image, name: str) -> tuple[np.ndarray, list[str]]:
        """A decoded image -> (uint8 (size, size, channels) as training makes it, its input
        warnings); ``name`` names it in messages (the check `tfx explain` shares)."""
        meta = self.metadata
        return check_image(image, name, meta.image_size, meta.channels, meta.dataset, self.step)

    def logits(self, images: np.ndarray) -> np.ndarray:
        """uint8 (N, H, W, C) -> logits (N, num_outputs) via the metadata's normalisation."""
        batch = normalize_array(images, self.metadata.mean, self.metadata.std)
        return self.runtime.run(batch)

    @property
    def has_heatmaps(self) -> bool:
        """Whether the model carries the class-activation-map output (`tfx export` adds it
        to models ending in global average pooling + a linear head)."""
        return self.heatmap_output is not None

    def logits_and_cams(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """uint8 (N, H, W, C) -> (logits (N, outputs), class activation maps (N, outputs, h,
        w)) in one run."""
        self.require_heatmaps()
        session = self.runtime.session
        batch = normalize_array(images, self.metadata.mean, self.metadata.std)
        logits, cams = session.run([session.get_outputs()[0].name, self.heatmap_output],
                                   {session.get_inputs()[0].name: batch})
        return logits, cams

    def require_heatmaps(self) -> None:
        """Raise ExportError, saying how to get one, when the model has no heatmap output."""
        if self.heatmap_output is None:
            raise ExportError(f"{self.path} has no heatmap output; re-export it with this tfx "
                              "(`tfx export CKPT`), which adds one to models ending in global "
                              "average pooling and a linear head.")

    def describe(self, image: str, probs: np.ndarray) -> ImageResult:
        """Probabilities of one image -> named probabilities, prediction and referable
        decision at the rule's thresholds, with the rules and the thresholds' sources."""
        meta, names, rule = self.metadata, self.metadata.class_names, self.rule
        result = ImageResult(image=image, predicted_rule=rule.predicted_rule)
        if meta.task == "binary":
            positive = float(probs[0])
            cut = rule.threshold(names[-1])
            self._name_threshold(result, cut)
            if len(names) == 2:
                result.probabilities = {names[0]: 1.0 - positive, names[1]: positive}
                result.predicted = names[int(positive >= cut.value)]
            else:
                result.probabilities = {names[0]: positive}
                result.predicted = names[0] if positive >= cut.value else f"not {names[0]}"
            return result
        result.probabilities = {name: float(p) for name, p in zip(names, probs, strict=True)}
        if meta.task == "multilabel":
            cuts = {name: rule.threshold(name) for name in names}
            result.predicted = [n for n, p in result.probabilities.items()
                                if p >= cuts[n].value]
            result.threshold = {n: c.value for n, c in cuts.items()}
            result.threshold_source = {n: c.source for n, c in cuts.items()}
            result.operating_point = {n: c.operating_point for n, c in cuts.items()}
            return result
        grade = int(np.argmax(probs))
        result.predicted = names[grade]
        if meta.referable_threshold is not None:
            (question,) = questions(meta)
            cut = rule.threshold(question)
            self._name_threshold(result, cut)
            referable = float(np.sum(probs[meta.referable_threshold:]))
            result.referable_probability = referable
            result.referable = referable >= cut.value
            result.referable_rule = rule.referable_rule
            result.note = disagreement(meta, grade, referable, result.referable, cut.value)
        else:
            result.threshold_source = "no threshold: the prediction is the most probable class"
        return result

    @staticmethod
    def _name_threshold(result: ImageResult, cut) -> None:
        result.threshold, result.threshold_source = cut.value, cut.source
        result.operating_point = cut.operating_point

    def predict_files(self, paths: Sequence[str | os.PathLike], batch_size: int = 32,
                      heatmaps: bool = False) -> list[ImageResult]:
        """One result per path, in order; unreadable or unsuitable files become failures.
        ``heatmaps``: each result also carries its Grad-CAM (``heatmap``)."""
        names = [str(p) for p in paths]
        size = self.metadata.image_size
        return self._predict(names, lambda i: read_image(names[i], min_size=size), batch_size,
                             heatmaps)

    def predict_bytes(self, uploads: Sequence[tuple[str, bytes]], batch_size: int = 32,
                      heatmaps: bool = False) -> list[ImageResult]:
        """In memory (`tfx serve`): one result per (name, file content) pair, in order, exactly
        as ``predict_files`` gives for the same files; the type comes from the content, the
        name only labels the result. Nothing is written to disk. ``heatmaps``: see
        ``predict_files``; ``overlay_png(result, prepare_bytes(content))`` then draws one."""
        names = [name for name, _ in uploads]
        size = self.metadata.image_size
        return self._predict(names, lambda i: read_image_bytes(uploads[i][1], names[i],
                                                               min_size=size), batch_size,
                             heatmaps)

    def prepare_bytes(self, content: bytes, name: str = "upload") -> np.ndarray:
        """File content -> the model input (uint8 (size, size, channels)), as predicted."""
        image = read_image_bytes(content, name, min_size=self.metadata.image_size)
        return self.prepare_decoded(image, name)[0]

    def _predict(self, names: Sequence[str], decode: Callable[[int], Image.Image],
                 batch_size: int, heatmaps: bool = False) -> list[ImageResult]:
        """Results for images ``decode(0..len(names)-1)``, ``batch_size`` per model run."""
        if batch_size < 1:
            raise DataError(f"--batch-size {batch_size} must be at least 1.")
        if heatmaps:
            self.require_heatmaps()
        results: list[ImageResult] = []
        for start in range(0, len(names), batch_size):
            chunk = list(names[start: start + batch_size])
            prepared: dict[int, np.ndarray] = {}
            warned: dict[int, list[str]] = {}
            slots: list[ImageResult | None] = []
            for index, path in enumerate(chunk):
                try:
                    prepared[index], warned[index] = self.prepare_decoded(decode(start + index),
                                                                          path)
                    slots.append(None)
                except TfxError as exc:
                    message = one_line(exc)
                    message = message if path in message else f"{path}: {message}"
                    slots.append(ImageResult(image=path, error=message))
            if prepared:
                order = sorted(prepared)
                batch = np.stack([prepared[i] for i in order])
                logits, cams = self.logits_and_cams(batch) if heatmaps else \
                    (self.logits(batch), None)
                probs = probabilities(logits, self.metadata.task)
                for row, index in enumerate(order):
                    if not np.isfinite(logits[row]).all():  # never a diagnosis from NaN
                        slots[index] = ImageResult(image=chunk[index], error=(
                            f"{chunk[index]}: the model's output is not finite "
                            f"({_non_finite(logits[row])}); no prediction. Check the image, "
                            "or re-export the model from a checkpoint with finite weights."))
                    else:
                        slots[index] = self.describe(chunk[index], probs[row])
                        slots[index].warnings = [*self.model_warnings, *warned[index]]
                        if cams is not None:
                            self._attach_heatmap(slots[index], logits[row], cams[row])
            results.extend(slot for slot in slots if slot is not None)
        return results

    def _attach_heatmap(self, result: ImageResult, logits: np.ndarray, cams: np.ndarray) -> None:
        meta = self.metadata
        explained = explained_score(logits, meta.task, meta.class_names,
                                    meta.referable_threshold)
        result.heatmap = grad_cam(cams, explained.gradient).astype(np.float32)
        result.heatmap_target, result.heatmap_score = explained.description, explained.score

    def heatmap_scale(self, results: Sequence[ImageResult]) -> tuple[float, str]:
        """(colour-bar top, what it is): the model's absolute scale when it has one, else the
        largest value among ``results``' heatmaps (one scale across the batch)."""
        if self.metadata.heatmap_scale:
            return float(self.metadata.heatmap_scale), "fixed scale of this model"
        return batch_scale([r.heatmap for r in results]), "scale shared by this batch"

    def overlay_png(self, result: ImageResult, prepared: np.ndarray,
                    scale: tuple[float, str] | None = None) -> bytes:
        """The heatmap overlay of one predicted image as PNG bytes (deploy/overlays.py);
        ``prepared``: its model input (``prepare`` / ``prepare_bytes``); ``scale``: from
        ``heatmap_scale`` (default: the model's, or this image's own maximum)."""
        from transfusion_cli.deploy.overlays import OverlayText, overlay_png

        if result.heatmap is None:
            raise DataError(f"{result.image}: no heatmap to draw; predict with heatmaps=True "
                            "(`tfx predict --heatmaps DIR`).")
        vmax, what = scale or self.heatmap_scale([result])
        text = OverlayText(title=overlay_title(result), warning="; ".join(self.model_warnings)
                           or None,
                           colour_bar=f"Grad-CAM, {what}")
        return overlay_png(prepared, result.heatmap, text, vmax,
                           field_of_view(prepared, self.step))


def overlay_title(result: ImageResult) -> str:
    """An overlay's title: the image, the prediction with its score, the decision."""
    probs = result.probabilities
    if isinstance(result.predicted, list):
        shown = ", ".join(f"{n} {probs[n]:.2f}" for n in result.predicted) or "no label"
        line = f"labels at their thresholds: {shown}"
    else:
        score = probs.get(result.predicted or "")
        line = f"predicted {result.predicted}" + (f" (p {score:.2f})" if score is not None
                                                  else "")
    if result.referable_probability is not None:
        line += (f"; referable p {result.referable_probability:.2f} "
                 f"{'>=' if result.referable else '<'} {result.threshold:.3g}: "
                 f"{'referable' if result.referable else 'not referable'}")
    return (f"{Path(result.image).name}\n{line}\nheatmap: {result.heatmap_target} = "
            f"{result.heatmap_score:.3f}")


def write_heatmaps(classifier: OnnxClassifier, results: Sequence[ImageResult],
                   folder: str | os.PathLike) -> list[Path]:
    """Write ``<image stem>.heatmap.png`` overlays of the predicted ``results`` (from
    ``predict_files(..., heatmaps=True)``) into ``folder``, on one scale; numbered
    ``<stem>-2.heatmap.png`` ... when stems repeat. Sets each result's ``heatmap_file``."""
    from transfusion_cli.deploy.overlays import unique_stems, write_overlay

    folder = Path(folder)
    drawn = [r for r in results if r.heatmap is not None]
    scale = classifier.heatmap_scale(drawn)
    written = []
    for result, stem in zip(drawn, unique_stems([r.image for r in drawn]), strict=True):
        png = classifier.overlay_png(result, classifier.prepare(result.image), scale)
        path = write_overlay(folder / f"{stem}{HEATMAP_SUFFIX}", png, "--heatmaps")
        result.heatmap_file = str(path)
        written.append(path)
    return written


def _non_finite(values: np.ndarray) -> str:
    """"NaN" / "inf" / "NaN and inf" for a row of outputs that is not finite."""
    kinds = [name for name, bad in (("NaN", np.isnan(values).any()),
                                    ("inf", np.isinf(values).any())) if bad]
    return " and ".join(kinds)


def one_line(exc: BaseException) -> str:
    """The first line of an error message."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def collect_images(inputs: Iterable[str | os.PathLike]) -> list[str]:
    """Files as given, and the image files inside given folders (recursively, sorted); paths
    that do not exist are kept so that they are reported as failures in their place."""
    paths: list[str] = []
    for item in inputs:
        item = Path(item)
        if item.is_dir():
            found = sorted(p for p in item.rglob("*")
                           if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise DataError(f"Folder {item} holds no image files "
                                f"({', '.join(IMAGE_SUFFIXES)}); pass image files or a folder "
                                "of them.")
            paths.extend(str(p) for p in found)
        else:
            paths.append(str(item))
    if not paths:
        raise DataError("No images given; pass image files or folders: tfx predict MODEL.onnx "
                        "IMAGE_OR_DIR...")
    return paths


def results_csv(results: Sequence[ImageResult], metadata: ModelMetadata) -> str:
    """CSV text: image, predicted, [referable columns], threshold (multi-label: one per
    label), threshold_source, operating_point, note, one probability column per class,
    warnings ("; "-separated), heatmap, error (empty when predicted). Every cell is
    formula-neutralised (``io.csv_safe``)."""
    prob_names = list(metadata.class_names)
    has_referable = metadata.task == "multiclass" and metadata.referable_threshold is not None
    labels = metadata.task == "multilabel"
    header = ["image", "predicted"]
    header += ["referable_probability", "referable"] if has_referable else []
    header += [f"threshold_{n}" for n in prob_names] if labels else ["threshold"]
    header += ["threshold_source", "operating_point", "note"]
    header += [f"prob_{name}" for name in prob_names] + ["warnings", "heatmap", "error"]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([csv_safe(cell) for cell in header])
    for r in results:
        ok = r.error is None
        predicted = ";".join(r.predicted) if isinstance(r.predicted, list) else r.predicted
        row: list[Any] = [r.image, predicted if ok else ""]
        if has_referable:
            row += [f"{r.referable_probability:.6f}", r.referable] if ok else ["", ""]
        if labels:
            row += [f"{r.threshold[n]:.6g}" if ok else "" for n in prob_names]
            sources = sorted(set(r.threshold_source.values())) if ok else []
            points = sorted({p for p in r.operating_point.values() if p}) if ok else []
            row += ["; ".join(sources), ";".join(points)]
        else:
            row += [f"{r.threshold:.6g}" if ok and r.threshold is not None else "",
                    r.threshold_source if ok else "", (r.operating_point or "") if ok else ""]
        row.append(r.note or "")
        row += [f"{r.probabilities[n]:.6f}" if n in r.probabilities else "" for n in prob_names]
        row += ["; ".join(r.warnings), r.heatmap_file or "", r.error or ""]
        writer.writerow([csv_safe(cell) for cell in row])
    return buffer.getvalue()
