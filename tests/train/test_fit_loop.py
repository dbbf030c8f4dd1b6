"""`fit` in process on tiny fake data: run folder, metrics, checkpoints, reruns, failures."""

from __future__ import annotations

import json
import math
import re

import fit_helpers
import numpy as np
import pytest
import torch
import yaml
from fit_helpers import FAKE_RETINA, one_thread
from registry_helpers import registry_with

from transfusion_cli.errors import ConfigError, TrainingError
from transfusion_cli.io import read_jsonl
from transfusion_cli.models.checkpoint import build_model, checkpoint_dataset_info, load_checkpoint
from transfusion_cli.train import FitConfig, fit, resolve_config, score_loader
from transfusion_cli.train.loaders import load_bundle
from transfusion_cli.train.loop import DIVERGENCE_FACTOR, divergence_bound

TINY = {"arch": "cbr-tiny", "image_size": 32, "batch_size": 8,
        "options": {"n_train": 48, "n_val": 24}}


@pytest.fixture(autouse=True, scope="module")
def fakes():
    with registry_with(fit_helpers), one_thread():
        yield


def tiny(tmp_path, name="run", **changes):
    return FitConfig(**{**TINY, "data": "fake-retina", "steps": 8, "epochs": None,
                        "eval_every": 4, "out": str(tmp_path / name), **changes})


def same_weights(a, b):
    sa, sb = load_checkpoint(a)["state_dict"], load_checkpoint(b)["state_dict"]
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_run_folder_metrics_and_checkpoints(tmp_path):
    result = fit(tiny(tmp_path), show_progress=False)
    run = result.run_dir
    assert {p.name for p in run.iterdir()} == {"config.yaml", "env.json", "metrics.jsonl",
                                               "checkpoints", "split.json", ".tfx-fit.lock"}
    assert {p.name for p in (run / "checkpoints").iterdir()} == {"init.pt", "last.pt", "best.pt"}
    records = read_jsonl(run / "metrics.jsonl")
    assert [r["step"] for r in records] == [4, 8]
    for record in records:
        for key in ("epoch", "train_loss", "auc", "accuracy", "kappa", "referable_auc",
                    "images_per_s", "val_loss"):
            assert math.isfinite(record[key]), key
        assert record["val_examples"] == 24
    env = json.loads((run / "env.json").read_text())
    assert env["torch"] == torch.__version__ and env["seed"] == 0 and env["device"] == "cpu"
    assert yaml.safe_load((run / "config.yaml").read_text())["steps"] == 8

    # Checkpoints are plain dicts that load with weights_only=True and rebuild the model.
    last = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert last["step"] == 8 and last["arch"] == {"name": "cbr-tiny", "num_classes": 5,
                                                  "in_chans": 3}
    assert last["init"]["name"] == "random" and "optimizer" in last and "rng" in last
    best = load_checkpoint(run / "checkpoints" / "best.pt")
    assert best["step"] == result.best_step
    assert best["metrics"]["referable_auc"] == result.best_value
    init = load_checkpoint(run / "checkpoints" / "init.pt")
    assert init["step"] == 0 and not same_weights(run / "checkpoints" / "init.pt",
                                                  run / "checkpoints" / "last.pt")
    # init.pt is exactly the seeded random init.
    from transfusion_cli.plugins import get
    from transfusion_cli.registry import InitContext

    spec = get("architectures", "cbr-tiny")
    fresh = spec.build(num_classes=5, in_chans=3)
    get("inits", "random").apply(fresh, InitContext(arch=spec, num_classes=5, in_chans=3, seed=0))
    assert all(torch.equal(v, init["state_dict"][k]) for k, v in fresh.state_dict().items())
    assert result.final_metrics["step"] == 8 and result.images_per_s > 0


def test_evaluate_of_last_checkpoint_reproduces_the_logged_metrics(tmp_path):
    result = fit(tiny(tmp_path), show_progress=False)
    checkpoint = load_checkpoint(result.run_dir / "checkpoints" / "last.pt")
    model = build_model(checkpoint)
    config = resolve_config(result.run_dir / "config.yaml")
    bundle = load_bundle(config)
    assert checkpoint_dataset_info(checkpoint) == bundle.info
    loader = torch.utils.data.DataLoader(bundle.val, batch_size=5)
    metrics, logits, targets = score_loader(model, loader, bundle.info, "cpu")
    assert logits.shape == (24, 5) and len(targets) == 24
    logged = read_jsonl(result.run_dir / "metrics.jsonl")[-1]
    for key in ("auc", "accuracy", "kappa", "referable_auc"):
        assert metrics[key] == pytest.approx(logged[key], abs=1e-9), key
    assert metrics["val_loss"] == pytest.approx(logged["val_loss"], rel=1e-5)


