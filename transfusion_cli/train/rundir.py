"""Making a run folder: its name, the overwrite guard, the lock, and the files other than
checkpoints (the paths inside it are ``transfusion_cli.runfolder.RunFolder``)."""

from __future__ import annotations

import json
import os
import platform
import shutil
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import torch

from transfusion_cli import __version__
from transfusion_cli.data.source import DataSource
from transfusion_cli.errors import ConfigError
from transfusion_cli.io import read_jsonl, write_json, write_text, write_yaml
from transfusion_cli.outputs import (
    OutputFolder,
    claim_folder,
    folder_made_by_tfx,
    refuse_overwriting_inputs,
)
from transfusion_cli.runfolder import (
    CHECKPOINT_SUFFIX,
    LOCK_FILE,
    OUTPUTS_DIR,
    RUN_FORMAT,
    RUN_KIND,
    RunFolder,
)
from transfusion_cli.train.config import FitConfig
from transfusion_cli.train.runlock import RunLock

# Set by compare-inits / reproduce in each CPU cell they run in parallel (--jobs N): N.
CELL_JOBS_ENV = "TFX_CELL_JOBS"


def available_cpus() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1


def cpu_share() -> dict[str, int] | None:
    """``{"jobs", "cpus", "threads"}`` of a cell run beside ``jobs - 1`` others on this CPU
    (``CELL_JOBS_ENV`` set): its share of the cores, max(1, cpus // jobs); None otherwise."""
    text = os.environ.get(CELL_JOBS_ENV, "")
    if not text.isdigit() or int(text) < 1:
        return None
    jobs, cpus = int(text), available_cpus()
    return {"jobs": jobs, "cpus": cpus, "threads": max(1, cpus // jobs)}


def default_run_name(config: FitConfig, now: datetime | None = None) -> str:
    """``<data>-<arch>-<YYYYmmdd-HHMMSS>`` with path-unsafe characters replaced."""
    stamp = (now or datetime.now()).strftime("%Y%m%d-%H%M%S")
    safe = f"{config.data}-{config.arch}".replace("/", "_").replace(":", "_")
    return f"{safe}-{stamp}"


def prepare_run_dir(config: FitConfig) -> tuple[RunFolder, RunLock]:
    """Create the run folder and lock it; an existing non-empty one needs ``overwrite`` and
    must be a run tfx made (a folder tfx did not create is never deleted)."""
    root = check_run_dir(config)
    if root.exists() and any(root.iterdir()):
        remove_run_dir(root)
    run = RunFolder(root)
    run.checkpoints.mkdir(parents=True, exist_ok=True)
    lock = RunLock(root).acquire()
    write_json(run.env, {"format": RUN_FORMAT})  # the marker first, then the rest
    return run, lock


def check_run_dir(config: FitConfig) -> Path:
    """The run folder ``config`` asks for, after every check prepare_run_dir makes before it
    writes (the output guard, the one rule for folders tfx made, --overwrite); `fit` calls it
    before the data are built too, so a refusal costs nothing."""
    root = Path(config.out) if config.out else Path(OUTPUTS_DIR) / default_run_name(config)
    init_file = config.init_argument if config.init_argument and \
        Path(config.init_argument).exists() else None
    refuse_overwriting_inputs({"--out": OutputFolder(root, "the run")},
                              inputs=[config.weights, init_file],
                              data_dirs=DataSource.named(config.data, config.data_dir,
                                                         config.options).input_roots())
    claim_folder(root, RUN_KIND)  # the rule compare-inits and reproduce follow too
    if root.exists() and any(root.iterdir()) and not config.overwrite:
        raise ConfigError(f"Run folder {root} already exists; pass --overwrite to replace it, "
                          f"--resume {root} to continue it, or a new --out.")
    return root


def is_tfx_run(root: Path) -> bool:
    """A folder `tfx fit` created: its env.json carries tfx's run format key (runs made before
    the key existed are recognised by the tfx_version env.json always had)."""
    return folder_made_by_tfx(root, RUN_KIND)


def _only_run_scaffold(root: Path) -> bool:
    """Nothing but what prepare_run_dir makes before the marker: folders and the lock file."""
    return all(p.is_dir() or p.name == LOCK_FILE for p in root.rglob("*"))


def remove_run_dir(root: Path) -> None:
    """Delete a run folder tfx created, once no other process trains into it; refuse anything
    else (a project folder that merely holds a config.yaml is not a run)."""
    root = Path(root)
    if not is_tfx_run(root) and not _only_run_scaffold(root):
        raise ConfigError(f"{root} exists and is not a tfx run folder (no env.json written by "
                          "`tfx fit`); refusing to delete it even with --overwrite. Choose "
                          "another --out.")
    lock = RunLock(root).acquire()
    try:
        shutil.rmtree(root)
    finally:
        lock.release()


def write_config(run: RunFolder, config: FitConfig) -> None:
    """config.yaml: the resolved config, re-runnable with `tfx fit --config`."""
    write_yaml(run.config, config.to_dict())


def environment(config: FitConfig, device: torch.device, world_size: int,
                precision: str) -> dict[str, Any]:
    """Versions, device and seeds, for env.json."""
    import numpy
    import sklearn

    from transfusion_cli.plugins import get_registry

    env: dict[str, Any] = {
        "tfx_version": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "numpy": numpy.__version__,
        "scikit_learn": sklearn.__version__,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else
        platform.processor() or platform.machine(),
        "precision": precision,
        "world_size": world_size,
        "cpu_threads": torch.get_num_threads(),
        "cpu_share": cpu_share(),  # a parallel compare-inits / reproduce cell's share, or null
        "seed": config.seed,
        "data_seed": config.data_seed,
        "started": datetime.now().isoformat(timespec="seconds"),
        "command": " ".join(sys.argv),
        "plugins": [{"name": p.name, "distribution": p.distribution, "version": p.version}
                    for p in get_registry().plugins if not p.error],
    }
    try:
        import timm

        env["timm"] = timm.__version__
    except ImportError:  # pragma: no cover - timm is a dependency
        env["timm"] = None
    return env


def write_environment(run: RunFolder, env: dict[str, Any]) -> None:
    """env.json (a resumed run keeps the first start and lists its resumes)."""
    previous = json.loads(run.env.read_text()) if run.env.exists() else {}
    if "started" in previous:
        env = {**previous, "resumed": [*previous.get("resumed", []), env]}
    write_json(run.env, {"format": RUN_FORMAT, **env})


def record_selection_check(run: RunFolder, ci: dict[str, Any], warnings: list[str]) -> None:
    """env.json's ``selection_check``: the best checkpoint's selection metric with its
    bootstrap CI on validation and the warnings (train/selection_check.py)."""
    env = json.loads(run.env.read_text()) if run.env.exists() else {"format": RUN_FORMAT}
    check = dict(env.get("selection_check") or {})
    check.update(best=ci, warnings=list(warnings))
    write_json(run.env, {**env, "selection_check": check})


def write_split(run: RunFolder, manifest: dict[str, Any] | None) -> None:
    """split.json when the dataset gives a patient-level split manifest."""
    if manifest is not None:
        write_json(run.split, manifest)


def truncate_metrics(run: RunFolder, step: int) -> None:
    """Drop metrics records written after ``step`` (a killed run re-evaluates them)."""
    if not run.metrics.exists():
        return
    kept = [r for r in read_jsonl(run.metrics) if r.get("step", 0) <= step]
    write_text(run.metrics, "".join(json.dumps(r, default=str) + "\n" for r in kept))


def resolve_resume_dir(path: str | os.PathLike) -> Path:
    """RUN_DIR for --resume (also accepts RUN_DIR/checkpoints/last.pt); it must hold last.pt,
    or resuming would silently start again from step 0 over the run's files."""
    root = Path(path)
    if root.is_file() and root.suffix == CHECKPOINT_SUFFIX:
        root = root.parent.parent
    if not RunFolder(root).is_run():
        raise ConfigError(f"--resume {path}: no config.yaml there; pass a run folder written by "
                          "`tfx fit`.")
    last = RunFolder(root).last
    if not last.is_file():
        raise ConfigError(f"--resume {path}: {last} is missing, so the run cannot continue; "
                          "nothing was changed. Restore that file, or start again with "
                          f"--out {root} --overwrite.")
    return root
