"""`torchrun --nproc_per_node=2 -m transfusion_cli fit` on CPU (gloo): gathered validation
metrics equal a single-process evaluation of the saved checkpoint."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import fit_helpers
import pytest
import torch
from fit_helpers import TINY, fake_plugin_env, one_thread
from registry_helpers import registry_with

from transfusion_cli.io import read_jsonl
from transfusion_cli.models.checkpoint import build_model, load_checkpoint
from transfusion_cli.train import resolve_config, score_loader
from transfusion_cli.train.loaders import load_bundle


def torchrun() -> list[str]:
    """The torchrun next to this interpreter, else `python -m torch.distributed.run`."""
    path = Path(sys.executable).parent / "torchrun"
    if path.exists() or shutil.which("torchrun"):
        return [str(path) if path.exists() else shutil.which("torchrun")]
    return [sys.executable, "-m", "torch.distributed.run"]


@pytest.mark.skipif(not torch.distributed.is_available() or
                    not torch.distributed.is_gloo_available(), reason="needs torch.distributed "
                    "with the gloo backend")
def test_two_process_ddp_metrics_equal_single_process_evaluation(tfx, tmp_path):
    env = fake_plugin_env(tmp_path)
    run = tmp_path / "ddp"
    # 25 validation images: the 2 ranks get 13 and 12, with no padded duplicates to drop.
    args = ["fit", "--data", "fake-retina", *TINY, "--option", "n_val=25", "--steps", "6",
            "--eval-every", "3", "--workers", "0", "--device", "cpu", "--out", str(run),
            "--json"]
    result = subprocess.run(
        [*torchrun(), "--standalone", "--nproc_per_node=2", "-m", "transfusion_cli", *args],
        capture_output=True, text=True, env=tfx.environment(env), cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    summary = json.loads(result.stdout)  # only rank 0 printed
    assert summary["steps"] == 6
    assert json.loads((run / "env.json").read_text())["world_size"] == 2
    records = read_jsonl(run / "metrics.jsonl")
    assert [r["step"] for r in records] == [3, 6]  # rank 0 alone wrote, once per evaluation
    logged = records[-1]
    assert logged["val_examples"] == 25

    with registry_with(fit_helpers), one_thread():
        config = resolve_config(run / "config.yaml")
        bundle = load_bundle(config)
        model = build_model(load_checkpoint(run / "checkpoints" / "last.pt"))
        loader = torch.utils.data.DataLoader(bundle.val, batch_size=7)
        metrics, logits, _ = score_loader(model, loader, bundle.info, "cpu")
    assert len(logits) == 25
    for key in ("auc", "accuracy", "kappa", "referable_auc"):
        assert metrics[key] == pytest.approx(logged[key], abs=1e-9), key
    assert metrics["val_loss"] == pytest.approx(logged["val_loss"], rel=1e-5)
    # 2 processes x batch 8 per step: 48 // 16 = 3 steps per epoch.
    assert logged["epoch"] == pytest.approx(2.0)
    assert os.path.exists(run / "checkpoints" / "best.pt")
