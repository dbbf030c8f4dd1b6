"""compare-inits: planning, the report and plot from recorded metrics, and tiny real sweeps."""

from __future__ import annotations

import csv
import dataclasses
import inspect
import json
import math

import fit_helpers
import numpy as np
import pytest
import torch
from input_files import SMALL
from tree_snapshot import assert_tree_unchanged, snapshot_tree

from transfusion_cli.compare import collect, make_plan, merge_plan, write_report
from transfusion_cli.compare.plan import (
    CELL_FIELDS,
    Cell,
    Plan,
    cell_id,
    load_plan,
    parse_seeds,
    parse_train_sizes,
)
from transfusion_cli.compare.plot import seed_band
from transfusion_cli.data.bundles import DatasetInfo
from transfusion_cli.errors import CheckpointError, ConfigError, UnknownNameError
from transfusion_cli.io import write_json
from transfusion_cli.models.checkpoint import make_checkpoint, save_checkpoint
from transfusion_cli.runfolder import SweepFolder

TINY_FIT = {"steps": 4, "eval_every": 2, "image_size": 32, "batch_size": 8,
            "options": {"n_train": "48", "n_val": "24"}}
TINY_FLAGS = ["--steps", "4", "--eval-every", "2", "--image-size", "32", "--batch-size", "8",
              "--option", "n_train=48", "--option", "n_val=24"]


@pytest.fixture
def fakes(fake_registry):
    fake_registry(fit_helpers)


# ----- planning ----------------------------------------------------------------------------

def test_parse_seeds_and_sizes():
    assert parse_seeds("3") == [0, 1, 2]
    assert parse_seeds(1) == [0]
    assert parse_seeds("0,4,7") == [0, 4, 7]
    assert parse_train_sizes("5000,50000,all") == [5000, 50000, None]
    assert parse_train_sizes(None) == [None]
    for bad in ("x", "0", "1,1"):
        with pytest.raises(ConfigError, match="--seeds"):
            parse_seeds(bad)
    with pytest.raises(ConfigError, match="--train-size"):
        parse_train_sizes("100,lots")
    with pytest.raises(ConfigError, match="at least 1"):
        parse_train_sizes("0")


def test_cell_ids_are_readable_and_path_safe(tmp_path):
    assert cell_id("cbr-tiny", "mean-var", None, 0) == "cbr-tiny__mean-var__nall__s0"
    assert cell_id("timm/resnet18", "transfusion:2", 5000, 1) == \
        "timm-resnet18__transfusion-2__n5000__s1"
    assert cell_id("cbr-tiny", f"checkpoint:{tmp_path}/PRE.pt", None, 2) == \
        "cbr-tiny__checkpoint-PRE__nall__s2"


def test_plan_grid_order_and_absolute_paths(fakes, tmp_path, monkeypatch):
    checkpoint = tmp_path / "PRE.pt"
    checkpoint.write_bytes(b"x")  # existence is what planning checks
    monkeypatch.chdir(tmp_path)
    plan = make_plan(data="fake-retina", archs=["cbr-tiny", "cbr-small"],
                     inits=["random", "checkpoint:PRE.pt"], seeds=[0, 1],
                     train_sizes=[10, None], fit={**TINY_FIT, "data_dir": "data"})
    assert len(plan.cells) == 2 * 2 * 2 * 2
    assert plan.fit["data_dir"] == str(tmp_path / "data")  # cells may run from anywhere
    first = plan.cells[0]
    assert (first.arch, first.init, first.train_size, first.seed) == ("cbr-tiny", "random", 10, 0)
    ckpt_cells = [c for c in plan.cells if c.label == "checkpoint:PRE.pt"]
    assert all(c.init == f"checkpoint:{checkpoint}" for c in ckpt_cells)
    assert len({c.id for c in plan.cells}) == len(plan.cells)


@pytest.mark.parametrize(("inits", "weights", "error", "pattern"), [
    (["mean-vra"], None, UnknownNameError, "Did you mean 'mean-var'"),
    (["transfusion"], None, ConfigError, "needs an argument"),
    (["random:3"], None, ConfigError, "takes no argument"),
    (["mean-var"], None, ConfigError, "cbr-tiny.*--weights"),
    (["checkpoint:nowhere.pt"], None, CheckpointError, "does not exist"),
    (["random", "random"], None, ConfigError, "listed twice"),
])
def test_plan_errors_before_training(fakes, inits, weights, error, pattern):
    with pytest.raises(error, match=pattern):
        make_plan(data="fake-retina", archs=["cbr-tiny"], inits=inits, seeds=[0],
                  train_sizes=[None], fit=TINY_FIT, weights=weights)


