"""Where output goes: data on stdout, progress, warnings and errors on stderr."""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Iterable
from typing import Any

from rich.console import Console, ConsoleDimensions

# Off a terminal (a pipe, a file) tables are drawn at their natural width: never cut or wrapped.
UNLIMITED_WIDTH = 100_000


class DataConsole(Console):
    """The stdout console: the terminal's width on a terminal, unlimited when piped or
    redirected, so every table printer shows full values wherever its output goes."""

    @property
    def size(self) -> ConsoleDimensions:
        size = Console.size.fget(self)
        return size if self.is_terminal else ConsoleDimensions(UNLIMITED_WIDTH, size.height)

    @size.setter
    def size(self, new_size: tuple[int, int]) -> None:
        Console.size.fset(self, new_size)


out = DataConsole(soft_wrap=True, highlight=False)
err = Console(stderr=True, soft_wrap=True, highlight=False)


def json_safe(value: Any) -> Any:
    """The value with NaN/inf floats replaced by None, recursively (strict JSON)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def print_json(data: Any) -> None:
    """Print strict JSON (NaN/inf become null) to stdout."""
    sys.stdout.write(json.dumps(json_safe(data), indent=2, default=str) + "\n")
    sys.stdout.flush()


def print_json_lines(records: Iterable[Any]) -> None:
    """Print each record as one line of strict JSON (JSON Lines) to stdout."""
    for record in records:
        sys.stdout.write(json.dumps(json_safe(record), default=str) + "\n")
    sys.stdout.flush()


def warn(message: str) -> None:
    """One warning line on stderr."""
    err.print(f"[yellow]warning:[/yellow] {message}", markup=True)


def info(message: str) -> None:
    """One progress/info line on stderr."""
    err.print(message, markup=False)