def test_config_yaml_reruns_the_same_training(tmp_path):
    first = fit(tiny(tmp_path, "a"), show_progress=False)
    again = fit(resolve_config(first.run_dir / "config.yaml", {"out": str(tmp_path / "b")}),
                show_progress=False)
    assert same_weights(first.run_dir / "checkpoints" / "last.pt",
                        again.run_dir / "checkpoints" / "last.pt")
    a = yaml.safe_load((first.run_dir / "config.yaml").read_text())
    b = yaml.safe_load((again.run_dir / "config.yaml").read_text())
    assert {k: v for k, v in a.items() if k != "out"} == {k: v for k, v in b.items() if k != "out"}
    # A different training seed gives different weights (the comparison above can fail).
    other = fit(tiny(tmp_path, "c", seed=1), show_progress=False)
    assert not same_weights(first.run_dir / "checkpoints" / "last.pt",
                            other.run_dir / "checkpoints" / "last.pt")


def test_existing_run_folder_needs_overwrite(tmp_path):
    fit(tiny(tmp_path, steps=2, eval_every=None), show_progress=False)
    with pytest.raises(ConfigError, match="already exists; pass --overwrite"):
        fit(tiny(tmp_path, steps=2), show_progress=False)
    result = fit(tiny(tmp_path, steps=2, overwrite=True), show_progress=False)
    assert [r["step"] for r in read_jsonl(result.run_dir / "metrics.jsonl")] == [2]
    # Rerunning the saved config must not silently delete this run.
    assert yaml.safe_load((result.run_dir / "config.yaml").read_text())["overwrite"] is False
    (tmp_path / "precious").mkdir()
    (tmp_path / "precious" / "notes.txt").write_text("keep")
    with pytest.raises(ConfigError, match="not a tfx run folder"):
        fit(tiny(tmp_path, "precious", steps=2, overwrite=True), show_progress=False)
    assert (tmp_path / "precious" / "notes.txt").exists()


def test_default_run_folder_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = fit(tiny(tmp_path, out=None, steps=1), show_progress=False)
    assert str(result.run_dir.parent) == "runs"
    assert re.fullmatch(r"fake-retina-cbr-tiny-\d{8}-\d{6}", result.run_dir.name)
    assert (tmp_path / result.run_dir / "checkpoints" / "last.pt").is_file()


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    with pytest.raises(TrainingError, match="non-finite at step") as error:
        fit(tiny(tmp_path, lr=1e30, steps=20, eval_every=None), show_progress=False)
    message = str(error.value)
    assert "\n" not in message and "--lr (now 1e+30)" in message
    assert message.startswith("Loss became non-finite")
    last = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert all(torch.isfinite(v.float()).all() for v in last["state_dict"].values())
    assert f"(step {last['step']})" in message
    # Validation outputs that blow up before the loss does are caught the same way.
    with pytest.raises(TrainingError, match="Validation outputs became non-finite at step 1"):
        fit(tiny(tmp_path, "eval", lr=1e30, steps=20, eval_every=1), show_progress=False)


@pytest.mark.parametrize(("data", "keys"), [
    ("fake-binary", ("auc", "sensitivity", "specificity", "threshold")),
    ("fake-chest", ("auc/Atelectasis", "auc/Cardiomegaly", "auc/Edema", "mean_auc")),
])
def test_binary_and_multilabel_tasks(tmp_path, data, keys):
    result = fit(tiny(tmp_path, data=data, steps=3, eval_every=None), show_progress=False)
    record = read_jsonl(result.run_dir / "metrics.jsonl")[-1]
    assert all(key in record for key in keys)
    checkpoint = load_checkpoint(result.run_dir / "checkpoints" / "last.pt")
    expected = (1, 3) if data == "fake-binary" else (3, 1)
    assert (checkpoint["arch"]["num_classes"], checkpoint["arch"]["in_chans"]) == expected


