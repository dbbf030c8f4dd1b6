"""The names of the folders and files tfx writes: a `fit` run folder, a `compare-inits` sweep
folder, a `reproduce` study folder, and the sidecar files beside a checkpoint.

Every other module asks these types for a path; none spells a file name itself, so the
on-disk layout is declared here once. Creating, locking and deleting run folders stays in
``train/rundir.py``; this module only names things (it imports only the standard library and
``errors``, so every layer can use it).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transfusion_cli.errors import ConfigError

OUTPUTS_DIR = "runs"  # where fit, compare-inits and reproduce write when --out is not given

# A run folder (`tfx fit --out RUN`).
RUN_FORMAT = "tfx-run/1"  # env.json key "format": marks a folder as a run tfx created
CONFIG_FILE = "config.yaml"
ENV_FILE = "env.json"
METRICS_FILE = "metrics.jsonl"
SPLIT_FILE = "split.json"
LOCK_FILE = ".tfx-fit.lock"  # holds the pid of the process training into the run
TEST_PREDICTIONS_FILE = "test_predictions.npz"  # compare-inits: best checkpoint on the test split
CHECKPOINTS_DIR = "checkpoints"
CHECKPOINT_SUFFIX = ".pt"
# init: weights right after the init (step 0); last: the latest evaluation (resume reads it);
# best: the best validation score so far (what evaluate/export/compare use).
CHECKPOINT_NAMES = ("init", "last", "best")

# Sidecar files beside a checkpoint (or an exported model): `tfx evaluate`'s records, one per
# dataset evaluated on (``best.<fingerprint>.evaluation.json``; ``data.build.DataSource``).
EVALUATION_SUFFIX = ".evaluation.json"
EVALUATION_FORMAT = "tfx-evaluation"  # the record's "format" key

# A sweep folder (`tfx compare-inits --out DIR`).
PLAN_FILE = "plan.json"
SWEEP_FORMAT = "tfx-sweep/1"  # plan.json key "format": marks a folder as a sweep tfx created
RUNS_DIR = "runs"  # one run folder per cell
DONE_DIR = "done"  # DONE_DIR/<cell>.json: the runner's record of a finished cell
LOCKS_DIR = "locks"  # LOCKS_DIR/<cell>.lock: held while a process trains the cell
LOGS_DIR = "logs"  # output of the child processes of a parallel local sweep
SLURM_DIR = "slurm"  # submitit job logs
REPORT_FILE = "report.md"
RESULTS_JSON = "results.json"
RESULTS_CSV = "results.csv"
CURVES_FILE = "curves.png"

# A study folder (`tfx reproduce --out DIR`).
STUDY_FILE = "study.json"  # marks a folder `tfx reproduce` wrote: the profile and parts
STUDY_FORMAT = "tfx-study/1"  # study.json key "format"
SWEEPS_DIR = "sweeps"
SOURCE_SWEEP_PREFIX = "source-"  # sweeps/source-<data>: the stand-in "pretrained" sources
FIGURES_DIR = "figures"
REPORT_HTML = "report.html"
VERDICTS_FILE = "verdicts.json"
EVIDENCE_FILE = "evidence.json"  # what the claims are judged on (`tfx reproduce --judge`)


# A name read from a file that becomes a file or folder name (a profile's dataset keys and
# study name, a plan's cell ids): letters and digits first, then also '.', '_', '-'; never
# '..', a separator or an absolute path, so the path built from it stays in its folder.
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
MAX_NAME_LENGTH = 200  # below every file system's 255-byte limit, with room for suffixes


def check_name(name: Any, what: str) -> str:
    """``name`` when it is a plain identifier (see ``NAME_PATTERN``), else a ConfigError naming
    ``what`` (e.g. "profile dataset key"): names are never path components that can escape."""
    if (not isinstance(name, str) or not NAME_PATTERN.fullmatch(name) or ".." in name
            or len(name) > MAX_NAME_LENGTH):
        shown = name if not isinstance(name, str) or len(name) <= 60 else name[:60] + "..."
        raise ConfigError(f"{what} {shown!r} is not a plain name: use letters, digits, '.', '_' "
                          f"and '-' (starting with a letter or digit, no '..', at most "
                          f"{MAX_NAME_LENGTH} characters).")
    return name


def evaluation_path(model: str | os.PathLike, dataset: str | None = None) -> Path:
    """Where `tfx evaluate` records its result beside a model, one file per dataset
    fingerprint: ``best.pt`` -> ``best.<dataset>.evaluation.json`` (`tfx export` reads the one
    of the training data for the model card); without ``dataset``, ``best.evaluation.json``
    (the single record tfx 0.2 and older wrote, whatever data it came from)."""
    model = Path(model)
    if dataset is not None and not (dataset.isalnum() and dataset.isascii()):
        raise ConfigError(f"A dataset fingerprint is letters and digits, not {dataset!r}.")
    return model.with_name(model.stem + (f".{dataset}" if dataset else "") + EVALUATION_SUFFIX)


@dataclass(frozen=True)
class FolderKind:
    """A kind of folder a command fills, and the marker file by which tfx knows it made one:
    a JSON object in ``marker`` whose ``"format"`` is ``format`` (written first, when the
    folder is created). ``legacy_keys``: a marker an older tfx wrote before the format key
    existed holds all of these keys."""

    name: str
    command: str
    marker: str
    format: str
    legacy_keys: tuple[str, ...] = ()


RUN_KIND = FolderKind("run", "tfx fit", ENV_FILE, RUN_FORMAT, ("tfx_version",))
SWEEP_KIND = FolderKind("sweep", "tfx compare-inits", PLAN_FILE, SWEEP_FORMAT,
                        ("version", "tfx_version", "data", "fit", "cells"))
STUDY_KIND = FolderKind("study", "tfx reproduce", STUDY_FILE, STUDY_FORMAT,
                        ("profile", "source", "parts", "weights"))
FOLDER_KINDS = (RUN_KIND, SWEEP_KIND, STUDY_KIND)


@dataclass(frozen=True)
class RunFolder:
    """Paths inside one `tfx fit` run folder."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @classmethod
    def of_checkpoint(cls, path: str | os.PathLike) -> RunFolder | None:
        """The run folder holding checkpoint ``path`` (RUN/checkpoints/NAME.pt), else None."""
        path = Path(path)
        return cls(path.parent.parent) if path.parent.name == CHECKPOINTS_DIR else None

    @property
    def config(self) -> Path:
        return self.root / CONFIG_FILE

    @property
    def env(self) -> Path:
        return self.root / ENV_FILE

    @property
    def metrics(self) -> Path:
        return self.root / METRICS_FILE

    @property
    def split(self) -> Path:
        return self.root / SPLIT_FILE

    @property
    def lock(self) -> Path:
        return self.root / LOCK_FILE

    @property
    def test_predictions(self) -> Path:
        return self.root / TEST_PREDICTIONS_FILE

    @property
    def checkpoints(self) -> Path:
        return self.root / CHECKPOINTS_DIR

    def checkpoint(self, name: str) -> Path:
        """``RUN/checkpoints/<name>.pt`` for ``name`` in init, last, best."""
        return checkpoint_in(self.checkpoints, name)

    @property
    def init(self) -> Path:
        return self.checkpoint("init")

    @property
    def last(self) -> Path:
        return self.checkpoint("last")

    @property
    def best(self) -> Path:
        return self.checkpoint("best")

    def trained_checkpoint(self) -> Path | None:
        """best.pt, else last.pt (a run stopped before its first evaluation), else None."""
        return trained_checkpoint_in(self.checkpoints)

    def is_run(self) -> bool:
        """A folder `tfx fit` wrote (it has config.yaml)."""
        return self.config.is_file()


