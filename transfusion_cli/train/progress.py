"""Progress on stderr: a rich bar (loss, metric, ETA) on a terminal, one line per evaluation
otherwise. Silent on ranks other than 0."""

from __future__ import annotations

import math
from typing import Any

from transfusion_cli.console import err


def format_value(value: Any) -> str:
    """Compact number for a log line."""
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4f}"
    return str(value)


def evaluation_line(record: dict[str, Any], total_steps: int, selection: str) -> str:
    """``step 40/200  epoch 1.00  train_loss 1.2  referable_auc 0.81 (best) ...``."""
    skip = {"step", "epoch", "train_loss", "images_per_s", "nan_reasons", "notes", "best",
            "val_examples", "wall_time_s"}
    parts = [f"step {record['step']}/{total_steps}", f"epoch {record['epoch']:.2f}",
             f"train_loss {format_value(record['train_loss'])}"]
    selected = f"{selection} {format_value(record.get(selection, float('nan')))}"
    parts.append(selected + (" (best)" if record.get("best") else ""))
    parts += [f"{k} {format_value(v)}" for k, v in record.items()
              if k not in skip and k != selection and isinstance(v, int | float)]
    parts.append(f"{record['images_per_s']:.0f} img/s")
    return "  ".join(parts)


class Progress:
    """Training progress for one run."""

    def __init__(self, total_steps: int, start_step: int, selection: str, enabled: bool):
        self.total, self.selection = total_steps, selection
        self.enabled = enabled
        self.bar = None
        if enabled and err.is_terminal:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )
            from rich.progress import Progress as RichProgress

            self.bar = RichProgress(
                TextColumn("[bold]fit"), BarColumn(), MofNCompleteColumn(),
                TextColumn("loss {task.fields[loss]}"),
                TextColumn("{task.fields[metric]}"), TimeElapsedColumn(),
                TextColumn("ETA"), TimeRemainingColumn(), console=err, transient=False)
            self.task = self.bar.add_task("fit", total=total_steps, completed=start_step,
                                          loss="-", metric="")
            self.bar.start()

    def message(self, text: str) -> None:
        """A line of text above the bar (or plain)."""
        if self.enabled:
            (self.bar.console if self.bar else err).print(text, markup=False, highlight=False)

    def step(self, step: int, loss: float | None) -> None:
        """Advance the bar to ``step``."""
        if self.bar is not None:
            fields = {"loss": format_value(loss)} if loss is not None else {}
            self.bar.update(self.task, completed=step, **fields)

    def evaluation(self, record: dict[str, Any]) -> None:
        """One line per evaluation; the bar shows the selection metric."""
        if not self.enabled:
            return
        self.message(evaluation_line(record, self.total, self.selection))
        if self.bar is not None:
            value = format_value(record.get(self.selection, float("nan")))
            self.bar.update(self.task, metric=f"{self.selection} {value}")

    def close(self) -> None:
        """Stop the bar (leaves it on screen)."""
        if self.bar is not None:
            self.bar.stop()
            self.bar = None