def test_train_size_and_in_chans(tmp_path):
    result = fit(tiny(tmp_path, data="fake-chest", train_size=16, in_chans=3, steps=None,
                      epochs=2, eval_every=None), show_progress=False)
    records = read_jsonl(result.run_dir / "metrics.jsonl")
    assert [r["step"] for r in records] == [2, 4]  # 16 images / batch 8 = 2 steps per epoch
    assert load_checkpoint(result.run_dir / "checkpoints" / "last.pt")["arch"]["in_chans"] == 3


def test_nan_metric_reason_reaches_the_metrics_file(tmp_path):
    # 2 validation images (grades 0 and 1 are the first two), both non-referable.
    result = fit(tiny(tmp_path, steps=2, options={"n_train": 48, "n_val": 2}),
                 show_progress=False)
    record = read_jsonl(result.run_dir / "metrics.jsonl")[-1]
    assert np.isnan(record["referable_auc"])
    assert "only non-referable" in record["nan_reasons"]["referable_auc"]
    assert result.best_value is None  # NaN never selects best.pt


def test_cli_json_summary_and_errors(tfx, tmp_path):
    args = ["fit", "--data", "fake-retina", "--arch", "cbr-tiny", "--image-size", "32",
            "--batch-size", "8", "--option", "n_train=48", "--option", "n_val=24",
            "--steps", "2", "--out", str(tmp_path / "cli"), "--json"]
    result = tfx(*args, check=True)
    summary = json.loads(result.stdout)
    assert summary["run_dir"] == str(tmp_path / "cli")
    assert summary["best_metric"] == "referable_auc" and summary["steps"] == 2
    assert set(summary) >= {"best_value", "best_step", "final_metrics", "wall_time_s",
                            "images_per_s"}
    assert "step 2/2" in result.stderr
    saved = yaml.safe_load((tmp_path / "cli" / "config.yaml").read_text())
    assert saved["options"] == {"n_train": "48", "n_val": "24"}

    result = tfx(*args[:-1], "--lr", "1e30", "--steps", "20", "--overwrite")
    assert result.exit_code == 1
    assert result.error_line().startswith("Error: Loss became non-finite")
    assert result.stderr.strip().splitlines()[-1] == result.error_line()

    bad = tmp_path / "bad.yaml"
    bad.write_text("data: fake-retina\nbatchsize: 8\n")
    result = tfx("fit", "--config", bad)
    assert result.exit_code == 1 and "Did you mean 'batch_size'?" in result.error_line()


def test_resume_of_a_finished_run_is_a_no_op_and_can_be_extended(tmp_path):
    from transfusion_cli.train import resume_config

    result = fit(tiny(tmp_path, steps=4, eval_every=2), show_progress=False)
    last = result.run_dir / "checkpoints" / "last.pt"
    before = last.read_bytes()
    again = fit(FitConfig(resume=str(result.run_dir)), show_progress=False)
    assert last.read_bytes() == before and again.final_metrics["step"] == 4
    extended = fit(resume_config(result.run_dir, {"steps": 6}), show_progress=False)
    assert extended.steps == 6 and load_checkpoint(last)["step"] == 6
    assert [r["step"] for r in read_jsonl(result.run_dir / "metrics.jsonl")] == [2, 4, 6]
    with pytest.raises(ConfigError, match="Cannot change --lr"):
        resume_config(result.run_dir, {"lr": 0.5})


def test_quick_start_defaults_train_cbr_tiny_on_synthetic_retina(tfx, tmp_path):
    # the quick start, cut down to 2 steps
    result = tfx("fit", "--option", "train_size=64", "--option", "val_size=48", "--image-size",
                 "32", "--steps", "2", "--out", tmp_path / "qs", "--json", check=True)
    summary = json.loads(result.stdout)
    assert summary["best_metric"] == "referable_auc"
    checkpoint = load_checkpoint(tmp_path / "qs" / "checkpoints" / "last.pt")
    assert checkpoint["arch"]["name"] == "cbr-tiny"
    assert checkpoint["dataset"]["name"] == "synthetic-retina"
    saved = yaml.safe_load((tmp_path / "qs" / "config.yaml").read_text())
    assert (saved["data"], saved["arch"], saved["init"]) == ("synthetic-retina", "cbr-tiny",
                                                             "random")


