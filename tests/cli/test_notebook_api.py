"""What commands compute is a library call a notebook can make (``transfusion_cli.notebook``)."""

from __future__ import annotations

import inspect

import pytest
from export_helpers import FakeDatasets, make_ckpt, retina_info

from transfusion_cli import notebook
from transfusion_cli.commands.similarity_cmd import similarity_command
from transfusion_cli.errors import CheckpointError, ConfigError
from transfusion_cli.similarity.compare_checkpoints import DEFAULT_METRICS


@pytest.fixture
def checkpoints(fake_registry, tmp_path):
    fake_registry(FakeDatasets())
    run = tmp_path / "run" / "checkpoints"
    run.mkdir(parents=True)
    init = make_ckpt(run / "init.pt", "cbr-tiny", retina_info(32), seed=0)
    best = make_ckpt(run / "best.pt", "cbr-tiny", retina_info(32), seed=1)
    return init, best


def test_compare_checkpoints_returns_results_for_each_layer(checkpoints):
    init, best = checkpoints
    result = notebook.compare_checkpoints(init, best, metrics="cka", samples=16, batch_size=8,
                                     device="cpu")
    assert result.metrics == ["cka"] and len(result.probe) == 16
    assert [r.layer_a for r in result.comparisons[0].results] == [
        "block1", "block2", "block3", "block4", "head"]
    result = notebook.compare_checkpoints(init, best, metrics="cka", layers="block1,head",
                                     samples=16, batch_size=8, device="cpu",
                                     against=[init.parent.parent])
    first, against = result.comparisons
    assert [r.layer_a for r in against.results] == ["block1", "head"]
    assert all(0 <= r.metrics["cka"].value <= 1 + 1e-9 for r in first.results)
    # The run folder compared with its own init: the same pair of checkpoints.
    assert [r.metrics["cka"].value for r in against.results] == pytest.approx(
        [r.metrics["cka"].value for r in first.results])
    self_similarity = notebook.compare_checkpoints(best, best, metrics=["cka"], layers="head",
                                              samples=16, batch_size=8, device="cpu")
    assert self_similarity.comparisons[0].results[0].metrics["cka"].value == pytest.approx(1.0)


def test_compare_checkpoints_errors_name_the_fix(checkpoints, tmp_path):
    init, best = checkpoints
    with pytest.raises(ConfigError, match="Unknown layer 'block9'"):
        notebook.compare_checkpoints(init, best, layers="block9", device="cpu")
    with pytest.raises(CheckpointError, match="no init.pt beside it"):
        notebook.compare_checkpoints(init, best, against=[init], device="cpu")
    with pytest.raises(ConfigError, match="--measure is empty"):
        notebook.compare_checkpoints(init, best, metrics=" , ", device="cpu")


def test_the_command_and_the_library_share_the_default_metrics():
    default = inspect.signature(similarity_command).parameters["measure"].default.default
    assert default == ",".join(DEFAULT_METRICS)
    assert inspect.signature(notebook.compare_checkpoints).parameters["metrics"].default == \
        DEFAULT_METRICS


def test_label_stats_and_spec_rows(fake_registry):
    fake_registry(FakeDatasets())
    bundle = notebook.build_dataset("fake-retina", image_size=16)
    stats = notebook.label_stats(bundle)
    assert stats["splits"]["train"]["images"] == 48
    assert sum(stats["splits"]["train"]["classes"].values()) == 48
    inits = {row["name"]: row for row in notebook.spec_rows("inits")}
    assert inits["transfusion"]["takes_argument"] and inits["imagenet"]["needs_weights"]
    assert not inits["random"]["needs_weights"]
    summary = notebook.architecture_summary(notebook.get("architectures", "cbr-tiny"))
    assert summary == {"params": 1_079_845,
                       "blocks": ["block1", "block2", "block3", "block4", "head"]}
    with pytest.raises(ConfigError, match="choose one of"):
        notebook.spec_rows("widgets")
