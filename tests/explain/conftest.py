"""Fixtures of the `tfx explain` tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def explain_checkpoint(tiny_run) -> Path:
    """best.pt of the session's tiny run (read only: explain writes elsewhere)."""
    pytest.importorskip("pytorch_grad_cam")
    return tiny_run / "checkpoints" / "best.pt"
