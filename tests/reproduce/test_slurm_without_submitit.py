"""`--executor slurm` without submitit installed: the install hint, first and alone, and no
study or sweep folder made (issue 20, item 18)."""

from __future__ import annotations

import sys

import pytest
from tree_snapshot import assert_tree_unchanged, snapshot_tree

HINT = "pip install 'transfusion-cli[slurm]'"


@pytest.fixture
def no_submitit(monkeypatch):
    """`import submitit` fails, as in an install without the slurm extra."""
    monkeypatch.setitem(sys.modules, "submitit", None)
    monkeypatch.delitem(sys.modules, "transfusion_cli.compare.slurm_job", raising=False)
    with pytest.raises(ImportError):
        import submitit  # noqa: F401


@pytest.mark.parametrize("command", [
    ["reproduce", "--profile", "smoke", "--executor", "slurm", "-o", "study"],
    ["compare-inits", "--image-size", "32", "--steps", "1", "--seeds", "1", "--executor",
     "slurm", "--out", "sweep"],
])
def test_the_install_hint_comes_first_and_nothing_is_made(tfx, no_submitit, tmp_path, monkeypatch,
                                                          command):
    monkeypatch.chdir(tmp_path)
    before = snapshot_tree(tmp_path)
    result = tfx(*command)
    assert result.exit_code == 1 and result.stdout == ""
    line = result.error_line()
    assert result.stderr.strip().splitlines() == [line]  # no planning or training output before it
    assert "--executor slurm needs submitit" in line and HINT in line
    assert_tree_unchanged(tmp_path, before)
