"""Self-describing checkpoints: plain dicts that load with ``torch.load(weights_only=True)``.

Keys: ``format``, ``format_version``, ``tfx_version``, ``arch`` ({name, num_classes,
in_chans}), ``dataset`` (``DatasetInfo.to_dict()``), ``init`` ({name, report}),
``state_dict``, ``optimizer``, ``scheduler``, ``scaler``, ``step``, ``epoch``, ``rng``,
``metrics``, ``config``. ``similarity``, ``export`` and ``predict`` rebuild everything from a
checkpoint alone.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from transfusion_cli import __version__
from transfusion_cli.data.bundles import DatasetInfo
from transfusion_cli.errors import CheckpointError
from transfusion_cli.io import atomic_write
from transfusion_cli.limits import IMAGE_SIZE_CEILING, MAX_CLASSES, MAX_IN_CHANS, MIN_IMAGE_SIZE
from transfusion_cli.plugins import get_registry

FORMAT = "tfx-checkpoint"
FORMAT_VERSION = 1


def make_checkpoint(model: nn.Module, arch_name: str, info: DatasetInfo, *,
                    init: dict[str, Any] | None = None, step: int = 0, epoch: int = 0,
                    **extra: Any) -> dict[str, Any]:
    """A checkpoint dict for ``model`` (extra keys: optimizer, scheduler, rng, metrics, ...)."""
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    checkpoint = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "tfx_version": __version__,
        "arch": {"name": arch_name, "num_classes": int(info.num_outputs),
                 "in_chans": int(getattr(model, "in_chans", info.channels))},
        "dataset": info.to_dict(),
        "init": init or {"name": get_registry().baseline_init().name},
        "state_dict": state,
        "step": int(step),
        "epoch": int(epoch),
    }
    checkpoint.update(extra)
    return checkpoint


def recorded_init(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """The checkpoint's init record ({name, argument, report}); a checkpoint without one holds
    the architecture's own initialisation: the baseline init (``InitSpec.baseline``)."""
    return checkpoint.get("init") or {"name": get_registry().baseline_init().name}


def save_checkpoint(checkpoint: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write atomically (temp file, then rename)."""
    def writer(tmp: Path) -> None:
        # Through a Python file: a failed write (full disk, size limit) then stays an OSError
        # behind torch's RuntimeError, which atomic_write reports as such (io.storage_failure).
        with open(tmp, "wb") as handle:
            torch.save(checkpoint, handle)

    return atomic_write(path, writer)


def load_checkpoint(path: str | os.PathLike, map_location: str = "cpu") -> dict[str, Any]:
    """Load and validate a tfx checkpoint with ``weights_only=True``."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"Checkpoint {path} is a folder; pass the .pt file inside a run "
                              "folder (e.g. RUN/checkpoints/best.pt).")
    if not path.is_file():
        raise CheckpointError(f"Checkpoint {path} does not exist; pass the path of a .pt file "
                              "written by `tfx fit` (RUN/checkpoints/best.pt).")
    if path.suffix.lower() == ".onnx":  # torch's own message would be "Unsupported operand 8"
        raise CheckpointError(f"{path} is an ONNX model written by `tfx export`, not a "
                              "checkpoint; pass the .pt it was exported from (e.g. "
                              "RUN/checkpoints/best.pt).")
    checkpoint = torch_load_safely(path, "tfx checkpoint", map_location)
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a tfx checkpoint (no format='{FORMAT}' key); "
                              "use a file written by `tfx fit`.")
    validate_checkpoint(checkpoint, path)
    return checkpoint


def torch_load_safely(path: Path, what: str, map_location: str = "cpu") -> Any:
    """``torch.load(weights_only=True)`` with every failure as one CheckpointError line."""
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path} is empty (0 bytes), not a {what}; it was not written "
                              "completely. Use another copy of it.")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        # torch's message advises weights_only=False; tfx never repeats that advice.
        reasons = [line.strip() for line in str(exc).splitlines() if line.strip()
                   and not line.startswith(("Weights only load failed", "Please file",
                                            "Check the documentation"))]
        blocked = re.search(r"GLOBAL ([\w.]+)", str(exc))
        if blocked is None:
            reason = reasons[0] if reasons else "not a pickle torch can read"
            raise CheckpointError(f"Cannot read {what} {path} ({reason.rstrip('.')}); is it a "
                                  "complete file written by torch.save?") from None
        culprit = f" (it refers to {blocked.group(1)})"
        raise CheckpointError(f"Refused to load {path}: it holds Python objects that could run "
                              f"code{culprit}, not only tensors. tfx loads only plain tensor "
                              f"files; use a {what} from a source you trust.") from None
    except Exception as exc:
        raise CheckpointError(f"Cannot read {what} {path} ({describe_load_error(exc)}); "
                              "is the file complete and written by torch.save?") from None


