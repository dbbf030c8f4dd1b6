"""Training images/s of `tfx fit`'s loop against a bare PyTorch loop, in one run.

Both train the same model (cbr-tiny, 5 classes) with Adam at the same batch size on the same
in-memory images. The bare loop holds pre-normalised float batches and does forward,
cross-entropy, backward, step and nothing else; `tfx fit` goes through its DataLoader,
on-device normalisation, loss checks, schedule and bookkeeping (its evaluation and
checkpoint writing are outside the timed interval, as `FitResult.images_per_s` reports).
Measurements alternate (bare, tfx, bare, tfx, ...) after one warm-up of each, and the
medians are compared. Prints JSON; target: ratio >= 0.9 for cbr-tiny at 128 px on CPU.

With ``--augment NAME`` (light, flip, fundus) both loops augment every training image with the
same torchvision v2 pipeline: the bare loop calls it on each uint8 image of the batch, then
normalises; `tfx fit` runs with ``--augment NAME`` (seeded per image, after the cache).

    python benchmarks/fit_throughput.py [--image-size 128] [--batch-size 32] [--steps 8]
    python benchmarks/fit_throughput.py --augment fundus
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from transfusion_cli.data.bundles import ArrayImageSplit, DatasetBundle, DatasetInfo
from transfusion_cli.hookspecs import hookimpl
from transfusion_cli.plugins import get, load_registry, reset_registry
from transfusion_cli.registry import DatasetSpec, InitContext
from transfusion_cli.train import FitConfig, fit

DATASET = "bench-in-memory"
MEAN, STD = (0.45, 0.45, 0.45), (0.25, 0.25, 0.25)


class InMemoryPlugin:
    """A dataset plugin serving fixed uint8 arrays (the images the bare loop uses too)."""

    def __init__(self, images: np.ndarray, labels: np.ndarray):
        self.images, self.labels = images, labels

    @hookimpl
    def tfx_register_datasets(self, register):
        def build(options):
            info = DatasetInfo(DATASET, "multiclass", tuple(f"c{i}" for i in range(5)), 3,
                               options.image_size, MEAN, STD, referable_threshold=2,
                               selection_metric="referable_auc")
            val = ArrayImageSplit(self.images[:32], self.labels[:32], "multiclass")
            return DatasetBundle(info, ArrayImageSplit(self.images, self.labels, "multiclass"),
                                 val)

        register(DatasetSpec(DATASET, build, "benchmark images", default_image_size=128))


def bare_loop(images: np.ndarray, labels: np.ndarray, arch: str, batch_size: int,
              steps: int, seed: int, augment: str = "none") -> float:
    """Images/s of the plainest PyTorch training loop on in-memory float batches (augmented
    per image, from uint8, when ``augment`` names a pipeline)."""
    from transfusion_cli.train.augment import make_augmentation

    spec = get("architectures", arch)
    model = spec.build(num_classes=5, in_chans=3)
    get("inits", "random").apply(model, InitContext(arch=spec, num_classes=5, in_chans=3,
                                                    seed=seed))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    x_all = (torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255 - mean) / std
    # The fastest plain layout (NHWC, as tfx uses); NCHW would make the bare loop ~30% slower.
    x_all = x_all.contiguous(memory_format=torch.channels_last)
    model = model.to(memory_format=torch.channels_last)
    y_all = torch.from_numpy(labels).long()
    batches = [(x_all[i * batch_size:(i + 1) * batch_size],
                y_all[i * batch_size:(i + 1) * batch_size]) for i in range(steps)]
    transform = make_augmentation(augment, images.shape[1])
    raw = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()  # its fastest layout
    model.train()
    start = time.perf_counter()
    for i, (x, y) in enumerate(batches):
        if transform is not None:
            chunk = raw[i * batch_size:(i + 1) * batch_size]
            x = torch.stack([transform(image) for image in chunk]).float() / 255
            x = ((x - mean) / std).contiguous(memory_format=torch.channels_last)
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return steps * batch_size / (time.perf_counter() - start)


def tfx_loop(arch: str, image_size: int, batch_size: int, steps: int, seed: int,
             out: Path, augment: str = "none") -> float:
    """Images/s of `fit` training on the same data (train time only)."""
    config = FitConfig(data=DATASET, arch=arch, image_size=image_size, batch_size=batch_size,
                       steps=steps, epochs=None, eval_every=steps, seed=seed, device="cpu",
                       workers=0, out=str(out), overwrite=True, augment=augment)
    return fit(config, show_progress=False).images_per_s


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="cbr-tiny")
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=8, help="timed steps per measurement")
    parser.add_argument("--repeats", type=int, default=3, help="measurements of each loop")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: "
                        "torch's choice)")
    parser.add_argument("--augment", default="none", help="augmentation in both loops: none, "
                        "light, flip or fundus")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    n = args.batch_size * args.steps
    images = rng.integers(0, 256, (n, args.image_size, args.image_size, 3), dtype=np.uint8)
    labels = rng.integers(0, 5, n)
    reset_registry(load_registry(extra_plugins=[("bench", InMemoryPlugin(images, labels))]))
    try:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "run"
            bare_loop(images, labels, args.arch, args.batch_size, 2, 0, args.augment)  # warm-up
            tfx_loop(args.arch, args.image_size, args.batch_size, 2, 0, out, args.augment)
            bare, tfx = [], []
            for repeat in range(args.repeats):
                bare.append(bare_loop(images, labels, args.arch, args.batch_size, args.steps,
                                      repeat, args.augment))
                tfx.append(tfx_loop(args.arch, args.image_size, args.batch_size, args.steps,
                                    repeat, out, args.augment))
    finally:
        reset_registry(None)
    result = {
        "benchmark": "fit_throughput",
        "arch": args.arch, "image_size": args.image_size, "batch_size": args.batch_size,
        "steps": args.steps, "repeats": args.repeats, "device": "cpu",
        "augment": args.augment,
        "torch_threads": torch.get_num_threads(),
        "bare_images_per_s": statistics.median(bare),
        "tfx_images_per_s": statistics.median(tfx),
        "ratio": statistics.median(tfx) / statistics.median(bare),
        "bare_runs": [round(v, 2) for v in bare],
        "tfx_runs": [round(v, 2) for v in tfx],
        "target_ratio": 0.9,
    }
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
