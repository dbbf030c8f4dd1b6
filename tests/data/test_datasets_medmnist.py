"""medmnist: the real MedMNIST files, task inference, resizing through the cache, bad files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from datasets_fixtures import shared_file
from PIL import Image

from transfusion_cli.data.build import build_dataset
from transfusion_cli.errors import DataError

# Every test starts from an empty image cache (the cache_dir fixture of conftest.py).
pytestmark = pytest.mark.usefixtures("cache_dir")


def stack(split) -> np.ndarray:
    return np.stack([split[i][0].numpy() for i in range(len(split))])


def test_retinamnist_fixture_is_graded_like_retina():
    path = shared_file("medmnist", "retinamnist_fixture.npz")
    bundle = build_dataset("medmnist", data_dir=path)
    info = bundle.info
    assert (len(bundle.train), len(bundle.val), len(bundle.test)) == (20, 10, 20)
    assert info.task == "multiclass" and info.num_outputs == 5 and info.channels == 3
    assert info.referable_threshold == 2 and info.selection_metric == "referable_auc"
    assert info.image_size == 28 and info.options["native_size"] == 28
    with np.load(path) as npz:
        np.testing.assert_array_equal(stack(bundle.val), npz["val_images"].transpose(0, 3, 1, 2))
        np.testing.assert_array_equal(bundle.test.labels, npz["test_labels"][:, 0])
    assert bundle.train[0][1].dtype.is_floating_point is False


def test_pneumoniamnist_fixture_is_binary_grayscale():
    path = shared_file("medmnist", "pneumoniamnist_fixture.npz")
    bundle = build_dataset("medmnist", data_dir=path)
    assert bundle.info.task == "binary" and bundle.info.num_outputs == 1
    assert bundle.info.class_names == ("normal", "pneumonia") and bundle.info.channels == 1
    assert bundle.info.selection_metric == "auc"
    with np.load(path) as npz:
        np.testing.assert_array_equal(stack(bundle.test), npz["test_images"][:, None])
    image, target = bundle.train[0]
    assert image.shape == (1, 28, 28) and target.dtype.is_floating_point


def test_full_retinamnist_counts_and_resize_match_pillow():
    path = shared_file("medmnist", "retinamnist.npz")
    bundle = build_dataset("medmnist", data_dir=path, image_size=64)
    assert (len(bundle.train), len(bundle.val), len(bundle.test)) == (1080, 120, 400)
    assert np.bincount(bundle.test.labels).tolist() == [174, 46, 92, 68, 20]
    with np.load(path) as npz:
        raw = npz["val_images"]
    for index in (0, 57, 119):
        expected = np.asarray(Image.fromarray(raw[index]).resize((64, 64),
                                                                  Image.Resampling.BILINEAR))
        np.testing.assert_array_equal(bundle.val[index][0].numpy(), expected.transpose(2, 0, 1))


def test_full_pneumoniamnist_counts():
    bundle = build_dataset("medmnist", data_dir=shared_file("medmnist", "pneumoniamnist.npz"))
    assert (len(bundle.train), len(bundle.val), len(bundle.test)) == (3882, 524, 624)
    assert np.bincount(bundle.train.labels.astype(int)).tolist() == [388, 3494]


def test_folder_with_subset_option(tmp_path):
    folder = shared_file("medmnist")
    bundle = build_dataset("medmnist", data_dir=folder,
                           options={"subset": "pneumoniamnist_fixture"})
    assert bundle.info.task == "binary"
    with pytest.raises(DataError, match="several .npz files.*--option subset=NAME"):
        build_dataset("medmnist", data_dir=folder)
    with pytest.raises(DataError, match=r"nope\.npz does not exist.*retinamnist_fixture"):
        build_dataset("medmnist", data_dir=folder, options={"subset": "nope"})


def write_npz(path: Path, images: dict[str, np.ndarray], labels: dict[str, np.ndarray]) -> Path:
    np.savez_compressed(path, **{f"{k}_images": v for k, v in images.items()},
                        **{f"{k}_labels": v for k, v in labels.items()})
    return path


def tiny(n: int, shape=(8, 8), width: int = 1, top: int = 2, seed: int = 0):
    rng = np.random.default_rng(seed)
    images = {s: rng.integers(0, 255, (n, *shape), dtype=np.uint8) for s in ("train", "val",
                                                                              "test")}
    labels = {s: (np.add.outer(np.arange(n), np.arange(width)) % (top + 1)).astype(np.uint8)
              for s in ("train", "val", "test")}
    return images, labels


def test_task_is_inferred_from_labels_of_unknown_files(tmp_path):
    images, labels = tiny(6, top=2)
    bundle = build_dataset("medmnist", data_dir=write_npz(tmp_path / "mine.npz", images, labels))
    assert bundle.info.task == "multiclass" and bundle.info.class_names == ("0", "1", "2")
    images, labels = tiny(6, width=3, top=1)
    bundle = build_dataset("medmnist", data_dir=write_npz(tmp_path / "ml.npz", images, labels))
    assert bundle.info.task == "multilabel" and bundle.train.labels.shape == (6, 3)
    assert bundle.info.selection_metric == "mean_auc"
    images, labels = tiny(6, width=14, top=1)
    bundle = build_dataset("medmnist", data_dir=write_npz(tmp_path / "chestmnist_64.npz",
                                                          images, labels))
    assert bundle.info.class_names[0] == "atelectasis" and bundle.info.task == "multilabel"


def test_bad_files_give_one_line_errors(tmp_path):
    with pytest.raises(DataError, match=r"needs a MedMNIST \.npz file.*zenodo"):
        build_dataset("medmnist")
    images, labels = tiny(6)
    del images["test"]
    with pytest.raises(DataError, match="has no test_images.*train/val/test _images and _labels"):
        build_dataset("medmnist", data_dir=write_npz(tmp_path / "a.npz", images, labels))
    images, labels = tiny(10, shape=(8, 8, 3), top=4)
    labels["val"][3, 0] = 7
    with pytest.raises(DataError, match=r"val_labels\[3\] is \[7\], outside 0-4"):
        build_dataset("medmnist", data_dir=write_npz(tmp_path / "retinamnist.npz", images,
                                                     labels))
    images, labels = tiny(4, shape=(8, 8, 8))
    with pytest.raises(DataError, match="not the 3D ones"):
        build_dataset("medmnist", data_dir=write_npz(tmp_path / "organmnist3d.npz", images,
                                                     labels))
    images, labels = tiny(6, top=1)
    labels["val"] = np.zeros((6, 1), dtype=np.uint8)
    with pytest.raises(DataError, match="Class '1' has no images in the val split"):
        build_dataset("medmnist", data_dir=write_npz(tmp_path / "b.npz", images, labels))
    (tmp_path / "broken.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError, match=r"Cannot read .*broken\.npz as an \.npz file"):
        build_dataset("medmnist", data_dir=tmp_path / "broken.npz")
