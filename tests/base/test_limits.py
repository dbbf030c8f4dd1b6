"""Bounds a user can hit (transfusion_cli/limits.py): each declared once, and whatever
`tfx fit` accepts, every later command loads."""

from __future__ import annotations

import dataclasses

import pytest
from input_files import SMALL
from tree_snapshot import assert_tree_unchanged, snapshot_tree

from transfusion_cli.data.build import check_image_size, max_image_size
from transfusion_cli.data.bundles import DatasetInfo
from transfusion_cli.deploy.export import model_metadata
from transfusion_cli.errors import CheckpointError, ConfigError
from transfusion_cli.limits import (
    DEFAULT_MAX_IMAGE_SIZE,
    IMAGE_SIZE_CEILING,
    MAX_IMAGE_SIZE_ENV,
    MAX_IN_CHANS,
    MIN_IMAGE_SIZE,
)
from transfusion_cli.models.checkpoint import load_checkpoint, make_checkpoint, save_checkpoint
from transfusion_cli.plugins import get
from transfusion_cli.train import resolve_config


def info_at(image_size: int) -> DatasetInfo:
    return DatasetInfo(name="fake", task="multiclass", class_names=("a", "b", "c"), channels=3,
                       image_size=image_size, mean=(0.5,) * 3, std=(0.25,) * 3)


def _checkpoint_at(tmp_path, image_size: int):
    info = info_at(image_size)
    model = get("architectures", "cbr-tiny").build(num_classes=info.num_outputs, in_chans=3)
    checkpoint = make_checkpoint(model, "cbr-tiny", info)
    return checkpoint, save_checkpoint(checkpoint, tmp_path / f"at{image_size}.pt")


def test_the_guard_sits_below_the_ceiling():
    assert MIN_IMAGE_SIZE <= DEFAULT_MAX_IMAGE_SIZE <= IMAGE_SIZE_CEILING


def test_a_size_fit_accepted_under_a_raised_guard_loads_without_it(tmp_path, monkeypatch):
    size = DEFAULT_MAX_IMAGE_SIZE * 2
    monkeypatch.delenv(MAX_IMAGE_SIZE_ENV, raising=False)
    with pytest.raises(ConfigError, match=MAX_IMAGE_SIZE_ENV):
        check_image_size(size)  # the typo guard
    monkeypatch.setenv(MAX_IMAGE_SIZE_ENV, str(size))
    check_image_size(size)  # what fit accepts on the training machine
    monkeypatch.delenv(MAX_IMAGE_SIZE_ENV)
    checkpoint, path = _checkpoint_at(tmp_path, size)
    assert load_checkpoint(path)["dataset"]["image_size"] == size  # loads anywhere
    assert model_metadata(checkpoint, info_at(size), size, "0" * 64).problem() is None


def test_the_guard_cannot_be_raised_above_the_ceiling(monkeypatch):
    monkeypatch.setenv(MAX_IMAGE_SIZE_ENV, str(IMAGE_SIZE_CEILING))
    assert max_image_size() == IMAGE_SIZE_CEILING
    monkeypatch.setenv(MAX_IMAGE_SIZE_ENV, str(IMAGE_SIZE_CEILING + 1))
    with pytest.raises(ConfigError, match=str(IMAGE_SIZE_CEILING)):
        max_image_size()


@pytest.mark.parametrize("size", [MIN_IMAGE_SIZE - 1, IMAGE_SIZE_CEILING + 1])
def test_a_model_file_outside_the_bounds_is_refused(tmp_path, size):
    checkpoint, path = _checkpoint_at(tmp_path, size)
    with pytest.raises(CheckpointError, match="image_size"):
        load_checkpoint(path)
    metadata = model_metadata(checkpoint, info_at(size), size, "0" * 64)
    assert "image size" in metadata.problem()
    assert dataclasses.replace(metadata, image_size=MIN_IMAGE_SIZE).problem() is None


def test_fit_refuses_sizes_and_channels_a_checkpoint_could_not_hold():
    with pytest.raises(ConfigError, match="--in-chans"):
        resolve_config(None, {"in_chans": MAX_IN_CHANS + 1, "steps": 1})
    with pytest.raises(ConfigError, match="--image-size"):
        resolve_config(None, {"image_size": MIN_IMAGE_SIZE - 1, "steps": 1})
    config = resolve_config(None, {"in_chans": MAX_IN_CHANS, "image_size": MIN_IMAGE_SIZE,
                                   "steps": 1})
    assert (config.in_chans, config.image_size) == (MAX_IN_CHANS, MIN_IMAGE_SIZE)


def test_image_size_has_an_upper_bound(tfx, tmp_path, monkeypatch):
    from transfusion_cli.data.build import max_image_size

    before = snapshot_tree(tmp_path)
    result = tfx("fit", *SMALL[2:], "--image-size", "5000", "--steps", "1", "--out",
                 tmp_path / "run")
    assert result.exit_code == 1
    line = result.error_line()
    assert "--image-size 5000" in line and "TFX_MAX_IMAGE_SIZE" in line
    assert_tree_unchanged(tmp_path, before)
    monkeypatch.setenv("TFX_MAX_IMAGE_SIZE", "8192")
    assert max_image_size() == 8192
    monkeypatch.setenv("TFX_MAX_IMAGE_SIZE", "big")
    result = tfx("data", "stats", "--data", "synthetic-retina", "--image-size", "64")
    assert result.exit_code == 1 and "TFX_MAX_IMAGE_SIZE" in result.error_line()
