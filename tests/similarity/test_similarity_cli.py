"""`tfx similarity` and `tfx filters` end to end on small checkpoints of cbr-tiny."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tree_snapshot import assert_tree_unchanged, snapshot_tree

from transfusion_cli.data.build import build_dataset
from transfusion_cli.models.checkpoint import make_checkpoint, save_checkpoint
from transfusion_cli.plugins import get

PNG = b"\x89PNG\r\n\x1a\n"
# A probe of 48 validation images at 64 px: block4 (4x4) then has 768 points for 256 neurons.
PROBE = {"train_size": 8, "val_size": 48, "test_size": 8}


def _save_run(root: Path, arch: str, seed: int, info, steps: float) -> Path:
    """A run folder with init.pt and best.pt: the init perturbed by `steps` of noise."""
    torch.manual_seed(seed)
    model = get("architectures", arch).build(num_classes=info.num_outputs, in_chans=3)
    folder = root / "checkpoints"
    config = {"options": PROBE, "data_seed": 0}
    save_checkpoint(make_checkpoint(model, arch, info, config=config), folder / "init.pt")
    with torch.no_grad():
        for index, param in enumerate(model.parameters()):
            # Later parameters move more, as training moves upper layers more.
            param.add_(steps * (1 + index / 4) * param.std() * torch.randn_like(param))
    save_checkpoint(make_checkpoint(model, arch, info, config=config, step=100),
                    folder / "best.pt")
    return root


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("similarity")
    info = build_dataset("synthetic-retina", image_size=64, options=PROBE).info
    return {"one": _save_run(root / "run1", "cbr-tiny", 0, info, 0.05),
            "two": _save_run(root / "run2", "cbr-tiny", 1, info, 0.2),
            "small": _save_run(root / "small", "cbr-small", 2, info, 0.1),
            "root": root}


def ckpt(run: Path, name: str) -> Path:
    return run / "checkpoints" / name


def test_table_shows_every_layer_with_neurons_points_and_metrics(tfx, runs):
    result = tfx("similarity", ckpt(runs["one"], "init.pt"), ckpt(runs["one"], "best.pt"),
                 "--samples", "40", "--device", "cpu")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[0].startswith("run1/init.pt vs run1/best.pt (cbr-tiny; synthetic-retina val")
    assert lines[1].split() == ["layer", "neurons", "points", "svcca", "pwcca", "cka"]
    rows = {line.split()[0]: line.split() for line in lines[2:]}
    assert list(rows) == ["block1", "block2", "block3", "block4", "head"]
    assert rows["block4"][1:3] == ["256", str(40 * 16)]
    assert rows["head"][1:3] == ["5", "40"]
    assert all(0.0 <= float(v) <= 1.0 for row in rows.values() for v in row[3:])
    assert "40 inputs" in result.stderr


def test_json_has_layer_and_one_key_per_metric(tfx, runs):
    a = ckpt(runs["one"], "best.pt")
    result = tfx("similarity", a, a, "--samples", "30", "--json", "--measure",
                 "cca,cka,cka_debiased,cka_minibatch", "--layers", "block1,head", "--baseline")
    assert result.exit_code == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [r["layer"] for r in rows] == ["block1", "head"]
    # The null baseline (B's points shuffled within each batch) is far below the paired 1.0.
    assert set(rows[0]["baseline"]) == {"cca", "cka"}
    assert rows[0]["baseline"]["cka"] < 0.2 and rows[0]["baseline"]["cca"] < 0.5
    for row in rows:
        for metric in ("cca", "cka", "cka_debiased", "cka_minibatch"):
            assert row[metric] == pytest.approx(1.0, abs=1e-8)
        assert row["points"] == row["inputs"] * row["positions_per_input"]
    assert rows[0]["neurons"] == 32 and rows[0]["grid"] == [32, 32]


def test_plot_overlays_against_runs(tfx, runs, tmp_path):
    out_png = tmp_path / "init.png"
    result = tfx("similarity", ckpt(runs["one"], "init.pt"), ckpt(runs["one"], "best.pt"),
                 "--samples", "40", "--measure", "svcca", "--against", runs["two"], "--plot",
                 out_png, "--json")
    assert result.exit_code == 0, result.stderr
    assert out_png.read_bytes().startswith(PNG)
    rows = json.loads(result.stdout)
    comparisons = {r["comparison"] for r in rows}
    assert comparisons == {"run1/init.pt vs run1/best.pt", "run2/init.pt vs run2/best.pt"}
    by_run = {c: [r["svcca"] for r in rows if r["comparison"] == c] for c in comparisons}
    # run2 was perturbed four times as much: less similar to its initialisation everywhere.
    one, two = by_run["run1/init.pt vs run1/best.pt"], by_run["run2/init.pt vs run2/best.pt"]
    assert all(b < a for a, b in zip(one[:4], two[:4], strict=True))


def test_cross_compares_every_layer_of_two_architectures(tfx, runs, tmp_path):
    heatmap = tmp_path / "cross.png"
    result = tfx("similarity", ckpt(runs["one"], "best.pt"), ckpt(runs["small"], "best.pt"),
                 "--cross", "--measure", "cka", "--samples", "24", "--plot", heatmap, "--layers",
                 "block1,block2,head")
    assert result.exit_code == 0, result.stderr
    assert heatmap.read_bytes().startswith(PNG)
    lines = result.stdout.strip().splitlines()
    assert lines[0].startswith("cka: run1/best.pt (cbr-tiny) vs small/best.pt (cbr-small)")
    assert lines[1].split()[-3:] == ["block1", "block2", "head"]
    assert len(lines) == 2 + 3


@pytest.mark.parametrize(("args", "message"), [
    (["missing.pt", "B"], "does not exist"),
    (["GARBAGE", "B"], "not a tfx checkpoint"),
    (["A", "B", "--layers", "block9"], "Unknown layer 'block9' for cbr-tiny"),
    (["A", "SMALL"], "different architectures"),
    (["A", "B", "--measure", "svca"], "Did you mean 'svcca'"),
    (["A", "B", "--metric", "svca"], "Did you mean 'svcca'"),  # the deprecated spelling
    (["A", "B", "--measure", "cka", "--metric", "cca"], "give --measure only"),
    (["A", "B", "--spatial", "big"], "--spatial"),
    (["A", "B", "--split", "nope"], "'nope' is not one of"),  # a usage error (exit 2)
    (["A", "B", "--against", "GARBAGE"], "no init.pt beside it"),
])
def test_user_mistakes_are_one_line_errors(tfx, runs, tmp_path, args, message):
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    torch.save({"hello": 1}, tmp_path / "dict.pt")
    names = {"A": ckpt(runs["one"], "init.pt"), "B": ckpt(runs["one"], "best.pt"),
             "SMALL": ckpt(runs["small"], "best.pt"), "GARBAGE": tmp_path / "dict.pt",
             "missing.pt": tmp_path / "missing.pt"}
    result = tfx("similarity", *[names.get(a, a) for a in args], "--samples", "20")
    assert result.exit_code == (2 if "--split" in args else 1)
    assert result.stdout == ""
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("Error: ") and message in last and "Traceback" not in result.stderr


def test_filters_grid_and_comparison(tfx, runs, tmp_path):
    out_png = tmp_path / "filters.png"
    result = tfx("filters", ckpt(runs["one"], "best.pt"), "--out", out_png, "--compare",
                 ckpt(runs["one"], "init.pt"), "--json")
    assert result.exit_code == 0, result.stderr
    assert out_png.read_bytes().startswith(PNG)
    summary = json.loads(result.stdout)
    assert [f["shape"] for f in summary["filters"]] == [[32, 3, 5, 5]] * 2
    assert summary["filters"][0]["module"] == "block1.0"
    assert 0 < summary["change"]["relative_change"] < 1
    result = tfx("filters", ckpt(runs["one"], "best.pt"), "--out", out_png, "--layer", "head")
    assert result.exit_code == 1 and "has no Conv2d" in result.stderr


def test_command_module_imports_no_heavy_library():
    code = ("import sys, transfusion_cli.commands.similarity_cmd;"
            "print(sorted(m for m in ('torch', 'numpy', 'matplotlib') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True, timeout=120)
    assert result.stdout.strip() == "[]"


def test_the_deprecated_metric_flag_still_works_and_warns(tfx, runs):
    a = ckpt(runs["one"], "best.pt")
    result = tfx("similarity", a, a, "--samples", "20", "--json", "--metric", "cka", "--layers",
                 "head")
    assert result.exit_code == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [set(row) >= {"cka"} and "svcca" not in row for row in rows] == [True]
    assert "--metric` is deprecated" in result.stderr and "use --measure" in result.stderr


def test_similarity_workers_are_validated(tfx, tiny_run, tmp_path):
    before = snapshot_tree(tmp_path)
    result = tfx("similarity", tiny_run / "checkpoints" / "init.pt",
                 tiny_run / "checkpoints" / "best.pt",
                 "--workers", "-1")
    assert result.exit_code == 1 and "--workers -1" in result.error_line()
    assert_tree_unchanged(tmp_path, before)


def test_similarity_says_the_split_is_too_small(tfx, tiny_run, tmp_path):
    before = snapshot_tree(tmp_path)
    result = tfx("similarity", tiny_run / "checkpoints" / "init.pt",
                 tiny_run / "checkpoints" / "best.pt",
                 "--measure", "svcca")
    assert result.exit_code == 1
    line = result.error_line()
    assert "split has only 32 images" in line and "--split train" in line
    assert "--samples" not in line  # asking for more samples than the split holds is no fix
    assert_tree_unchanged(tmp_path, before)
