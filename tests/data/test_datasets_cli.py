"""The real datasets through the real CLI: `tfx data stats`, one-line errors, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from datasets_fixtures import eyepacs_grades, shared_file, write_chexpert, write_csv, write_eyepacs


def own_cache(tmp_path: Path) -> dict[str, str | None]:
    """A `tfx` subprocess's environment changes: a cache of its own, no $TFX_DATA_DIR."""
    return {"TFX_CACHE_DIR": str(tmp_path / "cache"), "TFX_DATA_DIR": None}


def test_stats_on_an_eyepacs_tree(tfx, tmp_path):
    root = write_eyepacs(tmp_path / "eyepacs")
    result = tfx.subprocess("data", "stats", "--data", "retina", "--data-dir", str(root),
                            "--image-size", "32", "--data-seed", "3", "--json",
                            env=own_cache(tmp_path))
    assert result.exit_code == 0, result.stderr
    stats = json.loads(result.stdout)
    assert stats["options"]["layout"] == "eyepacs" and stats["referable_threshold"] == 2
    assert sum(s["images"] for s in stats["splits"].values()) == len(eyepacs_grades())
    grades = list(eyepacs_grades().values())
    for k, name in enumerate(stats["classes"]):
        assert sum(s["classes"][name] for s in stats["splits"].values()) == grades.count(k)
    assert not list((tmp_path / "cache").rglob("images.u8*")), "stats must not decode images"


def test_bad_grade_is_one_line_exit_1_without_traceback(tfx, tmp_path):
    root = write_eyepacs(tmp_path / "eyepacs")
    rows = list(eyepacs_grades().items())
    rows[6] = (rows[6][0], "9")
    write_csv(root / "trainLabels.csv", ("image", "level"), rows)
    result = tfx.subprocess("data", "stats", "--data", "retina", "--data-dir", str(root),
                            env=own_cache(tmp_path))
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr
    assert lines[0].startswith("Error: ") and "trainLabels.csv line 8, column 'level': grade '9'" \
        in lines[0]


def test_missing_data_dir_is_one_line(tfx, tmp_path, cache_dir, monkeypatch):
    monkeypatch.delenv("TFX_DATA_DIR", raising=False)
    result = tfx("data", "stats", "--data", "chexpert")
    assert result.exit_code == 1 and len(result.stderr.strip().splitlines()) == 1
    assert "CheXpert-v1.0-small/train.csv" in result.stderr


def test_chexpert_policy_is_reported(tfx, tmp_path, cache_dir):
    root = write_chexpert(tmp_path / "chexpert", patients=12)
    result = tfx("data", "stats", "--data", "chexpert", "--data-dir", str(root), "--option",
                 "uncertainty=Edema=u-ones,u-zeros", "--option", "blank=ignore", "--json")
    assert result.exit_code == 0, result.stderr
    stats = json.loads(result.stdout)
    assert stats["options"]["uncertainty"]["Edema"] == "u-ones"
    assert stats["options"]["uncertainty"]["Atelectasis"] == "u-zeros"
    assert stats["options"]["blank"] == "ignore"
    masked = sum(s["labels"]["Edema"]["masked"] for s in stats["splits"].values())
    assert masked > 0  # blanks masked by blank=ignore


def test_medmnist_real_file_stats(tfx, tmp_path, cache_dir):
    path = shared_file("medmnist", "retinamnist.npz")
    result = tfx("data", "stats", "--data", "medmnist", "--data-dir", str(path), "--json")
    assert result.exit_code == 0, result.stderr
    test = json.loads(result.stdout)["splits"]["test"]
    assert list(test["classes"].values()) == [174, 46, 92, 68, 20]


@pytest.mark.slow
def test_fit_on_a_retina_tree_writes_split_json(tfx, tmp_path):
    root = write_eyepacs(tmp_path / "eyepacs")
    out = tmp_path / "run"
    result = tfx.subprocess("fit", "--data", "retina", "--data-dir", str(root), "--arch",
                            "cbr-tiny", "--image-size", "32", "--steps", "3", "--batch-size", "8",
                            "--out", str(out), env=own_cache(tmp_path))
    assert result.exit_code == 0, result.stderr
    split = json.loads((out / "split.json").read_text())
    assert split["method"] == "patient" and split["layout"] == "eyepacs"
