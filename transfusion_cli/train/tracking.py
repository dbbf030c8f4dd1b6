"""Experiment tracking (``tfx fit --log tensorboard|mlflow``): every ``metrics.jsonl`` record
mirrored to TensorBoard or MLflow, the resolved config logged once as parameters.

``metrics.jsonl`` stays the record of truth; a tracker only mirrors its numeric values at the
record's step. Both trackers are optional extras (``transfusion-cli[tensorboard]``,
``transfusion-cli[mlflow]``), checked before any training starts.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import math
import os
import time
import urllib.parse
from pathlib import Path
from typing import Any, Protocol

from transfusion_cli.errors import ConfigError
from transfusion_cli.io import write_json

TRACKERS = ("none", "tensorboard", "mlflow")
# The modules each tracker needs (all installed by the extra of the same name). MLflow's SQLite
# store, tfx's default, needs SQLAlchemy and Alembic, which mlflow-skinny does not bring.
REQUIREMENTS = {"tensorboard": ("tensorboard",), "mlflow": ("mlflow", "sqlalchemy", "alembic")}
TENSORBOARD_DIR = "tensorboard"
MLFLOW_RECORD = "mlflow.json"  # the MLflow run id, so a resumed run logs into the same run
MLFLOW_DB = "mlflow.db"  # the run's own MLflow store when $MLFLOW_TRACKING_URI is not set
TRACKING_URI_VARIABLE = "MLFLOW_TRACKING_URI"
REACH_TIMEOUT_S = 10  # an MLflow server that does not answer within this is reported at once


class Tracker(Protocol):
    """What the training loop calls."""

    def log_params(self, params: dict[str, Any]) -> None: ...
    def log_metrics(self, metrics: dict[str, float], step: int) -> None: ...
    def close(self) -> None: ...


def check_tracker(kind: str | None) -> None:
    """Fail before training when the tracker's packages are missing (with the install line) or
    when ``$MLFLOW_TRACKING_URI`` names a store that cannot be used."""
    if kind in (None, "none"):
        return
    if kind not in REQUIREMENTS:
        raise ConfigError(f"--log {kind!r} is not one of {', '.join(TRACKERS)}.")
    needs = REQUIREMENTS[kind]
    if kind == "mlflow" and not uses_database(explicit_tracking_uri()):
        needs = ("mlflow",)  # a server or other store: SQLAlchemy is the server's business
    missing = [m for m in needs if importlib.util.find_spec(m) is None]
    if missing:
        raise ConfigError(f"--log {kind} needs {', '.join(missing)}, not installed; install "
                          f"with: pip install 'transfusion-cli[{kind}]'.")
    if kind == "mlflow" and explicit_tracking_uri() is not None:
        check_tracking_uri(explicit_tracking_uri())


def explicit_tracking_uri() -> str | None:
    """``$MLFLOW_TRACKING_URI`` when set (and not empty), else None."""
    return os.environ.get(TRACKING_URI_VARIABLE) or None


def uses_database(uri: str | None) -> bool:
    """Whether MLflow reaches ``uri`` through SQLAlchemy (None: tfx's SQLite default)."""
    scheme = urllib.parse.urlsplit(uri).scheme.split("+")[0] if uri else "sqlite"
    return scheme in ("sqlite", "mysql", "postgresql", "mssql")


def run_tracking_uri(run_dir: Path) -> str:
    """The SQLite store inside the run folder, tfx's default MLflow store (MLflow's own default
    is a store in the current folder, and its file store is in maintenance mode)."""
    path = (Path(run_dir) / MLFLOW_DB).resolve().as_posix()
    return "sqlite:///" + urllib.parse.quote(path, safe="/")  # '?', '#', '%' stay in the name


def check_tracking_uri(uri: str) -> None:
    """A ConfigError (one line) unless MLflow can open the store at ``uri``."""
    from mlflow.tracking import MlflowClient

    try:
        if urllib.parse.urlsplit(uri).scheme in ("http", "https"):
            # MLflow retries an unreachable server for minutes; ask once, briefly.
            import requests

            requests.get(uri, timeout=REACH_TIMEOUT_S)
        MlflowClient(uri).search_experiments(max_results=1)
    except Exception as exc:  # MLflow, SQLAlchemy and requests each raise their own
        raise ConfigError(f"--log mlflow cannot use ${TRACKING_URI_VARIABLE}={uri!r}: "
                          f"{_first_line(exc)} Set it to a reachable MLflow server or database "
                          f"(e.g. sqlite:///PATH/mlflow.db), or unset it to log into "
                          f"RUN/{MLFLOW_DB}.") from None


def _first_line(exc: Exception, limit: int = 300) -> str:
    """The first line of an exception's message, cut after a whole sentence when long."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = lines[0] if lines else type(exc).__name__
    text = "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text)  # no terminal codes
    if len(text) > limit:
        end = text.rfind(". ", 0, limit)
        text = text[:end + 1] if end > 0 else text[:limit] + "..."
    return text if text.endswith((".", "...")) else text + "."


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
    """One MLflow run per tfx run (a resume continues it) in ``$MLFLOW_TRACKING_URI`` when set,
    else in the run folder's own SQLite store ``RUN/mlflow.db``."""

    def __init__(self, run_dir: Path):
        from mlflow.environment_variables import MLFLOW_EXPERIMENT_ID, MLFLOW_EXPERIMENT_NAME
        from mlflow.tracking import MlflowClient

        logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)  # table creation
        explicit = explicit_tracking_uri()
        self.tracking_uri = explicit or run_tracking_uri(run_dir)
        self.client = MlflowClient(self.tracking_uri)
        record_path = Path(run_dir) / MLFLOW_RECORD
        previous = json.loads(record_path.read_text()) if record_path.is_file() else {}
        same_store = previous.get("tracking_uri") == explicit  # None: the run folder's store
        if previous.get("run_id") and same_store:
            self.run_id = previous["run_id"]
            self.client.update_run(self.run_id, status="RUNNING")
        else:
            name = MLFLOW_EXPERIMENT_NAME.get()
            experiment = MLFLOW_EXPERIMENT_ID.get() or (self._experiment(name) if name else "0")
            run = self.client.create_run(experiment, run_name=Path(run_dir).name)
            self.run_id = run.info.run_id
            write_json(record_path, {"run_id": self.run_id, "experiment_id": experiment,
                                     "tracking_uri": explicit,
                                     "store": explicit or f"RUN/{MLFLOW_DB}"})

    def _experiment(self, name: str) -> str:
        """The id of experiment ``name`` ($MLFLOW_EXPERIMENT_NAME), created when missing."""
        found = self.client.get_experiment_by_name(name)
        return found.experiment_id if found else self.client.create_experiment(name)

    def log_params(self, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        existing = self.client.get_run(self.run_id).data.params
        # MLflow params are write-once: a resume with a longer plan logs only what is new.
        fresh = {k: v for k, v in flat_params(params).items() if k not in existing}
        if fresh:
            self.client.log_batch(self.run_id, params=[Param(k, v) for k, v in fresh.items()])

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(k, v, now, step)
                                                    for k, v in metrics.items()])

    def close(self) -> None:
        self.client.set_terminated(self.run_id)


def open_tracker(kind: str | None, run_dir: Path) -> Tracker | None:
    """The tracker ``--log`` asks for (None for ``none``)."""
    check_tracker(kind)
    if kind == "tensorboard":
        return TensorBoardTracker(run_dir)
    if kind == "mlflow":
        return MlflowTracker(run_dir)
    return None
