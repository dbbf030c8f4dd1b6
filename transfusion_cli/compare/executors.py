"""Where cells run: this machine (``local``: in-process or ``--jobs N`` child processes) or a
SLURM cluster (``slurm``: a job array through submitit). One implementation, used by both
``tfx compare-inits`` and ``tfx reproduce``.

A task is one cell of one sweep folder; every executor calls the same ``run_cell``, so a
cell's folder, lock, resume and done record are the same wherever it ran.
"""

from __future__ import annotations

import importlib.util
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from transfusion_cli.compare.plan import CellTask, load_plan
from transfusion_cli.console import info, warn
from transfusion_cli.errors import ConfigError, MissingExtraError

EXECUTORS = ("local", "slurm")
SLURM_CLUSTERS = ("slurm", "local", "debug")  # submitit's backends
# Whole-number SLURM settings: (smallest, largest). A year of minutes; a node's GPUs and CPUs.
SLURM_RANGES = {"time_min": (1, 525_600), "gpus_per_cell": (0, 64), "cpus_per_cell": (1, 4096),
                "max_parallel": (1, 100_000)}
MAX_SLURM_MEM_GB = 65_536.0
# A partition or constraint becomes an #SBATCH line: no spaces, newlines or control characters.
SLURM_WORD = re.compile(r"[A-Za-z0-9_.,:|&!*()\[\]-]+")
# SlurmOptions fields whose flag is not --field-name (commands.options makes the flags).
SLURM_FLAG_NAMES = {"cluster": "--slurm-cluster"}


def _slurm_field(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


@dataclass
class SlurmOptions:
    """Resources of each cell's SLURM job (``None``: the cluster's default). Every field is a
    flag of `tfx compare-inits` and `tfx reproduce` with this help (``commands.options``)."""

    partition: str | None = _slurm_field(None, "SLURM partition.")
    time_min: int = _slurm_field(240, "Time limit per cell in minutes (a cell that runs out is "
                                 "requeued and resumes from its last.pt).")
    gpus_per_cell: int = _slurm_field(1, "GPUs per cell job.")
    cpus_per_cell: int | None = _slurm_field(None, "CPUs per cell job.")
    mem_gb: float | None = _slurm_field(None, "Memory per cell job, in GB.")
    constraint: str | None = _slurm_field(None, "SLURM --constraint (e.g. a100).")
    max_parallel: int | None = _slurm_field(None, "Cells running at once (the array's %N).")
    # submitit cluster: None = slurm if sbatch is there, else local
    cluster: str | None = _slurm_field(None, "submitit backend: slurm, local or debug (tests).")

    def __post_init__(self) -> None:
        for item in fields(self):
            problem = slurm_problem(item.name, getattr(self, item.name))
            if problem:
                raise ConfigError(f"SLURM setting {item.name} {problem}.")

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None, source: str) -> SlurmOptions:
        """From a plan's ``slurm:`` mapping; unknown keys and bad values are errors."""
        if data is not None and not isinstance(data, dict):
            raise ConfigError(f"{source} must be a mapping of SLURM settings, got {data!r}.")
        data = dict(data or {})
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"{source}: unknown slurm key '{unknown[0]}'; valid keys: "
                              f"{', '.join(sorted(known))}.")
        for name, value in data.items():
            problem = slurm_problem(name, value)
            if problem:
                raise ConfigError(f"{source}.{name} {problem}.")
        return cls(**data)

    def overridden(self, **flags: Any) -> SlurmOptions:
        """A copy with every flag that was given (not None) set (each checked, named by its
        flag). Without a GPU count given, cells on submitit's local/debug backends ask for
        none when this machine has no GPU."""
        for name, value in flags.items():
            problem = None if value is None else slurm_problem(name, value)
            if problem:
                flag = SLURM_FLAG_NAMES.get(name, "--" + name.replace("_", "-"))
                raise ConfigError(f"{flag} {problem}.")
        options = replace(self, **{k: v for k, v in flags.items() if v is not None})
        if flags.get("gpus_per_cell") is None and options.cluster in ("local", "debug"):
            import torch

            if not torch.cuda.is_available():
                options.gpus_per_cell = 0
        return options


def slurm_problem(name: str, value: Any) -> str | None:
    """What is wrong with SLURM setting ``name`` = ``value`` (phrased to follow the setting's
    name), or None when it can be passed to SLURM."""
    if value is None:
        return None
    if name in SLURM_RANGES:
        low, high = SLURM_RANGES[name]
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            return f"must be a whole number from {low} to {high}, got {value!r}"
    elif name == "mem_gb":
        if (isinstance(value, bool) or not isinstance(value, int | float)
                or not math.isfinite(value) or not 0 < value <= MAX_SLURM_MEM_GB):
            return f"must be a number of GB above 0, at most {MAX_SLURM_MEM_GB:g}, got {value!r}"
    elif name == "cluster":
        if value not in SLURM_CLUSTERS:
            return f"must be one of {', '.join(SLURM_CLUSTERS)}, got {value!r}"
    elif not isinstance(value, str) or not SLURM_WORD.fullmatch(value):
        return (f"must be one word of letters, digits and _.,:|&!*()[]- (as SLURM writes it), "
                f"got {value!r}")
    return None


