"""Names read from files (profile dataset keys, the study's name, plan.json cell ids) are
identifiers, never path components: nothing they name can land outside its folder; and a
built-in profile name is a name, a profile path a path (issue 20, items 7 and 11)."""

from __future__ import annotations

import json

import pytest
from input_files import SMALL
from tree_snapshot import assert_tree_unchanged, snapshot_tree

from transfusion_cli.errors import ConfigError
from transfusion_cli.reproduce.study import profile_path
from transfusion_cli.runfolder import StudyFolder, SweepFolder, check_name


def _profile(tmp_path, old: str, new: str):
    text = profile_path("smoke").read_text()
    assert old in text
    path = tmp_path / "p.yaml"
    path.write_text(text.replace(old, new, 1))
    return path


@pytest.mark.parametrize(("old", "new", "culprit"), [
    ("  retina:\n    data: synthetic-retina", "  /tmp/x:\n    data: synthetic-retina",
     "datasets: the key '/tmp/x'"),
    ("  retina:\n    data: synthetic-retina", "  ../..:\n    data: synthetic-retina",
     "datasets: the key '../..'"),
    ("name: smoke", "name: x/../../..", "name must be a plain name"),
    ("name: smoke", "name: ..", "name must be a plain name"),
])
def test_profile_names_cannot_leave_the_study(tfx, tmp_path, old, new, culprit):
    """Item 7: a dataset key or a study name that is a path is refused before anything is
    planned or trained; nothing is written inside or outside the study folder."""
    profile = _profile(tmp_path, old, new)
    before = snapshot_tree(tmp_path)
    result = tfx("reproduce", "--profile", profile, "-o", tmp_path / "study", "--report-only")
    assert result.exit_code == 1
    line = result.error_line()
    assert str(profile) in line and culprit in line
    assert_tree_unchanged(tmp_path, before)


@pytest.fixture
def sweep(tfx, tmp_path):
    """A planned (not trained) one-cell sweep."""
    result = tfx("compare-inits", "--data", "synthetic-retina", "--arch", "cbr-tiny", "--inits",
                 "random", "--seeds", "1", "--steps", "1", "--out", tmp_path / "sweep",
                 "--plan-only", *SMALL)
    assert result.exit_code == 0, result.stderr
    return tmp_path / "sweep"


@pytest.mark.parametrize("bad_id", ["../../escaped", "/tmp/escaped", "..", "a/b"])
def test_an_edited_cell_id_in_plan_json_cannot_escape_the_sweep(tfx, tmp_path, sweep, bad_id):
    """Item 7: `compare-inits --cell` with a cell id edited into plan.json trains nothing and
    writes no marker outside (or inside) the sweep."""
    plan = json.loads((sweep / "plan.json").read_text())
    plan["cells"][0]["id"] = bad_id
    (sweep / "plan.json").write_text(json.dumps(plan))
    before = snapshot_tree(tmp_path)
    for args in (["--cell", bad_id], ["--cell-index", "0"], []):
        result = tfx("compare-inits", "--out", sweep, *args)
        assert result.exit_code == 1
        line = result.error_line()
        assert "plan.json: cell id" in line and repr(bad_id) in line
        assert_tree_unchanged(tmp_path, before)
    result = tfx("compare-inits", "--report", sweep)
    assert result.exit_code == 1 and "cell id" in result.error_line()
    assert_tree_unchanged(tmp_path, before)


@pytest.mark.parametrize("name", ["../x", "/abs", "..", "a/b", "", ".hidden", "a\nb", 7])
def test_path_builders_refuse_names_that_are_paths(tmp_path, name):
    """Item 7, at the mechanism: every path built from a name goes through check_name."""
    with pytest.raises(ConfigError, match="not a plain name"):
        check_name(name, "name")
    with pytest.raises(ConfigError):
        StudyFolder(tmp_path).sweep(name)
    for build in (SweepFolder(tmp_path).run, SweepFolder(tmp_path).done_marker,
                  SweepFolder(tmp_path).cell_lock):
        with pytest.raises(ConfigError):
            build(name)
    assert check_name("cbr-tiny__transfusion-block1__nall__s0", "cell id")


@pytest.mark.parametrize("spec", ["../../../tmp/x", "/etc/hosts", "smoke.yaml", "paper/../smoke",
                                  "nope"])
def test_show_profile_takes_built_in_names_only(tfx, tmp_path, spec, monkeypatch):
    """Item 11: `--show-profile ../../../tmp/x` printed any readable .yaml; it prints only
    the built-in profiles."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "x.yaml").write_text("secret: 1\n")
    (tmp_path / "smoke.yaml").write_text("secret: 2\n")
    before = snapshot_tree(tmp_path)
    result = tfx("reproduce", "--show-profile", spec)
    assert result.exit_code == 1 and result.stdout == ""
    line = result.error_line()
    assert f"--show-profile {spec}" in line and "smoke, paper, medmnist" in line
    assert_tree_unchanged(tmp_path, before)


def test_show_profile_prints_the_built_in_profile(tfx):
    result = tfx("reproduce", "--show-profile", "smoke")
    assert result.exit_code == 0 and result.stdout == profile_path("smoke").read_text()


def test_profile_name_or_path(tfx, tmp_path, monkeypatch):
    """Item 11: `--profile NAME` looks among the built-ins only; a path must look like one
    (a separator, or .yaml)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mystudy").write_text(profile_path("smoke").read_text())
    result = tfx("reproduce", "--profile", "mystudy", "--report-only", "-o", tmp_path / "s")
    assert result.exit_code == 1
    line = result.error_line()
    assert "--profile mystudy: no built-in profile" in line and ".yaml" in line
    assert not (tmp_path / "s").exists()
