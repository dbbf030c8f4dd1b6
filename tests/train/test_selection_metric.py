"""best.pt is chosen by the metric the report shows: `fit --selection-metric`, and
compare-inits / reproduce cells selecting by their headline metric."""

from __future__ import annotations

import json

import fit_helpers
import pytest
import torch
import yaml

from transfusion_cli.compare.plan import Plan, make_plan
from transfusion_cli.errors import ConfigError
from transfusion_cli.reproduce.expand import SweepSpec, build_plan
from transfusion_cli.train import fit, resolve_config

TINY = {"data": "fake-retina", "arch": "cbr-tiny", "image_size": 32, "batch_size": 8,
        "options": {"n_train": "48", "n_val": "24"}, "device": "cpu"}


@pytest.fixture
def fakes(fake_registry):
    fake_registry(fit_helpers)


def first_best(records, metric):
    """The step of the first evaluation with the highest value of ``metric``."""
    best = max(r[metric] for r in records)
    return next(r["step"] for r in records if r[metric] == best)


def test_compare_inits_metric_selects_best_pt_by_that_validation_metric(tfx, fakes, tmp_path):
    out = tmp_path / "sweep"
    with fit_helpers.one_thread():
        result = tfx("compare-inits", "--data", "fake-retina", "--arch", "cbr-tiny", "--inits",
                     "random", "--seeds", "1", "--metric", "auc", "--steps", "12", "--eval-every",
                     "1", "--lr", "0.01", "--image-size", "32", "--batch-size", "8", "--option",
                     "n_train=48", "--option", "n_val=24", "--out", str(out), "--json", check=True)
    cell = "cbr-tiny__random__nall__s0"
    run = out / "runs" / cell
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    best = torch.load(run / "checkpoints" / "best.pt", weights_only=True)
    assert best["step"] == first_best(records, "auc")
    # The dataset's own metric would have picked another evaluation: the test can tell them apart.
    assert best["step"] != first_best(records, "referable_auc")
    assert best["dataset"]["selection_metric"] == "auc"
    assert [r["step"] for r in records if r.get("best")] == [
        r["step"] for i, r in enumerate(records)
        if r["auc"] > max([p["auc"] for p in records[:i]], default=-1)]
    assert json.loads((out / "plan.json").read_text())["fit"]["selection_metric"] == "auc"
    assert yaml.safe_load((run / "config.yaml").read_text())["selection_metric"] == "auc"
    choice = json.loads((run / "env.json").read_text())["choices"]["best_checkpoint"]
    assert choice == {"metric": "auc", "split": "validation",
                      "rule": "the evaluation with the highest value",
                      "dataset_default": "referable_auc"}
    done = json.loads((out / "done" / f"{cell}.json").read_text())
    assert done["selection_metric"] == "auc" and done["test"]["step"] == best["step"]
    results = json.loads(result.stdout)
    assert results["selection"] == {"metric": "auc", "split": "validation",
                                    "checkpoint": "best.pt, the evaluation with the highest "
                                                  "value"}
    report = (out / "report.md").read_text()
    assert "highest validation `auc`." in report
    assert "test auc (best.pt by val auc)" in report


def test_fit_selects_by_the_dataset_metric_unless_told(fakes, tmp_path):
    with fit_helpers.one_thread():
        result = fit(resolve_config(None, {**TINY, "steps": 6, "eval_every": 1, "lr": 0.01,
                                           "out": str(tmp_path / "run")}), show_progress=False)
    assert result.best_metric == "referable_auc"
    records = [json.loads(line)
               for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert result.best_step == first_best(records, "referable_auc")
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert saved["selection_metric"] == "referable_auc"  # recorded resolved


def test_unknown_selection_metric_fails_before_training(fakes, tmp_path):
    config = resolve_config(None, {**TINY, "steps": 2, "selection_metric": "referable_acu",
                                   "out": str(tmp_path / "run")})
    with pytest.raises(ConfigError, match="--selection-metric 'referable_acu' is not a metric "
                       "of dataset 'fake-retina'.*Did you mean 'referable_auc'"):
        fit(config, show_progress=False)
    assert not (tmp_path / "run").exists()


def test_plans_pass_the_headline_metric_to_every_cell(fakes, tmp_path):
    plan = make_plan(data="fake-retina", archs=["cbr-tiny"], inits=["random"], seeds=[0],
                     train_sizes=[None], fit={"steps": 2}, metric="kappa")
    assert plan.fit["selection_metric"] == "kappa"
    assert make_plan(data="fake-retina", archs=["cbr-tiny"], inits=["random"], seeds=[0],
                     train_sizes=[None], fit={"steps": 2}).fit == {"steps": 2}
    with pytest.raises(ConfigError, match="use --metric"):
        make_plan(data="fake-retina", archs=["cbr-tiny"], inits=["random"], seeds=[0],
                  train_sizes=[None], fit={"selection_metric": "auc"})
    sweep = SweepSpec(name="retina", data="fake-retina", fit={"steps": 2}, metric="auc")
    from transfusion_cli.reproduce.expand import CellRequest

    sweep.requests.append(CellRequest("table1", "cbr-tiny", "random", "random", 0, None, None))
    reproduced: Plan = build_plan(sweep)
    assert reproduced.fit["selection_metric"] == "auc" and reproduced.metric == "auc"
