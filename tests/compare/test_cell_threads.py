"""Parallel CPU cells share the machine: with --jobs N each cell's torch / BLAS thread pools get
max(1, cpus // N) threads, never N x all cores, and each cell's env.json records its share."""

from __future__ import annotations

import json

import pytest
import torch
from fit_helpers import TINY, fake_plugin_env
from threadpoolctl import threadpool_info

from transfusion_cli.compare import runner
from transfusion_cli.train import rundir


@pytest.fixture
def restore_threads():
    from threadpoolctl import threadpool_limits

    before, pools = torch.get_num_threads(), threadpool_info()
    yield
    torch.set_num_threads(before)
    threadpool_limits(limits={pool["prefix"]: pool["num_threads"] for pool in pools})


def test_worker_environment_holds_the_share(monkeypatch):
    monkeypatch.setattr(rundir, "available_cpus", lambda: 16)
    env = runner._worker_env(0, 3, [])
    assert env[rundir.CELL_JOBS_ENV] == "3"
    assert env["OMP_NUM_THREADS"] == env["MKL_NUM_THREADS"] == "5"
    on_gpu = runner._worker_env(1, 3, ["0", "1"])
    assert on_gpu["CUDA_VISIBLE_DEVICES"] == "1" and rundir.CELL_JOBS_ENV not in on_gpu


@pytest.mark.parametrize(("cpus", "jobs", "threads"), [(16, 4, 4), (16, 3, 5), (2, 4, 1)])
def test_the_cell_worker_sets_its_thread_count(monkeypatch, restore_threads, cpus, jobs,
                                               threads):
    monkeypatch.setattr(rundir, "available_cpus", lambda: cpus)
    monkeypatch.setenv(rundir.CELL_JOBS_ENV, str(jobs))
    share = runner.share_cores()
    assert share == {"jobs": jobs, "cpus": cpus, "threads": threads}
    assert torch.get_num_threads() == threads
    assert all(pool["num_threads"] <= threads for pool in threadpool_info())


def test_a_cell_alone_keeps_every_core(monkeypatch, restore_threads):
    monkeypatch.delenv(rundir.CELL_JOBS_ENV, raising=False)
    before = torch.get_num_threads()
    assert runner.share_cores() is None and rundir.cpu_share() is None
    assert torch.get_num_threads() == before


def test_parallel_cells_record_their_share_in_env_json(tfx, tmp_path):
    env = fake_plugin_env(tmp_path)
    out = tmp_path / "sweep"
    tfx.subprocess("compare-inits", "--data", "fake-retina", *TINY, "--inits", "random,gabor",
                   "--seeds", "1", "--steps", "2", "--eval-every", "2", "--device", "cpu",
                   "--jobs", "2", "--out", out, env=env, cwd=tmp_path, check=True)
    expected = max(1, rundir.available_cpus() // 2)
    for cell in ("cbr-tiny__random__nall__s0", "cbr-tiny__gabor__nall__s0"):
        recorded = json.loads((out / "runs" / cell / "env.json").read_text())
        assert recorded["cpu_share"] == {"jobs": 2, "cpus": rundir.available_cpus(),
                                         "threads": expected}
        assert recorded["cpu_threads"] == expected
