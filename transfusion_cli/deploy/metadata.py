"""What a deployed tfx ONNX model knows about itself: the ``metadata_props`` written by export.

Every key starts with ``tfx.``; every value is a string (JSON for lists, numbers, booleans and
null). Pure Python: `tfx predict` reads it (through onnxruntime's ``custom_metadata_map``)
without importing torch or the ``onnx`` package.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import MISSING, asdict, dataclass, fields
from typing import Any

from transfusion_cli.errors import ExportError

PREFIX = "tfx."
FORMAT = "tfx-onnx"
FORMAT_VERSION = 1
INPUT_NAME = "image"
OUTPUT_NAME = "logits"
TASKS = ("multiclass", "multilabel", "binary")
PRECISIONS = ("fp32", "int8", "fp16")
# Largest input side predict accepts from metadata (a bigger one is corrupt, not a model).
MAX_IMAGE_SIZE = 8192


@dataclass(frozen=True)
class ModelMetadata:
    """Everything needed to preprocess images for, and read the outputs of, an exported model."""

    task: str
    class_names: tuple[str, ...]
    image_size: int
    channels: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    fundus_crop: bool
    architecture: str
    tfx_version: str
    checkpoint_sha256: str
    dataset: str
    selection_metric: str
    referable_threshold: int | None = None
    precision: str = "fp32"
    # The model card's facts (deploy/model_card.py): training data, init, metrics, limits.
    model_card: dict[str, Any] | None = None
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
        if not is_int(self.image_size) or not 1 <= self.image_size <= MAX_IMAGE_SIZE:
            return f"image size {self.image_size!r} is not an integer from 1 to {MAX_IMAGE_SIZE}"
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
        if not isinstance(self.fundus_crop, bool):
            return f"fundus_crop {self.fundus_crop!r} is not true or false"
        if self.precision not in PRECISIONS:
            return f"precision {self.precision!r} is not one of {', '.join(PRECISIONS)}"
        return None

    @property
    def num_outputs(self) -> int:
        """Model outputs: one logit per class or label, or one for a binary task."""
        return 1 if self.task == "binary" else len(self.class_names)
