"""Small inputs that tests make themselves: images (noise, flat colour, NaN pixels, a
decompression bomb), a hand-made ONNX model, and the options of a tiny synthetic dataset."""

from __future__ import annotations

import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

# A small synthetic-retina dataset (64 train, 32 val, 32 test images of 32 px).
SMALL = ["--image-size", "32", "--option", "train_size=64", "--option", "val_size=32",
         "--option", "test_size=32"]


def image_folder(root: Path, per_class: int = 12, size: int = 40,
                 classes: tuple[str, ...] = ("normal", "sick")) -> Path:
    """root/CLASS/0.png, 1.png, ... of colour noise, one folder per class."""
    rng = np.random.default_rng(0)
    for name in classes:
        (root / name).mkdir(parents=True, exist_ok=True)
        for k in range(per_class):
            Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(
                root / name / f"{k}.png")
    return root


def bomb_png(path: Path, side: int = 20000) -> Path:
    """A PNG whose header says side x side grey pixels (a decompression bomb); its data are a
    few compressed rows only: tfx must refuse it from the header, before decoding anything."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    rows = zlib.compress(b"\x00" * (side + 1) * 4)
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows)
                     + chunk(b"IEND", b""))
    return path


def unwritable_folder() -> Path:
    """A folder this process cannot write into (/sys), or skip the test where there is none
    (e.g. when running as a user who may write there)."""
    import pytest

    root = Path("/sys")
    if not root.is_dir():
        pytest.skip("no /sys on this machine")
    probe = root / ".tfx-writable-probe"
    try:
        probe.touch()
    except OSError:
        return root
    probe.unlink()
    pytest.skip("no unwritable folder (/sys) on this machine")


def dead_pid() -> int:
    """The pid of a process that has exited."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def flat_png(path: Path, value: int, size: int = 16) -> Path:
    """A colour image near grey level ``value`` (channels differ, so it is not read as grey)."""
    colour = np.clip(np.array([value, value - 5, value - 10]) if value > 127 else
                     np.array([value, value + 5, value + 10]), 0, 255)
    Image.fromarray(np.broadcast_to(colour.astype(np.uint8), (size, size, 3)).copy()).save(path)
    return path


def nan_tiff(path: Path, size: int = 16) -> Path:
    """A float ('F') TIFF of 0.5 with one NaN pixel."""
    array = np.full((size, size), 0.5, np.float32)
    array[3, 4] = np.nan
    Image.fromarray(array, mode="F").save(path)
    return path


def log_mean_model(path: Path, size: int = 16, **changes: str) -> Path:
    """A 3-class ONNX model whose logits are log(mean of each normalised channel): finite for
    a white image, NaN for a black one (mean -1), with tfx metadata (``changes`` override it)."""
    import onnx
    from onnx import TensorProto, helper

    from transfusion_cli.deploy.metadata import ModelMetadata

    graph = helper.make_graph(
        [helper.make_node("ReduceMean", ["image"], ["mean"], axes=[2, 3], keepdims=0),
         helper.make_node("Log", ["mean"], ["logits"])], "log-mean",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 3])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    props = ModelMetadata(task="multiclass", class_names=("none", "mild", "severe"),
                          image_size=size, channels=3, mean=(0.5,) * 3, std=(0.5,) * 3,
                          architecture="hand-made", tfx_version="0",
                          checkpoint_sha256="0" * 64, dataset="hand", selection_metric="auc",
                          referable_threshold=1).to_props()
    props.update({f"tfx.{k}": v for k, v in changes.items()})
    for key, value in props.items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(path))
    return path
