"""A `tfx reproduce` profile is checked as a whole (types, ranges, sizes, names, fit values,
SLURM settings) before anything is trained or written: one `Error:` line naming the key
(issue 20, items 17, 24 and 25)."""

from __future__ import annotations

import copy

import pytest
import yaml
from tree_snapshot import assert_tree_unchanged, snapshot_tree

from transfusion_cli.limits import MAX_STUDY_SEEDS
from transfusion_cli.reproduce.study import profile_path

SMOKE = yaml.safe_load(profile_path("smoke").read_text())


def _set(path: str, value):
    """A change to the smoke profile: set the dotted key ``path`` (None value: delete it)."""
    def change(data):
        *parents, last = path.split(".")
        node = data
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        if value is None:
            del node[last]
        else:
            node[last] = value
    return change


CASES = {
    # item 17: wrong types crashed reproduce
    "seeds two": (_set("parts.table1.seeds", "two"), "parts.table1.seeds must be a whole"),
    "margin small": (_set("claims", {"margin_transfer": "small"}),
                     "claims.margin_transfer must be a non-negative number"),
    "old margin key": (_set("margin", "small"), "unknown key 'margin'"),
    "role not a list": (_set("roles.standard", 5), "roles.standard must be a list"),
    "datasets a list": (_set("datasets", ["retina"]), "datasets must be a mapping"),
    "source scores a list": (_set("source_scores", [0.7]), "source_scores must be a mapping"),
    "source score in percent": (_set("source_scores", {"cbr-small": 76.1}),
                                "source_scores.cbr-small must be a fraction"),
    "hybrid without arch": (_set("parts.convergence.hybrids", [{"init": "pretrained"}]),
                            "parts.convergence.hybrids[0].arch is missing"),
    "samples many": (_set("parts.representations.samples", "many"),
                     "parts.representations.samples must be a whole number"),
    "target high": (_set("parts.convergence.target", "high"),
                    "parts.convergence.target must be a number"),
    "target nan": (_set("parts.convergence.target", float("nan")),
                   "parts.convergence.target must be a number"),
    "too many seeds": (_set("parts.table1.seeds", 1_000_000_000),
                       f"seeds from 1 to {MAX_STUDY_SEEDS}"),
    "seed flag": (_set("parts.table1.seeds", True), "parts.table1.seeds must be a whole"),
    "data seed text": (_set("datasets.retina.data_seed", "zero"),
                       "datasets.retina.data_seed must be a whole number"),
    "option a list": (_set("datasets.retina.options", {"train_size": [1, 2]}),
                      "datasets.retina.options.train_size must be a single value"),
    "description a list": (_set("description", ["x"]), "description must be text"),
    "unknown part key": (_set("parts.table1.sedes", 2), "parts.table1: unknown key 'sedes'"),
    # item 24: a string where a list belongs was read letter by letter
    "archs a string": (_set("parts.table1.archs", "cbr-tiny"),
                       "parts.table1.archs must be a list of architecture names"),
    "inits a string": (_set("parts.table1.inits", "random"),
                       "parts.table1.inits must be a list of init names"),
    # item 24: names and fit values were checked only after the stand-in stage trained
    "unknown arch in the last part": (_set("parts.representations.archs", ["cbr-tinyy"]),
                                      "parts.representations.archs: Unknown architecture "
                                      "'cbr-tinyy'"),
    "unknown init": (_set("parts.table3.inits", ["random", "gabour"]), "Unknown init 'gabour'"),
    "bad init argument": (_set("parts.convergence.inits", ["transfusion:block9"]),
                          "Unknown block 'block9'"),
    "unknown dataset": (_set("datasets.retina.data", "synthetic-retinaa"),
                        "datasets.retina.data: Unknown dataset"),
    "unknown role arch": (_set("roles.small", ["cbr-tinny"]), "roles.small: Unknown "
                          "architecture"),
    "unknown measure": (_set("parts.representations.metric", "ccaa"),
                        "parts.representations.metric: Unknown metric"),
    "fit value text": (_set("fit.lr", "fast"), "'lr' must be float"),
    "negative steps": (_set("fit.steps", -5), "--steps must be at least 1"),
    "bad dataset fit": (_set("datasets.retina.fit", {"batch_size": 0}), "batch-size"),
    "bad stand-in fit": (_set("pretrained.stand_in.fit", {"steps": 0}),
                         "'source-synthetic-retina' sweep"),
    "cell field in fit": (_set("fit.arch", "cbr-tiny"), "'arch' is set per cell"),
    # item 25: seeds 0 trained the stand-in and then nothing
    "zero seeds": (_set("parts.table1.seeds", 0), "parts.table1.seeds must be a whole"),
    "negative seeds": (_set("parts.table1.seeds", -1), "parts.table1.seeds must be a whole"),
    # item 25: SLURM values passed unchecked
    "negative time": (_set("slurm", {"time_min": -5}), "slurm.time_min must be a whole number"),
    "partition with a newline": (_set("slurm", {"partition": "gpu\n#SBATCH --x"}),
                                 "slurm.partition must be one word"),
    "slurm a list": (_set("slurm", ["gpu"]), "slurm must be a mapping"),
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("report_only", [False, True], ids=["train", "report-only"])
def test_a_bad_profile_fails_before_any_work(tfx, tmp_path, case, report_only):
    change, says = CASES[case]
    data = copy.deepcopy(SMOKE)
    change(data)
    profile = tmp_path / "p.yaml"
    profile.write_text(yaml.safe_dump(data, sort_keys=False))
    before = snapshot_tree(tmp_path)
    result = tfx("reproduce", "--profile", profile, "-o", tmp_path / "study",
                 *(["--report-only"] if report_only else []))
    assert result.exit_code == 1 and result.stdout == ""
    line = result.error_line()
    assert str(profile) in line and says in line, line
    assert_tree_unchanged(tmp_path, before)


@pytest.mark.parametrize(("text", "says"), [
    ("- a\n- b\n", "must hold a mapping of profile keys"),
    ("a: &x [1, 2]\nb: *x\n", "aliases (*name) are not allowed"),
    ("name: [unclosed\n", "is not valid YAML"),
])
def test_a_profile_that_is_not_a_plan(tfx, tmp_path, text, says):
    profile = tmp_path / "p.yaml"
    profile.write_text(text)
    before = snapshot_tree(tmp_path)
    result = tfx("reproduce", "--profile", profile, "-o", tmp_path / "study")
    assert result.exit_code == 1 and says in result.error_line()
    assert_tree_unchanged(tmp_path, before)


@pytest.mark.parametrize(("flag", "value", "says"), [
    ("--time-min", "-5", "--time-min must be a whole number from 1"),
    ("--gpus-per-cell", "-1", "--gpus-per-cell must be a whole number from 0"),
    ("--mem-gb", "inf", "--mem-gb must be a number of GB above 0"),
    ("--partition", "gpu x", "--partition must be one word"),
])
@pytest.mark.parametrize("command", ["reproduce", "compare-inits"])
def test_slurm_flags_are_checked_before_any_file(tfx, tmp_path, command, flag, value, says):
    """Item 25: `--time-min -5` and friends were passed to SLURM unchecked; now the command
    fails before a study folder or plan.json exists."""
    args = (["reproduce", "--profile", "smoke"] if command == "reproduce" else
            ["compare-inits", "--data", "synthetic-retina", "--arch", "cbr-tiny",
             "--inits", "random"])
    before = snapshot_tree(tmp_path)
    result = tfx(*args, "--executor", "slurm", flag, value, "-o", tmp_path / "out")
    assert result.exit_code == 1 and says in result.error_line()
    assert_tree_unchanged(tmp_path, before)


@pytest.mark.parametrize("command", ["reproduce", "compare-inits"])
def test_a_bad_executor_leaves_no_plan(tfx, tmp_path, command, monkeypatch):
    """Item 25: an executor that cannot run (an unknown name; slurm without submitit) fails
    before plan.json (or the study folder) is written."""
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "submitit" else real(name, *a))
    args = (["reproduce", "--profile", "smoke"] if command == "reproduce" else
            ["compare-inits", "--data", "synthetic-retina", "--arch", "cbr-tiny",
             "--inits", "random"])
    before = snapshot_tree(tmp_path)
    for executor, says in (("nope", "'nope' is not one of"),
                           ("slurm", "pip install 'transfusion-cli[slurm]'")):
        result = tfx(*args, "--executor", executor, "-o", tmp_path / "out")
        assert result.exit_code in (1, 2) and says in result.error_line()
        assert_tree_unchanged(tmp_path, before)
