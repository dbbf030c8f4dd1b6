"""Fundus decoding at a reduced DCT scale and parallel cache filling."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tfx_plugins.preprocess.fundus import FUNDUS_CROP
from torch.utils.data import DataLoader

from transfusion_cli.data.cache import FileSource, ImageCache
from transfusion_cli.data.preprocess import (
    DRAFT_TOLERANCE,
    load_prepared,
    prepare_image,
    read_image,
)


def fundus_jpeg(path: Path, width: int, height: int, seed: int = 0, quality: int = 95) -> Path:
    """A fundus-like JPEG: a shaded orange disc with vessels-like stripes and noise, on black."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    radius = np.hypot(yy - height / 2, xx - width / 2) / (0.47 * height)
    disc = radius < 1
    shade = (1.0 - 0.5 * radius)[..., None] * np.array([210, 95, 45], dtype=np.float32)
    stripes = 25 * (np.sin(xx / 37.0 + seed) * np.sin(yy / 53.0) > 0.8)[..., None]
    image = (shade - stripes + rng.integers(-4, 5, (height, width, 3))) * disc[..., None]
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(path, quality=quality)
    return path


def test_draft_decoding_stays_within_tolerance_of_full_decoding(tmp_path):
    # A third of the EyePACS size keeps the test fast; 192 px decodes at 1/4 scale (396x264).
    path = fundus_jpeg(tmp_path / "large.jpeg", 1584, 1056)
    with Image.open(path) as image:
        image.draft("RGB", (192, 192))
        assert image.size == (396, 264)  # the smallest DCT scale with both sides >= 192
    full = prepare_image(read_image(path), 192, 3, FUNDUS_CROP)
    reduced = load_prepared(path, 192, 3, FUNDUS_CROP)
    assert full.shape == reduced.shape == (192, 192, 3)
    difference = np.abs(full.astype(np.int16) - reduced)
    assert difference.mean() <= DRAFT_TOLERANCE
    assert difference.mean() > 0  # the reduced decode really ran (it is not bit-identical)


def test_draft_never_decodes_below_the_target_size(tmp_path):
    path = fundus_jpeg(tmp_path / "small.jpeg", 640, 480)
    assert read_image(path, min_size=470).size == (640, 480)  # 1/2 would give 240 < 470
    assert read_image(path, min_size=200).size == (320, 240)
    png = tmp_path / "image.png"
    Image.open(path).save(png)
    assert read_image(png, min_size=100).size == (640, 480)  # only JPEGs have DCT scales


def filled_bytes(directory: Path, paths: list[Path], workers: int) -> bytes:
    cache = ImageCache(directory, len(paths), (96, 96, 3), directory.name, {})
    assert cache.fill(FileSource(paths, 96, 3, FUNDUS_CROP), workers=workers) == [2]
    return (directory / "images.u8").read_bytes()


@pytest.fixture
def photos(tmp_path) -> list[Path]:
    paths = [fundus_jpeg(tmp_path / "photos" / f"{i}.jpeg", 480, 360, seed=i) for i in range(5)]
    paths[2].write_bytes(b"not a jpeg")  # an unreadable one: flagged the same in every fill
    return paths


def test_parallel_fill_matches_serial_fill_byte_for_byte(tmp_path, photos):
    serial = filled_bytes(tmp_path / "serial", photos, workers=1)
    parallel = filled_bytes(tmp_path / "parallel", photos, workers=4)
    assert serial == parallel
    assert len(set(serial)) > 10  # real pixels, not an empty cache


def test_loader_workers_fill_matches_serial_fill(tmp_path, photos):
    """The first epoch fills the cache from every loader worker (``--workers``) at once."""
    good = [p for i, p in enumerate(photos) if i != 2]
    serial = filled_bytes(tmp_path / "serial", photos, workers=1)
    cache = ImageCache(tmp_path / "loader", len(good), (96, 96, 3), "loader", {})
    source = FileSource(good, 96, 3, FUNDUS_CROP)

    class Split:
        def __len__(self) -> int:
            return len(good)

        def __getitem__(self, index: int) -> np.ndarray:
            return cache.get(index, source)

    for _ in DataLoader(Split(), batch_size=2, num_workers=2):
        pass
    assert cache.finalize_if_full()
    image_bytes = 96 * 96 * 3
    expected = b"".join(serial[i * image_bytes: (i + 1) * image_bytes]
                        for i in range(len(photos)) if i != 2)
    assert (tmp_path / "loader" / "images.u8").read_bytes() == expected


@pytest.mark.parametrize("device", [
    "cpu", pytest.param("cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(
        not __import__("torch").cuda.is_available(), reason="needs CUDA")])])
def test_batch_decoding_matches_reduced_scale_decoding(tmp_path, device):
    """nvjpeg's path (torchvision decode + box reduction; also run on the CPU decoder here)
    prepares photos within the documented tolerance of Pillow's reduced-scale decoding."""
    from transfusion_cli.data.nvjpeg import decode_reduced
    from transfusion_cli.data.preprocess import prepare_image as prepare

    paths = [fundus_jpeg(tmp_path / f"{i}.jpeg", 800, 600, seed=i) for i in range(2)]
    decoded = decode_reduced(paths, 128, device=device)
    assert [image.size for image in decoded] == [(200, 150)] * 2
    for path, image in zip(paths, decoded, strict=True):
        difference = np.abs(prepare(image, 128, 3, FUNDUS_CROP).astype(np.int16)
                            - load_prepared(path, 128, 3, FUNDUS_CROP))
        assert difference.mean() <= DRAFT_TOLERANCE
