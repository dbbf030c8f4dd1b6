"""One rule for the folders `fit`, `compare-inits` and `reproduce` fill: new, empty, or one tfx
made as that kind (its marker file: env.json, plan.json or study.json with tfx's "format").
Anything else is refused before a byte is written (issue 20 items 3 and 4)."""

from __future__ import annotations

import json

import pytest
from input_files import SMALL
from safety_helpers import assert_refused

COMMANDS = {
    "fit": ["fit", "--data", "synthetic-retina", *SMALL, "--arch", "cbr-tiny", "--steps", "1"],
    "compare-inits": ["compare-inits", "--data", "synthetic-retina", *SMALL, "--inits",
                      "random", "--seeds", "1", "--steps", "1"],
    "reproduce": ["reproduce", "--profile", "smoke", "--report-only"],
}
KIND = {"fit": "run", "compare-inits": "sweep", "reproduce": "study"}


def users_notes(root):
    """A folder of the user's that happens to hold the names tfx writes."""
    notes = root / "notes"
    notes.mkdir()
    for name in ("report.md", "results.csv", "results.json", "verdicts.json", "config.yaml"):
        (notes / name).write_text(f"my {name}\n")
    return notes


@pytest.mark.parametrize("command", COMMANDS)
def test_a_folder_tfx_did_not_make_is_refused(tmp_path, command):
    """Items 3 and 4: compare-inits used to overwrite report.md / results.* in it."""
    notes = users_notes(tmp_path)
    assert_refused(tmp_path, *COMMANDS[command], "--out", notes,
                   says=f"--out {notes} exists and is not a tfx {KIND[command]} folder: it was "
                        f"not written by `tfx {command}`")


@pytest.mark.parametrize("command", COMMANDS)
def test_a_marker_file_in_the_wrong_format_is_not_tfx_s(tmp_path, command):
    """Item 4: reproduce accepted any folder holding a file named study.json."""
    notes = users_notes(tmp_path)
    for name in ("study.json", "plan.json", "env.json"):
        (notes / name).write_text(json.dumps({"format": "mine", "profile": "x"}))
    assert_refused(tmp_path, *COMMANDS[command], "--out", notes,
                   says=f"is not a tfx {KIND[command]} folder")


def test_a_tfx_folder_of_another_kind_is_refused(tmp_path):
    """A fit run is not a sweep: compare-inits does not write its report into it."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "env.json").write_text(json.dumps({"format": "tfx-run/1"}))
    (run / "metrics.jsonl").write_text("{}\n")
    assert_refused(tmp_path, *COMMANDS["compare-inits"], "--out", run,
                   says=f"--out {run} is a tfx run folder (made by `tfx fit`), not a sweep")


def test_an_empty_folder_is_fine(tfx, tmp_path):
    """The rule refuses only folders holding files: an empty one is planned into."""
    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    result = tfx(*COMMANDS["compare-inits"], "--out", empty, "--plan-only")
    assert result.exit_code == 0, result.stderr
    plan = json.loads((empty / "plan.json").read_text())
    assert plan["format"] == "tfx-sweep/1"


def test_a_refused_profile_writes_nothing(tmp_path):
    """Item 4: the profile's refusal used to come after study.json was written."""
    profile = tmp_path / "p.yaml"
    profile.write_text("""name: p
datasets:
  retina: {data: synthetic-retina}
fit: {image_size: 32, steps: 1}
roles: {standard: [cbr-tiny], small: []}
parts:
  table1: {dataset: retina, archs: [cbr-tiny], inits: [random, pretrained], seeds: 1}
""")
    assert_refused(tmp_path, "reproduce", "--profile", profile, "-o", tmp_path / "study",
                   says="The pretrained arm of cbr-tiny needs ImageNet weights")
    assert not (tmp_path / "study").exists()
