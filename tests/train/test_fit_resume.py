"""Exact resume with real processes: SIGKILL at a random moment, and Ctrl-C (SIGINT -> 130)."""

from __future__ import annotations

import random
import signal
import subprocess
import time

import fit_helpers
import pytest
import torch
from cli_runner import TFX
from fit_helpers import TINY, fake_plugin_env, one_thread
from registry_helpers import registry_with

from transfusion_cli.io import read_jsonl
from transfusion_cli.models.checkpoint import load_checkpoint
from transfusion_cli.train import fit, resolve_config

# 6 steps per epoch (48 / 8); evaluations (and last.pt) every 5 steps, so resumes start
# mid-epoch. Training images are augmented (seeded per image), which a resume must repeat.
ARGS = ["fit", "--data", "fake-retina", *TINY, "--steps", "30", "--eval-every", "5",
        "--workers", "0", "--augment", "fundus"]
SAME_AS_ARGS = {"data": "fake-retina", "arch": "cbr-tiny", "image_size": 32, "batch_size": 8,
                "options": {"n_train": "48", "n_val": "24"}, "steps": 30, "eval_every": 5,
                "workers": 0, "augment": "fundus"}


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    return fake_plugin_env(tmp_path_factory.mktemp("plugin"))


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted run of the same config (in process: the same code and one thread, as
    in the subprocesses)."""
    root = tmp_path_factory.mktemp("reference")
    with registry_with(fit_helpers), one_thread():
        fit(resolve_config(None, {**SAME_AS_ARGS, "out": str(root / "run")}),
            show_progress=False)
    return root / "run"


def assert_identical_runs(a, b):
    ca = load_checkpoint(a / "checkpoints" / "last.pt")
    cb = load_checkpoint(b / "checkpoints" / "last.pt")
    assert ca["step"] == cb["step"] == 30
    for key, tensor in ca["state_dict"].items():
        assert torch.equal(tensor, cb["state_dict"][key]), key  # bit-identical
    for index, state in ca["optimizer"]["state"].items():
        for name, value in state.items():
            assert torch.equal(value, cb["optimizer"]["state"][index][name]), (index, name)
    def records(run):
        return [{k: v for k, v in r.items() if k != "images_per_s"}
                for r in read_jsonl(run / "metrics.jsonl")]

    assert records(a) == records(b)  # one record per evaluation, none duplicated by the resume


def start(args, env, cwd):
    return subprocess.Popen(TFX.command(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=TFX.environment(env), cwd=cwd)


def wait_for_records(run, process, count, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (run / "metrics.jsonl").exists() and len(read_jsonl(run / "metrics.jsonl")) >= count:
            return
        if process.poll() is not None:
            pytest.fail(f"fit ended early: {process.communicate()[1][-2000:]}")
        time.sleep(0.01)
    pytest.fail("fit wrote no metrics in time")


def test_ctrl_c_then_sigkill_at_a_random_moment_then_resume_is_bit_identical(tfx, tmp_path, env,
                                                                            reference):
    run = tmp_path / "run"
    # Ctrl-C: last.pt saved at the step where it stopped, exit 130.
    process = start([*ARGS, "--out", str(run)], env, tmp_path)
    wait_for_records(run, process, 1)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr[-2000:]
    saved = load_checkpoint(run / "checkpoints" / "last.pt")["step"]
    assert f"Interrupted at step {saved}; saved" in stderr and f"--resume {run}" in stderr

    # Resume, and SIGKILL that process at a random moment after its next evaluation.
    delay = random.Random().uniform(0.0, 0.6)
    process = start(["fit", "--resume", str(run)], env, tmp_path)
    wait_for_records(run, process, len(read_jsonl(run / "metrics.jsonl")) + 1)
    time.sleep(delay)
    process.send_signal(signal.SIGKILL)
    _, stderr = process.communicate()
    assert f"resuming at step {saved}" in stderr
    assert process.returncode == -signal.SIGKILL, f"finished before the kill (delay {delay:.2f})"
    # A kill between appending a metrics record and saving last.pt leaves last.pt one
    # evaluation behind; the resume drops that record and evaluates that step again.
    killed_at = load_checkpoint(run / "checkpoints" / "last.pt")["step"]
    assert saved <= killed_at < 30

    resumed = tfx.subprocess("fit", "--resume", run, env=env, cwd=tmp_path, check=True)
    assert f"resuming at step {killed_at}" in resumed.stderr
    assert_identical_runs(reference, run)
