"""Run the cells of a plan: each one a normal `fit` run in ``DIR/runs/<cell>/``.

A finished cell has ``DIR/done/<cell>.json`` (written after its fit returns) and is skipped;
a cell with ``checkpoints/last.pt`` but no done record was interrupted and resumes from it;
anything else starts afresh. A cell being trained holds an exclusive lock
(``DIR/locks/<cell>.lock`` via ``filelock``, released by the OS even on SIGKILL), so two
sweeps, or an array job and a local sweep, never train the same cell at once.

``jobs > 1`` runs cells in child processes (``tfx compare-inits --cell ID``): one per GPU
(``CUDA_VISIBLE_DEVICES``) when there are GPUs, otherwise CPU processes that share the cores.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from transfusion_cli.compare.plan import Cell, CellTask, Plan, fit_overrides, load_plan
from transfusion_cli.console import info, warn
from transfusion_cli.errors import TfxError
from transfusion_cli.io import write_json
from transfusion_cli.progress import Task, track
from transfusion_cli.runfolder import RunFolder, SweepFolder

# Every cell scores the test split at each evaluation: steps-to-target is read on held-out
# data, as the paper does, on the --eval-every grid.
CELL_DEFAULTS = {"eval_test": True}


def cell_state(directory: Path, cell: Cell) -> str:
    """``done``, ``interrupted`` (has last.pt) or ``new``."""
    sweep = SweepFolder(directory)
    run = sweep.run(cell.id)
    if sweep.done_marker(cell.id).is_file() and run.metrics.is_file():
        return "done"
    if run.last.is_file() and run.config.is_file():
        return "interrupted"
    return "new"


class CellBusy(TfxError):
    """Another process is training this cell right now."""


class LockError(TfxError):
    """The file system holding the sweep folder does not support file locks."""


@contextmanager
def cell_lock(directory: Path, cell_id: str) -> Iterator[None]:
    """Exclusive, non-blocking lock on one cell for the duration of the block."""
    from filelock import FileLock, Timeout

    path = SweepFolder(directory).cell_lock(cell_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(path), thread_local=False)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise CellBusy(f"Cell {cell_id} is being trained by another process; "
                       "wait for it or run another cell.") from None
    except OSError as exc:
        raise LockError(f"Cannot lock {path}: the file system refuses file locks "
                        f"({exc.strerror or exc}); put the sweep folder (--out) on a local disk "
                        "or a file system with lock support.") from None
    try:
        yield
    finally:
        lock.release()


def parameter_count(run: RunFolder) -> int | None:
    """Trainable parameters of the cell's model, rebuilt from its init.pt."""
    from transfusion_cli.models.checkpoint import build_model, load_checkpoint

    init_ckpt = run.init
    if not init_ckpt.is_file():
        return None
    model = build_model(load_checkpoint(init_ckpt), load_weights=False)
    return int(sum(p.numel() for p in model.parameters()))


def _saved_train_time(run: RunFolder) -> float:
    """Training seconds a killed run had saved in last.pt before this session."""
    from transfusion_cli.models.checkpoint import load_checkpoint

    last = run.last
    if not last.is_file():
        return 0.0
    return float((load_checkpoint(last).get("train_state") or {}).get("train_time_s", 0.0))


def test_metrics(run: RunFolder) -> dict[str, Any] | None:
    """Metrics of the run's best.pt (chosen on validation) on the dataset's test split, the
    paper's protocol; None when the dataset has no test split."""
    from torch.utils.data import DataLoader

    from transfusion_cli.evaluation.evaluate import dataset_groups
    from transfusion_cli.models.runtime import make_runtime
    from transfusion_cli.models.trained import load_trained
    from transfusion_cli.scores import metric_values
    from transfusion_cli.train import resolve_config, score_loader
    from transfusion_cli.train.loaders import load_bundle

    config = resolve_config(run.config)
    bundle = load_bundle(config)
    best = run.best
    if bundle.test is None or len(bundle.test) == 0 or not best.is_file():
        return None
    trained = load_trained(best, config.device)
    runtime = make_runtime(trained.device, config.amp, config.deterministic)
    loader = DataLoader(bundle.test, batch_size=config.batch_size, shuffle=False)
    metrics, logits, targets = score_loader(trained.model, loader, bundle.info, runtime,
                                            in_chans=trained.in_chans)
    # Kept for paired statistics across cells (bootstrap CIs, DeLong) without a re-run; the
    # patient ids let those resample patients, not images (both eyes of one patient together).
    save_test_predictions(run, logits, targets, groups=dataset_groups(bundle.test))
    values = metric_values(metrics)
    values["loss"] = values.pop("val_loss", None)  # score_loader() names it for validation
    return {"step": trained.step, **values}


