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
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from transfusion_cli.data.preprocess import normalize_array, prepare_image, read_image
from transfusion_cli.deploy.input_checks import input_warnings, model_warnings
from transfusion_cli.deploy.metadata import ModelMetadata
from transfusion_cli.deploy.ort_session import Session, create_session
from transfusion_cli.errors import DataError, ExportError, TfxError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".dcm")
# A label (multi-label, binary) or "referable" is called positive at this probability.
DECISION_THRESHOLD = 0.5


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

    def to_dict(self) -> dict[str, Any]:
        """Plain data for --json: failures carry only ``image`` and ``error``."""
        if self.error is not None:
            return {"image": self.image, "error": self.error}
        data: dict[str, Any] = {"image": self.image, "probabilities": self.probabilities,
                                "predicted": self.predicted}
        if self.referable_probability is not None:
            data["referable_probability"] = self.referable_probability
            data["referable"] = self.referable
        if self.warnings:
            data["warnings"] = list(self.warnings)
        return data


def image_channels(image: Image.Image) -> int:
    """1 for grayscale content (gray modes, or colour modes with all channels equal), else 3."""
    if image.mode in ("P", "PA"):
        image = image.convert("RGBA")
    colour_bands = [band for band in image.getbands() if band != "A"]
    if len(colour_bands) == 1:
        return 1
    rgb = np.asarray(image.convert("RGB"))
    same = np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 1], rgb[..., 2])
    return 1 if same else 3


class OnnxClassifier:
    """An exported tfx model in an onnxruntime session, with its metadata."""

    def __init__(self, path: str | os.PathLike, provider: str = "auto",
                 threads: int | None = None):
        self.path = Path(path)
        self.runtime: Session = create_session(self.path, provider, threads)
        session = self.runtime.session
        props = session.get_modelmeta().custom_metadata_map
        self.metadata = ModelMetadata.from_props(props, source=str(self.path))
        self._check_signature()
        self.model_warnings = model_warnings(self.metadata)
        self.input_warnings: dict[str, list[str]] = {}  # per prepared path

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
        meta = self.metadata
        # Reduced-scale JPEG decoding, as the training cache decodes (load_prepared).
        image = read_image(path, min_size=meta.image_size)
        found = image_channels(image)
        if found != meta.channels:
            kind = {1: "grayscale (1-channel)", 3: "colour (3-channel)"}
            raise DataError(f"{path} is a {kind[found]} image but the model expects "
                            f"{kind[meta.channels]} images; use a model trained on such images "
                            "or convert the file.")
        self.input_warnings[str(path)] = input_warnings(image, meta)
        return prepare_image(image, meta.image_size, meta.channels, meta.fundus_crop)

    def logits(self, images: np.ndarray) -> np.ndarray:
        """uint8 (N, H, W, C) -> logits (N, num_outputs) via the metadata's normalisation."""
        batch = normalize_array(images, self.metadata.mean, self.metadata.std)
        return self.runtime.run(batch)

    def describe(self, image: str, probs: np.ndarray) -> ImageResult:
        """Probabilities of one image -> named probabilities, prediction, referable decision."""
        meta, names = self.metadata, self.metadata.class_names
        result = ImageResult(image=image)
        if meta.task == "binary":
            positive = float(probs[0])
            if len(names) == 2:
                result.probabilities = {names[0]: 1.0 - positive, names[1]: positive}
                result.predicted = names[int(positive >= DECISION_THRESHOLD)]
            else:
                result.probabilities = {names[0]: positive}
                result.predicted = names[0] if positive >= DECISION_THRESHOLD else f"not {names[0]}"
            return result
        result.probabilities = {name: float(p) for name, p in zip(names, probs, strict=True)}
        if meta.task == "multilabel":
            result.predicted = [n for n, p in result.probabilities.items()
                                if p >= DECISION_THRESHOLD]
            return result
        result.predicted = names[int(np.argmax(probs))]
        if meta.referable_threshold is not None:
            referable = float(np.sum(probs[meta.referable_threshold:]))
            result.referable_probability = referable
            result.referable = referable >= DECISION_THRESHOLD
        return result

    def predict_files(self, paths: Sequence[str | os.PathLike], batch_size: int = 32
                      ) -> list[ImageResult]:
        """One result per path, in order; unreadable or unsuitable files become failures."""
        if batch_size < 1:
            raise DataError(f"--batch-size {batch_size} must be at least 1.")
        results: list[ImageResult] = []
        for start in range(0, len(paths), batch_size):
            chunk = [str(p) for p in paths[start: start + batch_size]]
            prepared: dict[int, np.ndarray] = {}
            slots: list[ImageResult | None] = []
            for index, path in enumerate(chunk):
                try:
                    prepared[index] = self.prepare(path)
                    slots.append(None)
                except TfxError as exc:
                    message = one_line(exc)
                    message = message if path in message else f"{path}: {message}"
                    slots.append(ImageResult(image=path, error=message))
            if prepared:
                order = sorted(prepared)
                logits = self.logits(np.stack([prepared[i] for i in order]))
                probs = probabilities(logits, self.metadata.task)
                for row, index in enumerate(order):
                    if not np.isfinite(logits[row]).all():  # never a diagnosis from NaN
                        slots[index] = ImageResult(image=chunk[index], error=(
                            f"{chunk[index]}: the model's output is not finite "
                            f"({_non_finite(logits[row])}); no prediction. Check the image, "
                            "or re-export the model from a checkpoint with finite weights."))
                    else:
                        slots[index] = self.describe(chunk[index], probs[row])
                        slots[index].warnings = [*self.model_warnings,
                                                 *self.input_warnings.pop(chunk[index], [])]
            results.extend(slot for slot in slots if slot is not None)
        return results


def _non_finite(values: np.ndarray) -> str:
    """"NaN" / "inf" / "NaN and inf" for a row of outputs that is not finite."""
    kinds = [name for name, bad in (("NaN", np.isnan(values).any()),
                                    ("inf", np.isinf(values).any())) if bad]
    return " and ".join(kinds)


def probabilities(logits: np.ndarray, task: str) -> np.ndarray:
    """Softmax over classes (multi-class), sigmoid per output otherwise (as in training's
    metrics; scipy.special here because importing scikit-learn would double predict's start)."""
    from scipy.special import expit, softmax

    logits = np.asarray(logits, dtype=np.float64)
    return softmax(logits, axis=1) if task == "multiclass" else expit(logits)


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
    """CSV text: image, predicted, [referable columns], one probability column per class,
    error (empty when predicted)."""
    prob_names = list(metadata.class_names)
    has_referable = metadata.task == "multiclass" and metadata.referable_threshold is not None
    header = ["image", "predicted"]
    header += ["referable_probability", "referable"] if has_referable else []
    header += [f"prob_{name}" for name in prob_names] + ["error"]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for r in results:
        predicted = ";".join(r.predicted) if isinstance(r.predicted, list) else r.predicted
        row: list[Any] = [r.image, predicted if r.error is None else ""]
        if has_referable:
            row += ["", ""] if r.error else [f"{r.referable_probability:.6f}", r.referable]
        row += [f"{r.probabilities[n]:.6f}" if n in r.probabilities else "" for n in prob_names]
        writer.writerow(row + [r.error or ""])
    return buffer.getvalue()