def test_plan_rejects_bad_transfusion_block_and_cell_fields(fakes, tmp_path):
    weights = tmp_path / "w.pt"
    weights.write_bytes(b"x")
    with pytest.raises(ConfigError, match=r"transfusion:9 on 'cbr-tiny'.*out of range"):
        make_plan(data="fake-retina", archs=["cbr-tiny"], inits=["transfusion:9"], seeds=[0],
                  train_sizes=[None], fit=TINY_FIT, weights=[str(weights)])
    with pytest.raises(ConfigError, match="--seeds"):
        make_plan(data="fake-retina", archs=["cbr-tiny"], inits=["random"], seeds=[0],
                  train_sizes=[None], fit={**TINY_FIT, "seed": 3})
    with pytest.raises(CheckpointError, match="does not exist"):
        make_plan(data="fake-retina", archs=["cbr-tiny"], inits=["random"], seeds=[0],
                  train_sizes=[None], fit=TINY_FIT, weights=[str(tmp_path / "none.pt")])


def test_per_architecture_weights(fakes, tmp_path):
    a, b = tmp_path / "a.pt", tmp_path / "b.pt"
    a.write_bytes(b"x")
    b.write_bytes(b"x")
    plan = make_plan(data="fake-retina", archs=["cbr-tiny", "cbr-small"], inits=["mean-var"],
                     seeds=[0], train_sizes=[None], fit=TINY_FIT,
                     weights=[f"cbr-tiny={a}", f"cbr-small={b}"])
    assert {c.arch: c.weights for c in plan.cells} == {"cbr-tiny": str(a), "cbr-small": str(b)}


def test_merge_keeps_cells_and_refuses_other_settings(fakes, tmp_path):
    def plan(seeds, fit=TINY_FIT):
        return make_plan(data="fake-retina", archs=["cbr-tiny"], inits=["random"], seeds=seeds,
                         train_sizes=[None], fit=fit)

    merge_plan(tmp_path, plan([0, 1]))
    merged = merge_plan(tmp_path, plan([2]))
    assert [c.seed for c in merged.cells] == [0, 1, 2]
    assert [c.seed for c in load_plan(tmp_path).cells] == [0, 1, 2]
    with pytest.raises(ConfigError, match="other settings.*lr"):
        merge_plan(tmp_path, plan([0], fit={**TINY_FIT, "lr": 0.1}))


def test_every_fit_setting_passes_through():
    """Each FitConfig field is a compare-inits option or set per cell (no silent drift)."""
    from transfusion_cli.commands.compare_cmd import compare_inits_command
    from transfusion_cli.train import FitConfig

    options = set(inspect.signature(compare_inits_command).parameters)
    options |= {"options"}  # --option KEY=VALUE
    missing = [f.name for f in dataclasses.fields(FitConfig)
               if f.name not in options and f.name not in CELL_FIELDS]
    assert missing == []


# ----- report and plot from recorded metrics -----------------------------------------------

def fabricate(directory, plan: Plan, curves: dict[str, list[tuple[int, float]]],
              finished: set[str], params=1234, wall=10.0, tests=None):
    """metrics.jsonl for every cell in ``curves``; a done record for those in ``finished``."""
    for cell in plan.cells:
        if cell.id not in curves:
            continue
        run = SweepFolder(directory).run(cell.id).root
        run.mkdir(parents=True)
        lines = [json.dumps({"step": s, "epoch": s / 10, "train_loss": 1.0, "auc": v,
                             "referable_auc": v}) for s, v in curves[cell.id]]
        (run / "metrics.jsonl").write_text("\n".join(lines) + "\n")
        if cell.id in finished:
            write_json(SweepFolder(directory).done_marker(cell.id),
                       {"cell": cell.id, "selection_metric": "referable_auc", "params": params,
                        "wall_time_s": wall,
                        "test": {"referable_auc": (tests or {}).get(cell.id)}})


def sample_plan(target=0.84) -> Plan:
    cells = [Cell(cell_id("cbr-tiny", init, None, seed), "cbr-tiny", init, init, seed, None,
                  None) for init in ("random", "imagenet", "gabor") for seed in (0, 1, 2)]
    return Plan(data="retina", fit={"steps": 40}, target_metric=target, cells=cells)


