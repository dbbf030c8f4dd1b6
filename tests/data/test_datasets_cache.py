"""The preprocessed-image cache: filled once, atomic, keyed, memory-mapped, never in the data."""

from __future__ import annotations

import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
from datasets_fixtures import write_eyepacs
from input_files import image_folder, unwritable_folder
from tfx_plugins.preprocess.fundus import FUNDUS_CROP
from torch.utils.data import DataLoader
from tree_snapshot import assert_tree_unchanged, snapshot_tree

from transfusion_cli.data.build import build_dataset
from transfusion_cli.data.preprocess import load_prepared
from transfusion_cli.errors import DataError

# Every test starts from an empty image cache (the cache_dir fixture of conftest.py).
pytestmark = pytest.mark.usefixtures("cache_dir")


@pytest.fixture
def eyepacs(tmp_path) -> Path:
    return write_eyepacs(tmp_path / "eyepacs")


def tree(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*"))}


def read_all(split) -> list[np.ndarray]:
    return [split[i][0].numpy() for i in range(len(split))]


def test_first_read_fills_then_completes_atomically_and_is_reused(eyepacs, cache_dir, capsys):
    before = tree(eyepacs)
    bundle = build_dataset("retina", data_dir=eyepacs, image_size=32)
    train = bundle.train
    assert not list(cache_dir.rglob("images.u8*")), "building alone must not write a cache"
    first = read_all(train)
    err = capsys.readouterr().err
    assert "caching" in err and "image cache complete" in err
    folder = train.cache.directory
    assert folder.parent == cache_dir / "retina"
    assert (folder / "images.u8").is_file() and not (folder / "images.u8.partial").exists()
    assert not (folder / "filled.u8").exists()
    assert (folder / "images.u8").stat().st_size == len(train) * 32 * 32 * 3
    # Pixels are exactly what `tfx predict` computes for the same file.
    for index in (0, len(train) - 1):
        expected = load_prepared(train.paths[index], 32, 3, FUNDUS_CROP)
        np.testing.assert_array_equal(first[index], expected.transpose(2, 0, 1))

    again = build_dataset("retina", data_dir=eyepacs, image_size=32)
    assert "reusing the preprocessed-image cache" in capsys.readouterr().err
    assert again.train.cache.directory == folder
    np.testing.assert_array_equal(np.stack(read_all(again.train)), np.stack(first))
    assert tree(eyepacs) == before, "nothing may be written into the data folder"


def test_key_changes_with_size_options_and_file_contents(eyepacs):
    base = build_dataset("retina", data_dir=eyepacs, image_size=32).train.cache.directory
    other_size = build_dataset("retina", data_dir=eyepacs, image_size=40).train.cache.directory
    no_crop = build_dataset("retina", data_dir=eyepacs, image_size=32,
                            options={"fundus_crop": "false"}).train.cache.directory
    assert len({base, other_size, no_crop}) == 3
    assert other_size.name.startswith("train-40px-")
    image = next((eyepacs / "train").iterdir())
    os.utime(image, ns=(1, 1))
    assert build_dataset("retina", data_dir=eyepacs,
                         image_size=32).train.cache.directory != base


def test_loader_workers_fill_one_shared_cache(eyepacs):
    bundle = build_dataset("retina", data_dir=eyepacs, image_size=32)
    loader = DataLoader(bundle.train, batch_size=4, num_workers=2)
    epoch1 = np.concatenate([x.numpy() for x, _ in loader])
    cache = bundle.train.cache
    assert cache.is_complete() or cache.progress() == len(bundle.train)
    epoch2 = np.concatenate([x.numpy() for x, _ in loader])
    np.testing.assert_array_equal(epoch1, epoch2)
    assert cache.is_complete()
    state = pickle.loads(pickle.dumps(bundle.train))  # spawn-style workers reopen the files
    np.testing.assert_array_equal(state[0][0].numpy(), epoch1[0])


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])


def test_truncated_image_is_one_line_error_naming_the_file(eyepacs):
    victim = eyepacs / "train" / "10_left.jpeg"
    truncate(victim)
    bundle = build_dataset("retina", data_dir=eyepacs, image_size=32)
    split = next(s for s in (bundle.train, bundle.val, bundle.test) if "10_left" in s.ids)
    index = split.ids.index("10_left")
    with pytest.raises(DataError, match=r"10_left\.jpeg.*--skip-bad-images") as caught:
        split[index]
    assert "\n" not in str(caught.value)
    # Known bad images fail the next build at once, before any training starts.
    with pytest.raises(DataError, match=r"10_left\.jpeg is unreadable"):
        build_dataset("retina", data_dir=eyepacs, image_size=32)


