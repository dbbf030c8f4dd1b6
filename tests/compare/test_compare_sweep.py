"""A real `tfx compare-inits` process killed with SIGKILL mid-sweep, then re-run: finished
cells are not redone and the interrupted one resumes from its last checkpoint."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from fit_helpers import fake_plugin_env

SWEEP = ["compare-inits", "--data", "fake-retina", "--arch", "cbr-tiny", "--inits", "random",
         "--seeds", "2", "--steps", "40", "--eval-every", "4", "--image-size", "32",
         "--batch-size", "8", "--option", "n_train=48", "--option", "n_val=24",
         "--target-metric", "0.5"]
FIRST, SECOND = "cbr-tiny__random__nall__s0", "cbr-tiny__random__nall__s1"


def metric_lines(run: Path) -> list[str]:
    path = run / "metrics.jsonl"
    return path.read_text().splitlines() if path.is_file() else []


def wait_for(condition, process: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            raise AssertionError(f"sweep ended early: {process.stderr.read()[-3000:]}")
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError("timed out waiting for the sweep")
        time.sleep(0.02)


def test_killed_sweep_resumes_without_redoing_finished_cells(tfx, tmp_path):
    env = fake_plugin_env(tmp_path)
    out = tmp_path / "sweep"
    command = [*SWEEP, "--out", str(out)]
    process = subprocess.Popen(tfx.command(*command), env=tfx.environment(env), cwd=tmp_path,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first_done = out / "done" / f"{FIRST}.json"
    second_run = out / "runs" / SECOND
    # Kill once the first cell is finished and the second has evaluated (and saved) twice.
    wait_for(lambda: first_done.is_file() and len(metric_lines(second_run)) >= 2, process)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL
    assert not (out / "done" / f"{SECOND}.json").exists(), "killed too late to test a resume"

    finished_files = {p: (p.stat().st_mtime_ns, p.read_bytes())
                      for p in [first_done, *(out / "runs" / FIRST).rglob("*")] if p.is_file()}
    before_kill = metric_lines(second_run)

    result = tfx.subprocess(*command, "--json", env=env, cwd=tmp_path, check=True)
    assert "1 of 2 cells already finished" in result.stderr
    assert "resuming" in result.stderr
    # The finished cell was not touched: same bytes, same modification times.
    for path, (mtime, content) in finished_files.items():
        assert path.stat().st_mtime_ns == mtime and path.read_bytes() == content, path
    # The interrupted cell continued from its checkpoint instead of starting again.
    done = json.loads((out / "done" / f"{SECOND}.json").read_text())
    assert done["resumed"] is True and done["steps"] == 40
    after = metric_lines(second_run)
    # Records from before the kill are kept as they were (the last one may have been written
    # after the last checkpoint; fit then drops it and evaluates that step again).
    assert after[:len(before_kill) - 1] == before_kill[:-1]
    assert [json.loads(line)["step"] for line in after] == list(range(4, 41, 4))
    results = json.loads(result.stdout)
    assert results["pending"] == [] and len(results["cells"]) == 2


def child_pids(marker: str) -> list[int]:
    """PIDs of processes whose command line contains ``marker``."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if marker in cmdline and "--cell" in cmdline:
                pids.append(int(entry.name))
    return pids


@pytest.mark.slow  # three interpreters importing torch: ~30 s on 2 idle cores
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc (Linux)")
def test_parallel_jobs_run_cells_in_processes_that_die_with_the_sweep(tfx, tmp_path):
    env = fake_plugin_env(tmp_path)
    out = tmp_path / "parallel"
    command = [*SWEEP, "--out", str(out), "--jobs", "2"]
    process = subprocess.Popen(tfx.command(*command), env=tfx.environment(env), cwd=tmp_path,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    runs = [out / "runs" / FIRST, out / "runs" / SECOND]
    wait_for(lambda: all(len(metric_lines(r)) >= 1 for r in runs), process)
    assert len(child_pids(str(out))) == 2  # both cells at once, each in its own process
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    deadline = time.monotonic() + 20
    while child_pids(str(out)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert child_pids(str(out)) == []  # no orphan trainers left behind
    result = tfx.subprocess(*command, env=env, cwd=tmp_path, check=True)
    assert "cells already finished" not in result.stderr  # both were interrupted
    for cell in (FIRST, SECOND):
        done = json.loads((out / "done" / f"{cell}.json").read_text())
        assert done["resumed"] is True and done["steps"] == 40
        assert (out / "logs" / f"{cell}.log").is_file()
    assert os.path.getsize(out / "results.csv") > 0