def save_test_predictions(run: RunFolder, logits: Any, targets: Any,
                          groups: list[str] | None = None) -> Path:
    """``RUN/test_predictions.npz``: best.pt's logits and the targets on the test split, and
    each image's patient id (``groups``) when the dataset has them."""
    import numpy as np

    from transfusion_cli.io import atomic_write

    arrays = {"logits": np.asarray(logits), "targets": np.asarray(targets)}
    if groups is not None and len(groups) == len(arrays["targets"]):
        arrays["groups"] = np.asarray([str(g) for g in groups])

    def writer(tmp: Path) -> None:
        with open(tmp, "wb") as handle:
            np.savez(handle, **arrays)

    return atomic_write(run.test_predictions, writer)


def _test_metrics_or_warn(run: RunFolder) -> dict[str, Any] | None:
    try:
        return test_metrics(run)
    except TfxError as exc:  # the training result stands; only the test column stays empty
        warn(f"{run.root.name}: no test-split score ({exc})")
        return None


def run_cell(directory: Path, plan: Plan, cell: Cell, show_progress: bool = True) -> str:
    """Train one cell unless it is done; returns ``skipped``, ``resumed`` or ``trained``."""
    from transfusion_cli.train import FitConfig, fit, resolve_config
    from transfusion_cli.train.rundir import remove_run_dir

    directory = Path(directory)
    with cell_lock(directory, cell.id):
        state = cell_state(directory, cell)
        if state == "done":
            return "skipped"
        share_cores()
        sweep = SweepFolder(directory)
        run = sweep.run(cell.id)
        sweep.done_marker(cell.id).unlink(missing_ok=True)
        before = 0.0
        if state == "interrupted":
            before = _saved_train_time(run)
            config = FitConfig(resume=str(run.root))
        else:
            if run.root.exists():
                remove_run_dir(run.root)  # killed before its first checkpoint: nothing to keep
            sweep.runs.mkdir(parents=True, exist_ok=True)
            config = resolve_config(None, {**fit_overrides(plan, cell, run.root),
                                           **CELL_DEFAULTS})
        result = fit(config, show_progress=show_progress)
        record: dict[str, Any] = {
            "cell": cell.id,
            "finished": datetime.now().isoformat(timespec="seconds"),
            "selection_metric": result.best_metric,
            "best_value": result.best_value,
            "best_step": result.best_step,
            "steps": result.steps,
            "final_metrics": result.final_metrics,
            # The final session's wall time plus the training time saved before a kill.
            "wall_time_s": result.wall_time_s + before,
            "images_per_s": result.images_per_s,
            "resumed": state == "interrupted",
            "params": parameter_count(run),
            "test": _test_metrics_or_warn(run),
        }
        write_json(sweep.done_marker(cell.id), record)
        return "resumed" if state == "interrupted" else "trained"


def select_cells(plan: Plan, ids: list[str] | None) -> list[Cell]:
    """The plan's cells with ``ids`` (all when None), in plan order."""
    if ids is None:
        return list(plan.cells)
    wanted = set(ids)
    return [c for c in plan.cells if c.id in wanted]


def run_task(directory: str, cell_id: str, show_progress: bool = False) -> str:
    """Run one cell of the plan in ``directory`` (what a cluster job executes)."""
    plan = load_plan(directory)
    return run_cell(Path(directory), plan, plan.cell(cell_id), show_progress=show_progress)


def run_sweep(directory: Path, plan: Plan, cells: list[Cell], jobs: int = 1,
              executor: Any = None) -> dict[str, str]:
    """Run ``cells`` (skipping finished ones), ``jobs`` at a time on this machine, or through
    ``executor`` (a ``compare.executors.Executor``, e.g. SLURM); cell id -> outcome."""
    directory = Path(directory)
    todo = [c for c in cells if cell_state(directory, c) != "done"]
    outcomes = {c.id: "skipped" for c in cells if c not in todo}
    if outcomes:
        info(f"compare-inits: {len(outcomes)} of {len(cells)} cells already finished; "
             "skipping them.")
    if not todo:
        return outcomes
    if executor is not None and executor.name != "local":
        tasks = [CellTask(directory, cell) for cell in todo]
        done = executor.run(tasks)
        outcomes.update({t.cell.id: done[t.key] for t in tasks})
        return outcomes
    # Cells done / total and an ETA: a bar above each cell's own bar on a terminal, a line per
    # finished cell otherwise.
    with track("compare-inits", len(todo), "cells", interval=0) as sweep:
        if jobs > 1:
            outcomes.update(_run_parallel(directory, todo, jobs, sweep))
            return outcomes
        for index, cell in enumerate(todo, start=1):
            action = "resuming" if cell_state(directory, cell) == "interrupted" else "training"
            sweep.message(f"[{index}/{len(todo)}] {cell.id}: {action}")
            try:
                outcomes[cell.id] = run_cell(directory, plan, cell)
            except CellBusy as exc:
                warn(str(exc))
                outcomes[cell.id] = "busy"
            except TfxError as exc:  # e.g. a diverging run: the other cells still run
                warn(f"{cell.id} failed: {exc}")
                outcomes[cell.id] = f"failed: {exc}"
            sweep.advance()
    return outcomes