def test_skip_bad_images_warns_with_a_count_and_leaves_them_out(eyepacs, capsys):
    truncate(eyepacs / "train" / "10_left.jpeg")
    (eyepacs / "train" / "13_right.jpeg").unlink()
    bundle = build_dataset("retina", data_dir=eyepacs, image_size=32, skip_bad_images=True)
    err = capsys.readouterr().err
    assert "Skipped 1 of 42 images listed in" in err and "13_right.jpeg" in err
    assert "skipped 1 unreadable image(s)" in err and "10_left.jpeg" in err
    ids = bundle.train.ids + bundle.val.ids + bundle.test.ids
    assert "10_left" not in ids and "13_right" not in ids and len(ids) == 40
    for split in (bundle.train, bundle.val, bundle.test):
        assert len(split.labels) == len(split)
        read_all(split)
    again = build_dataset("retina", data_dir=eyepacs, image_size=32, skip_bad_images=True)
    assert len(again.train) + len(again.val) + len(again.test) == 40


def test_missing_image_without_skip_names_count_file_and_line(eyepacs):
    (eyepacs / "train" / "13_right.jpeg").unlink()
    with pytest.raises(DataError, match=r"1 of 42 images listed in .*trainLabels\.csv are "
                                        r"missing \(first: .*13_right\.jpeg, from .*line \d+\)"):
        build_dataset("retina", data_dir=eyepacs, image_size=32)


def test_full_disk_is_reported_before_writing(eyepacs, monkeypatch):
    bundle = build_dataset("retina", data_dir=eyepacs, image_size=32)
    usage = shutil.disk_usage("/")
    monkeypatch.setattr(shutil, "disk_usage", lambda _: usage._replace(free=10))
    with pytest.raises(DataError, match="TFX_CACHE_DIR to a larger disk"):
        bundle.train[0]


def test_a_partial_cache_cut_short_is_started_again(eyepacs):
    bundle = build_dataset("retina", data_dir=eyepacs, image_size=32)
    first = bundle.train[0][0].numpy()
    partial = bundle.train.cache.directory / "images.u8.partial"
    with open(partial, "r+b") as handle:  # as if the process died while reserving space
        handle.truncate(100)
    again = build_dataset("retina", data_dir=eyepacs, image_size=32)
    np.testing.assert_array_equal(again.train[0][0].numpy(), first)
    assert partial.stat().st_size == len(again.train) * 32 * 32 * 3


def test_unreadable_image_in_a_loader_worker_is_still_one_line(tfx, eyepacs, tmp_path):
    victim = build_dataset("retina", data_dir=eyepacs, image_size=32).train.ids[0]
    truncate(eyepacs / "train" / f"{victim}.jpeg")
    result = tfx("fit", "--data", "retina", "--data-dir", eyepacs, "--arch", "cbr-tiny",
                 "--image-size", "32", "--steps", "1", "--batch-size", "22", "--workers", "1",
                 "--out", tmp_path / "run")
    assert result.exit_code == 1
    line = result.error_line()
    assert result.stderr.strip().splitlines()[-1] == line
    assert line.startswith("Error: Cannot read image ") and f"{victim}.jpeg" in line
    assert "--skip-bad-images" in line


def test_an_unwritable_cache_dir_is_one_line_naming_it(tfx, tmp_path, monkeypatch):
    data = image_folder(tmp_path / "data")
    cache = unwritable_folder() / "tfx-cache"
    monkeypatch.setenv("TFX_CACHE_DIR", str(cache))
    before = snapshot_tree(tmp_path)
    result = tfx("fit", "--data", "image-folder", "--data-dir", data, "--image-size", "32",
                 "--steps", "1", "-b", "8", "--out", tmp_path / "run")
    assert result.exit_code == 1
    line = result.error_line()
    assert "TFX_CACHE_DIR" in line and str(cache) in line
    assert_tree_unchanged(tmp_path, before)


def test_a_truncated_cache_is_rebuilt(tfx, tmp_path, cache_dir):
    data = image_folder(tmp_path / "data")
    fit = ["fit", "--data", "image-folder", "--data-dir", data, "--image-size", "32",
           "--steps", "1", "-b", "8", "--skip-bad-images"]  # checks (so caches) every image
    result = tfx(*fit, "--out", tmp_path / "r1")
    assert result.exit_code == 0, result.stderr
    caches = sorted(cache_dir.rglob("images.u8"))
    assert caches
    full = caches[0].stat().st_size
    with open(caches[0], "r+b") as handle:
        handle.truncate(full // 2)
    result = tfx(*fit, "--out", tmp_path / "r2")
    assert result.exit_code == 0, result.stderr
    assert "damaged" in result.stderr and "rebuilding" in result.stderr
    assert caches[0].stat().st_size == full