def checkpoint_in(folder: str | os.PathLike, name: str) -> Path:
    """``folder/<name>.pt`` for ``name`` in init, last, best (a run's checkpoints/ folder, or
    a copy of it)."""
    if name not in CHECKPOINT_NAMES:
        raise ConfigError(f"No checkpoint called '{name}' in a run folder; choose one of "
                          f"{', '.join(CHECKPOINT_NAMES)}.")
    return Path(folder) / f"{name}{CHECKPOINT_SUFFIX}"


def trained_checkpoint_in(folder: str | os.PathLike) -> Path | None:
    """best.pt in ``folder``, else last.pt (a run stopped before its first evaluation), else
    None."""
    return next((p for p in (checkpoint_in(folder, "best"), checkpoint_in(folder, "last"))
                 if p.is_file()), None)


def checkpoint_beside(path: str | os.PathLike, name: str) -> Path:
    """The checkpoint called ``name`` in the same folder as checkpoint ``path``."""
    return checkpoint_in(Path(path).parent, name)


@dataclass(frozen=True)
class SweepFolder:
    """Paths inside one `tfx compare-inits` sweep folder."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @property
    def plan(self) -> Path:
        return self.root / PLAN_FILE

    @property
    def runs(self) -> Path:
        return self.root / RUNS_DIR

    @property
    def done(self) -> Path:
        return self.root / DONE_DIR

    @property
    def slurm_logs(self) -> Path:
        return self.root / SLURM_DIR

    @property
    def logs(self) -> Path:
        return self.root / LOGS_DIR

    @property
    def report(self) -> Path:
        return self.root / REPORT_FILE

    @property
    def results_json(self) -> Path:
        return self.root / RESULTS_JSON

    @property
    def results_csv(self) -> Path:
        return self.root / RESULTS_CSV

    @property
    def curves(self) -> Path:
        return self.root / CURVES_FILE

    def run(self, cell_id: str) -> RunFolder:
        """The cell's fit run folder."""
        return RunFolder(self.runs / check_name(cell_id, "cell id"))

    def done_marker(self, cell_id: str) -> Path:
        """Where the runner records a finished cell."""
        return self.done / f"{check_name(cell_id, 'cell id')}.json"

    def cell_lock(self, cell_id: str) -> Path:
        """The lock file a process holds while it trains the cell."""
        return self.root / LOCKS_DIR / f"{check_name(cell_id, 'cell id')}.lock"

    def is_planned(self) -> bool:
        """A folder compare-inits has planned (it has plan.json)."""
        return self.plan.is_file()


@dataclass(frozen=True)
class StudyFolder:
    """Paths inside one `tfx reproduce` study folder."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @property
    def study(self) -> Path:
        return self.root / STUDY_FILE

    def sweep(self, name: str) -> SweepFolder:
        """``OUT/sweeps/<name>``: one compare-inits sweep of the study."""
        return SweepFolder(self.root / SWEEPS_DIR / check_name(name, "sweep name"))

    def target_sweeps(self) -> list[SweepFolder]:
        """The study's sweeps on its target datasets (not the stand-in sources), by name."""
        folder = self.root / SWEEPS_DIR
        names = sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []
        return [self.sweep(n) for n in names if not n.startswith(SOURCE_SWEEP_PREFIX)]

    @property
    def figures(self) -> Path:
        return self.root / FIGURES_DIR

    @property
    def slurm_logs(self) -> Path:
        return self.root / SLURM_DIR

    @property
    def report(self) -> Path:
        return self.root / REPORT_FILE

    @property
    def report_html(self) -> Path:
        return self.root / REPORT_HTML

    @property
    def verdicts(self) -> Path:
        return self.root / VERDICTS_FILE

    @property
    def evidence(self) -> Path:
        return self.root / EVIDENCE_FILE
