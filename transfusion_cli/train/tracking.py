"""Experiment tracking (``tfx fit --log tensorboard|mlflow``): every ``metrics.jsonl`` record
mirrored to TensorBoard or MLflow, the resolved config logged once as parameters.

``metrics.jsonl`` stays the record of truth; a tracker only mirrors its numeric values at the
record's step. Both trackers are optional extras (``tfx[tensorboard]``, ``tfx[mlflow]``),
checked before any training starts.
"""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path
from typing import Any, Protocol

from transfusion_cli.errors import ConfigError
from transfusion_cli.io import write_json

TRACKERS = ("none", "tensorboard", "mlflow")
# The module each tracker needs, and the extra that installs it.
REQUIREMENTS = {"tensorboard": ("tensorboard", "tensorboard"), "mlflow": ("mlflow", "mlflow")}
TENSORBOARD_DIR = "tensorboard"
MLFLOW_RECORD = "mlflow.json"  # the MLflow run id, so a resumed run logs into the same run


class Tracker(Protocol):
    """What the training loop calls."""

    def log_params(self, params: dict[str, Any]) -> None: ...
    def log_metrics(self, metrics: dict[str, float], step: int) -> None: ...
    def close(self) -> None: ...


def check_tracker(kind: str | None) -> None:
    """Fail before training when the tracker's package is missing, with the install line."""
    if kind in (None, "none"):
        return
    if kind not in REQUIREMENTS:
        raise ConfigError(f"--log {kind!r} is not one of {', '.join(TRACKERS)}.")
    module, extra = REQUIREMENTS[kind]
    if importlib.util.find_spec(module) is None:
        raise ConfigError(f"--log {kind} needs the {module} package, which is not installed; "
                          f"install it with: pip install 'tfx[{extra}]' (or pip install "
                          f"{module}).")


def scalars(record: dict[str, Any]) -> dict[str, float]:
    """The finite numeric values of a metrics.jsonl record (``best`` as 0/1), without step."""
    values: dict[str, float] = {}
    for key, value in record.items():
        if key == "step" or isinstance(value, str | dict | list | type(None)):
            continue
        if isinstance(value, int | float) and math.isfinite(float(value)):
            values[key] = float(value)
    return values


def flat_params(config: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """A nested config as ``key`` / ``options.key`` -> string (trackers store strings)."""
    params: dict[str, str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            params.update(flat_params(value, f"{name}."))
        else:
            params[name] = "none" if value is None else str(value)
    return params


class TensorBoardTracker:
    """Scalars in ``RUN/tensorboard/`` (``tensorboard --logdir RUN``); params as a text card."""

    def __init__(self, run_dir: Path):
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(Path(run_dir) / TENSORBOARD_DIR))

    def log_params(self, params: dict[str, Any]) -> None:
        rows = "\n".join(f"| {k} | {v} |" for k, v in flat_params(params).items())
        self.writer.add_text("config", "| setting | value |\n|---|---|\n" + rows, global_step=0)

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        for key, value in metrics.items():
            self.writer.add_scalar(key, value, global_step=step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class MlflowTracker:
    """One MLflow run per tfx run (resumed runs continue it), at MLflow's tracking URI
    (``$MLFLOW_TRACKING_URI``, else MLflow's default)."""

    def __init__(self, run_dir: Path):
        import mlflow

        self.mlflow = mlflow
        record_path = Path(run_dir) / MLFLOW_RECORD
        previous = json.loads(record_path.read_text()) if record_path.is_file() else {}
        if previous.get("run_id") and previous.get("tracking_uri") == mlflow.get_tracking_uri():
            self.run = mlflow.start_run(run_id=previous["run_id"])
        else:
            self.run = mlflow.start_run(run_name=Path(run_dir).name)
            write_json(record_path, {"run_id": self.run.info.run_id,
                                     "tracking_uri": mlflow.get_tracking_uri()})
        self.run_id = self.run.info.run_id

    def log_params(self, params: dict[str, Any]) -> None:
        existing = self.mlflow.get_run(self.run_id).data.params
        # MLflow params are write-once: a resume with a longer plan logs only what is new.
        fresh = {k: v for k, v in flat_params(params).items() if k not in existing}
        if fresh:
            self.mlflow.log_params(fresh, run_id=self.run_id)

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        self.mlflow.log_metrics(metrics, step=step, run_id=self.run_id)

    def close(self) -> None:
        self.mlflow.end_run()


def open_tracker(kind: str | None, run_dir: Path) -> Tracker | None:
    """The tracker ``--log`` asks for (None for ``none``)."""
    check_tracker(kind)
    if kind == "tensorboard":
        return TensorBoardTracker(run_dir)
    if kind == "mlflow":
        return MlflowTracker(run_dir)
    return None
