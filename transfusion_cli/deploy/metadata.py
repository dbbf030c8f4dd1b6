"""What a deployed tfx ONNX model knows about itself: the ``metadata_props`` written by export.

Every key starts with ``tfx.``; every value is a string (JSON for lists, numbers, booleans and
null). Pure Python: `tfx predict` reads it (through onnxruntime's ``custom_metadata_map``)
without importing torch or the ``onnx`` package.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import MISSING, asdict, dataclass, fields
from typing import Any

from transfusion_cli.errors import ExportError
from transfusion_cli.limits import IMAGE_SIZE_CEILING, MIN_IMAGE_SIZE

PREFIX = "tfx."
FORMAT = "tfx-onnx"
# 2: the preprocessing step by name (``preprocess``, ``preprocess_plugin``); version 1 had a
# ``fundus_crop`` flag, read as the built-in step below.
FORMAT_VERSION = 2
LEGACY_FUNDUS_STEP = ("fundus_crop", "fundus")  # version 1's fundus_crop: (step, plugin)
# A step or plugin name read from a model file: a plain name, nothing a terminal interprets.
STEP_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,99}")
# A question or class name read from a model file: printable, no control characters.
PLAIN_TEXT = re.compile(r"[^\x00-\x1f\x7f-\x9f]{1,200}")
INPUT_NAME = "image"
OUTPUT_NAME = "logits"
HEATMAP_NAME = "class_activation_map"  # the optional second output (deploy/cam_export.py)
TASKS = ("multiclass", "multilabel", "binary")
PRECISIONS = ("fp32", "int8", "fp16")


@dataclass(frozen=True)
class ModelMetadata:
    """Everything needed to preprocess images for, and read the outputs of, an exported model."""

    task: str
    class_names: tuple[str, ...]
    image_size: int
    channels: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    architecture: str
    tfx_version: str
    checkpoint_sha256: str
    dataset: str
    selection_metric: str
    referable_threshold: int | None = None
    # The dataset's preprocessing step (``PreprocessSpec`` name) and the plugin (entry-point
    # name) that registers it: predict loads only that plugin to re-apply the step.
    preprocess: str | None = None
    preprocess_plugin: str | None = None
    precision: str = "fp32"
    # The model card's facts (deploy/model_card.py): training data, init, metrics, limits.
    model_card: dict[str, Any] | None = None
    # The thresholds `tfx evaluate` chose on validation, per yes/no question and by name:
    # {"referable (grade >= 2)": {"sens90": {"threshold": ..., ...}}} (deploy/decisions.py).
    operating_points: dict[str, dict[str, dict[str, Any]]] | None = None
    # A second graph output with the class activation maps (N, outputs, h, w) of a model that
    # ends in global average pooling + a linear head, and the absolute heatmap scale (the
    # 99th percentile of the validation images' heatmap maxima; deploy/heatmaps.py).
    heatmap_output: str | None = None
    heatmap_scale: float | None = None
    input_name: str = INPUT_NAME
    output_name: str = OUTPUT_NAME
    format: str = FORMAT
    format_version: int = FORMAT_VERSION

    def to_props(self) -> dict[str, str]:
        """``{"tfx.<field>": json string}`` for ``ModelProto.metadata_props``."""
        return {PREFIX + key: json.dumps(value) for key, value in asdict(self).items()}

    @classmethod
    def from_props(cls, props: Mapping[str, str], source: str = "the model") -> ModelMetadata:
        """Parse ``metadata_props`` (a dict); a model without tfx metadata is an ExportError."""
        if PREFIX + "format" not in props:
            raise ExportError(f"{source} has no tfx metadata (no '{PREFIX}format' entry); "
                              "predict with a model written by `tfx export CKPT`.")
        values: dict[str, Any] = {}
        for item in fields(cls):
            raw = props.get(PREFIX + item.name)
            if raw is None:
                if item.default is not MISSING:  # optional entry: keep the default
                    continue
                raise ExportError(f"{source}: tfx metadata lacks '{PREFIX}{item.name}'; "
                                  "re-export it with `tfx export CKPT`.")
            try:
                values[item.name] = json.loads(raw)
            except json.JSONDecodeError:
                raise ExportError(f"{source}: tfx metadata '{PREFIX}{item.name}' is not JSON "
                                  f"({raw[:60]!r}); re-export it with `tfx export CKPT`.") from None
        if values.get("format_version") == 1:
            values.update(_legacy_step(props, source))
        metadata = cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})
        metadata.validate(source)
        return metadata

    def validate(self, source: str = "the model") -> None:
        """Reject metadata predict could not use or would misread: format, task, types, sizes,
        class names, mean/std and the referable threshold."""
        problem = self.problem()
        if problem:
            raise ExportError(f"{source}: unusable tfx metadata ({problem}); re-export it with "
                              "`tfx export CKPT`.")

    def problem(self) -> str | None:
        """What is wrong with these values, or None."""
        def is_int(value: Any) -> bool:
            return isinstance(value, int) and not isinstance(value, bool)

        def numbers(values: Any) -> bool:
            return isinstance(values, tuple) and all(
                isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
                for v in values)

        if self.format != FORMAT or not is_int(self.format_version) \
                or self.format_version > FORMAT_VERSION:
            return (f"format {self.format} v{self.format_version} is not one this tfx reads "
                    f"({FORMAT} v{FORMAT_VERSION}); upgrade tfx")
        if self.task not in TASKS:
            return f"task {self.task!r} is not one of {', '.join(TASKS)}"
        if not isinstance(self.class_names, tuple) or not self.class_names \
                or not all(isinstance(n, str) and n for n in self.class_names):
            return f"class names {self.class_names!r} must be a non-empty list of names"
        if len(set(self.class_names)) != len(self.class_names):
            return f"class names {list(self.class_names)} repeat a name"
        if self.task == "binary" and len(self.class_names) > 2:
            return f"a binary model names {len(self.class_names)} classes (1 or 2 expected)"
        if self.task == "multiclass" and len(self.class_names) < 2:
            return "a multi-class model needs at least 2 class names"
        if not is_int(self.image_size) \
                or not MIN_IMAGE_SIZE <= self.image_size <= IMAGE_SIZE_CEILING:
            return (f"image size {self.image_size!r} is not an integer from {MIN_IMAGE_SIZE} to "
                    f"{IMAGE_SIZE_CEILING}")
        if self.channels not in (1, 3) or not is_int(self.channels):
            return f"channels {self.channels!r} is not 1 or 3"
        if not numbers(self.mean) or not numbers(self.std) or len(self.mean) != self.channels \
                or len(self.std) != self.channels or not all(v > 0 for v in self.std):
            return (f"channels {self.channels} with mean/std {self.mean}/{self.std} (one finite "
                    "value per channel, std positive)")
        if self.referable_threshold is not None and (
                self.task != "multiclass" or not is_int(self.referable_threshold)
                or not 1 <= self.referable_threshold < len(self.class_names)):
            return (f"referable threshold {self.referable_threshold!r} must be a class index "
                    f"from 1 to {len(self.class_names) - 1} of a multi-class model")
        for name in ("preprocess", "preprocess_plugin"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, str) and STEP_NAME.fullmatch(value)):
                return f"{name} {value!r} is not a plain name"
        if (self.preprocess is None) != (self.preprocess_plugin is None):
            return "preprocess and preprocess_plugin must be given together"
        if self.precision not in PRECISIONS:
            return f"precision {self.precision!r} is not one of {', '.join(PRECISIONS)}"
        if self.heatmap_output is not None and not (isinstance(self.heatmap_output, str)
                                                    and STEP_NAME.fullmatch(self.heatmap_output)):
            return f"heatmap output {self.heatmap_output!r} is not a plain name"
        if self.heatmap_scale is not None and not (
                numbers((self.heatmap_scale,)) and self.heatmap_scale > 0):
            return f"heatmap scale {self.heatmap_scale!r} is not a positive number"
        return (_text_fields_problem(self) or _model_card_problem(self.model_card)
                or _operating_points_problem(self.operating_points))

    @property
    def num_outputs(self) -> int:
        """Model outputs: one logit per class or label, or one for a binary task."""
        return 1 if self.task == "binary" else len(self.class_names)


def _legacy_step(props: Mapping[str, str], source: str) -> dict[str, Any]:
    """Format version 1's ``fundus_crop`` flag as the step and plugin it meant."""
    raw = props.get(PREFIX + "fundus_crop")
    if raw is None:
        raise ExportError(f"{source}: tfx metadata lacks '{PREFIX}fundus_crop'; re-export it "
                          "with `tfx export CKPT`.")
    flag = raw.strip().lower()
    if flag not in ("true", "false"):
        raise ExportError(f"{source}: unusable tfx metadata (fundus_crop {raw[:20]!r} is not "
                          "true or false); re-export it with `tfx export CKPT`.")
    step, plugin = LEGACY_FUNDUS_STEP if flag == "true" else (None, None)
    return {"preprocess": step, "preprocess_plugin": plugin}


