"""Issue 11, part C: hostile inputs that used to crash ("internal error") give one line, exit 1,
and leave every file as it was (items 11-18)."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from hostile_helpers import SMALL, bomb_png, error_line, image_folder, run_cli
from tree_snapshot import assert_tree_unchanged, snapshot_tree


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """One tiny trained run (2 steps of cbr-tiny on 32 px synthetic retina)."""
    root = tmp_path_factory.mktemp("hostile") / "run"
    code, _, err = run_cli("fit", *SMALL, "--steps", "2", "--out", root)
    assert code == 0, err
    return root


def _unwritable_root() -> Path:
    root = Path("/sys")
    if not root.is_dir() or os.access("/sys", os.W_OK) and _writable(root):
        pytest.skip("no unwritable folder (/sys) on this machine")
    return root


def _writable(folder: Path) -> bool:
    try:
        (folder / ".tfx-writable-probe").touch()
    except OSError:
        return False
    (folder / ".tfx-writable-probe").unlink()
    return True


# ----------------------------------------------------------------------------------- item 11


def test_item11_unwritable_or_invalid_out(tmp_path, cache_dir):
    blocker = tmp_path / "afile"
    blocker.write_text("not a folder")
    before = snapshot_tree(tmp_path)
    code, _, err = run_cli("fit", *SMALL, "--steps", "1", "--out", blocker / "run")
    assert code == 1
    assert "afile is a file" in error_line(err)
    assert_tree_unchanged(tmp_path, before)

    unwritable = _unwritable_root() / "tfx-run"
    code, _, err = run_cli("fit", *SMALL, "--steps", "1", "--out", unwritable)
    assert code == 1
    assert str(unwritable) in error_line(err) and not unwritable.exists()
    assert_tree_unchanged(tmp_path, before)


def test_item11_folder_given_for_a_file_output(run, tmp_path):
    folder = tmp_path / "grid.png"
    folder.mkdir()
    before = snapshot_tree(tmp_path)
    code, _, err = run_cli("filters", run / "checkpoints" / "best.pt", "--out", folder)
    assert code == 1 and "is a folder" in error_line(err) and str(folder) in err
    code, _, err = run_cli("export", run / "checkpoints" / "best.pt", "--out", tmp_path)
    assert code == 1 and "is a folder" in error_line(err)
    assert_tree_unchanged(tmp_path, before)


def test_item11_unwritable_cache_dir(tmp_path, monkeypatch):
    data = image_folder(tmp_path / "data")
    cache = _unwritable_root() / "tfx-cache"
    monkeypatch.setenv("TFX_CACHE_DIR", str(cache))
    before = snapshot_tree(tmp_path)
    code, _, err = run_cli("fit", "--data", "image-folder", "--data-dir", data, "--image-size",
                           "32", "--steps", "1", "-b", "8", "--out", tmp_path / "run")
    assert code == 1
    line = error_line(err)
    assert "TFX_CACHE_DIR" in line and str(cache) in line
    assert_tree_unchanged(tmp_path, before)


# ----------------------------------------------------------------------------------- item 12


def test_item12_temp_names_fit_the_name_limit(tmp_path):
    from transfusion_cli.io import name_max, write_text

    name = "r" * (name_max(tmp_path) - 5) + ".json"  # as long as the file system allows
    write_text(tmp_path / name, "{}")
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]


def test_item12_export_refuses_a_report_name_too_long_before_any_work(run, tmp_path):
    from transfusion_cli.io import name_max

    # model.onnx fits the limit but model.export.json does not: refused up front.
    out = tmp_path / ("m" * (name_max(tmp_path) - len(".onnx")) + ".onnx")
    before = snapshot_tree(tmp_path)
    code, _, err = run_cli("export", run / "checkpoints" / "best.pt", "--out", out)
    assert code == 1
    assert "report" in error_line(err).lower() and "shorter name" in err
    assert_tree_unchanged(tmp_path, before)


@pytest.mark.slow
def test_item12_export_with_a_240_character_name_writes_model_and_report(run, tmp_path):
    out = tmp_path / ("m" * 235 + ".onnx")
    code, _, err = run_cli("export", run / "checkpoints" / "best.pt", "--out", out)
    assert code == 0, err
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == sorted([out.name, out.with_suffix(".export.json").name, "MODEL_CARD.md"])


# ----------------------------------------------------------------------------------- item 13


@pytest.mark.parametrize("command", [
    ["filters", "{ckpt}", "--out", "{tmp}/f.png"],
    ["similarity", "{ckpt}", "{good}"],
    ["export", "{ckpt}", "--out", "{tmp}/m.onnx"],
    ["fit", *SMALL, "--steps", "1", "--init", "transfusion:block1", "--weights", "{ckpt}",
     "--out", "{tmp}/run"],
])
def test_item13_zero_byte_checkpoint(run, tmp_path, command):
    empty = tmp_path / "empty.pt"
    empty.touch()
    before = snapshot_tree(tmp_path)
    args = [part.format(ckpt=empty, tmp=tmp_path, good=run / "checkpoints" / "best.pt")
            for part in command]
    code, _, err = run_cli(*args)
    assert code == 1
    line = error_line(err)
    assert str(empty) in line and "empty (0 bytes)" in line
    assert_tree_unchanged(tmp_path, before)


MALFORMED = {
    "format_version_text": (lambda c: c.update(format_version="1"), "format_version"),
    "no_arch": (lambda c: c.pop("arch"), "'arch'"),
    "no_dataset": (lambda c: c.pop("dataset"), "'dataset'"),
    "negative_classes": (lambda c: c["arch"].update(num_classes=-1), "num_classes is -1"),
    "huge_classes": (lambda c: c["arch"].update(num_classes=10**7), "num_classes is 10000000"),
    "dataset_not_a_dataset": (lambda c: c["dataset"].pop("task"), "'dataset' entry"),
    "state_not_tensors": (lambda c: c.update(state_dict={"w": [1, 2]}), "state_dict"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_item13_malformed_checkpoint_fields(run, tmp_path, case):
    edit, expected = MALFORMED[case]
    checkpoint = copy.deepcopy(torch.load(run / "checkpoints" / "best.pt", weights_only=True))
    edit(checkpoint)
    path = tmp_path / f"{case}.pt"
    torch.save(checkpoint, path)
    before = snapshot_tree(tmp_path)
    code, _, err = run_cli("filters", path, "--out", tmp_path / "f.png")
    assert code == 1
    line = error_line(err)
    assert str(path) in line and expected in line
    assert_tree_unchanged(tmp_path, before)


# ----------------------------------------------------------------------------------- item 14


def test_item14_decompression_bomb_is_a_bad_image(tmp_path, cache_dir):
    data = image_folder(tmp_path / "data")
    bomb = bomb_png(data / "normal" / "bomb.png")
    big = bomb_png(data / "sick" / "big.png", side=10_000)  # above the limit, below 2x
    before = snapshot_tree(tmp_path)
    fit = ["fit", "--data", "image-folder", "--data-dir", data, "--image-size", "32",
           "--steps", "1", "-b", "8"]
    code, _, err = run_cli(*fit, "--out", tmp_path / "run")
    assert code == 1
    line = error_line(err)
    assert ("bomb.png" in line or "big.png" in line) and "--skip-bad-images" in line
    assert_tree_unchanged(tmp_path, before)  # no run folder
    assert not any(p.is_file() and p.name != ".lock" for p in cache_dir.rglob("*"))  # item 16

    code, _, err = run_cli(*fit, "--skip-bad-images", "--out", tmp_path / "run")
    assert code == 0, err
    assert "unreadable image(s)" in err and "--skip-bad-images" in err
    assert (tmp_path / "run" / "checkpoints" / "best.pt").is_file()
    assert bomb.stat().st_size < 100_000 and big.exists()


def test_item14_decode_path_reports_the_image(tmp_path, monkeypatch):
    from transfusion_cli.data.preprocess import read_image
    from transfusion_cli.errors import DataError

    bomb = bomb_png(tmp_path / "bomb.png")
    with pytest.raises(DataError, match="bomb.png is too large"):
        read_image(bomb)
    monkeypatch.setenv("TFX_MAX_IMAGE_PIXELS", "100")
    small = tmp_path / "small.png"
    image_folder(tmp_path / "x", per_class=1)
    with pytest.raises(DataError, match="40x40 .*TFX_MAX_IMAGE_PIXELS"):
        read_image(next((tmp_path / "x" / "normal").iterdir()))
    assert not small.exists()


@pytest.mark.slow
def test_item14_predict_goes_on_after_a_bomb(run, tmp_path):
    model = tmp_path / "m.onnx"
    code, _, err = run_cli("export", run / "checkpoints" / "best.pt", "--out", model)
    assert code == 0, err
    images = image_folder(tmp_path / "images", per_class=1, size=32)
    bomb = bomb_png(images / "normal" / "bomb.png")
    code, out, err = run_cli("predict", model, images, "--json")
    assert code == 1 and str(bomb) in err and "1 of 3 images" in err
    results = [json.loads(line) for line in out.splitlines() if line.strip()]
    assert len([r for r in results if not r.get("error")]) == 2


# ----------------------------------------------------------------------------------- item 15


def _medmnist(folder: Path, **override) -> Path:
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 40), ("val", 16), ("test", 16)):
        arrays[f"{split}_images"] = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        arrays[f"{split}_labels"] = (np.arange(n) % 2).reshape(-1, 1).astype(np.uint8)
    arrays.update(override)
    folder.mkdir(parents=True)
    np.savez(folder / "data.npz", **arrays)
    return folder / "data.npz"


NPZ_CASES = {
    "object_labels": ({"train_labels": np.array([[1]] * 40, dtype=object)}, "Python objects"),
    "nan_labels": ({"train_labels": np.where(np.arange(40)[:, None] == 3, np.nan, 1.0)},
                   "train_labels[3] is not a number"),
    "float_images": ({"train_images": np.random.default_rng(0).random((40, 28, 28))},
                     "train_images holds float64"),
}


@pytest.mark.parametrize("case", [*sorted(NPZ_CASES), "truncated", "empty"])
def test_item15_broken_npz(tmp_path, cache_dir, case):
    if case in NPZ_CASES:
        path = _medmnist(tmp_path / case, **NPZ_CASES[case][0])
        expected = NPZ_CASES[case][1]
    else:
        path = _medmnist(tmp_path / case)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2] if case == "truncated" else b"")
        expected = "complete" if case == "truncated" else "empty (0 bytes)"
    before = snapshot_tree(tmp_path)
    code, _, err = run_cli("data", "stats", "--data", "medmnist", "--data-dir", path.parent)
    assert code == 1
    line = error_line(err)
    assert str(path) in line and expected in line
    assert_tree_unchanged(tmp_path, before)


def test_item15_csv_with_only_a_header(tmp_path, cache_dir):
    table = tmp_path / "labels.csv"
    table.write_text("path,label\n")
    before = snapshot_tree(tmp_path)
    code, _, err = run_cli("data", "stats", "--data", "csv", "--data-dir", table)
    assert code == 1
    line = error_line(err)
    assert str(table) in line and "no data rows" in line
    assert_tree_unchanged(tmp_path, before)


@pytest.mark.parametrize("name,content,expected", [
    ("empty.safetensors", b"", "header too small"),
    ("garbage.safetensors", b"garbage, not safetensors", "safetensors"),
    ("empty.pth", b"", "empty (0 bytes)"),
    ("junk.pth", b"junk junk junk", "Cannot read"),
])
def test_item15_broken_weights_file(tmp_path, name, content, expected):
    weights = tmp_path / name
    weights.write_bytes(content)
    before = snapshot_tree(tmp_path)
    code, _, err = run_cli("fit", *SMALL, "--steps", "1", "--arch", "resnet50", "--init",
                           "imagenet", "--weights", weights, "--out", tmp_path / "run")
    assert code == 1
    line = error_line(err)
    assert str(weights) in line and expected in line
    assert_tree_unchanged(tmp_path, before)


# ----------------------------------------------------------------------------------- item 16


def test_item16_image_size_has_an_upper_bound(tmp_path, monkeypatch):
    from transfusion_cli.data.build import max_image_size

    before = snapshot_tree(tmp_path)
    code, _, err = run_cli("fit", *SMALL[2:], "--image-size", "5000", "--steps", "1",
                           "--out", tmp_path / "run")
    assert code == 1
    line = error_line(err)
    assert "--image-size 5000" in line and "TFX_MAX_IMAGE_SIZE" in line
    assert_tree_unchanged(tmp_path, before)
    monkeypatch.setenv("TFX_MAX_IMAGE_SIZE", "8192")
    assert max_image_size() == 8192
    monkeypatch.setenv("TFX_MAX_IMAGE_SIZE", "big")
    code, _, err = run_cli("data", "stats", "--data", "synthetic-retina", "--image-size", "64")
    assert code == 1 and "TFX_MAX_IMAGE_SIZE" in error_line(err)


# ----------------------------------------------------------------------------------- item 17


def test_item17_similarity_workers_validated(run, tmp_path):
    before = snapshot_tree(tmp_path)
    code, _, err = run_cli("similarity", run / "checkpoints" / "init.pt",
                           run / "checkpoints" / "best.pt", "--workers", "-1")
    assert code == 1 and "--workers -1" in error_line(err)
    assert_tree_unchanged(tmp_path, before)


def test_item17_non_finite_weights_name_the_layer(run, tmp_path):
    checkpoint = torch.load(run / "checkpoints" / "best.pt", weights_only=True)
    key = next(k for k in checkpoint["state_dict"] if k.endswith("weight"))
    checkpoint["state_dict"][key][0] = float("nan")
    broken = tmp_path / "nan.pt"
    torch.save(checkpoint, broken)
    before = snapshot_tree(tmp_path)
    for args in (["filters", broken, "--out", tmp_path / "f.png"],
                 ["similarity", run / "checkpoints" / "init.pt", broken, "--metric", "svcca"]):
        code, out, err = run_cli(*args)
        assert code == 1 and out == ""
        line = error_line(err)
        assert f"'{key}'" in line and "NaN" in line and str(broken) in line
    assert_tree_unchanged(tmp_path, before)


# ----------------------------------------------------------------------------------- item 18


def test_item18_truncated_cache_is_rebuilt(tmp_path, cache_dir):
    data = image_folder(tmp_path / "data")
    fit = ["fit", "--data", "image-folder", "--data-dir", data, "--image-size", "32",
           "--steps", "1", "-b", "8", "--skip-bad-images"]  # checks (so caches) every image
    code, _, err = run_cli(*fit, "--out", tmp_path / "r1")
    assert code == 0, err
    caches = sorted(cache_dir.rglob("images.u8"))
    assert caches
    full = caches[0].stat().st_size
    with open(caches[0], "r+b") as handle:
        handle.truncate(full // 2)
    code, _, err = run_cli(*fit, "--out", tmp_path / "r2")
    assert code == 0, err
    assert "damaged" in err and "rebuilding" in err
    assert caches[0].stat().st_size == full