def test_amp_on_cpu_uses_bf16_autocast(tmp_path):
    result = fit(tiny(tmp_path, steps=2, amp=True), show_progress=False)
    env = json.loads((result.run_dir / "env.json").read_text())
    assert env["precision"] == "cpu (bf16 AMP, channels_last)"
    assert math.isfinite(result.final_metrics["train_loss"])
    weights = load_checkpoint(result.run_dir / "checkpoints" / "last.pt")["state_dict"]
    assert all(v.dtype != torch.bfloat16 for v in weights.values())  # fp32 master weights


def test_deterministic_flag_is_recorded_and_scoped_to_the_run(tmp_path):
    result = fit(tiny(tmp_path, steps=1, deterministic=True), show_progress=False)
    assert yaml.safe_load((result.run_dir / "config.yaml").read_text())["deterministic"] is True
    assert not torch.are_deterministic_algorithms_enabled()


def test_death_between_a_metrics_record_and_last_pt_is_repaired_on_resume(tmp_path,
                                                                            monkeypatch):
    from transfusion_cli.train import snapshots as checkpoints

    reference = fit(tiny(tmp_path, "reference", steps=6, eval_every=2), show_progress=False)
    real_save = checkpoints.save

    class Killed(BaseException):
        pass

    def dies_before_last_pt_at_step_4(checkpoint, path):
        if path.name == "last.pt" and checkpoint["step"] == 4:
            raise Killed
        real_save(checkpoint, path)

    monkeypatch.setattr(checkpoints, "save", dies_before_last_pt_at_step_4)
    with pytest.raises(Killed):
        fit(tiny(tmp_path, "killed", steps=6, eval_every=2), show_progress=False)
    monkeypatch.setattr(checkpoints, "save", real_save)
    run = tmp_path / "killed"
    assert [r["step"] for r in read_jsonl(run / "metrics.jsonl")] == [2, 4]
    assert load_checkpoint(run / "checkpoints" / "last.pt")["step"] == 2

    fit(FitConfig(resume=str(run)), show_progress=False)

    def records(path):
        return [{k: v for k, v in r.items() if k != "images_per_s"}
                for r in read_jsonl(path / "metrics.jsonl")]

    assert records(run) == records(reference.run_dir)  # step 4 once, not twice
    assert same_weights(run / "checkpoints" / "last.pt",
                        reference.run_dir / "checkpoints" / "last.pt")
    assert same_weights(run / "checkpoints" / "best.pt",
                        reference.run_dir / "checkpoints" / "best.pt")


def test_all_labels_masked_is_an_error_before_training(tfx, tmp_path):
    out = tmp_path / "run"
    result = tfx("fit", "--data", "synthetic-chest", "--image-size", "32", "--option",
                 "train_size=32", "--option", "val_size=16", "--option", "test_size=16", "--option",
                 "uncertain_fraction=1", "--option", "uncertainty=u-ignore", "--steps", "2",
                 "--out", out)
    assert result.exit_code == 1
    line = result.error_line()
    assert "training labels of 'synthetic-chest'" in line and "are masked" in line
    assert not out.exists()


def test_a_diverging_run_stops_like_a_non_finite_one(fit_fakes, tfx, tmp_path):
    out = tmp_path / "run"
    result = tfx("fit", *FAKE_RETINA, "--lr", "1e6", "--steps", "3", "--eval-every", "3",
                 "--out", out)
    assert result.exit_code == 1
    line = result.error_line()
    assert line.startswith("Error: Loss ") and "training stopped" in line
    assert "Lower --lr (now 1e+06)" in line and str(out / "checkpoints" / "last.pt") in line
    records = (out / "metrics.jsonl")
    assert not records.exists() or records.read_text() == ""  # no AUC from a diverged model


def test_divergence_bound_is_relative_to_the_start_and_to_chance():
    from transfusion_cli.data.bundles import DatasetInfo

    info = DatasetInfo("x", "multiclass", ("a", "b", "c", "d", "e"), 3, 32, (0.5,) * 3,
                       (0.5,) * 3)
    assert divergence_bound(2.0, info) == DIVERGENCE_FACTOR * 2.0
    # A nearly perfect start (fine-tuning) is not held to 1000x of a tiny loss.
    assert divergence_bound(1e-4, info) == pytest.approx(DIVERGENCE_FACTOR * math.log(5))
