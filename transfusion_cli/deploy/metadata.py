"""What a deployed tfx ONNX model knows about itself: the ``metadata_props`` written by export.

Every key starts with ``tfx.``; every value is a string (JSON for lists, numbers, booleans and
null). Pure Python: `tfx predict` reads it (through onnxruntime's ``custom_metadata_map``)
without importing torch or the ``onnx`` package.
"""

from __future__ import annotations

import json
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
        """Reject metadata that predict could not use (wrong format version, task, lengths)."""
        problem = None
        if self.format != FORMAT or self.format_version > FORMAT_VERSION:
            problem = (f"format {self.format} v{self.format_version} is not one this tfx reads "
                       f"({FORMAT} v{FORMAT_VERSION}); upgrade tfx")
        elif self.task not in TASKS:
            problem = f"task {self.task!r} is not one of {', '.join(TASKS)}"
        elif self.channels not in (1, 3) or len(self.mean) != self.channels \
                or len(self.std) != self.channels:
            problem = f"channels {self.channels} with mean/std {self.mean}/{self.std}"
        elif not self.class_names or self.image_size < 1:
            problem = "no class names or no input size"
        elif self.precision not in PRECISIONS:
            problem = f"precision {self.precision!r} is not one of {', '.join(PRECISIONS)}"
        if problem:
            raise ExportError(f"{source}: unusable tfx metadata ({problem}); re-export it with "
                              "`tfx export CKPT`.")

    @property
    def num_outputs(self) -> int:
        """Model outputs: one logit per class or label, or one for a binary task."""
        return 1 if self.task == "binary" else len(self.class_names)
