"""Where cells run: this machine (``local``: in-process or ``--jobs N`` child processes) or a
SLURM cluster (``slurm``: a job array through submitit). One implementation, used by both
``tfx compare-inits`` and ``tfx reproduce``.

A task is one cell of one sweep folder; every executor calls the same ``run_cell``, so a
cell's folder, lock, resume and done record are the same wherever it ran.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from transfusion_cli.compare.plan import Cell, load_plan
from transfusion_cli.console import info, warn
from transfusion_cli.errors import ConfigError

EXECUTORS = ("local", "slurm")
SLURM_FOLDER = "slurm"


@dataclass(frozen=True)
class CellTask:
    """One cell of the sweep in ``directory``."""

    directory: Path
    cell: Cell

    @property
    def key(self) -> str:
        """``<sweep folder name>/<cell id>``, unique across the sweeps of one study."""
        return f"{Path(self.directory).name}/{self.cell.id}"


def run_task(directory: str, cell_id: str, show_progress: bool = False) -> str:
    """Run one cell of the plan in ``directory`` (what a cluster job executes)."""
    from transfusion_cli.compare.runner import run_cell

    plan = load_plan(directory)
    return run_cell(Path(directory), plan, plan.cell(cell_id), show_progress=show_progress)


@dataclass
class SlurmOptions:
    """Resources of each cell's SLURM job (``None``: the cluster's default)."""

    partition: str | None = None
    time_min: int = 240
    gpus_per_cell: int = 1
    cpus_per_cell: int | None = None
    mem_gb: float | None = None
    constraint: str | None = None
    max_parallel: int | None = None  # cells running at once (the array's %N)
    cluster: str | None = None  # submitit cluster: None = slurm if sbatch is there, else local

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None, source: str) -> SlurmOptions:
        """From a plan's ``slurm:`` mapping; unknown keys are errors."""
        data = dict(data or {})
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"{source}: unknown slurm key '{unknown[0]}'; valid keys: "
                              f"{', '.join(sorted(known))}.")
        return cls(**data)

    def overridden(self, **flags: Any) -> SlurmOptions:
        """A copy with every flag that was given (not None) set. Without a GPU count given,
        cells on submitit's local/debug backends ask for none when this machine has no GPU."""
        options = replace(self, **{k: v for k, v in flags.items() if v is not None})
        if flags.get("gpus_per_cell") is None and options.cluster in ("local", "debug"):
            import torch

            if not torch.cuda.is_available():
                options.gpus_per_cell = 0
        return options


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
        self.log_folder = Path(log_folder)
        self.options = options

    def _executor(self):
        try:
            import submitit
        except ImportError:
            raise ConfigError("--executor slurm needs submitit: pip install 'tfx[slurm]'.") \
                from None
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
        options = slurm or SlurmOptions()
        if options.max_parallel is None and jobs > 1:
            options.max_parallel = jobs
        return SlurmExecutor(log_folder, options)
    raise ConfigError(f"Unknown executor '{name}'; use one of {', '.join(EXECUTORS)}.")
