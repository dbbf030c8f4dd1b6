"""The output guard: a command never writes over one of its own inputs or into a dataset it
reads."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from transfusion_cli.errors import ConfigError
from transfusion_cli.io import check_writable

PathLike = str | os.PathLike


class OutputOverlapError(ConfigError):
    """An output path that is an input, or lies inside a dataset folder being read."""


def _real(path: PathLike) -> Path:
    """The absolute path with every symlink resolved (a missing file resolves as far as it can)."""
    return Path(path).expanduser().resolve(strict=False)


def refuse_overwriting_inputs(outputs: dict[str, PathLike | None],
                              inputs: Iterable[PathLike | None] = (),
                              data_dirs: Iterable[PathLike | None] = ()) -> None:
    """Raise OutputOverlapError if an output (``{"--out": path}``) is one of ``inputs``, lies
    inside one of ``data_dirs``, or is a folder holding either; symlinks and hard links count
    as the same file."""
    real_inputs = [(Path(p), _real(p)) for p in inputs if p is not None]
    real_dirs = [(Path(d), _real(d)) for d in data_dirs if d is not None]
    for flag, output in outputs.items():
        if output is None:
            continue
        target = _real(output)
        for given, real in real_inputs:
            if target == real or _same_file(target, real):
                raise OutputOverlapError(
                    f"{flag} {output} is also an input ({given}); writing it would destroy "
                    "that input. Choose another output path.")
            if real.is_relative_to(target):  # a folder output that holds an input
                raise OutputOverlapError(
                    f"{flag} {output} contains the input {given}; choose an output folder "
                    "that holds none of the inputs.")
        for given, real in real_dirs:
            if target == real or target.is_relative_to(real):
                raise OutputOverlapError(
                    f"{flag} {output} is inside the dataset folder {given} being read; write "
                    "outputs outside the data. Choose another path.")
            if real.is_relative_to(target):
                raise OutputOverlapError(
                    f"{flag} {output} contains the dataset folder {given} being read; choose "
                    "an output folder outside the data.")
    for flag, output in outputs.items():  # then writability, before any work starts
        if output is not None:
            check_writable(output, flag)


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False
