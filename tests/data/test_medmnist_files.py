"""medmnist .npz files that are broken or wrong (object arrays, NaN labels, float images,
truncated, empty, text, labels out of range): one line naming the file and the array."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from tree_snapshot import assert_tree_unchanged, snapshot_tree


def _medmnist(folder: Path, **override) -> Path:
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 40), ("val", 16), ("test", 16)):
        arrays[f"{split}_images"] = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        arrays[f"{split}_labels"] = (np.arange(n) % 2).reshape(-1, 1).astype(np.uint8)
    arrays.update(override)
    folder.mkdir(parents=True)
    np.savez(folder / "data.npz", **arrays)
    return folder / "data.npz"


NPZ_CASES = {
    "object_labels": ({"train_labels": np.array([[1]] * 40, dtype=object)}, "Python objects"),
    "nan_labels": ({"train_labels": np.where(np.arange(40)[:, None] == 3, np.nan, 1.0)},
                   "train_labels[3] is not a number"),
    "float_images": ({"train_images": np.random.default_rng(0).random((40, 28, 28))},
                     "train_images holds float64"),
}


@pytest.mark.parametrize("case", [*sorted(NPZ_CASES), "truncated", "empty"])
def test_a_broken_npz_is_one_line_naming_it(tfx, tmp_path, cache_dir, case):
    if case in NPZ_CASES:
        path = _medmnist(tmp_path / case, **NPZ_CASES[case][0])
        expected = NPZ_CASES[case][1]
    else:
        path = _medmnist(tmp_path / case)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2] if case == "truncated" else b"")
        expected = "complete" if case == "truncated" else "empty (0 bytes)"
    before = snapshot_tree(tmp_path)
    result = tfx("data", "stats", "--data", "medmnist", "--data-dir", path.parent)
    assert result.exit_code == 1
    line = result.error_line()
    assert str(path) in line and expected in line
    assert_tree_unchanged(tmp_path, before)


def test_out_of_range_labels_name_the_value(tfx, tmp_path):
    from transfusion_cli.data.bundles import DatasetInfo
    from transfusion_cli.data.files import check_splits
    from transfusion_cli.errors import DataError

    info = DatasetInfo("x", "multiclass", ("a", "b", "c"), 3, 32, (0.5,) * 3, (0.2,) * 3)
    labels = {"train": np.array([0, 1, 2, 7, 7]), "val": np.array([0, 1, 2])}
    with pytest.raises(DataError, match=r"label 7 \(2 image\(s\) with labels outside 0\.\.2\)"):
        check_splits(info, labels, "fix it")

    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 40), ("val", 16), ("test", 16)):
        arrays[f"{split}_images"] = rng.integers(0, 256, (n, 28, 28, 3), dtype=np.uint8)
        arrays[f"{split}_labels"] = (np.arange(n) % 5).reshape(-1, 1)
    arrays["train_labels"][3] = 9
    (tmp_path / "d").mkdir()
    np.savez(tmp_path / "d" / "retinamnist.npz", **arrays)
    result = tfx("data", "stats", "--data", "medmnist", "--data-dir", tmp_path / "d")
    assert result.exit_code == 1 and "train_labels[3] is [9]" in result.error_line()


def test_a_text_file_as_npz_is_not_a_zip_archive(tfx, tmp_path):
    folder = tmp_path / "d"
    folder.mkdir()
    (folder / "data.npz").write_text("this is a text file, not numpy\n" * 5)
    result = tfx("data", "stats", "--data", "medmnist", "--data-dir", folder)
    assert result.exit_code == 1
    line = result.error_line()
    assert "pickled" not in line and "not a zip archive" in line
