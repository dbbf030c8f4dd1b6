"""The real datasets through the real CLI: `tfx data stats`, one-line errors, exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from datasets_fixtures import eyepacs_grades, shared_file, write_chexpert, write_csv, write_eyepacs


def run_main(capsys, *args: str) -> tuple[int, str, str]:
    """The CLI entry point in this process (same code path, no interpreter start-up)."""
    from transfusion_cli.cli import main

    try:
        main(list(args))
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def tfx(*args: str, cache: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "TFX_CACHE_DIR": str(cache)}
    env.pop("TFX_DATA_DIR", None)
    return subprocess.run([sys.executable, "-m", "transfusion_cli", *args], capture_output=True,
                          text=True, env=env, timeout=300)


def test_stats_on_an_eyepacs_tree(tmp_path):
    root = write_eyepacs(tmp_path / "eyepacs")
    result = tfx("data", "stats", "--data", "retina", "--data-dir", str(root), "--image-size",
                 "32", "--data-seed", "3", "--json", cache=tmp_path / "cache")
    assert result.returncode == 0, result.stderr
    stats = json.loads(result.stdout)
    assert stats["options"]["layout"] == "eyepacs" and stats["referable_threshold"] == 2
    assert sum(s["images"] for s in stats["splits"].values()) == len(eyepacs_grades())
    grades = list(eyepacs_grades().values())
    for k, name in enumerate(stats["classes"]):
        assert sum(s["classes"][name] for s in stats["splits"].values()) == grades.count(k)
    assert not list((tmp_path / "cache").rglob("images.u8*")), "stats must not decode images"


def test_bad_grade_is_one_line_exit_1_without_traceback(tmp_path):
    root = write_eyepacs(tmp_path / "eyepacs")
    rows = list(eyepacs_grades().items())
    rows[6] = (rows[6][0], "9")
    write_csv(root / "trainLabels.csv", ("image", "level"), rows)
    result = tfx("data", "stats", "--data", "retina", "--data-dir", str(root),
                 cache=tmp_path / "cache")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr
    assert lines[0].startswith("Error: ") and "trainLabels.csv line 8, column 'level': grade '9'" \
        in lines[0]


def test_missing_data_dir_is_one_line(tmp_path, cache_dir, monkeypatch, capsys):
    monkeypatch.delenv("TFX_DATA_DIR", raising=False)
    code, _, err = run_main(capsys, "data", "stats", "--data", "chexpert")
    assert code == 1 and len(err.strip().splitlines()) == 1
    assert "CheXpert-v1.0-small/train.csv" in err


def test_chexpert_policy_is_reported(tmp_path, cache_dir, capsys):
    root = write_chexpert(tmp_path / "chexpert", patients=12)
    code, out, err = run_main(capsys, "data", "stats", "--data", "chexpert", "--data-dir",
                              str(root), "--option", "uncertainty=Edema=u-ones,u-zeros",
                              "--option", "blank=ignore", "--json")
    assert code == 0, err
    stats = json.loads(out)
    assert stats["options"]["uncertainty"]["Edema"] == "u-ones"
    assert stats["options"]["uncertainty"]["Atelectasis"] == "u-zeros"
    assert stats["options"]["blank"] == "ignore"
    masked = sum(s["labels"]["Edema"]["masked"] for s in stats["splits"].values())
    assert masked > 0  # blanks masked by blank=ignore


def test_medmnist_real_file_stats(tmp_path, cache_dir, capsys):
    path = shared_file("medmnist", "retinamnist.npz")
    code, out, err = run_main(capsys, "data", "stats", "--data", "medmnist", "--data-dir",
                              str(path), "--json")
    assert code == 0, err
    test = json.loads(out)["splits"]["test"]
    assert list(test["classes"].values()) == [174, 46, 92, 68, 20]


@pytest.mark.slow
def test_fit_on_a_retina_tree_writes_split_json(tmp_path):
    root = write_eyepacs(tmp_path / "eyepacs")
    out = tmp_path / "run"
    result = tfx("fit", "--data", "retina", "--data-dir", str(root), "--arch", "cbr-tiny",
                 "--image-size", "32", "--steps", "3", "--batch-size", "8", "--out", str(out),
                 cache=tmp_path / "cache")
    assert result.returncode == 0, result.stderr
    split = json.loads((out / "split.json").read_text())
    assert split["method"] == "patient" and split["layout"] == "eyepacs"
