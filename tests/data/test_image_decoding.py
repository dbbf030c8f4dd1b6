"""Reading image files (data/preprocess.py): a decompression bomb or an image with NaN pixels
is one line naming the file, in `fit` as in a library call."""

from __future__ import annotations

import pytest
from input_files import bomb_png, image_folder, nan_tiff
from tree_snapshot import assert_tree_unchanged, snapshot_tree

SMALL_FIT = ["--image-size", "16", "--batch-size", "4", "--steps", "1"]


def test_a_decompression_bomb_is_a_bad_image_in_fit(tfx, tmp_path, cache_dir):
    data = image_folder(tmp_path / "data")
    bomb = bomb_png(data / "normal" / "bomb.png")
    big = bomb_png(data / "sick" / "big.png", side=10_000)  # above the limit, below 2x
    before = snapshot_tree(tmp_path)
    fit = ["fit", "--data", "image-folder", "--data-dir", data, "--image-size", "32",
           "--steps", "1", "-b", "8"]
    result = tfx(*fit, "--out", tmp_path / "run")
    assert result.exit_code == 1
    line = result.error_line()
    assert ("bomb.png" in line or "big.png" in line) and "--skip-bad-images" in line
    assert_tree_unchanged(tmp_path, before)  # no run folder
    # nothing cached
    assert not any(p.is_file() and p.name != ".lock" for p in cache_dir.rglob("*"))

    result = tfx(*fit, "--skip-bad-images", "--out", tmp_path / "run")
    assert result.exit_code == 0, result.stderr
    assert "unreadable image(s)" in result.stderr and "--skip-bad-images" in result.stderr
    assert (tmp_path / "run" / "checkpoints" / "best.pt").is_file()
    assert bomb.stat().st_size < 100_000 and big.exists()


def test_read_image_names_an_image_too_large(tmp_path, monkeypatch):
    from transfusion_cli.data.preprocess import read_image
    from transfusion_cli.errors import DataError

    bomb = bomb_png(tmp_path / "bomb.png")
    with pytest.raises(DataError, match="bomb.png is too large"):
        read_image(bomb)
    monkeypatch.setenv("TFX_MAX_IMAGE_PIXELS", "100")
    small = tmp_path / "small.png"
    image_folder(tmp_path / "x", per_class=1)
    with pytest.raises(DataError, match="40x40 .*TFX_MAX_IMAGE_PIXELS"):
        read_image(next((tmp_path / "x" / "normal").iterdir()))
    assert not small.exists()


def test_a_nan_tiff_stops_training_naming_the_file(tfx, tmp_path):
    data = image_folder(tmp_path / "D", per_class=6, size=24)
    tiff = nan_tiff(data / "sick" / "bad.tiff")
    before = snapshot_tree(data)
    result = tfx("fit", "--data", "image-folder", "--data-dir", data, "--option", "channels=1",
                 *SMALL_FIT, "--out", tmp_path / "run")
    assert result.exit_code == 1
    assert str(tiff) in result.error_line() and "NaN" in result.stderr
    assert_tree_unchanged(data, before)  # images are read lazily: only the new run is written
