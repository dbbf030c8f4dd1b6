"""Progress of long steps on stderr: a rich bar on a terminal, otherwise a one-line update
at most every ``TFX_PROGRESS_INTERVAL`` seconds (default 10), so logs and pipes show life.

Every long step in tfx (training, image caching, similarity capture, export checks, sweeps)
reports through ``track``. Tasks opened while another one runs (a sweep's cell training)
share one rich display, since a terminal holds one live display at a time.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

from transfusion_cli import env
from transfusion_cli.console import err

INTERVAL_ENV = "TFX_PROGRESS_INTERVAL"
DEFAULT_INTERVAL_S = 10.0

T = TypeVar("T")


def line_interval() -> float:
    """Seconds between off-terminal progress lines (``$TFX_PROGRESS_INTERVAL``, default 10)."""
    interval = env.value(INTERVAL_ENV)
    return DEFAULT_INTERVAL_S if interval is None else interval


def format_duration(seconds: float) -> str:
    """``42s``, ``3m05s``, ``2h07m``."""
    if not math.isfinite(seconds):
        return "?"
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class _SharedDisplay:
    """The one rich Progress on stderr that every open task draws into (terminal only)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.bar: Any = None
        self.users = 0

    def open(self, description: str, total: float | None, completed: float) -> int:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        with self.lock:
            if self.bar is None:
                self.bar = Progress(
                    # descriptions and statuses hold names from files: text, never markup
                    TextColumn("{task.description}", markup=False), BarColumn(),
                    MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("ETA"),
                    TimeRemainingColumn(), TextColumn("{task.fields[status]}", markup=False),
                    console=err, transient=False,
                    # stdout carries data: it must never be routed through the stderr display
                    redirect_stdout=False)
                self.bar.start()
            self.users += 1
            return self.bar.add_task(description, total=total, completed=completed, status="")

    def close(self, task_id: int) -> None:
        with self.lock:
            self.users -= 1
            if self.users == 0:  # the outermost task stays on screen, finished
                self.bar.stop()
                self.bar = None
            else:  # an inner task (one cell of a sweep) makes room for the next
                self.bar.remove_task(task_id)


_display = _SharedDisplay()


class Task:
    """One long step: ``advance``/``update`` it; shown as a bar or as periodic lines."""

    def __init__(self, description: str, total: float | None = None, unit: str = "",
                 completed: float = 0, enabled: bool = True, interval: float | None = None):
        self.description, self.total, self.unit = description, total, unit
        self.completed = self.start_completed = completed
        self.enabled = enabled
        self.interval = line_interval() if interval is None else interval
        self.status = ""
        self.started = self.last_line = time.perf_counter()
        self.lock = threading.Lock()
        self.task_id: int | None = None
        if enabled and err.is_terminal:
            self.task_id = _display.open(description, total, completed)

    @property
    def on_terminal(self) -> bool:
        """Whether a rich bar shows this task."""
        return self.task_id is not None

    def update(self, completed: float | None = None, status: str | None = None) -> None:
        """Set the amount done and/or the status text (e.g. the current loss)."""
        with self.lock:
            if completed is not None:
                self.completed = completed
            if status is not None:
                self.status = status
            if not self.enabled:
                return
            if self.task_id is not None and _display.bar is not None:
                _display.bar.update(self.task_id, completed=self.completed, status=self.status)
            elif completed is not None and time.perf_counter() - self.last_line >= self.interval:
                self._print_line()  # on progress only: a status change alone is no news

    def advance(self, amount: float = 1, status: str | None = None) -> None:
        """Add ``amount`` to the amount done."""
        with self.lock:
            completed = self.completed + amount
        self.update(completed, status)

    def message(self, text: str) -> None:
        """A line of text on stderr (above the bar on a terminal)."""
        if not self.enabled:
            return
        console = _display.bar.console if self.task_id is not None and _display.bar else err
        console.print(text, markup=False, highlight=False)

    def line(self) -> str:
        """``fit: 40/200 steps (20%), 1m05s elapsed, ETA 4m20s, loss 0.6931``."""
        elapsed = time.perf_counter() - self.started
        unit = f" {self.unit}" if self.unit else ""
        done = f"{self.completed:g}"
        parts = [f"{self.description}: {done}{unit}"]
        if self.total:
            parts[0] = f"{self.description}: {done}/{self.total:g}{unit} " \
                       f"({100 * self.completed / self.total:.0f}%)"
        parts.append(f"{format_duration(elapsed)} elapsed")
        progressed = self.completed - self.start_completed
        if self.total and progressed > 0:
            remaining = (self.total - self.completed) * elapsed / progressed
            parts.append(f"ETA {format_duration(remaining)}")
        if self.status:
            parts.append(self.status)
        return ", ".join(parts)

    def _print_line(self) -> None:
        self.last_line = time.perf_counter()
        err.print(self.line(), markup=False, highlight=False)

    def close(self) -> None:
        """Finish the task (the outermost bar stays on screen)."""
        if self.task_id is not None:
            _display.close(self.task_id)
            self.task_id = None

    def __enter__(self) -> Task:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def track(description: str, total: float | None = None, unit: str = "", completed: float = 0,
          enabled: bool = True, interval: float | None = None) -> Task:
    """A progress task; use it as a context manager so its bar is always closed."""
    return Task(description, total, unit, completed, enabled, interval)


def track_iter(items: Iterable[T], description: str, total: float | None = None,
               unit: str = "", weight=None, enabled: bool = True) -> Iterator[T]:
    """Yield ``items`` and advance a task by ``weight(item)`` (default 1) after each."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with track(description, total, unit, enabled=enabled) as task:
        for item in items:
            yield item
            task.advance(weight(item) if weight is not None else 1)
