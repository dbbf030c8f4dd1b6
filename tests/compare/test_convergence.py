"""Convergence in a compare-inits sweep: the Slim hybrid as a cell, and steps-to-target read on
the test split under a stated schedule."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from transfusion_cli.compare.plan import Cell, Plan, make_plan, parse_arch_inits
from transfusion_cli.compare.report import collect, markdown_report
from transfusion_cli.errors import ConfigError
from transfusion_cli.runfolder import SweepFolder


def test_arch_inits_pairs_the_slim_hybrid_with_a_resnet50_sweep(tmp_path):
    weights = tmp_path / "resnet50_imagenet.pth"
    weights.touch()  # a plan only checks that the file is there
    plan = make_plan(data="synthetic-retina", archs=["resnet50"],
                     inits=["random", "imagenet", "gabor"], seeds=[0, 1], train_sizes=[None],
                     fit={"scheduler": "constant"}, weights=[str(weights)],
                     arch_inits=parse_arch_inits(["resnet50-slim=transfusion:block2"]))
    pairs = list(dict.fromkeys((c.arch, c.label) for c in plan.cells))
    assert pairs == [("resnet50", "random"), ("resnet50", "imagenet"), ("resnet50", "gabor"),
                     ("resnet50-slim", "transfusion:block2")]
    assert len(plan.cells) == 8
    slim = [c for c in plan.cells if c.arch == "resnet50-slim"]
    assert all(c.weights == str(weights.resolve()) for c in slim)


@pytest.mark.parametrize(("items", "pattern"), [
    (["resnet50-slim"], "ARCH=INIT"),
    (["resnet50-slim=random", "resnet50-slim=gabor"], "given twice"),
])
def test_arch_inits_errors(items, pattern):
    with pytest.raises(ConfigError, match=pattern):
        parse_arch_inits(items)


def test_slim_transfusion_beyond_block2_fails_at_plan_time(tmp_path):
    weights = tmp_path / "w.pth"
    weights.touch()
    with pytest.raises(ConfigError, match="only for stem, block1, block2"):
        make_plan(data="synthetic-retina", archs=["cbr-tiny"], inits=["random"], seeds=[0],
                  train_sizes=[None], fit={}, weights=[f"resnet50-slim={weights}"],
                  arch_inits={"resnet50-slim": ["transfusion:block3"]})


def write_cell(directory: Path, cell: Cell, val: list[float], test: list[float] | None):
    run = SweepFolder(directory).run(cell.id).root
    run.mkdir(parents=True)
    records = []
    for index, value in enumerate(val):
        record = {"step": 10 * (index + 1), "referable_auc": value}
        if test is not None:
            record["test/referable_auc"] = test[index]
        records.append(record)
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    done = SweepFolder(directory).done_marker(cell.id)
    done.parent.mkdir(parents=True, exist_ok=True)
    done.write_text(json.dumps({"selection_metric": "referable_auc", "params": 1}))


def test_steps_to_target_are_read_on_the_test_split_and_the_report_says_so(tmp_path):
    cells = [Cell(f"c{seed}", "cbr-tiny", "random", "random", seed, None, None)
             for seed in (0, 1)]
    plan = Plan(data="synthetic-retina", fit={"scheduler": "constant", "warmup_steps": 5,
                                              "eval_every": 10}, target_metric=0.8,
                cells=cells)
    # Validation reaches 0.8 at step 10; the held-out test split only at step 30 / 20.
    write_cell(tmp_path, cells[0], [0.85, 0.9, 0.9], [0.5, 0.7, 0.82])
    write_cell(tmp_path, cells[1], [0.85, 0.9, 0.9], [0.6, 0.81, 0.9])
    results = collect(tmp_path, plan)
    assert [c.steps_to_target for c in results.cells] == [30, 20]
    assert results.target_split == "test"
    assert results.groups[0].steps_to_target_mean == 25
    report = markdown_report(results, plan, has_plot=False)
    assert "on the test split" in report
    assert "linear warm-up over 5 steps, then constant learning rate" in report
    assert "steps to test referable_auc" in report


def test_without_test_scores_the_report_says_validation_and_warns_about_cosine(tmp_path):
    cells = [Cell("c0", "cbr-tiny", "random", "random", 0, None, None)]
    plan = Plan(data="synthetic-retina", fit={}, target_metric=0.8, cells=cells)
    write_cell(tmp_path, cells[0], [0.5, 0.85], None)
    results = collect(tmp_path, plan)
    assert results.cells[0].steps_to_target == 20 and results.target_split == "validation"
    report = markdown_report(results, plan, has_plot=False)
    assert "on the validation split" in report and "--scheduler constant" in report


@pytest.mark.slow
def test_resnet50_inits_and_the_slim_hybrid_in_one_sweep(tfx, tmp_path, monkeypatch):
    """The issue's "done": random / imagenet (file weights) / gabor ResNet50 and resnet50-slim
    with transfusion:block2, on synthetic data, constant schedule, steps-to-target on test."""
    import timm
    import torch

    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    torch.save(timm.create_model("resnet50", pretrained=False).state_dict(), "imagenet.pth")
    result = tfx(
        "compare-inits", "--data", "synthetic-retina", "--arch", "resnet50",
        "--inits", "random,imagenet,gabor", "--arch-inits", "resnet50-slim=transfusion:block2",
        "--weights", "imagenet.pth", "--seeds", "1", "--image-size", "32", "--steps", "2",
        "--eval-every", "1", "--batch-size", "8", "--scheduler", "constant",
        "--target-metric", "0.01", "--option", "train_size=32", "--option", "val_size=48",
        "--option", "test_size=48", "--out", "sweep", "--json")
    assert result.exit_code == 0, result.stderr
    results = json.loads(result.stdout)
    assert results["target_split"] == "test" and "constant" in results["schedule"]
    groups = {(g["arch"], g["init"]): g for g in results["groups"]}
    assert set(groups) == {("resnet50", "random"), ("resnet50", "imagenet"),
                           ("resnet50", "gabor"), ("resnet50-slim", "transfusion:block2")}
    assert all(g["steps_to_target_mean"] == 1 for g in groups.values())
    assert groups[("resnet50-slim", "transfusion:block2")]["params"] < \
        groups[("resnet50", "random")]["params"] / 3
    assert "on the test split" in Path("sweep/report.md").read_text()
