"""The callable a SLURM array task runs: one cell, requeued on pre-emption or time-out."""

from __future__ import annotations

import submitit


class CellJob(submitit.helpers.Checkpointable):
    """Run one cell; when SLURM pre-empts or times out the job, submitit requeues the same
    call, and the cell resumes from its last.pt (written at every evaluation)."""

    def __call__(self, directory: str, cell_id: str) -> str:
        from transfusion_cli.compare.runner import run_task

        return run_task(directory, cell_id)
