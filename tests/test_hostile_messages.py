"""Issue 11, part D: messages that say what is wrong and how to fix it, and small things that
must not leave debris or take the whole CLI down (items 19-20)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from hostile_helpers import (
    SMALL,
    dead_pid,
    error_line,
    run_cli,
    run_tfx_subprocess,
)
from registry_helpers import fake_distribution
from tree_snapshot import assert_tree_unchanged, snapshot_tree


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """One tiny trained run (2 steps of cbr-tiny on 32 px synthetic retina, 32 val images)."""
    root = tmp_path_factory.mktemp("messages") / "run"
    code, _, err = run_cli("fit", *SMALL, "--steps", "2", "--out", root)
    assert code == 0, err
    return root


# ----------------------------------------------------------------------------------- item 19


def test_item19_similarity_says_the_split_is_too_small(run, tmp_path):
    before = snapshot_tree(tmp_path)
    code, _, err = run_cli("similarity", run / "checkpoints" / "init.pt",
                           run / "checkpoints" / "best.pt", "--metric", "svcca")
    assert code == 1
    line = error_line(err)
    assert "split has only 32 images" in line and "--split train" in line
    assert "--samples" not in line  # asking for more samples than the split holds is no fix
    assert_tree_unchanged(tmp_path, before)


def test_item19_folder_as_checkpoint_is_a_folder(run):
    code, _, err = run_cli("filters", run, "--out", run.parent / "f.png")
    assert code == 1
    line = error_line(err)
    assert "is a folder" in line and "does not exist" not in line
    assert not (run.parent / "f.png").exists()


def test_item19_out_of_range_labels_name_the_value(tmp_path):
    from transfusion_cli.data.bundles import DatasetInfo
    from transfusion_cli.data.files import check_splits
    from transfusion_cli.errors import DataError

    info = DatasetInfo("x", "multiclass", ("a", "b", "c"), 3, 32, (0.5,) * 3, (0.2,) * 3)
    labels = {"train": np.array([0, 1, 2, 7, 7]), "val": np.array([0, 1, 2])}
    with pytest.raises(DataError, match=r"label 7 \(2 image\(s\) with labels outside 0\.\.2\)"):
        check_splits(info, labels, "fix it")

    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 40), ("val", 16), ("test", 16)):
        arrays[f"{split}_images"] = rng.integers(0, 256, (n, 28, 28, 3), dtype=np.uint8)
        arrays[f"{split}_labels"] = (np.arange(n) % 5).reshape(-1, 1)
    arrays["train_labels"][3] = 9
    (tmp_path / "d").mkdir()
    np.savez(tmp_path / "d" / "retinamnist.npz", **arrays)
    code, _, err = run_cli("data", "stats", "--data", "medmnist", "--data-dir", tmp_path / "d")
    assert code == 1 and "train_labels[3] is [9]" in error_line(err)


def test_item19_malicious_pickle_refusal(tmp_path):
    class Payload:
        def __reduce__(self):
            return (os.system, ("echo owned",))

    evil = tmp_path / "evil.pt"
    torch.save({"format": "tfx-checkpoint", "x": Payload()}, evil)
    before = snapshot_tree(tmp_path)
    code, out, err = run_cli("filters", evil, "--out", tmp_path / "f.png")
    assert code == 1 and "owned" not in out
    line = error_line(err)
    assert "weights_only" not in line and "Refused to load" in line and str(evil) in line
    assert line.endswith(".")  # a whole sentence, not cut mid-word
    assert_tree_unchanged(tmp_path, before)


def test_item19_text_file_as_npz_is_not_pickled_data(tmp_path):
    folder = tmp_path / "d"
    folder.mkdir()
    (folder / "data.npz").write_text("this is a text file, not numpy\n" * 5)
    code, _, err = run_cli("data", "stats", "--data", "medmnist", "--data-dir", folder)
    assert code == 1
    line = error_line(err)
    assert "pickled" not in line and "not a zip archive" in line


@pytest.mark.parametrize("args,expected", [
    (["fit", "--bogus"], "No such option: --bogus"),
    (["fit", "--steps", "many"], "Invalid value for '--steps'"),
    (["export"], "Missing argument"),
    (["no-such-command"], "No such command"),
])
def test_item19_usage_errors_are_one_line(args, expected):
    code, out, err = run_cli(*args)
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("Error: ") and expected in lines[0] and "--help" in lines[0]
    assert "╭" not in err and "Usage:" not in err


# ----------------------------------------------------------------------------------- item 20


def test_item20_stale_temp_files_of_dead_processes_are_cleaned(run, tmp_path):
    pid = dead_pid()
    out = tmp_path / "figures"
    out.mkdir()
    stale_file = out / f".tfx-{pid}-0123abcd.f.png.tmp"
    stale_dir = out / f".tfx-export-{pid}-89abcdef"
    live_file = out / f".tfx-{os.getpid()}-0123abcd.f.png.tmp"  # a running process: kept
    foreign = [out / ".f.png.tmp", out / ".tfx-notes.tmp", out / "mine.tmp"]  # not tfx's: kept
    stale_file.write_bytes(b"half")
    stale_dir.mkdir()
    (stale_dir / "model.fp32.onnx").write_bytes(b"half")
    for path in [live_file, *foreign]:
        path.write_text("keep")
    code, _, err = run_cli("filters", run / "checkpoints" / "best.pt", "--out", out / "f.png")
    assert code == 0, err
    assert not stale_file.exists() and not stale_dir.exists()
    assert live_file.exists() and all(p.exists() for p in foreign)
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [live_file.name, "f.png", *(p.name for p in foreign)])


def test_item20_plugin_calling_sys_exit_does_not_kill_tfx(tmp_path, third_party_plugins):
    site = fake_distribution(tmp_path / "site", "tfx-exiting-plugin", {"exits": "exiting_mod"},
                             {"exiting_mod": "import sys\nsys.exit(3)\n"})
    plugins = run_tfx_subprocess("plugins", "--json", pythonpath=site)
    assert plugins.returncode == 0, plugins.stderr
    listed = {p["name"]: p for p in json.loads(plugins.stdout)}
    assert "SystemExit" in listed["exits"]["error"]
    assert listed["cbr"]["error"] is None and "cbr-tiny" in listed["cbr"]["registered"][
        "architectures"]  # the other plugins still loaded


def test_item20_tfx_load_plugins_typo_warns_with_did_you_mean(tmp_path):
    site = fake_distribution(tmp_path / "site", "tfx-example-extra", {"example": "example_mod"},
                             {"example_mod": "X = 1\n"})
    result = run_tfx_subprocess("list", "inits", "--json", pythonpath=site,
                                env={"TFX_LOAD_PLUGINS": "exampel"})
    assert result.returncode == 0, result.stderr
    assert "TFX_LOAD_PLUGINS" in result.stderr and "Did you mean 'example'?" in result.stderr
    assert json.loads(result.stdout)


def test_item20_filters_out_suffix_names_the_format(run, tmp_path):
    best = run / "checkpoints" / "best.pt"
    code, _, err = run_cli("filters", best, "--out", tmp_path / "f.jpg")
    assert code == 0, err
    assert (tmp_path / "f.jpg").read_bytes()[:3] == b"\xff\xd8\xff"  # JPEG, not PNG bytes
    before = snapshot_tree(tmp_path)
    code, _, err = run_cli("filters", best, "--out", tmp_path / "f.bmp")
    assert code == 1 and ".bmp" in error_line(err)
    assert_tree_unchanged(tmp_path, before)


def test_item20_target_metric_nan_is_refused(tmp_path):
    before = snapshot_tree(tmp_path)
    code, _, err = run_cli("compare-inits", *SMALL, "--target-metric", "nan", "--plan-only",
                           "--out", tmp_path / "sweep")
    assert code == 1 and "--target-metric nan" in error_line(err)
    assert_tree_unchanged(tmp_path, before)


def test_item20_late_failure_leaves_no_run_folder(tmp_path):
    before = snapshot_tree(tmp_path)
    code, _, err = run_cli("fit", *SMALL, "--steps", "1", "--in-chans", "2",
                           "--out", tmp_path / "run")
    assert code == 1
    assert "channels" in error_line(err)
    assert_tree_unchanged(tmp_path, before)


def test_item20_temp_pattern_matches_only_tfx_names():
    """The clean-up removes only names tfx itself makes."""
    from transfusion_cli.io import TEMP_PATTERN, temp_name

    assert TEMP_PATTERN.match(temp_name("model.onnx", Path(".")))
    assert TEMP_PATTERN.match(temp_name("", Path("."), "export"))
    for name in (".model.onnx.tmp", ".tfx-abc-0123abcd.x.tmp", ".tfx-12-0123abcd.x", "x.tmp"):
        assert not TEMP_PATTERN.match(name), name
