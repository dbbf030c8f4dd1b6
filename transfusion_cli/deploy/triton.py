"""`tfx export --triton-repo DIR`: a Triton Inference Server model repository,
``DIR/<name>/config.pbtxt`` (onnxruntime backend, dynamic batching, the graph's exact input
and output shapes, the preprocessing as parameters) and ``DIR/<name>/1/model.onnx``; on a
re-export tfx rewrites exactly those two files of its own folders.

The config is written as protobuf text by hand (tfx needs no protobuf at run time); a test
parses it with the ``ModelConfig`` message that ``tritonclient`` ships. A model folder that
tfx did not write (no marker line in its config.pbtxt) is never touched.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

from transfusion_cli.deploy.metadata import ModelMetadata
from transfusion_cli.errors import ConfigError

MARKER = "# written by tfx export; tfx may overwrite this folder"
CONFIG_FILE = "config.pbtxt"
VERSION = "1"
MAX_BATCH_SIZE = 32
QUEUE_DELAY_US = 500  # how long Triton may wait to fill a batch
ONNX_TYPES = {"tensor(float)": "TYPE_FP32", "tensor(float16)": "TYPE_FP16"}


def model_name(onnx_path: Path) -> str:
    """``model.int8.onnx`` -> ``model_int8``: a Triton model (folder) name."""
    name = re.sub(r"[^A-Za-z0-9_-]+", "_", Path(onnx_path).name.removesuffix(".onnx"))
    return name.strip("_") or "model"


def check_target(repo: Path, names: list[str]) -> None:
    """Refuse (before any work) a model folder in ``repo`` that tfx did not write."""
    if repo.exists() and not repo.is_dir():
        raise ConfigError(f"--triton-repo {repo} is a file; give a folder.")
    for name in names:
        folder = repo / name
        if folder.exists() and not written_by_tfx(folder):
            raise ConfigError(f"--triton-repo: {folder} exists and was not written by tfx "
                              "export; left it alone. Choose another folder or remove it.")


def written_by_tfx(folder: Path) -> bool:
    """Whether ``folder`` is a model folder `tfx export` wrote (its config starts with the
    marker)."""
    config = folder / CONFIG_FILE
    try:
        return config.is_file() and config.read_text(errors="replace").startswith(MARKER)
    except OSError:
        return False


def _quote(text: str) -> str:
    """A protobuf text-format string literal: printable ASCII kept, the rest octal-escaped."""
    out = []
    for byte in text.encode():
        char = chr(byte)
        if char in '"\\':
            out.append("\\" + char)
        elif not 32 <= byte < 127:
            out.append(f"\\{byte:03o}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def _dims(shape: list[Any]) -> str:
    """The non-batch dimensions (symbolic ones as -1)."""
    return ", ".join(str(d) if isinstance(d, int) and d > 0 else "-1" for d in shape[1:])


def graph_signature(onnx_path: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(inputs, outputs) of the ONNX graph: name, Triton data type, full shape."""
    from transfusion_cli.deploy.ort_session import create_session

    session = create_session(onnx_path, "cpu").session

    def describe(values) -> list[dict[str, Any]]:
        found = []
        for value in values:
            if value.type not in ONNX_TYPES:
                raise ConfigError(f"{onnx_path}: {value.name} is {value.type}; Triton export "
                                  "handles float32/float16 tensors only.")
            found.append({"name": value.name, "data_type": ONNX_TYPES[value.type],
                          "shape": list(value.shape)})
        return found

    return describe(session.get_inputs()), describe(session.get_outputs())


def render_config(name: str, metadata: ModelMetadata, inputs: list[dict[str, Any]],
                  outputs: list[dict[str, Any]]) -> str:
    """config.pbtxt text for one model."""
    def tensors(kind: str, values: list[dict[str, Any]]) -> list[str]:
        lines = [f"{kind} ["]
        for index, value in enumerate(values):
            comma = "," if index < len(values) - 1 else ""
            lines += ["  {", f"    name: {_quote(value['name'])}",
                      f"    data_type: {value['data_type']}",
                      f"    dims: [ {_dims(value['shape'])} ]", "  }" + comma]
        return lines + ["]"]

    preferred = [size for size in (4, 8, 16, 32) if size <= MAX_BATCH_SIZE]
    parameters = {
        "tfx.image_size": metadata.image_size, "tfx.channels": metadata.channels,
        "tfx.mean": list(metadata.mean), "tfx.std": list(metadata.std),
        "tfx.preprocess": metadata.preprocess, "tfx.task": metadata.task,
        "tfx.class_names": list(metadata.class_names),
        "tfx.referable_threshold": metadata.referable_threshold,
        "tfx.operating_points": metadata.operating_points,
        "tfx.dataset": metadata.dataset, "tfx.precision": metadata.precision,
    }
    lines = [MARKER,
             "# Inputs: float32 (channels, size, size) normalised with the tfx.mean / tfx.std",
             "# parameters below, after the tfx.preprocess step and a resize (docs/deploy.md).",
             f"name: {_quote(name)}", 'backend: "onnxruntime"',
             f"max_batch_size: {MAX_BATCH_SIZE}",
             *tensors("input", inputs), *tensors("output", outputs),
             "dynamic_batching {",
             f"  preferred_batch_size: [ {', '.join(map(str, preferred))} ]",
             f"  max_queue_delay_microseconds: {QUEUE_DELAY_US}", "}",
             "instance_group [ { kind: KIND_AUTO } ]"]
    for key, value in parameters.items():
        lines += ["parameters {", f"  key: {_quote(key)}",
                  f"  value: {{ string_value: {_quote(json.dumps(value))} }}", "}"]
    return "\n".join(lines) + "\n"


def write_triton_repo(repo: Path, models: list[tuple[Path, ModelMetadata]]) -> list[Path]:
    """Write ``repo/<name>/1/model.onnx`` and then ``repo/<name>/config.pbtxt`` for each (ONNX
    file, metadata), each file atomically; anything else in a model folder is left as it is.
    Returns the model folders."""
    from transfusion_cli.io import atomic_write, write_text

    names = [model_name(path) for path, _ in models]
    check_target(repo, names)
    written = []
    for (path, metadata), name in zip(models, names, strict=True):
        inputs, outputs = graph_signature(path)
        folder = repo / name
        (folder / VERSION).mkdir(parents=True, exist_ok=True)
        atomic_write(folder / VERSION / "model.onnx",
                     lambda tmp, source=path: shutil.copyfile(source, tmp))
        write_text(folder / CONFIG_FILE, render_config(name, metadata, inputs, outputs))
        written.append(folder)
    return written
