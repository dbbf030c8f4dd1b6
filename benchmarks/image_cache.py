"""Loader throughput with the preprocessed-image cache: first epoch vs later epochs.

Two sources, each measured in one run with a fresh cache folder:

- ``medmnist``: the real RetinaMNIST file (``../shared/data/medmnist/retinamnist.npz``)
  resized to ``--image-size`` (default 64). Epoch 1 resizes every image and fills the cache;
  later epochs read the memory-mapped cache. Baseline: the same split without a cache
  (resizing from the in-memory array on every read, what a loader does without one).
- ``files``: ``--files`` generated fundus JPEGs (``--photo-size`` px wide, EyePACS layout, the
  ``retina`` dataset) cropped and resized to ``--image-size``: decoding is the real cost there.
- ``fundus_full``: ``--fundus-files`` full-size fundus JPEGs as EyePACS ships them (4752x3168,
  quality 95, 1-2 MB; the real CC0 photo in ``../shared/data/fundus_cc0`` scaled up with sensor
  noise, or a drawn disc when it is absent), written to a temporary folder, prepared at
  ``--fundus-size`` (587, the paper's EyePACS size) with the fundus crop. Serial: ms per image
  of today's full decode vs the reduced-scale (``Image.draft``) decode, interleaved image by
  image (target >= 3x). Parallel: a cache fill with 1 thread vs one per CPU (images/s, per
  core, scaling = parallel / (serial x CPUs), target near 1), and the two caches compared
  byte for byte; the pixel difference of draft vs full decoding (mean and max uint8 levels).

Each epoch is a full pass of a shuffled DataLoader (``--workers``, ``--batch-size``) over the
train split; figures are images/s. Targets: later / first >= 1 for both (the cache must never
make later epochs slower), later / uncached >= 1.

    python benchmarks/image_cache.py                 # JSON on stdout
    python benchmarks/image_cache.py --workers 2 --epochs 4
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image
from torch.utils.data import DataLoader, Dataset

ROOT = Path(__file__).resolve().parents[1]
RETINAMNIST = ROOT / ".." / "shared" / "data" / "medmnist" / "retinamnist.npz"


class UncachedNpzSplit(Dataset):
    """The same images and preprocessing, recomputed on every read (no cache)."""

    def __init__(self, path: Path, split: str, image_size: int):
        import torch

        from transfusion_cli.data.preprocess import prepare_image

        with np.load(path) as npz:
            self.images, self.labels = npz[f"{split}_images"], npz[f"{split}_labels"][:, 0]
        self.size, self.prepare, self.torch = image_size, prepare_image, torch

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        array = self.prepare(Image.fromarray(self.images[index]), self.size, 3)
        return (self.torch.from_numpy(np.array(array)).permute(2, 0, 1),
                self.torch.tensor(int(self.labels[index])))


def epoch_rates(dataset: Dataset, epochs: int, batch_size: int, workers: int) -> list[float]:
    """images/s of each full shuffled pass."""
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=workers,
                        persistent_workers=workers > 0)
    rates = []
    for _ in range(epochs):
        started, seen = time.perf_counter(), 0
        for images, _ in loader:
            seen += len(images)
        rates.append(seen / (time.perf_counter() - started))
    return rates


def summary(rates: list[float]) -> dict:
    later = float(np.median(rates[1:]))
    return {"first_epoch_images_per_s": round(rates[0], 1),
            "later_epochs_images_per_s": [round(r, 1) for r in rates[1:]],
            "later_median_images_per_s": round(later, 1),
            "later_vs_first": round(later / rates[0], 2)}


def bench_medmnist(args) -> dict:
    from transfusion_cli.data.build import build_dataset

    bundle = build_dataset("medmnist", data_dir=RETINAMNIST, image_size=args.image_size)
    result = summary(epoch_rates(bundle.train, args.epochs, args.batch_size, args.workers))
    uncached = epoch_rates(UncachedNpzSplit(RETINAMNIST, "train", args.image_size), 2,
                           args.batch_size, args.workers)
    result["uncached_images_per_s"] = round(float(np.median(uncached)), 1)
    result["later_vs_uncached"] = round(result["later_median_images_per_s"]
                                        / result["uncached_images_per_s"], 2)
    result["images"] = len(bundle.train)
    return result


def bench_files(args, folder: Path) -> dict:
    sys.path.insert(0, str(ROOT / "tests"))
    from datasets_fixtures import fundus_array

    from transfusion_cli.data.build import build_dataset

    rng = np.random.default_rng(0)
    width = args.photo_size
    lines = ["image,level"]
    base = [fundus_array(rng, width, width * 3 // 4, grade) for grade in range(5)]
    for k in range(args.files):
        image_id = f"{k // 2}_{'left' if k % 2 == 0 else 'right'}"
        grade = (k // 2) % 5
        (folder / "train").mkdir(parents=True, exist_ok=True)
        Image.fromarray(base[grade]).save(folder / "train" / f"{image_id}.jpeg", quality=90)
        lines.append(f"{image_id},{grade}")
    (folder / "trainLabels.csv").write_text("\n".join(lines) + "\n")
    bundle = build_dataset("retina", data_dir=folder, image_size=args.image_size)
    result = summary(epoch_rates(bundle.train, args.epochs, args.batch_size, args.workers))
    result.update(images=len(bundle.train), photo_size=f"{width}x{width * 3 // 4}")
    return result


REAL_FUNDUS = ROOT / ".." / "shared" / "data" / "fundus_cc0" / "retina.jpg"
EYEPACS_SIZE = (4752, 3168)


def fundus_photo(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """A full-size fundus photo: the real CC0 one scaled up (or a drawn disc), sensor noise."""
    side = int(height * 0.96)
    if REAL_FUNDUS.exists():
        with Image.open(REAL_FUNDUS) as photo:
            disc = np.asarray(photo.convert("RGB").resize((side, side), Image.Resampling.BILINEAR))
    else:
        yy, xx = (np.mgrid[0:side, 0:side] / side - 0.5).astype(np.float32)
        radius = np.hypot(yy, xx)
        disc = (np.stack([200 - 120 * radius, 90 - 60 * radius, 40 - 30 * radius], -1)
                * (radius < 0.48)[..., None]).astype(np.uint8)
    inside = disc.max(axis=2, keepdims=True) > 10
    noise = rng.integers(-3, 4, size=disc.shape, dtype=np.int16) * inside
    canvas = np.zeros((height, width, 3), dtype=np.uint8)
    top, left = (height - side) // 2, (width - side) // 2
    canvas[top: top + side, left: left + side] = np.clip(disc + noise, 0, 255)
    return canvas


def bench_fundus_full(args, folder: Path) -> dict:
    """Full-size fundus JPEGs: full vs reduced-scale decoding, serial and parallel cache fill."""
    from tfx_plugins.preprocess.fundus import FUNDUS_CROP

    from transfusion_cli.data.cache import FileSource, ImageCache, fill_workers
    from transfusion_cli.data.preprocess import load_prepared, prepare_image, read_image

    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    base = fundus_photo(rng, *EYEPACS_SIZE)
    paths = []
    for k in range(args.fundus_files):  # shifted and mirrored copies: distinct files
        photo = np.roll(base, 40 * k, axis=1)
        photo = photo[:, ::-1] if k % 2 else photo
        paths.append(folder / f"{k}_{'left' if k % 2 == 0 else 'right'}.jpeg")
        Image.fromarray(photo).save(paths[-1], quality=95)
    size = args.fundus_size
    full_s, draft_s, diffs = [], [], []
    for path in paths:  # interleaved image by image
        started = time.perf_counter()
        full = prepare_image(read_image(path), size, 3, FUNDUS_CROP)
        full_s.append(time.perf_counter() - started)
        started = time.perf_counter()
        draft = load_prepared(path, size, 3, FUNDUS_CROP)
        draft_s.append(time.perf_counter() - started)
        diffs.append(np.abs(full.astype(np.int16) - draft))
    full_ms, draft_ms = 1e3 * float(np.median(full_s)), 1e3 * float(np.median(draft_s))
    workers = fill_workers()
    fills = {}
    for label, count in (("serial", 1), ("parallel", workers)):
        cache = ImageCache(folder / f"cache-{label}", len(paths), (size, size, 3), label, {})
        started = time.perf_counter()
        cache.fill(FileSource(paths, size, 3, FUNDUS_CROP), workers=count)
        fills[label] = {"threads": count,
                        "images_per_s": len(paths) / (time.perf_counter() - started)}
    serial, parallel = fills["serial"]["images_per_s"], fills["parallel"]["images_per_s"]
    same = ((folder / "cache-serial" / "images.u8").read_bytes()
            == (folder / "cache-parallel" / "images.u8").read_bytes())
    today_per_core = 1e3 / full_ms
    return {
        "images": len(paths), "photo": f"{EYEPACS_SIZE[0]}x{EYEPACS_SIZE[1]}",
        "jpeg_mb_mean": round(float(np.mean([p.stat().st_size for p in paths])) / 1e6, 2),
        "image_size": size, "source": "real CC0 photo scaled up" if REAL_FUNDUS.exists()
        else "drawn disc (shared data absent)",
        "serial_ms_per_image": {"full_decode_today": round(full_ms, 1),
                                "reduced_scale_decode": round(draft_ms, 1),
                                "speedup": round(full_ms / draft_ms, 2)},
        "cache_fill": {k: {"threads": v["threads"], "images_per_s": round(v["images_per_s"], 2),
                           "images_per_s_per_core": round(v["images_per_s"] / v["threads"], 2)}
                       for k, v in fills.items()},
        "cpus": workers,
        "parallel_scaling": round(parallel / (serial * workers), 2),
        "parallel_fill_identical_to_serial": same,
        "per_core_vs_today": round(serial / today_per_core, 2),
        "draft_vs_full_pixels": {"mean_abs_levels": round(float(np.mean(diffs)), 3),
                                 "max_abs_levels": int(np.max(diffs))},
        "targets": {"per_core_vs_today": 3.0, "parallel_scaling": "near 1"},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--photo-size", type=int, default=1024)
    parser.add_argument("--fundus-files", type=int, default=8,
                        help="full-size fundus JPEGs for the fundus_full case (0: skip)")
    parser.add_argument("--fundus-size", type=int, default=587)
    parser.add_argument("--only-fundus", action="store_true", help="run only fundus_full")
    args = parser.parse_args()
    report: dict = {"settings": vars(args), "cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["TFX_CACHE_DIR"] = str(Path(tmp) / "cache")
        if args.only_fundus:
            pass
        elif RETINAMNIST.exists():
            report["medmnist_retinamnist"] = bench_medmnist(args)
        else:
            report["medmnist_retinamnist"] = f"skipped: {RETINAMNIST} is absent"
        if args.files and not args.only_fundus:
            report["retina_jpeg_files"] = bench_files(args, Path(tmp) / "eyepacs")
        if args.fundus_files:
            report["fundus_full"] = bench_fundus_full(args, Path(tmp) / "fundus_full")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