CURVES = {
    "random": {0: [(10, 0.5), (20, 0.7), (30, 0.85), (40, 0.8)],
               1: [(10, 0.6), (20, 0.75), (30, 0.8), (40, 0.82)],
               2: [(10, 0.55)]},  # seed 2 interrupted: metrics but no done record
    "imagenet": {0: [(10, 0.9), (20, 0.92), (30, 0.93), (40, 0.93)],
                 1: [(10, 0.8), (20, 0.88), (30, 0.91), (40, 0.9)],
                 2: [(10, 0.85), (20, float("nan")), (30, 0.86), (40, 0.87)]},
    "gabor": {0: [(10, 0.6), (20, 0.7), (30, 0.75), (40, 0.8)],
              1: [(10, 0.62), (20, 0.71), (30, 0.74), (40, 0.79)]},
}


def fabricated_sweep(tmp_path):
    plan = sample_plan()
    curves = {cell_id("cbr-tiny", init, None, seed): curve
              for init, per_seed in CURVES.items() for seed, curve in per_seed.items()}
    finished = set(curves) - {cell_id("cbr-tiny", "random", None, 2)}
    tests = {cell_id("cbr-tiny", "imagenet", None, s): v for s, v in ((0, 0.9), (1, 0.8),
                                                                      (2, 0.85))}
    fabricate(tmp_path, plan, curves, finished, tests=tests)
    write_json(tmp_path / "plan.json", plan.to_dict())
    return plan


def test_results_aggregate_over_seeds(tmp_path):
    plan = fabricated_sweep(tmp_path)
    results = collect(tmp_path, plan)
    assert results.metric == "referable_auc"
    groups = {g.init: g for g in results.groups}
    random, imagenet, gabor = groups["random"], groups["imagenet"], groups["gabor"]
    # Independent reference: numpy over the recorded curves.
    best = [max(v for _, v in CURVES["random"][s]) for s in (0, 1)]
    assert random.best_mean == pytest.approx(np.mean(best))
    assert random.best_std == pytest.approx(np.std(best, ddof=1))
    final = [CURVES["imagenet"][s][-1][1] for s in (0, 1, 2)]
    assert imagenet.final_mean == pytest.approx(np.mean(final))
    assert imagenet.final_std == pytest.approx(np.std(final, ddof=1))
    assert imagenet.best_mean == pytest.approx(np.mean([0.93, 0.91, 0.87]))  # NaN ignored
    assert imagenet.test_mean == pytest.approx(0.85)
    assert imagenet.test_std == pytest.approx(np.std([0.9, 0.8, 0.85], ddof=1))
    assert random.test_mean is None
    assert (random.seeds_done, random.seeds_planned) == (2, 3)
    # Steps to 0.84: random 30 (seed 0 only), imagenet 10, 20, 10; gabor never.
    assert (random.reached, random.steps_to_target_mean) == (1, 30)
    assert imagenet.reached == 3
    assert imagenet.steps_to_target_mean == pytest.approx(np.mean([10, 20, 10]))
    assert gabor.reached == 0 and gabor.steps_to_target_mean is None
    assert results.pending == [cell_id("cbr-tiny", "random", None, 2),
                               cell_id("cbr-tiny", "gabor", None, 2)]


