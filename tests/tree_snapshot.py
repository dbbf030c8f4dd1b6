"""Snapshot a folder tree (paths, sizes, mtimes, sha256) to prove a command changed nothing."""

from __future__ import annotations

import hashlib
from pathlib import Path


def snapshot_tree(root: Path) -> dict[str, tuple[int, int, str]]:
    """Map every file and folder under root to (size, mtime_ns, sha256); folders get size -1."""
    root = Path(root)
    entries: dict[str, tuple[int, int, str]] = {}
    if not root.exists():
        return entries
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_symlink():
            entries[rel] = (-2, 0, str(path.readlink()))
        elif path.is_dir():
            entries[rel] = (-1, 0, "")
        else:
            stat = path.stat()
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            entries[rel] = (stat.st_size, stat.st_mtime_ns, digest)
    return entries


def tree_changes(before: dict, after: dict) -> list[str]:
    """Human-readable differences between two snapshots: added, removed and changed paths."""
    changes = [f"added {p}" for p in sorted(after.keys() - before.keys())]
    changes += [f"removed {p}" for p in sorted(before.keys() - after.keys())]
    changes += [f"changed {p}" for p in sorted(before.keys() & after.keys())
                if before[p] != after[p]]
    return changes


def assert_tree_unchanged(root: Path, before: dict) -> None:
    """Fail with the list of differences if root no longer matches the snapshot before."""
    changes = tree_changes(before, snapshot_tree(root))
    assert not changes, "files changed: " + ", ".join(changes)
