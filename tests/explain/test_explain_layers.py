"""`tfx explain --layer` takes only layers Grad-CAM can explain (convolutional feature maps)
and names the ones that work (issue 20, item 20)."""

from __future__ import annotations

import pytest
from explain_helpers import noise_png
from fit_helpers import one_thread
from tree_snapshot import assert_tree_unchanged, snapshot_tree

WORKING = "block1, block2, block3, block4"


@pytest.mark.parametrize(("layer", "says"), [
    ("head", "--layer 'head' outputs shape (1, 5)"),  # the classifier: logits, no map
    ("", "--layer is empty"),
    ("  ", "--layer is empty"),
    ("pool", "--layer 'pool' outputs shape (1, 256, 1, 1)"),  # global pooling: 1x1
    ("block9", "--layer 'block9' is not a block or submodule"),
])
def test_a_layer_without_a_feature_map_is_one_error_listing_those_that_work(
        tfx, explain_checkpoint, tmp_path, layer, says):
    image = noise_png(tmp_path / "eye.png", seed=1)
    before = snapshot_tree(tmp_path)
    with one_thread():
        result = tfx("explain", explain_checkpoint, image, "--out", tmp_path / "h", "--layer",
                     layer)
    assert result.exit_code == 1 and result.stdout == ""
    line = result.error_line()
    assert says in line and WORKING in line, line
    assert_tree_unchanged(tmp_path, before)


def test_a_convolution_inside_a_block_works(tfx, explain_checkpoint, tmp_path):
    image = noise_png(tmp_path / "eye.png", seed=1)
    with one_thread():
        result = tfx("explain", explain_checkpoint, image, "--out", tmp_path / "h", "--layer",
                     "block3.0", "--method", "gradcam", check=True)
    assert "explained layer 'block3.0'" in result.stderr
    assert (tmp_path / "h" / "eye.gradcam.png").is_file()
