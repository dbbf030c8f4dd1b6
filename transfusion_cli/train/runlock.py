"""An exclusive lock on a run folder for the whole of one `fit` (released by the kernel even
on kill -9), so two processes never train into the same run."""

from __future__ import annotations

import os
from pathlib import Path

import filelock

from transfusion_cli.errors import ConfigError
from transfusion_cli.runfolder import RunFolder


class RunBusyError(ConfigError):
    """Another process is training into this run folder right now."""


class RunLock:
    """Non-blocking exclusive lock on ``root/.tfx-fit.lock``; the holder writes its pid there."""

    def __init__(self, root: Path):
        self.path = RunFolder(root).lock
        self._lock = filelock.FileLock(self.path)

    def acquire(self) -> RunLock:
        """Take the lock or raise RunBusyError naming the holder's pid."""
        try:
            self._lock.acquire(timeout=0)
        except filelock.Timeout:
            holder = _read_pid(self.path)
            who = f"process {holder}" if holder else "another process"
            raise RunBusyError(f"Run folder {self.path.parent} is being trained by {who}; wait "
                               "for it to finish (or stop it) before running fit on it again."
                               ) from None
        self.path.write_text(f"{os.getpid()}\n")
        return self

    def release(self) -> None:
        """Let the next fit in (the lock file stays: deleting it would race a waiting fit)."""
        if self._lock.is_locked:
            self._lock.release()


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None
