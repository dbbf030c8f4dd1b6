"""Errors raised by the library; only the CLI turns them into messages and exit codes."""

from __future__ import annotations

import difflib


class TfxError(Exception):
    """A user-facing error: the message says what was wrong and how to fix it."""

    exit_code = 1


class UnknownNameError(TfxError, KeyError):
    """A registry lookup for a name that nobody registered."""

    def __init__(self, kind: str, name: str, known: list[str]):
        self.kind, self.name, self.known = kind, name, known
        singular = {"architectures": "architecture", "datasets": "dataset", "inits": "init",
                    "metrics": "metric",
                    "preprocessing": "preprocessing step"}.get(kind, kind)
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.5)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        super().__init__(f"Unknown {singular} '{name}'.{hint} See `tfx list {kind}`.")

    def __str__(self) -> str:  # KeyError would repr() the message otherwise
        return str(self.args[0])


class ConfigError(TfxError):
    """A configuration value or file that cannot be used."""


class DataError(TfxError):
    """Missing, malformed or unusable data."""


class CheckpointError(TfxError):
    """A checkpoint that cannot be read or does not fit what was asked."""


class ExportError(TfxError):
    """An export that failed or did not pass its checks."""


class TrainingError(TfxError):
    """Training that cannot go on (e.g. a non-finite loss)."""


class MissingExtraError(TfxError):
    """An optional dependency that a command needs is not installed."""


# Top-level modules of optional dependencies -> (what they are, the extra that installs them).
EXTRA_MODULES = {
    "torch": ("PyTorch", "train"), "torchvision": ("torchvision", "train"),
    "timm": ("timm", "train"), "onnx": ("the onnx package", "train"),
    "sklearn": ("scikit-learn", "train"), "threadpoolctl": ("threadpoolctl", "train"),
    "pydantic": ("pydantic", "train"),
    "pytorch_grad_cam": ("grad-cam", "explain"), "fastapi": ("FastAPI", "serve"),
    "uvicorn": ("uvicorn", "serve"), "multipart": ("python-multipart", "serve"),
    "pydicom": ("pydicom", "dicom"), "submitit": ("submitit", "slurm"),
}


def missing_extra(exc: BaseException) -> MissingExtraError | None:
    """For a ModuleNotFoundError of an optional dependency: the one-line error naming the
    extra to install; None for anything else."""
    if not isinstance(exc, ModuleNotFoundError) or not exc.name:
        return None
    found = EXTRA_MODULES.get(exc.name.split(".")[0])
    if found is None:
        return None
    what, extra = found
    return MissingExtraError(f"This command needs {what} (module '{exc.name}'), which this "
                             f"install lacks: pip install 'transfusion-cli[{extra}]'.")
