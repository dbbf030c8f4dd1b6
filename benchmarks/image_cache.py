"""Loader throughput with the preprocessed-image cache: first epoch vs later epochs.

Two sources, each measured in one run with a fresh cache folder:

- ``medmnist``: the real RetinaMNIST file (``../shared/data/medmnist/retinamnist.npz``)
  resized to ``--image-size`` (default 64). Epoch 1 resizes every image and fills the cache;
  later epochs read the memory-mapped cache. Baseline: the same split without a cache
  (resizing from the in-memory array on every read, what a loader does without one).
- ``files``: ``--files`` generated fundus JPEGs (``--photo-size`` px wide, EyePACS layout, the
  ``retina`` dataset) cropped and resized to ``--image-size``: decoding is the real cost there.

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--photo-size", type=int, default=1024)
    args = parser.parse_args()
    report: dict = {"settings": vars(args), "cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["TFX_CACHE_DIR"] = str(Path(tmp) / "cache")
        if RETINAMNIST.exists():
            report["medmnist_retinamnist"] = bench_medmnist(args)
        else:
            report["medmnist_retinamnist"] = f"skipped: {RETINAMNIST} is absent"
        if args.files:
            report["retina_jpeg_files"] = bench_files(args, Path(tmp) / "eyepacs")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