def _worker_env(slot: int, jobs: int, gpus: list[str]) -> dict[str, str]:
    """A child cell's environment: its GPU, or on CPU its share of the cores (the thread
    pools that read the environment at start; ``share_cores`` sets torch's in the child)."""
    from transfusion_cli.train.rundir import CELL_JOBS_ENV, available_cpus

    env = dict(os.environ)
    if gpus:
        env["CUDA_VISIBLE_DEVICES"] = gpus[slot % len(gpus)]
    else:
        threads = str(max(1, available_cpus() // jobs))
        env.update({CELL_JOBS_ENV: str(jobs), "OMP_NUM_THREADS": threads,
                    "MKL_NUM_THREADS": threads, "OPENBLAS_NUM_THREADS": threads})
    return env


def share_cores() -> dict[str, int] | None:
    """In a cell run beside others on the CPU (``--jobs N``): limit torch's intra-op threads
    and the BLAS / OpenMP pools to this cell's share of the cores, never N x all of them.
    Returns the share (also in the run's env.json), None when the cell runs alone."""
    from transfusion_cli.train.rundir import cpu_share

    share = cpu_share()
    if share is not None:
        import torch
        from threadpoolctl import threadpool_limits

        torch.set_num_threads(share["threads"])
        threadpool_limits(limits=share["threads"])
    return share


def _die_with_parent() -> None:
    """In the child: get SIGKILL when the sweep process dies (Linux), so that a killed sweep
    leaves no orphan trainers behind."""
    if sys.platform.startswith("linux"):
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def visible_gpus() -> list[str]:
    """CUDA_VISIBLE_DEVICES entries of the GPUs this process can use (one per child)."""
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible:
        return [v.strip() for v in visible.split(",") if v.strip()][:count]
    return [str(index) for index in range(count)]


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _run_parallel(directory: Path, todo: list[Cell], jobs: int, sweep: Task
                  ) -> dict[str, str]:
    gpus = visible_gpus()
    if gpus and jobs > len(gpus):
        warn(f"--jobs {jobs} but {len(gpus)} GPU(s): running {len(gpus)} cells at once, one "
             "per GPU.")
        jobs = len(gpus)
    logs = SweepFolder(directory).logs
    logs.mkdir(parents=True, exist_ok=True)
    queue = list(todo)
    running: dict[int, tuple[subprocess.Popen, Cell, Any]] = {}
    outcomes: dict[str, str] = {}
    free = list(range(jobs))
    started = 0
    main_thread = threading.current_thread() is threading.main_thread()
    # Pre-emption (SIGTERM) is handled like Ctrl-C: children save last.pt, then we stop.
    previous = signal.signal(signal.SIGTERM, _raise_interrupt) if main_thread else None
    try:
        while queue or running:
            while queue and free:
                slot, cell = free.pop(0), queue.pop(0)
                started += 1
                log = open(logs / f"{cell.id}.log", "a")  # noqa: SIM115 - closed on exit
                where = f"GPU {gpus[slot % len(gpus)]}" if gpus else "CPU"
                sweep.message(f"[{started}/{len(todo)}] {cell.id}: started on {where} "
                              f"(log {log.name})")
                command = [sys.executable, "-m", "transfusion_cli", "compare-inits",
                           "--out", str(directory), "--cell", cell.id]
                # Own session: a terminal Ctrl-C reaches only this process, which forwards
                # exactly one SIGINT (a second one would stop a child before it saves).
                process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                           env=_worker_env(slot, jobs, gpus),
                                           preexec_fn=_die_with_parent,
                                           start_new_session=True)
                running[slot] = (process, cell, log)
            time.sleep(0.5)
            for slot, (process, cell, log) in list(running.items()):
                code = process.poll()
                if code is None:
                    continue
                log.close()
                del running[slot]
                free.append(slot)
                outcomes[cell.id] = "finished" if code == 0 else \
                    f"failed with exit code {code}, see {logs / (cell.id + '.log')}"
                sweep.advance()
                if code == 0:
                    sweep.message(f"{cell.id}: finished")
                else:
                    warn(f"{cell.id} failed with exit code {code}; see {logs / (cell.id + '.log')}")
    except KeyboardInterrupt:
        for process, _, _ in running.values():
            process.send_signal(signal.SIGINT)  # each child saves last.pt and stops
        for process, _, log in running.values():
            process.wait()
            log.close()
        raise
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)
    return outcomes
