"""`tfx fit --log tensorboard|mlflow` mirrors metrics.jsonl; a resume updates config.yaml and
records itself in env.json."""

from __future__ import annotations

import importlib.util
import json
import socket
import time

import fit_helpers
import pytest
import yaml
from fit_helpers import one_thread
from registry_helpers import registry_with

from transfusion_cli.errors import ConfigError
from transfusion_cli.io import read_jsonl
from transfusion_cli.train import fit, resolve_config
from transfusion_cli.train.tracking import check_tracker, flat_params, scalars, uses_database

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
    with pytest.raises(ConfigError, match=r"pip install 'transfusion-cli\[mlflow\]'"):
        check_tracker("mlflow")
    with pytest.raises(ConfigError, match=r"pip install 'transfusion-cli\[mlflow\]'"):
        tiny_fit(tmp_path / "run", steps=2, log="mlflow")
    assert not (tmp_path / "run").exists()  # refused before any work
    with pytest.raises(ConfigError, match="is not one of"):
        resolve_config(None, {"log": "wandb"})


def test_the_default_mlflow_store_needs_sqlalchemy_a_server_does_not(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "sqlalchemy" else real(name, *a))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with pytest.raises(ConfigError, match=r"needs sqlalchemy.*'transfusion-cli\[mlflow\]'"):
        check_tracker("mlflow")
    assert uses_database("sqlite:///x.db") and uses_database("postgresql+psycopg://h/db")
    assert not uses_database("http://localhost:5000") and not uses_database("databricks")


@pytest.mark.skipif(importlib.util.find_spec("tensorboard") is None,
                    reason="tensorboard is not installed "
                    "(pip install 'transfusion-cli[tensorboard]')")
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


needs_mlflow = pytest.mark.skipif(
    any(importlib.util.find_spec(m) is None for m in ("mlflow", "sqlalchemy", "alembic")),
    reason="mlflow is not installed (pip install 'transfusion-cli[mlflow]')")


def assert_mirrors_metrics_jsonl(client, run_id: str, run) -> None:
    """The MLflow run holds every metrics.jsonl value at its step, and the settings."""
    records = read_jsonl(run / "metrics.jsonl")
    for key in ("train_loss", "referable_auc", "val_loss"):
        history = sorted(client.get_metric_history(run_id, key), key=lambda m: m.step)
        assert [m.step for m in history] == [r["step"] for r in records]
        assert [m.value for m in history] == pytest.approx([r[key] for r in records], rel=1e-6)
    params = client.get_run(run_id).data.params
    assert params["arch"] == "cbr-tiny" and params["options.n_train"] == "32"
    assert params["log"] == "mlflow"


@needs_mlflow
def test_mlflow_default_store_is_the_run_folder_and_a_resume_continues_the_run(tmp_path,
                                                                              monkeypatch):
    """Without $MLFLOW_TRACKING_URI the run gets its own store, RUN/mlflow.db (MLflow's default
    is a store in the current folder; its file store is in maintenance mode)."""
    from mlflow.tracking import MlflowClient

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    run = tmp_path / "run"
    tiny_fit(run, steps=4, log="mlflow")
    tiny_fit(None, resume=str(run), steps=6, log="mlflow")
    record = json.loads((run / "mlflow.json").read_text())
    assert record["tracking_uri"] is None and record["store"] == "RUN/mlflow.db"
    client = MlflowClient(f"sqlite:///{run / 'mlflow.db'}")
    (logged,) = client.search_runs([record["experiment_id"]])  # the resume added no run
    assert logged.info.run_id == record["run_id"] and logged.info.run_name == "run"
    assert logged.info.status == "FINISHED"
    assert_mirrors_metrics_jsonl(client, record["run_id"], run)
    assert [m.step for m in client.get_metric_history(record["run_id"], "train_loss")] \
        == [2, 4, 6]
    assert client.get_run(record["run_id"]).data.params["steps"] == "4"  # write-once
    assert list(elsewhere.iterdir()) == []  # nothing written where tfx was started


@needs_mlflow
def test_mlflow_tracking_uri_and_experiment_from_the_environment(tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    store = f"sqlite:///{tmp_path / 'shared.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "transfusion")
    for name in ("a", "b"):
        tiny_fit(tmp_path / name, steps=2, log="mlflow")
        assert not (tmp_path / name / "mlflow.db").exists()
    client = MlflowClient(store)
    experiment = client.get_experiment_by_name("transfusion")
    runs = {r.info.run_name: r.info.run_id for r in client.search_runs(
        [experiment.experiment_id])}
    assert set(runs) == {"a", "b"}
    for name, run_id in runs.items():
        assert json.loads((tmp_path / name / "mlflow.json").read_text())["run_id"] == run_id
        assert_mirrors_metrics_jsonl(client, run_id, tmp_path / name)


@needs_mlflow
@pytest.mark.parametrize("uri, says", [
    ("bogus://x", "unsupported URI"),
    ("http://127.0.0.1:{port}", "Connection refused"),
    ("file:{tmp}/mlruns", "maintenance mode"),
    ("sqlite:///{tmp}/not-a-database.db", "file is not a database"),
])
def test_a_bad_tracking_uri_is_one_line_before_any_work(tfx, tmp_path, uri, says):
    with socket.socket() as unused:  # a port nothing listens on
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    (tmp_path / "not-a-database.db").write_text("not sqlite")
    uri = uri.format(port=port, tmp=tmp_path)
    started = time.monotonic()
    result = tfx("fit", "--data", "synthetic-retina", "--arch", "cbr-tiny", "--image-size", "32",
                 "--steps", "2", "--out", str(tmp_path / "run"), "--log", "mlflow",
                 env={"MLFLOW_TRACKING_URI": uri})
    line = result.error_line()
    assert result.exit_code != 0 and says in line and "MLFLOW_TRACKING_URI" in line and uri in line
    assert not (tmp_path / "run").exists()
    assert time.monotonic() - started < 60  # no minutes of retries against a dead server


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