def test_report_files(tmp_path):
    plan = fabricated_sweep(tmp_path)
    write_report(tmp_path, plan)
    report = (tmp_path / "report.md").read_text()
    assert "not reached" in report  # gabor, stated rather than hidden
    assert "30 (1/2 reached)" in report
    assert "| cbr-tiny | imagenet | all | 3/3 |" in report
    assert "cbr-tiny__random__nall__s2" in report  # unfinished cells are listed
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["target_metric"] == 0.84 and len(data["groups"]) == 3
    gabor = next(g for g in data["groups"] if g["init"] == "gabor")
    assert gabor["steps_to_target_mean"] is None and gabor["best_std"] is not None
    with open(tmp_path / "results.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["init"] for r in rows] == ["random", "imagenet", "gabor"]
    assert float(rows[1]["best_mean"]) == pytest.approx(np.mean([0.93, 0.91, 0.87]))
    assert rows[2]["steps_to_target_mean"] == "" and rows[2]["reached"] == "0"
    assert rows[0]["params"] == "1234" and rows[0]["test_mean"] == ""
    assert float(rows[1]["test_mean"]) == pytest.approx(0.85)
    import matplotlib.image

    image = matplotlib.image.imread(tmp_path / "curves.png")
    assert image.shape[0] > 200 and image.shape[1] > 300
    assert image[..., :3].std() > 0.05  # something drawn


def test_seed_band_on_unequal_evaluation_steps():
    steps, mean, low, high = seed_band([[(0, 0.0), (10, 1.0)], [(0, 1.0), (5, 1.0), (10, 1.0)]])
    assert list(steps) == [0, 5, 10]
    assert np.allclose(mean, [0.5, 0.75, 1.0])
    assert np.allclose(low, [0.0, 0.5, 1.0]) and np.allclose(high, [1.0, 1.0, 1.0])
    steps, mean, _, _ = seed_band([[(0, 0.2), (10, 0.4)], [(0, 0.6)]])  # a short run
    assert np.allclose(mean, [0.4, 0.4])


def test_report_without_finished_cells(tmp_path):
    plan = sample_plan()
    results = write_report(tmp_path, plan)
    assert results.cells == [] and not (tmp_path / "curves.png").exists()
    assert "Not finished (9 cells" in (tmp_path / "report.md").read_text()


# ----- real tiny sweeps (fit on the fake datasets) -----------------------------------------

def chest_checkpoint(path):
    """A tfx checkpoint of cbr-tiny from 1-channel, 3-label data: other channels, other head."""
    from transfusion_cli.plugins import get

    info = DatasetInfo("fake-chest", "multilabel", ("Atelectasis", "Cardiomegaly", "Edema"), 1,
                       32, (0.4,), (0.2,), selection_metric="mean_auc")
    model = get("architectures", "cbr-tiny").build(num_classes=3, in_chans=1)
    save_checkpoint(make_checkpoint(model, "cbr-tiny", info), path)
    return model.state_dict()


def test_sweep_end_to_end_and_rerun_skips(tfx, fakes, tmp_path):
    source = chest_checkpoint(tmp_path / "PRE.pt")
    out = tmp_path / "sweep"
    args = ["compare-inits", "--data", "fake-retina", "--arch", "cbr-tiny",
            "--inits", f"random,checkpoint:{tmp_path / 'PRE.pt'}", "--seeds", "1",
            "--target-metric", "0.5", "--out", str(out), "--json", *TINY_FLAGS]
    result = tfx(*args, check=True)
    results = json.loads(result.stdout)
    assert len(results["cells"]) == 2 and results["pending"] == []
    assert {g["init"] for g in results["groups"]} == {"random", f"checkpoint:{tmp_path}/PRE.pt"}
    for name in ("plan.json", "report.md", "results.json", "results.csv", "curves.png"):
        assert (out / name).is_file(), name
    cell = "cbr-tiny__checkpoint-PRE__nall__s0"
    run = out / "runs" / cell
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [2, 4]
    init = torch.load(run / "checkpoints" / "init.pt", weights_only=True)
    report = init["init"]["report"]
    assert report["adapted"] == ["block1.0.weight"]  # 1-channel source, 3-channel target
    assert report["reinitialised"] == ["head.weight", "head.bias"]
    assert torch.equal(init["state_dict"]["block2.0.weight"], source["block2.0.weight"])
    done = json.loads((out / "done" / f"{cell}.json").read_text())
    assert done["params"] == 1_079_845 and done["selection_metric"] == "referable_auc"
    assert 0 <= done["test"]["referable_auc"] <= 1 and done["test"]["step"] in (2, 4)
    assert results["cells"][0]["params"] == 1_079_845

    stamps = {p: p.stat().st_mtime_ns for p in (out / "runs").rglob("*") if p.is_file()}
    result = tfx(*[a for a in args if a != "--json"], check=True)
    assert "2 of 2 cells already finished" in result.stderr
    assert "cbr-tiny" in result.stdout and "checkpoint" in result.stdout  # the table on stdout
    assert stamps == {p: p.stat().st_mtime_ns for p in (out / "runs").rglob("*") if p.is_file()}


def test_plan_only_cell_and_report(tfx, fakes, tmp_path):
    out = tmp_path / "sweep"
    base = ["compare-inits", "--data", "fake-retina", "--inits", "random,gabor", "--seeds", "1",
            "--out", str(out), *TINY_FLAGS]
    result = tfx(*base, "--plan-only", check=True)
    ids = [line.split("\t")[0] for line in result.stdout.splitlines()]
    assert ids == ["cbr-tiny__random__nall__s0", "cbr-tiny__gabor__nall__s0"]
    assert not (out / "runs").exists()
    tfx("compare-inits", "--out", str(out), "--cell", ids[1], check=True)
    assert (out / "done" / f"{ids[1]}.json").is_file()
    assert not (out / "runs" / ids[0]).exists()
    result = tfx("compare-inits", "--report", str(out), "--json", check=True)
    results = json.loads(result.stdout)
    assert [c["id"] for c in results["cells"]] == [ids[1]]
    assert results["pending"] == [ids[0]]
    gabor = next(g for g in results["groups"] if g["init"] == "gabor")
    assert gabor["seeds_done"] == 1 and math.isfinite(gabor["best_mean"])


def test_cli_errors_are_one_line(tfx, fakes, tmp_path):
    for args, message in (
        (["compare-inits", "--report", str(tmp_path)], "No plan.json"),
        (["compare-inits", "--cell", "x"], "--cell needs --out"),
        (["compare-inits", "--data", "fake-retina", "--inits", "mean-var", "--out",
          str(tmp_path / "s"), *TINY_FLAGS], "needs pretrained weights"),
        (["compare-inits", "--data", "fake-retina", "--seeds", "two", "--out",
          str(tmp_path / "s")], "--seeds"),
        (["compare-inits", "--data", "fake-retina", "--lr", "-1", "--out",
          str(tmp_path / "s")], "--lr must be positive"),
    ):
        result = tfx(*args)
        err = result.stderr.strip()
        assert result.exit_code == 1 and err.startswith("Error:") and message in err, err
        assert len(err.splitlines()) == 1


def test_a_failing_cell_does_not_stop_the_others(tfx, fakes, tmp_path):
    from transfusion_cli.compare.runner import run_sweep

    chest_checkpoint(tmp_path / "GONE.pt")
    out = tmp_path / "sweep"
    tfx("compare-inits", "--data", "fake-retina", "--seeds", "1", "--out", str(out), "--inits",
        f"checkpoint:{tmp_path / 'GONE.pt'},random", "--plan-only", *TINY_FLAGS, check=True)
    (tmp_path / "GONE.pt").unlink()  # the cell planned with it fails when it runs
    plan = load_plan(out)
    outcomes = run_sweep(out, plan, plan.cells)
    assert outcomes["cbr-tiny__checkpoint-GONE__nall__s0"].startswith("failed: ")
    assert "does not exist" in outcomes["cbr-tiny__checkpoint-GONE__nall__s0"]
    assert outcomes["cbr-tiny__random__nall__s0"] == "trained"
    results = collect(out, plan)
    assert [c.id for c in results.cells] == ["cbr-tiny__random__nall__s0"]


def test_offline_public_weights_checked_at_plan_time(fakes, tmp_path, monkeypatch):
    monkeypatch.setenv("TFX_OFFLINE", "1")
    monkeypatch.setenv("TFX_WEIGHTS_DIR", str(tmp_path))
    with pytest.raises(CheckpointError, match=r"resnet50\.tv_in1k\.safetensors"):
        make_plan(data="fake-retina", archs=["resnet50"], inits=["random", "mean-var"],
                  seeds=[0], train_sizes=[None], fit=TINY_FIT)
    (tmp_path / "resnet50.tv_in1k.safetensors").write_bytes(b"x")
    plan = make_plan(data="fake-retina", archs=["resnet50"], inits=["random", "mean-var"],
                     seeds=[0], train_sizes=[None], fit=TINY_FIT)
    assert len(plan.cells) == 2


def test_a_nan_target_metric_is_refused(tfx, tmp_path):
    before = snapshot_tree(tmp_path)
    result = tfx("compare-inits", *SMALL, "--target-metric", "nan", "--plan-only", "--out",
                 tmp_path / "sweep")
    assert result.exit_code == 1 and "--target-metric nan" in result.error_line()
    assert_tree_unchanged(tmp_path, before)


def test_metric_is_checked_before_any_training(fit_fakes, tfx, tmp_path):
    out = tmp_path / "sweep"
    args = ["compare-inits", "--data", "fake-retina", "--arch", "cbr-tiny", "--inits",
            "random", "--seeds", "1", "--image-size", "32", "--option", "n_train=16",
            "--option", "n_val=8", "--steps", "1", "--out", out]
    result = tfx(*args, "--metric", "bogus")
    assert result.exit_code == 1
    line = result.error_line()
    assert "--metric 'bogus' is not a metric of dataset 'fake-retina'" in line
    assert "referable_auc" in line
    assert not out.exists()
    result = tfx(*args, "--metric", "kappa", "--plan-only")
    assert result.exit_code == 0, result.stderr
