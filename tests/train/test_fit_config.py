"""`tfx fit` configuration: YAML + flags, unknown keys, validation, subsets, samplers, losses."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import yaml
from fit_helpers import copy_run
from tree_snapshot import assert_tree_unchanged, snapshot_tree

from transfusion_cli.errors import ConfigError
from transfusion_cli.train import FitConfig, resolve_config, task_loss
from transfusion_cli.train.config import resume_config
from transfusion_cli.train.loaders import train_subset_indices
from transfusion_cli.train.state import EpochBatchSampler, capture_rng, restore_rng


def write(path, data):
    path.write_text(yaml.safe_dump(data))
    return path


def test_defaults_are_the_quick_start():
    config = resolve_config()
    assert (config.data, config.arch, config.init) == ("synthetic-retina", "cbr-tiny", "random")
    assert config.epochs and config.steps is None and config.image_size is None


def test_flags_win_over_the_file_and_options_merge(tmp_path):
    path = write(tmp_path / "c.yaml", {"lr": 0.01, "batch_size": 16, "options": {"a": 1, "b": 2},
                                       "epochs": 3})
    config = resolve_config(path, {"lr": 0.5, "options": {"b": "9"}, "steps": 7})
    assert config.lr == 0.5 and config.batch_size == 16
    assert config.options == {"a": 1, "b": "9"}
    assert config.steps == 7 and config.epochs is None  # steps from the flags replace epochs


def test_unknown_key_is_one_line_error_with_suggestion(tmp_path):
    path = write(tmp_path / "c.yaml", {"epoch": 3})
    with pytest.raises(ConfigError, match=r"unknown key 'epoch'\. Did you mean 'epochs'\?") as e:
        resolve_config(path)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize(("data", "message"), [
    ({"batch_size": "big"}, "'batch_size' must be int"),
    ({"lr": True}, "'lr' must be a number"),
    ({"epochs": 2, "steps": 5}, "either epochs or steps"),
    ({"batch_size": 0}, "at least 1"),
    ({"optimizer": "adma"}, "Did you mean 'adam'"),
    ({"lr": -1.0}, "--lr must be positive"),
])
def test_bad_values_are_config_errors(tmp_path, data, message):
    with pytest.raises(ConfigError, match=message):
        resolve_config(write(tmp_path / "c.yaml", data))


def test_config_round_trips_through_yaml(tmp_path):
    config = resolve_config(None, {"data": "x", "steps": 5, "options": {"k": "v"}, "amp": False,
                                   "weights": "w.safetensors", "eval_every": 2})
    path = write(tmp_path / "config.yaml", config.to_dict())
    again = resolve_config(path)
    assert again == config


def test_resume_refuses_changes_that_alter_the_run(tmp_path):
    write(tmp_path / "config.yaml", FitConfig(steps=10, epochs=None, out=str(tmp_path)).to_dict())
    config = resume_config(tmp_path, {"steps": 20, "workers": 0})
    assert config.steps == 20 and config.resume == str(tmp_path)
    with pytest.raises(ConfigError, match="Cannot change --lr"):
        resume_config(tmp_path, {"lr": 0.1})


@pytest.mark.parametrize("name, flag", [("data_dir", "--data-dir"), ("weights", "--weights")])
def test_input_paths_are_stored_absolute_and_the_same_path_is_no_change_on_resume(
        tmp_path, monkeypatch, name, flag):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    config = resolve_config(None, {name: "data/../data/eyes", "steps": 1})
    assert getattr(config, name) == str(tmp_path / "data" / "eyes")
    assert getattr(resolve_config(None, {name: "~/eyes"}), name) == str(tmp_path / "home/eyes")
    assert getattr(resolve_config(None, {}), name) is None  # not given
    run = tmp_path / "run"
    run.mkdir()
    (tmp_path / "home").mkdir()
    write(run / "config.yaml", config.to_dict())
    monkeypatch.chdir(tmp_path / "home")  # elsewhere, the stored path is still the one read
    assert getattr(resume_config(run, {"steps": 2}), name) == str(tmp_path / "data" / "eyes")
    assert resume_config(run, {name: "../data/eyes"}).steps == 1  # same path
    with pytest.raises(ConfigError, match=f"Cannot change {flag}"):
        resume_config(run, {name: "data/eyes"})  # relative to here: another path


def test_train_size_subset_is_seeded_and_stratified():
    labels = np.repeat(np.arange(5), [40, 20, 20, 10, 10])
    first = train_subset_indices(labels, 50, "multiclass", seed=3)
    assert np.array_equal(first, train_subset_indices(labels, 50, "multiclass", seed=3))
    assert not np.array_equal(first, train_subset_indices(labels, 50, "multiclass", seed=4))
    assert np.bincount(labels[first]).tolist() == [20, 10, 10, 5, 5]
    assert len(set(first)) == 50
    with pytest.raises(ConfigError, match="larger than the training split"):
        train_subset_indices(labels, 101, "multiclass", seed=0)


def test_epoch_sampler_order_is_a_function_of_seed_epoch_and_position():
    sampler = EpochBatchSampler(20, 4, seed=1)
    sampler.set_position(2, 0)
    full = list(sampler)
    assert len(full) == 5 and sorted(sum(full, [])) == list(range(20))
    sampler.set_position(2, 3)
    assert list(sampler) == full[3:]
    sampler.set_position(3, 0)
    assert list(sampler) != full
    # Two ranks split each global batch of 2 x 4 and never overlap; the tail (4) is dropped.
    ranks = [EpochBatchSampler(20, 4, seed=1, rank=r, world_size=2) for r in (0, 1)]
    for r in ranks:
        r.set_position(2, 0)
    batches = [list(r) for r in ranks]
    assert len(batches[0]) == 2
    seen = sum(batches[0] + batches[1], [])
    assert len(seen) == len(set(seen)) == 16


def test_rng_state_is_plain_and_restores():
    import random

    state = capture_rng()
    a = (torch.rand(3), np.random.rand(2), random.random())
    restore_rng(state)
    b = (torch.rand(3), np.random.rand(2), random.random())
    assert torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2]
    assert isinstance(state["numpy"]["keys"], list)
    assert isinstance(state["python"]["internal"], list)


def test_losses():
    logits = torch.tensor([[2.0, -1.0], [0.5, 0.25]])
    targets = torch.tensor([[1.0, float("nan")], [0.0, 1.0]])
    # Masked BCE: mean over the 3 labelled entries only.
    def bce(z, y):
        p = 1 / (1 + math.exp(-z))
        return -(y * math.log(p) + (1 - y) * math.log(1 - p))
    expected = (bce(2.0, 1) + bce(0.5, 0) + bce(0.25, 1)) / 3
    assert task_loss(logits, targets, "multilabel").item() == pytest.approx(expected, rel=1e-6)
    binary = task_loss(torch.tensor([[0.3], [-2.0]]), torch.tensor([1.0, 0.0]), "binary")
    assert binary.item() == pytest.approx((bce(0.3, 1) + bce(-2.0, 0)) / 2, rel=1e-6)
    multi = task_loss(torch.tensor([[1.0, 2.0, 3.0]]), torch.tensor([2]), "multiclass")
    assert multi.item() == pytest.approx(-math.log(math.exp(3) / (math.exp(1) + math.exp(2)
                                                                 + math.exp(3))), rel=1e-6)


@pytest.mark.parametrize("switch", ["overwrite: true", "resume: SOMEWHERE"])
def test_destructive_switches_in_a_config_file_are_errors(fit_fakes, tfx, fake_retina_run, tmp_path,
                                                           switch):
    run = copy_run(fake_retina_run, tmp_path)
    config = tmp_path / "settings.yaml"
    config.write_text((run / "config.yaml").read_text().replace("overwrite: false", "")
                      .replace("resume: null", "") + switch.replace("SOMEWHERE", str(run)) + "\n")
    before = snapshot_tree(tmp_path)
    result = tfx("fit", "--config", config)
    assert result.exit_code == 1
    line = result.error_line()
    key = switch.split(":")[0]
    assert str(config) in line and f"'{key}:" in line and f"pass --{key} on the command line" \
        in line
    assert_tree_unchanged(tmp_path, before)
    # The run's own config.yaml (overwrite: false, resume: null) still reruns as before.
    result = tfx("fit", "--config", run / "config.yaml", "--out", tmp_path / "again")
    assert result.exit_code == 0, result.stderr