def describe_load_error(exc: Exception) -> str:
    """A short description of a load failure: type and first line, cut at a word boundary."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = lines[0] if lines else "no details"
    if len(text) > 120:
        text = text.split(". ")[0].rstrip(".")
    if len(text) > 120:
        text = text[:120].rsplit(" ", 1)[0] + " ..."
    return f"{type(exc).__name__}: {text}"


def _require(ok: bool, path: Path, problem: str) -> None:
    if not ok:
        raise CheckpointError(f"{path} is a malformed tfx checkpoint: {problem}. Use an unedited "
                              "checkpoint written by `tfx fit`.")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def validate_checkpoint(checkpoint: dict[str, Any], path: Path) -> None:
    """Check, with bounds, every field the readers use before anything is built from it."""
    version = checkpoint.get("format_version")
    _require(_is_int(version) and version >= 1, path,
             f"format_version is {version!r}, not a positive integer")
    if version > FORMAT_VERSION:
        raise CheckpointError(f"{path} has checkpoint format {version}, newer than this tfx "
                              f"({FORMAT_VERSION}); upgrade tfx.")
    arch = checkpoint.get("arch")
    _require(isinstance(arch, dict), path, "the 'arch' entry is missing")
    _require(isinstance(arch.get("name"), str) and bool(arch["name"]), path,
             "arch.name is missing")
    for key, high in (("num_classes", MAX_CLASSES), ("in_chans", MAX_IN_CHANS)):
        value = arch.get(key)
        _require(_is_int(value) and 1 <= value <= high, path,
                 f"arch.{key} is {value!r}, not an integer in 1..{high}")
    dataset = checkpoint.get("dataset")
    _require(isinstance(dataset, dict), path, "the 'dataset' entry is missing")
    try:
        info = DatasetInfo.from_dict(dataset)
    except Exception as exc:  # missing or unknown keys, wrong types, DatasetInfo's own checks
        _require(False, path, f"its 'dataset' entry is not a dataset description "
                              f"({describe_load_error(exc)})")
    _require(_is_int(info.channels) and 1 <= info.channels <= MAX_IN_CHANS, path,
             f"dataset.channels is {info.channels!r}, not an integer in 1..{MAX_IN_CHANS}")
    _require(_is_int(info.image_size)
             and MIN_IMAGE_SIZE <= info.image_size <= IMAGE_SIZE_CEILING, path,
             f"dataset.image_size is {info.image_size!r}, not an integer in "
             f"{MIN_IMAGE_SIZE}..{IMAGE_SIZE_CEILING}")
    _require(info.num_outputs == arch["num_classes"], path,
             f"the dataset has {info.num_outputs} outputs but arch.num_classes is "
             f"{arch['num_classes']}")
    state = checkpoint.get("state_dict")
    _require(isinstance(state, dict) and all(isinstance(v, torch.Tensor) for v in state.values()),
             path, "state_dict is missing or holds something other than tensors")
    for key, tensor in state.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            bad = int((~torch.isfinite(tensor)).sum())
            raise CheckpointError(f"{path} holds non-finite weights: {bad} of {tensor.numel()} "
                                  f"values of '{key}' are NaN or infinite (training diverged "
                                  "before it was saved?). Use an earlier checkpoint.")


def checkpoint_dataset_info(checkpoint: dict[str, Any]) -> DatasetInfo:
    """The DatasetInfo stored in a checkpoint."""
    return DatasetInfo.from_dict(checkpoint["dataset"])


def build_model(checkpoint: dict[str, Any], load_weights: bool = True) -> nn.Module:
    """Rebuild the checkpoint's architecture through the registry and load its weights."""
    from transfusion_cli.plugins import get

    arch = checkpoint["arch"]
    spec = get("architectures", arch["name"])
    model = spec.build(num_classes=arch["num_classes"], in_chans=arch["in_chans"])
    if load_weights:
        try:
            model.load_state_dict(checkpoint["state_dict"])
        except RuntimeError as exc:
            raise CheckpointError(f"Checkpoint weights do not fit architecture "
                                  f"'{arch['name']}': {str(exc).splitlines()[0]}") from exc
    return model


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 of a file, hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
