"""Atomic file writing (temp file in the same folder, fsync, rename), tfx's temp names and
the clean-up of those left by killed processes, and the writability check of output paths."""

from __future__ import annotations

import errno
import json
import os
import re
import secrets
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from transfusion_cli.errors import TfxError


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path next to ``path``; on success it replaces ``path`` atomically."""
    path = Path(path)
    if path.is_dir():
        raise OutputPathError(f"{path} is a folder; give a file name to write.")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        clean_stale_temps(path.parent)
        tmp_path = _new_temp_file(path)
    except OSError as exc:
        if exc.errno in STORAGE_ERRNOS:
            raise storage_error(path, exc) from None
        raise OutputPathError(f"Cannot write {path} ({exc.strerror}); choose a writable "
                              "location.") from None
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp_path, path)
    except TfxError:
        raise
    except Exception as exc:  # a full disk or a size limit, also when wrapped (torch.save)
        failure = storage_failure(exc)
        if failure is None:
            raise
        raise storage_error(path, failure) from exc
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


# tfx's own temp names: ".tfx-<pid>-<random>.<target name>.tmp" (files) and
# ".tfx-export-<pid>-<random>" (folders). The pid lets a later run remove the leftovers of a
# killed process; nothing that does not match these patterns is ever removed.
TEMP_PATTERN = re.compile(r"^\.tfx-(?:export-)?(\d+)-[0-9a-f]{8}(?:\..*\.tmp)?$", re.DOTALL)
_cleaned: set[str] = set()


def name_max(folder: Path) -> int:
    """Longest file name (bytes) the file system of ``folder`` allows."""
    try:
        return os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):
        return 255


def temp_name(target: str, folder: Path, kind: str = "") -> str:
    """A tfx temp name for ``target`` that fits the same name limit as ``target`` itself."""
    prefix = f".tfx-{kind + '-' if kind else ''}{os.getpid()}-{secrets.token_hex(4)}"
    if not target:
        return prefix
    room = name_max(folder) - len(prefix) - len(".") - len(".tmp")
    short = target.encode()[:max(room, 0)].decode(errors="ignore")
    return f"{prefix}.{short}.tmp"


def stored_path(path: str | os.PathLike | None) -> str | None:
    """An input path (``--data-dir``, ``--weights``) as a run or plan stores it: absolute (``~``
    expanded, links kept), so the run reads the same file from any working directory."""
    return os.path.abspath(os.path.expanduser(path)) if path else None


def make_folder(folder: str | os.PathLike) -> list[Path]:
    """Make ``folder`` and its missing parents; returns the folders it made, outermost first."""
    folder = Path(folder)
    missing = [p for p in (folder, *folder.parents) if not p.exists()][::-1]
    folder.mkdir(parents=True, exist_ok=True)
    return missing


def remove_made_folders(made: list[Path]) -> None:
    """Remove the folders ``make_folder`` made, innermost first, as long as they are empty."""
    for folder in reversed(made):
        try:
            folder.rmdir()
        except OSError:  # not empty (or gone): what is in it stays
            return


def check_writable(path: str | os.PathLike, flag: str) -> None:
    """Raise OutputPathError unless ``path`` can be created or replaced (checked before any work
    starts; probes the nearest existing folder with a temp file that is removed at once)."""
    path = Path(path).expanduser()
    for part in path.parts:
        if len(part.encode()) > name_max(Path("/")):
            raise OutputPathError(f"{flag} {path}: the name {part[:40]}... is "
                                  f"{len(part.encode())} bytes, longer than the file system's "
                                  f"limit of {name_max(Path('/'))}; choose a shorter name.")
    existing = path if path.exists() else None
    for parent in path.absolute().parents:
        if existing is None and parent.exists():
            existing = parent
        if parent.exists() and not parent.is_dir():
            raise OutputPathError(f"{flag} {path}: {parent} is a file, not a folder; choose "
                                  "an output path inside a folder.")
    folder = existing if existing.is_dir() else existing.parent
    probe = folder / temp_name("probe", folder)
    try:
        os.close(os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        os.unlink(probe)
    except OSError as exc:
        raise OutputPathError(f"{flag} {path}: cannot write in {folder} ({exc.strerror}); choose "
                              "a writable location.") from None


class OutputPathError(TfxError):
    """An output or cache path that cannot be written."""


class StorageFullError(OutputPathError):
    """A write that failed for lack of room: a full disk or quota, or a file-size limit."""


# The errors of a write that ran out of room (the path itself was fine).
STORAGE_ERRNOS = {errno.ENOSPC: "no space left on device", errno.EFBIG: "file too large",
                  errno.EDQUOT: "disk quota exceeded"}


def storage_failure(exc: BaseException | None) -> OSError | None:
    """The OSError of a full disk or quota or a file-size limit behind ``exc``: ``exc`` itself
    or an error it was raised from or while handling (torch.save wraps a failed write in a
    RuntimeError); None for any other error."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in STORAGE_ERRNOS:
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