def require_submitit():
    """The submitit module, or the install hint as a MissingExtraError (checked before a
    sweep or study folder is made)."""
    try:
        import submitit
    except ImportError:
        raise MissingExtraError("--executor slurm needs submitit, which this install lacks: "
                                "pip install 'transfusion-cli[slurm]'.") from None
    return submitit


class Executor:
    """Runs cell tasks; ``run`` returns one outcome per task (``skipped``, ``trained``,
    ``resumed``, ``finished``, ``busy`` or ``failed...``)."""

    name = "executor"

    def run(self, tasks: Sequence[CellTask]) -> dict[str, str]:
        """Outcome per task key."""
        raise NotImplementedError


class LocalExecutor(Executor):
    """Cells on this machine: in this process (``jobs=1``) or ``jobs`` child processes, one
    per GPU when there are GPUs."""

    name = "local"

    def __init__(self, jobs: int = 1):
        if jobs < 1:
            raise ConfigError(f"--jobs must be at least 1, got {jobs}.")
        self.jobs = jobs

    def run(self, tasks: Sequence[CellTask]) -> dict[str, str]:
        from transfusion_cli.compare.runner import run_sweep

        outcomes: dict[str, str] = {}
        by_folder: dict[Path, list[CellTask]] = {}
        for task in tasks:
            by_folder.setdefault(Path(task.directory), []).append(task)
        for directory, group in by_folder.items():
            done = run_sweep(directory, load_plan(directory), [t.cell for t in group],
                             jobs=self.jobs)
            outcomes.update({t.key: done.get(t.cell.id, "skipped") for t in group})
        return outcomes


class SlurmExecutor(Executor):
    """Cells as one SLURM job array through submitit; waits for it and gathers outcomes.

    Each job is requeued on pre-emption or time-out (submitit's checkpointing); the cell then
    resumes from its ``last.pt``. Job logs go to ``log_folder``.
    """

    name = "slurm"

    def __init__(self, log_folder: Path, options: SlurmOptions):
        if importlib.util.find_spec("submitit") is None:  # before any folder or plan is made
            raise ConfigError("--executor slurm needs submitit: "
                              "pip install 'transfusion-cli[slurm]'.")
        self.log_folder = Path(log_folder)
        self.options = options

    def _executor(self):
        submitit = require_submitit()
        options = self.options
        executor = submitit.AutoExecutor(folder=str(self.log_folder / "%j"),
                                         cluster=options.cluster)
        parameters: dict[str, Any] = {"name": "tfx-cell", "timeout_min": options.time_min,
                                      "gpus_per_node": options.gpus_per_cell, "nodes": 1,
                                      "tasks_per_node": 1}
        if options.cpus_per_cell:
            parameters["cpus_per_task"] = options.cpus_per_cell
        if options.mem_gb:
            parameters["mem_gb"] = options.mem_gb
        if options.partition:
            parameters["slurm_partition"] = options.partition
        if options.constraint:
            parameters["slurm_constraint"] = options.constraint
        if options.max_parallel:
            parameters["slurm_array_parallelism"] = options.max_parallel
        executor.update_parameters(**parameters)
        return executor

    def run(self, tasks: Sequence[CellTask]) -> dict[str, str]:
        from transfusion_cli.compare.slurm_job import CellJob

        if not tasks:
            return {}
        executor = self._executor()
        # A local (no SLURM) backend starts every job at once: submit in waves instead.
        wave = len(tasks) if executor.cluster == "slurm" else (self.options.max_parallel
                                                              or len(tasks))
        outcomes: dict[str, str] = {}
        for start in range(0, len(tasks), wave):
            chunk = list(tasks)[start:start + wave]
            jobs = executor.map_array(CellJob(), [str(t.directory) for t in chunk],
                                      [t.cell.id for t in chunk])
            info(f"{executor.cluster}: submitted {len(jobs)} cell job(s) "
                 f"({jobs[0].job_id}{'...' if len(jobs) > 1 else ''}); logs in "
                 f"{self.log_folder}")
            for task, job in zip(chunk, jobs, strict=True):
                try:
                    outcomes[task.key] = str(job.result())
                    info(f"{task.key}: {outcomes[task.key]} (job {job.job_id})")
                except Exception as exc:  # noqa: BLE001 - a failed job must not stop the rest
                    reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else \
                        type(exc).__name__
                    warn(f"{task.key} failed in job {job.job_id}: {reason}")
                    outcomes[task.key] = f"failed: {reason} (job {job.job_id} logs in " \
                        f"{self.log_folder})"
        return outcomes


def make_executor(name: str, *, jobs: int = 1, log_folder: Path | None = None,
                  slurm: SlurmOptions | None = None) -> Executor:
    """The executor called ``name`` (``local`` or ``slurm``)."""
    if name == "local":
        return LocalExecutor(jobs)
    if name == "slurm":
        if log_folder is None:
            raise ConfigError("--executor slurm needs a folder for the job logs.")
        require_submitit()
        options = slurm or SlurmOptions()
        if options.max_parallel is None and jobs > 1:
            options.max_parallel = jobs
        return SlurmExecutor(log_folder, options)
    raise ConfigError(f"Unknown executor '{name}'; use one of {', '.join(EXECUTORS)}.")
