"""onnxruntime sessions with deliberate settings, provider choice and latency timing (no torch).

Settings: graph optimisation ``ORT_ENABLE_ALL`` (Conv+activation fusion, and the QDQ ->
QLinearConv fusion that makes int8 models fast; plain ``BASIC`` leaves QDQ models slower than
fp32), sequential execution (these models are one chain of ops, so inter-op parallelism has
nothing to run), and intra-op threads = the CPUs this process may use (the same count
PyTorch gets in the benchmark, so comparisons are fair).
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from transfusion_cli.errors import ConfigError, ExportError

PROVIDERS = ("auto", "cpu", "cuda")
CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
# onnxruntime's logger levels: 2 warning (its default), 4 fatal only.
ORT_WARNING, ORT_FATAL = 2, 4
OPTIMIZATION_LEVELS = {"basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED",
                       "all": "ORT_ENABLE_ALL"}
# onnxruntime's CPU layout transformer (NCHW -> NHWC around int8 convolutions, level "all").
NHWC_TRANSFORMER = "NhwcTransformer"


def cpu_threads() -> int:
    """CPUs available to this process (respects affinity / container limits)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def session_options(threads: int | None = None, level: str = "all",
                    optimized_path: Path | None = None):
    """SessionOptions as described in the module docstring; ``level`` (basic|extended|all)
    picks the graph optimisation level, ``optimized_path`` saves the optimised graph there."""
    import onnxruntime as ort

    if level not in OPTIMIZATION_LEVELS:
        raise ConfigError(f"Graph optimisation level {level!r} is not one of "
                          f"{', '.join(OPTIMIZATION_LEVELS)}.")
    options = ort.SessionOptions()
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel,
                                               OPTIMIZATION_LEVELS[level])
    if optimized_path is not None:
        options.optimized_model_filepath = str(optimized_path)
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = threads or cpu_threads()
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only; provider fallbacks are reported by tfx
    return options


@dataclass
class Session:
    """An onnxruntime session and the provider that actually runs it."""

    session: Any
    provider: str
    # Why a requested CUDA provider is not running (auto fell back to CPU); None otherwise.
    fallback_reason: str | None = None

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Run the model's single input -> first output."""
        feed = {self.session.get_inputs()[0].name: batch}
        return self.session.run([self.session.get_outputs()[0].name], feed)[0]


def _create(model: str | Path | bytes, providers: list[str], threads: int | None,
            tuning: dict[str, Any] | None = None):
    import onnxruntime as ort

    tuning = dict(tuning or {})
    disabled = tuning.pop("disabled_optimizers", None)
    options = session_options(threads, **tuning)
    # A provider that fails to load logs errors through onnxruntime's global logger; silence it
    # while the session is created: tfx reports the outcome itself (get_providers()).
    ort.set_default_logger_severity(ORT_FATAL)
    try:
        source = str(model) if isinstance(model, Path) else model
        return ort.InferenceSession(source, options, providers=providers,
                                    disabled_optimizers=disabled)
    except Exception as exc:  # onnxruntime raises its own pybind exception types
        name = model if not isinstance(model, bytes) else "the model"
        if isinstance(model, Path) and model.suffix.lower() == ".pt":
            raise ExportError(f"{name} is a PyTorch checkpoint, not an ONNX model; export it "
                              f"first (tfx export {name} -o model.onnx).") from exc
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ExportError(f"onnxruntime cannot load {name} ({first[:240]}); is it an ONNX model "
                          "written by `tfx export`?") from exc
    finally:
        ort.set_default_logger_severity(ORT_WARNING)


def _preload_cuda_libraries() -> None:
    """Let onnxruntime find CUDA/cuDNN from the nvidia-* pip wheels (as torch installs them)."""
    import onnxruntime as ort

    if hasattr(ort, "preload_dlls"):
        with contextlib.suppress(Exception):  # best effort: system CUDA needs no preloading
            ort.preload_dlls()


def create_session(model: str | Path | bytes, provider: str = "auto",
                   threads: int | None = None, tuning: dict[str, Any] | None = None) -> Session:
    """A session on ``provider`` (auto|cpu|cuda); ``cuda`` fails clearly instead of running on
    CPU, ``auto`` uses CUDA when it can be created and records why not otherwise.

    ``tuning`` (benchmarks): ``level``, ``optimized_path`` (see ``session_options``) and
    ``disabled_optimizers`` (e.g. ``[NHWC_TRANSFORMER]``)."""
    import onnxruntime as ort

    if provider not in PROVIDERS:
        raise ConfigError(f"--provider {provider!r} is not one of {', '.join(PROVIDERS)}.")
    if isinstance(model, str | Path) and not Path(model).is_file():
        raise ExportError(f"Model file {model} does not exist; pass an .onnx file written by "
                          "`tfx export`.")
    if provider == "cpu":
        return Session(_create(model, [CPU], threads, tuning), CPU)
    available = ort.get_available_providers()
    if CUDA not in available:
        reason = (f"this onnxruntime build has no {CUDA} (available: {', '.join(available)}); "
                  "install onnxruntime-gpu")
        if provider == "cuda":
            raise ConfigError(f"--provider cuda: {reason}, or use --provider cpu.")
        return Session(_create(model, [CPU], threads, tuning), CPU, reason)
    _preload_cuda_libraries()
    session = _create(model, [CUDA, CPU], threads, tuning)
    # onnxruntime-gpu silently falls back to CPU when CUDA cannot be created (no GPU, missing
    # CUDA/cuDNN libraries): the providers the session really has are the truth.
    if session.get_providers()[0] == CUDA:
        return Session(session, CUDA)
    reason = (f"{CUDA} could not be created: no usable GPU, or the CUDA/cuDNN libraries "
              "onnxruntime-gpu needs are missing")
    if provider == "cuda":
        raise ConfigError(f"--provider cuda: {reason}; use --provider cpu or auto.")
    return Session(session, session.get_providers()[0], reason)


def time_session(session: Session, batch: np.ndarray, repeats: int = 20,
                 warmup: int = 2) -> dict[str, float]:
    """Median and p90 wall time of ``session.run(batch)`` in ms, and images per second."""
    for _ in range(warmup):
        session.run(batch)
    times = []
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        session.run(batch)
        times.append(time.perf_counter() - start)
    return summarize_times(times, len(batch))


def summarize_times(times: list[float], batch_size: int) -> dict[str, float]:
    """{'batch', 'median_ms', 'p90_ms', 'images_per_s', 'runs'} of per-run wall times (s)."""
    median = float(np.median(times))
    return {"batch": batch_size, "median_ms": round(median * 1e3, 3),
            "p90_ms": round(float(np.percentile(times, 90)) * 1e3, 3),
            "images_per_s": round(batch_size / median, 2) if median > 0 else float("inf"),
            "runs": len(times)}