def storage_error(path: str | os.PathLike | None, failure: OSError) -> StorageFullError:
    """The one-line error for ``failure`` (see ``storage_failure``) while writing ``path``."""
    reason = STORAGE_ERRNOS.get(failure.errno, failure.strerror or "write failed")
    fix = ("raise the file-size limit (ulimit -f) or write to another location"
           if failure.errno == errno.EFBIG else "free some space or write to another disk")
    target = path if path is not None else failure.filename or "a file"
    return StorageFullError(f"could not write {target}: {reason}; {fix}.")


def _new_temp_file(path: Path) -> Path:
    tmp = path.parent / temp_name(path.name, path.parent)
    os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))  # usual mode (umask)
    return tmp


def make_temp_dir(parent: str | os.PathLike, kind: str) -> Path:
    """A new hidden temp folder in ``parent`` named with tfx's pattern (``kind``: e.g. export)."""
    parent = Path(parent)
    clean_stale_temps(parent)
    folder = parent / temp_name("", parent, kind)
    folder.mkdir()
    return folder


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def clean_stale_temps(folder: str | os.PathLike) -> list[Path]:
    """Remove tfx temp files/folders in ``folder`` left by processes that no longer run
    (once per folder and process); returns what was removed."""
    folder = Path(folder)
    key = str(folder.resolve()) if folder.exists() else str(folder)
    if key in _cleaned:
        return []
    _cleaned.add(key)
    removed = []
    try:
        entries = [e for e in os.scandir(folder) if e.name.startswith(".tfx-")]
    except OSError:
        return []
    for entry in entries:
        match = TEMP_PATTERN.match(entry.name)
        if match is None or _pid_alive(int(match.group(1))):
            continue
        try:
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
            removed.append(Path(entry.path))
        except OSError:
            continue  # another process removed it first, or no permission: leave it
    return removed


def atomic_write(path: str | os.PathLike, writer: Callable[[Path], Any]) -> Path:
    """Call ``writer(tmp_path)`` and move the result to ``path`` atomically."""
    with atomic_path(path) as tmp:
        writer(tmp)
    return Path(path)


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Atomically write text."""
    return atomic_write(path, lambda tmp: tmp.write_text(text))


def write_json(path: str | os.PathLike, data: Any) -> Path:
    """Atomically write JSON (indented, NaN allowed as in Python's json)."""
    return write_text(path, json.dumps(data, indent=2, default=str) + "\n")


def write_yaml(path: str | os.PathLike, data: Any) -> Path:
    """Atomically write YAML."""
    return write_text(path, yaml.safe_dump(data, sort_keys=False))


def append_jsonl(path: str | os.PathLike, record: dict[str, Any]) -> None:
    """Append one JSON line and fsync (a line is either whole or, if killed mid-write, the
    reader skips it)."""
    try:
        with open(path, "a") as handle:
            handle.write(json.dumps(record, default=str) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as exc:
        if exc.errno in STORAGE_ERRNOS:
            raise storage_error(path, exc) from None
        raise


def read_jsonl(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Read a JSON-lines file, skipping a torn last line."""
    records = []
    for line in Path(path).read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


# A CSV cell starting with one of these is a formula to spreadsheet programs (OWASP).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\n")


def csv_safe(cell: Any) -> Any:
    """A CSV cell that no spreadsheet evaluates: text starting like a formula gets a leading
    apostrophe (plain numbers such as ``-0.5`` stay as they are); other values pass through."""
    if not isinstance(cell, str) or not cell.startswith(FORMULA_STARTS):
        return cell
    try:
        float(cell)
        return cell
    except ValueError:
        return "'" + cell
