"""`tfx fit --log tensorboard|mlflow` mirrors metrics.jsonl; a resume updates config.yaml and
records itself in env.json."""

from __future__ import annotations

import importlib.util
import json

import fit_helpers
import pytest
import yaml
from fit_helpers import one_thread
from registry_helpers import registry_with

from transfusion_cli.errors import ConfigError
from transfusion_cli.io import read_jsonl
from transfusion_cli.train import fit, resolve_config
from transfusion_cli.train.tracking import check_tracker, flat_params, scalars

TINY = {"data": "fake-retina", "arch": "cbr-tiny", "image_size": 32, "batch_size": 8,
        "options": {"n_train": "32", "n_val": "16"}, "eval_every": 2}


def tiny_fit(out, **settings):
    with registry_with(fit_helpers), one_thread():
        return fit(resolve_config(None, {**TINY, "out": str(out), **settings}),
                   show_progress=False)


def test_scalars_keep_finite_numbers_at_their_step():
    record = {"step": 4, "epoch": 1.0, "train_loss": 0.7, "referable_auc": float("nan"),
              "best": True, "nan_reasons": {"x": "y"}, "notes": ["n"], "test/auc": 0.5,
              "val_examples": 16}
    assert scalars(record) == {"epoch": 1.0, "train_loss": 0.7, "best": 1.0, "test/auc": 0.5,
                               "val_examples": 16.0}
    assert flat_params({"lr": 0.001, "options": {"n": "3"}, "weights": None}) == {
        "lr": "0.001", "options.n": "3", "weights": "none"}


def test_missing_tracker_is_one_line_with_the_install_hint(monkeypatch, tmp_path):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "mlflow" else real(name, *a))
    with pytest.raises(ConfigError, match=r"pip install 'tfx\[mlflow\]'"):
        check_tracker("mlflow")
    with pytest.raises(ConfigError, match=r"pip install 'tfx\[mlflow\]'"):
        tiny_fit(tmp_path / "run", steps=2, log="mlflow")
    assert not (tmp_path / "run").exists()  # refused before any work
    with pytest.raises(ConfigError, match="is not one of"):
        resolve_config(None, {"log": "wandb"})


@pytest.mark.skipif(importlib.util.find_spec("tensorboard") is None,
                    reason="tensorboard is not installed (pip install 'tfx[tensorboard]')")
def test_tensorboard_scalars_mirror_metrics_jsonl(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "run"
    tiny_fit(run, steps=4, log="tensorboard")
    records = read_jsonl(run / "metrics.jsonl")
    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    assert "train_loss" in events.Tags()["scalars"]
    for key in ("train_loss", "referable_auc", "val_loss"):
        logged = [(e.step, e.value) for e in events.Scalars(key)]
        expected = [(r["step"], r[key]) for r in records]
        assert [s for s, _ in logged] == [s for s, _ in expected] == [2, 4]
        assert [v for _, v in logged] == pytest.approx([v for _, v in expected], rel=1e-6)
    (card,) = events.Tensors("config/text_summary")  # the settings, as a text card
    text = card.tensor_proto.string_val[0].decode()
    assert "| arch | cbr-tiny |" in text and "| log | tensorboard |" in text


@pytest.mark.skipif(importlib.util.find_spec("mlflow") is None,
                    reason="mlflow is not installed (pip install 'tfx[mlflow]')")
def test_mlflow_run_mirrors_metrics_and_params_and_resumes_into_the_same_run(tmp_path,
                                                                            monkeypatch):
    import mlflow

    store = f"file:{tmp_path / 'mlruns'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # mlflow 3: file stores opt-in
    run = tmp_path / "run"
    tiny_fit(run, steps=4, log="mlflow")
    tiny_fit(None, resume=str(run), steps=6, log="mlflow")
    run_id = json.loads((run / "mlflow.json").read_text())["run_id"]
    client = mlflow.tracking.MlflowClient(store)
    history = client.get_metric_history(run_id, "train_loss")
    records = read_jsonl(run / "metrics.jsonl")
    assert [m.step for m in history] == [r["step"] for r in records] == [2, 4, 6]
    assert [m.value for m in history] == pytest.approx([r["train_loss"] for r in records])
    params = client.get_run(run_id).data.params
    assert params["arch"] == "cbr-tiny" and params["options.n_train"] == "32"
    assert params["steps"] == "4"  # write-once in MLflow; config.yaml holds the final plan


def test_resume_with_a_longer_plan_updates_config_and_records_the_resume(tmp_path):
    run = tmp_path / "run"
    tiny_fit(run, steps=4)
    first_env = json.loads((run / "env.json").read_text())
    tiny_fit(None, resume=str(run), steps=6, eval_every=3)
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["steps"] == 6 and config["eval_every"] == 3 and config["resume"] is None
    env = json.loads((run / "env.json").read_text())
    assert env["started"] == first_env["started"]  # the first start is kept
    (resume,) = env["resumed"]
    assert resume["from_step"] == 4 and resume["total_steps"] == 6
    assert resume["changed"] == {"eval_every": {"before": 2, "now": 3},
                                 "steps": {"before": 4, "now": 6}}
    assert "started" in resume and resume["tfx_version"] == first_env["tfx_version"]
    assert [r["step"] for r in read_jsonl(run / "metrics.jsonl")] == [2, 4, 6]
    # Rerunning config.yaml trains the plan the run ended with.
    rerun = tmp_path / "rerun"
    with registry_with(fit_helpers), one_thread():
        result = fit(resolve_config(run / "config.yaml", {"out": str(rerun)}),
                     show_progress=False)
    assert result.steps == 6
