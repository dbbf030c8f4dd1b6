"""Shared helpers for the export / predict tests: tiny datasets and checkpoints.

Datasets are registered as a fake plugin (``registry_with(FakeDatasets())``) so that the
tests do not depend on how the synthetic datasets draw their images; `tfx export` rebuilds the
checkpoint's dataset by name, exactly as for a real one.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from transfusion_cli.data.bundles import ArrayImageSplit, DatasetBundle, DatasetInfo
from transfusion_cli.hookspecs import hookimpl
from transfusion_cli.models.checkpoint import make_checkpoint, save_checkpoint
from transfusion_cli.plugins import get
from transfusion_cli.registry import DatasetSpec

GRADES = ("0", "1", "2", "3", "4")
# Real files shared with the project (read in place; tests skip when absent).
SHARED_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
FINDINGS = ("Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Pleural Effusion")


def retina_info(image_size: int = 32) -> DatasetInfo:
    """A retina-type DatasetInfo: 5 DR grades, referable from grade 2, fundus_crop step."""
    return DatasetInfo(name="fake-retina", task="multiclass", class_names=GRADES, channels=3,
                       image_size=image_size, mean=(0.45, 0.3, 0.2), std=(0.25, 0.2, 0.15),
                       referable_threshold=2, selection_metric="referable_auc",
                       preprocess="fundus_crop")


def chest_info(image_size: int = 32) -> DatasetInfo:
    """A chest-type DatasetInfo: 5 findings, multi-label, grayscale."""
    return DatasetInfo(name="fake-chest", task="multilabel", class_names=FINDINGS, channels=1,
                       image_size=image_size, mean=(0.5,), std=(0.25,),
                       selection_metric="mean_auc")


def binary_info(image_size: int = 32) -> DatasetInfo:
    """A binary DatasetInfo (one logit), grayscale."""
    return DatasetInfo(name="fake-binary", task="binary", class_names=("normal", "abnormal"),
                       channels=1, image_size=image_size, mean=(0.5,), std=(0.25,))


INFOS = {"fake-retina": retina_info, "fake-chest": chest_info, "fake-binary": binary_info}


def fake_images(count: int, size: int, channels: int, labels: np.ndarray, seed: int
                ) -> np.ndarray:
    """uint8 images whose brightness carries the label (learnable, so metrics are not flat)."""
    rng = np.random.default_rng(seed)
    level = labels.reshape(count, -1)
    level = np.nan_to_num(level, nan=0.0).mean(axis=1)
    base = 40 + 150 * level / max(float(level.max()), 1.0)
    noise = rng.normal(0, 25, size=(count, size, size, channels))
    return np.clip(base[:, None, None, None] + noise, 0, 255).astype(np.uint8)


def fake_labels(info: DatasetInfo, count: int, seed: int) -> np.ndarray:
    """Labels per the data module's conventions (multi-label: NaN = masked)."""
    rng = np.random.default_rng(seed)
    if info.task == "multiclass":
        return np.arange(count) % len(info.class_names)
    if info.task == "binary":
        return (np.arange(count) % 2).astype(np.float32)
    labels = rng.integers(0, 2, size=(count, len(info.class_names))).astype(np.float32)
    labels[0, :] = 0  # every label has both classes among the first rows
    labels[1, :] = 1
    labels[rng.random(labels.shape) < 0.1] = np.nan
    labels[:2] = np.nan_to_num(labels[:2], nan=0.0)
    return labels


def build_fake(name: str, options) -> DatasetBundle:
    """train 48 / val 40 / test 16 images of the fake dataset at the requested size."""
    info = INFOS[name](options.image_size)
    splits = []
    for offset, count in ((0, 48), (1, 40), (2, 16)):
        seed = options.seed * 10 + offset
        labels = fake_labels(info, count, seed)
        images = fake_images(count, options.image_size, info.channels, labels, seed)
        splits.append(ArrayImageSplit(images, labels, info.task))
    return DatasetBundle(info=info, train=splits[0], val=splits[1], test=splits[2])


class FakeDatasets:
    """A plugin registering the fake datasets."""

    @hookimpl
    def tfx_register_datasets(self, register):
        for name in INFOS:
            register(DatasetSpec(name=name, build=lambda o, n=name: build_fake(n, o),
                                 default_image_size=32))


def make_ckpt(path: Path, arch: str = "cbr-tiny", info: DatasetInfo | None = None,
              in_chans: int | None = None, seed: int = 0, config: dict | None = None) -> Path:
    """A checkpoint of a randomly initialised ``arch`` whose BatchNorm layers look trained:
    random affine parameters, running statistics measured on random inputs (so deep models
    such as Inception give logits of a trained model's scale, not 1e8)."""
    info = info or retina_info()
    torch.manual_seed(seed)
    in_chans = in_chans or info.channels
    model = get("architectures", arch).build(num_classes=info.num_outputs, in_chans=in_chans)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    with torch.no_grad():
        for module in norms:
            module.weight.uniform_(0.5, 1.5)
            module.bias.uniform_(-0.2, 0.2)
            module.momentum = None  # cumulative average over the passes below
        inputs = calibration_inputs(info, in_chans)
        model.train()
        for batch in inputs.split(4):
            model(batch)
        for module in norms:
            module.momentum = 0.1
        model.eval()
        # Logits of a trained classifier's scale (|logit| up to ~8), not whatever a random
        # head on calibrated features gives (up to hundreds for ResNet50).
        head = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
        logits = model(inputs)
        scale = 8.0 / max(float(logits.abs().max()), 1e-6)
        head.weight.mul_(scale)
        head.bias.mul_(scale)
    checkpoint = make_checkpoint(model, arch, info, step=7, **({"config": config} if config
                                                                else {}))
    checkpoint["arch"]["in_chans"] = in_chans
    save_checkpoint(checkpoint, path)
    return path


def calibration_inputs(info: DatasetInfo, in_chans: int) -> torch.Tensor:
    """Normalised training images of the fake dataset (random ones for other datasets)."""
    size = info.image_size
    if info.name not in INFOS:
        return torch.randn(8, in_chans, size, size)
    from transfusion_cli.data.bundles import DatasetOptions, normalize

    train = build_fake(info.name, DatasetOptions(image_size=size)).train
    images = torch.stack([train[i][0] for i in range(8)])
    return normalize(images, info, in_chans)


def fundus_png(path: Path, size: int = 96, seed: int = 0) -> Path:
    """A fundus-like photo: a bright reddish disc on black, off-centre, wider than tall."""
    rng = np.random.default_rng(seed)
    height, width = size, int(size * 1.4)
    yy, xx = np.mgrid[:height, :width]
    cy, cx, radius = height / 2, width / 2 + 5, size * 0.42
    disc = ((yy - cy) ** 2 + (xx - cx) ** 2) <= radius ** 2
    image = np.zeros((height, width, 3), np.uint8)
    colour = np.array([180, 90, 40]) + rng.integers(-30, 30, size=(height, width, 3))
    image[disc] = np.clip(colour[disc], 0, 255)
    Image.fromarray(image).save(path)
    return path


def gray_png(path: Path, size: int = 40, seed: int = 0) -> Path:
    """A grayscale ('L') PNG of noise."""
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, size=(size, size), dtype=np.uint8)).save(path)
    return path


def colour_png(path: Path, size: int = 40, seed: int = 0) -> Path:
    """An RGB PNG of colour noise."""
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)).save(path)
    return path
