"""`tfx similarity` and `tfx filters` end to end on small checkpoints of cbr-tiny."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from transfusion_cli.cli import main
from transfusion_cli.data.build import build_dataset
from transfusion_cli.models.checkpoint import make_checkpoint, save_checkpoint
from transfusion_cli.registry import get

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


def tfx(capsys, *args: str) -> tuple[int, str, str]:
    """Run the CLI in-process; (exit code, stdout, stderr)."""
    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def ckpt(run: Path, name: str) -> Path:
    return run / "checkpoints" / name


def test_table_shows_every_layer_with_neurons_points_and_metrics(runs, capsys):
    code, out, err = tfx(capsys, "similarity", ckpt(runs["one"], "init.pt"),
                         ckpt(runs["one"], "best.pt"), "--samples", "40", "--device", "cpu")
    assert code == 0, err
    lines = out.strip().splitlines()
    assert lines[0].startswith("run1/init.pt vs run1/best.pt (cbr-tiny; synthetic-retina val")
    assert lines[1].split() == ["layer", "neurons", "points", "svcca", "pwcca", "cka"]
    rows = {line.split()[0]: line.split() for line in lines[2:]}
    assert list(rows) == ["block1", "block2", "block3", "block4", "head"]
    assert rows["block4"][1:3] == ["256", str(40 * 16)]
    assert rows["head"][1:3] == ["5", "40"]
    assert all(0.0 <= float(v) <= 1.0 for row in rows.values() for v in row[3:])
    assert "40 inputs" in err


def test_json_has_layer_and_one_key_per_metric(runs, capsys):
    a = ckpt(runs["one"], "best.pt")
    code, out, err = tfx(capsys, "similarity", a, a, "--samples", "30", "--json",
                         "--metric", "cca,cka,cka_debiased,cka_minibatch", "--layers",
                         "block1,head", "--baseline")
    assert code == 0, err
    rows = json.loads(out)
    assert [r["layer"] for r in rows] == ["block1", "head"]
    # The null baseline (B's points shuffled within each batch) is far below the paired 1.0.
    assert set(rows[0]["baseline"]) == {"cca", "cka"}
    assert rows[0]["baseline"]["cka"] < 0.2 and rows[0]["baseline"]["cca"] < 0.5
    for row in rows:
        for metric in ("cca", "cka", "cka_debiased", "cka_minibatch"):
            assert row[metric] == pytest.approx(1.0, abs=1e-8)
        assert row["points"] == row["inputs"] * row["positions_per_input"]
    assert rows[0]["neurons"] == 32 and rows[0]["grid"] == [32, 32]


def test_plot_overlays_against_runs(runs, capsys, tmp_path):
    out_png = tmp_path / "init.png"
    code, out, err = tfx(capsys, "similarity", ckpt(runs["one"], "init.pt"),
                         ckpt(runs["one"], "best.pt"), "--samples", "40", "--metric", "svcca",
                         "--against", runs["two"], "--plot", out_png, "--json")
    assert code == 0, err
    assert out_png.read_bytes().startswith(PNG)
    rows = json.loads(out)
    comparisons = {r["comparison"] for r in rows}
    assert comparisons == {"run1/init.pt vs run1/best.pt", "run2/init.pt vs run2/best.pt"}
    by_run = {c: [r["svcca"] for r in rows if r["comparison"] == c] for c in comparisons}
    # run2 was perturbed four times as much: less similar to its initialisation everywhere.
    one, two = by_run["run1/init.pt vs run1/best.pt"], by_run["run2/init.pt vs run2/best.pt"]
    assert all(b < a for a, b in zip(one[:4], two[:4], strict=True))


def test_cross_compares_every_layer_of_two_architectures(runs, capsys, tmp_path):
    heatmap = tmp_path / "cross.png"
    code, out, err = tfx(capsys, "similarity", ckpt(runs["one"], "best.pt"),
                         ckpt(runs["small"], "best.pt"), "--cross", "--metric", "cka",
                         "--samples", "24", "--plot", heatmap, "--layers",
                         "block1,block2,head")
    assert code == 0, err
    assert heatmap.read_bytes().startswith(PNG)
    lines = out.strip().splitlines()
    assert lines[0].startswith("cka: run1/best.pt (cbr-tiny) vs small/best.pt (cbr-small)")
    assert lines[1].split()[-3:] == ["block1", "block2", "head"]
    assert len(lines) == 2 + 3


@pytest.mark.parametrize(("args", "message"), [
    (["missing.pt", "B"], "does not exist"),
    (["GARBAGE", "B"], "not a tfx checkpoint"),
    (["A", "B", "--layers", "block9"], "Unknown layer 'block9' for cbr-tiny"),
    (["A", "SMALL"], "different architectures"),
    (["A", "B", "--metric", "svca"], "Did you mean 'svcca'"),
    (["A", "B", "--spatial", "big"], "--spatial"),
    (["A", "B", "--split", "nope"], "'nope' is not one of"),  # a usage error (exit 2)
    (["A", "B", "--against", "GARBAGE"], "no init.pt beside it"),
])
def test_user_mistakes_are_one_line_errors(runs, capsys, tmp_path, args, message):
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    torch.save({"hello": 1}, tmp_path / "dict.pt")
    names = {"A": ckpt(runs["one"], "init.pt"), "B": ckpt(runs["one"], "best.pt"),
             "SMALL": ckpt(runs["small"], "best.pt"), "GARBAGE": tmp_path / "dict.pt",
             "missing.pt": tmp_path / "missing.pt"}
    code, out, err = tfx(capsys, "similarity", *[names.get(a, a) for a in args],
                         "--samples", "20")
    assert code == (2 if "--split" in args else 1)
    assert out == ""
    last = err.strip().splitlines()[-1]
    assert last.startswith("Error: ") and message in last and "Traceback" not in err


def test_filters_grid_and_comparison(runs, capsys, tmp_path):
    out_png = tmp_path / "filters.png"
    code, out, err = tfx(capsys, "filters", ckpt(runs["one"], "best.pt"), "--out", out_png,
                         "--compare", ckpt(runs["one"], "init.pt"), "--json")
    assert code == 0, err
    assert out_png.read_bytes().startswith(PNG)
    summary = json.loads(out)
    assert [f["shape"] for f in summary["filters"]] == [[32, 3, 5, 5]] * 2
    assert summary["filters"][0]["module"] == "block1.0"
    assert 0 < summary["change"]["relative_change"] < 1
    code, out, err = tfx(capsys, "filters", ckpt(runs["one"], "best.pt"), "--out", out_png,
                         "--layer", "head")
    assert code == 1 and "has no Conv2d" in err


def test_command_module_imports_no_heavy_library():
    code = ("import sys, transfusion_cli.commands.similarity_cmd;"
            "print(sorted(m for m in ('torch', 'numpy', 'matplotlib') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True, timeout=120)
    assert result.stdout.strip() == "[]"
