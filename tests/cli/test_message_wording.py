"""Messages say true things: pixel counts below a million are not "0 million", and `tfx
figures` does not advise a --spatial flag it does not have (issue 20, item 24)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fit_helpers import one_thread
from input_files import image_folder
from tree_snapshot import assert_tree_unchanged, snapshot_tree

from transfusion_cli.data.preprocess import pixel_count


def test_pixel_counts_read_as_numbers():
    assert pixel_count(1_000) == "1,000 pixels"
    assert pixel_count(999_999) == "999,999 pixels"
    assert pixel_count(1_500_000) == "1.5 million pixels"
    assert pixel_count(178_956_970) == "179 million pixels"  # Pillow's default limit
    assert pixel_count(400_000_000) == "400 million pixels"


def test_an_image_over_a_small_pixel_limit_is_counted_exactly(tfx, tmp_path):
    data = image_folder(tmp_path / "data", per_class=4, size=40)
    before = snapshot_tree(tmp_path)
    result = tfx("data", "show", "--data", "image-folder", "--data-dir", data, "--image-size", "32",
                 "--out", tmp_path / "sheet.png", env={"TFX_MAX_IMAGE_PIXELS": "1000"})
    assert result.exit_code == 1
    line = result.error_line()
    assert "is 40x40 (1,600 pixels), more than tfx decodes (1,000 pixels;" in line
    assert "0 million" not in line
    assert_tree_unchanged(tmp_path, before)


@pytest.fixture(scope="module")
def small_sweep(tfx, tmp_path_factory) -> Path:
    """Two finished random-init cbr-tiny cells whose validation split (8 images) is too small
    for CCA at block3."""
    root = tmp_path_factory.mktemp("wording") / "sweep"
    with one_thread():
        result = tfx("compare-inits", "--data", "synthetic-retina", "--image-size", "32",
                     "--batch-size", "8", "--option", "train_size=16", "--option", "val_size=8",
                     "--option", "test_size=8", "--arch", "cbr-tiny", "--inits", "random",
                     "--seeds", "2", "--steps", "1", "--out", root)
    assert result.exit_code == 0, result.stderr
    return root


def test_figures_advise_only_flags_it_has(tfx, small_sweep, tmp_path):
    with one_thread():
        result = tfx("figures", "layers", small_sweep, "--out", tmp_path / "figs")
    assert result.exit_code == 1
    line = result.error_line()
    assert "the probe split has only 8 images, too few for cca" in line
    assert "--split train" in line and "--measure cka" in line  # flags of `tfx figures`
    assert "--spatial" not in result.stderr


def test_similarity_still_advises_spatial():
    """`tfx similarity` has --spatial: its advice keeps it; the figures' cache drops it."""
    from transfusion_cli.plugins import get
    from transfusion_cli.similarity.activations import PointPlan
    from transfusion_cli.similarity.analysis import SimilarityError, check_points

    plan = PointPlan(shape_a=(128, 4, 4), shape_b=(128, 4, 4), grid=(4, 4), per_input=16,
                     inputs=8)
    cca = [get("metrics", "cca")]
    with pytest.raises(SimilarityError, match="keep more positions with --spatial"):
        check_points(plan, ("block3", "block3"), cca, available=8)
    with pytest.raises(SimilarityError) as refused:
        check_points(plan, ("block3", "block3"), cca, available=8, spatial_flag=False)
    assert "--spatial" not in str(refused.value)
