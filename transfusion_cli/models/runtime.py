"""Device, mixed precision and memory layout: AMP on CUDA, channels_last everywhere.

Every command and library routine that takes ``--device`` resolves it with ``resolve_device``."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import torch

from transfusion_cli.errors import ConfigError


@dataclass(frozen=True)
class Runtime:
    """How tensors are placed and computed in this run."""

    device: torch.device
    amp_dtype: torch.dtype | None = None  # None: full precision
    # NHWC convolutions: faster with cuDNN + AMP, and with oneDNN on CPU too (about 30% for
    # cbr-tiny at 128 px; see benchmarks/fit_throughput.py).
    channels_last: bool = True

    @property
    def needs_scaler(self) -> bool:
        """fp16 needs loss scaling; bf16 and fp32 do not."""
        return self.amp_dtype == torch.float16

    def autocast(self) -> contextlib.AbstractContextManager:
        """Autocast context for forward passes (a no-op without AMP)."""
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def to_device(self, images: torch.Tensor) -> torch.Tensor:
        """A host batch on the device (non-blocking from pinned memory on CUDA)."""
        return images.to(self.device, non_blocking=self.device.type == "cuda")

    def layout(self, images: torch.Tensor) -> torch.Tensor:
        """The batch in the memory format the model runs in."""
        return images.contiguous(memory_format=torch.channels_last) if self.channels_last \
            else images

    def describe(self) -> str:
        """One phrase for the log: device and precision."""
        precision = {None: "fp32", torch.bfloat16: "bf16 AMP", torch.float16: "fp16 AMP"}
        extra = ", channels_last" if self.channels_last else ""
        return f"{self.device} ({precision[self.amp_dtype]}{extra})"


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """The device a ``--device`` value names: ``auto`` is CUDA when present, else CPU; ``cpu``,
    ``cuda`` and ``cuda:N`` as torch reads them. Plain ``cuda`` is this process's GPU
    (``local_rank`` under torchrun). Asking for a GPU that is not there is a ConfigError."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise ConfigError(f"--device {name!r} is not a device; use auto, cpu or cuda.") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"--device {name} was asked for but no CUDA GPU is visible; use "
                              "--device cpu (or auto).")
        if device.index is None:
            device = torch.device("cuda", local_rank)
        if device.index >= torch.cuda.device_count():
            raise ConfigError(f"--device {device} asks for GPU {device.index} but only "
                              f"{torch.cuda.device_count()} are visible; use --device cuda.")
    return device


def make_runtime(device: torch.device, amp: bool | None, deterministic: bool) -> Runtime:
    """AMP dtype (bf16 where supported, else fp16), channels_last and cuDNN settings."""
    use_amp = (device.type == "cuda") if amp is None else amp
    amp_dtype = None
    if use_amp:
        if device.type == "cuda":
            amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        else:
            amp_dtype = torch.bfloat16  # CPU autocast supports bf16 only
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = not deterministic
    if deterministic:
        torch.backends.cudnn.deterministic = True
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
    return Runtime(device=device, amp_dtype=amp_dtype, channels_last=True)


def default_workers(device: torch.device) -> int:
    """Loader processes: none on CPU (they would compete with the model for the cores)."""
    if device.type != "cuda":
        return 0
    return min(8, os.cpu_count() or 1)
