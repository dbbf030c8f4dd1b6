"""Training progress on stderr: a rich bar (loss, metric, ETA) on a terminal; otherwise one line
per evaluation plus a status line at least every ~10 s. Silent on ranks other than 0."""

from __future__ import annotations

import math
from typing import Any

from transfusion_cli.progress import track


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
    """Training progress for one run: a ``transfusion_cli.progress`` task counting steps."""

    def __init__(self, total_steps: int, start_step: int, selection: str, enabled: bool):
        self.total, self.selection = total_steps, selection
        self.enabled = enabled
        self.loss, self.metric = "-", ""
        self.task = track("fit", total=total_steps, unit="steps", completed=start_step,
                          enabled=enabled)

    def message(self, text: str) -> None:
        """A line of text above the bar (or plain)."""
        self.task.message(text)

    def _status(self) -> str:
        return "  ".join(p for p in (f"loss {self.loss}", self.metric) if p)

    def step(self, step: int, loss: float | None) -> None:
        """Advance to ``step``; off a terminal a line at least every ~10 s."""
        if loss is not None:
            self.loss = format_value(loss)
        self.task.update(step, status=self._status())

    def evaluation(self, record: dict[str, Any]) -> None:
        """One line per evaluation; the bar shows the selection metric."""
        if not self.enabled:
            return
        self.message(evaluation_line(record, self.total, self.selection))
        value = format_value(record.get(self.selection, float("nan")))
        self.metric = f"{self.selection} {value}"
        self.task.update(status=self._status())

    def close(self) -> None:
        """Stop the bar (leaves it on screen)."""
        self.task.close()
