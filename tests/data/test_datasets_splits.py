"""Patient-level splits: groups stay together, seeded, stratified, recorded for split.json."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from transfusion_cli.data.splits import check_fractions, group_split, split_manifest, stratum_keys
from transfusion_cli.errors import ConfigError


@settings(max_examples=60, deadline=None)
@given(groups=st.lists(st.integers(0, 30), min_size=1, max_size=120),
       val=st.floats(0.0, 0.45), test=st.floats(0.0, 0.45), seed=st.integers(0, 1000))
def test_every_item_in_exactly_one_split_and_groups_never_straddle(groups, val, test, seed):
    strata = [g % 3 for g in groups]
    result = group_split(groups, strata, {"val": val, "test": test}, seed)
    joined = np.concatenate(list(result.values()))
    assert sorted(joined.tolist()) == list(range(len(groups)))
    owner = {}
    for name, indices in result.items():
        for i in indices:
            assert owner.setdefault(groups[i], name) == name
    assert len(result["train"]) > 0


def test_seeded_and_independent_of_row_order():
    groups = [f"p{i // 2}" for i in range(200)]
    strata = [(i // 2) % 5 for i in range(200)]
    a = group_split(groups, strata, {"val": 0.1, "test": 0.2}, seed=3)
    b = group_split(groups, strata, {"val": 0.1, "test": 0.2}, seed=3)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    order = np.random.default_rng(0).permutation(200)
    shuffled = group_split([groups[i] for i in order], [strata[i] for i in order],
                           {"val": 0.1, "test": 0.2}, seed=3)
    for name in a:
        assert {groups[i] for i in a[name]} == {groups[order[i]] for i in shuffled[name]}
    other = group_split(groups, strata, {"val": 0.1, "test": 0.2}, seed=4)
    assert not np.array_equal(a["test"], other["test"])


def test_fractions_are_met_on_many_patients():
    rng = np.random.default_rng(0)
    groups = rng.integers(0, 5000, 12000).tolist()
    strata = [g % 5 for g in groups]
    result = group_split(groups, strata, {"val": 0.1, "test": 0.2}, seed=0)
    patients = {k: len({groups[i] for i in v}) for k, v in result.items()}
    total = sum(patients.values())
    assert abs(patients["val"] / total - 0.1) < 0.01
    assert abs(patients["test"] / total - 0.2) < 0.01


def test_small_classes_reach_every_split_and_group_takes_highest_grade():
    # 3 patients of the rare grade 4: one each for train, val and test.
    groups = ["a", "a", "b", "b", "c", "c"] + [f"n{i}" for i in range(30)]
    strata = [4, 0, 4, 4, 4, 4] + [0] * 30
    result = group_split(groups, strata, {"val": 0.1, "test": 0.1}, seed=0)
    for name in ("train", "val", "test"):
        assert {groups[i] for i in result[name]} & {"a", "b", "c"}, name


def test_fractions_that_leave_nothing_to_train_on_are_refused():
    with pytest.raises(ConfigError, match="keep their sum below 1"):
        check_fractions("retina", 0.5, 0.5)


def test_stratum_keys_and_manifest():
    assert stratum_keys(np.array([2, 0, 4]), "multiclass") == [2, 0, 4]
    assert stratum_keys(np.array([[0, np.nan], [np.nan, 1.0]]), "multilabel") == [0, 1]
    groups = ["p1", "p1", "p2", "p3"]
    manifest = split_manifest("patient", groups, {"train": np.array([0, 1, 3]),
                                                  "val": np.array([2])}, seed=7, dataset="x")
    assert manifest["patients"] == {"train": ["p1", "p3"], "val": ["p2"]}
    assert manifest["counts"]["train"] == {"patients": 2, "images": 3}
    assert manifest["seed"] == 7 and manifest["dataset"] == "x"