# Fields that are one line of text (names, versions, hashes): shown, looked up, never parsed.
TEXT_FIELDS = ("architecture", "tfx_version", "checkpoint_sha256", "dataset", "selection_metric",
               "input_name", "output_name")


def _text_fields_problem(metadata: ModelMetadata) -> str | None:
    for name in TEXT_FIELDS:
        value = getattr(metadata, name)
        if not isinstance(value, str) or not PLAIN_TEXT.fullmatch(value):
            return f"{name} {str(value)[:40]!r} is not one line of text"
    return None


def _is_option_value(value: Any) -> bool:
    """A dataset option's value as a card stores it: a scalar, None, or a list of scalars."""
    if isinstance(value, list):
        return all(_is_option_value(item) and not isinstance(item, list) for item in value)
    return value is None or isinstance(value, str | int | float | bool)


def _model_card_problem(card: Any) -> str | None:
    """What is wrong with the ``model_card`` entry (deploy/model_card.py's facts), or None:
    each part that predict, evaluate and serve read has the type they read it as."""
    if card is None:
        return None
    if not isinstance(card, dict):
        return f"model card {str(card)[:40]!r} is not a mapping"
    for key in ("training_data", "metrics", "preprocessing"):
        if card.get(key) is not None and not isinstance(card[key], dict):
            return f"model card {key} {str(card[key])[:40]!r} is not a mapping"
    training = card.get("training_data") or {}
    def count(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool) and v >= 0

    checks = {  # key: (test, what it must be)
        "name": (lambda v: isinstance(v, str), "text"),
        "train_images": (count, "a whole number"),
        "synthetic": (lambda v: isinstance(v, bool), "true or false"),
        "data_seed": (count, "a whole number"),
        "options": (lambda v: isinstance(v, dict) and all(
            isinstance(k, str) and _is_option_value(x) for k, x in v.items()),
            "a mapping of option names to values"),
    }
    for key, (ok, wanted) in checks.items():
        if training.get(key) is not None and not ok(training[key]):
            return (f"model card training_data.{key} {str(training[key])[:40]!r} is not "
                    f"{wanted}")
    description = (card.get("preprocessing") or {}).get("step_description")
    if description is not None and not isinstance(description, str):
        return f"model card step description {str(description)[:40]!r} is not text"
    warnings = card.get("selection_warnings")
    if warnings is not None and not (isinstance(warnings, list)
                                     and all(isinstance(w, str) for w in warnings)):
        return f"model card selection_warnings {str(warnings)[:40]!r} is not a list of text"
    return None


def _operating_points_problem(points: Any) -> str | None:
    """What is wrong with the ``operating_points`` entry, or None: questions and names are
    plain text, every threshold a probability."""
    if points is None:
        return None
    if not isinstance(points, dict):
        return "operating points are not a mapping"
    for question, named in points.items():
        if not isinstance(question, str) or not PLAIN_TEXT.fullmatch(question) \
                or not isinstance(named, dict) or not named:
            return f"operating point question {str(question)[:40]!r} is not plain text"
        for name, entry in named.items():
            if not isinstance(name, str) or not STEP_NAME.fullmatch(name):
                return f"operating point name {str(name)[:40]!r} is not a plain name"
            threshold = entry.get("threshold") if isinstance(entry, dict) else None
            if isinstance(threshold, bool) or not isinstance(threshold, int | float) \
                    or not 0.0 <= threshold <= 1.0:
                return (f"operating point {name!r} of {question!r} has threshold "
                        f"{threshold!r}, not a probability")
    return None
