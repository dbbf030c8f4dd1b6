"""Training-time augmentation (``--augment``): torchvision transforms v2 on the cached images.

The image cache and the validation / test splits stay un-augmented; only training images
pass through the pipeline, one image at a time, on uint8 (C, H, W) tensors before
normalisation. Every draw is seeded by (training seed, epoch, position in the epoch's
order), so a run, a resumed run and a run with any number of loader workers see exactly the
same augmented images.

Pipelines (``p`` marks the probability of a random step):

- ``none``: the images as cached.
- ``light``: random resized crop (scale 0.85-1, aspect 0.9-1.1, back to the image size),
  rotation by up to 7 degrees, brightness and contrast by up to 10 %. No flips: a chest
  X-ray's left and right sides (heart, aortic knob) stay where they are.
- ``flip``: ``light`` plus a horizontal flip (p=0.5), for images without laterality
  (natural images, e.g. the ImageNet pretraining of the CBR models).
- ``fundus``: random resized crop (scale 0.7-1), horizontal and vertical flips (p=0.5 each;
  a flipped fundus is still a plausible fundus and the DR grade does not change), rotation by
  up to 15 degrees, brightness and contrast by up to 20 %.

The paper does not describe any augmentation; these pipelines and each dataset's default
(``DatasetSpec.default_augment``) are tfx's choices.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.utils.data import Dataset

from transfusion_cli.errors import ConfigError

AUGMENTATIONS: dict[str, str] = {
    "none": "no augmentation",
    "light": "resized crop 0.85-1, rotation <= 7 deg, brightness/contrast 10 %, no flips",
    "flip": "light + horizontal flip",
    "fundus": "resized crop 0.7-1, horizontal + vertical flips, rotation <= 15 deg, "
              "brightness/contrast 20 %",
}


def make_augmentation(name: str, image_size: int) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """The v2 pipeline called ``name`` for square images of ``image_size``; None for ``none``."""
    from torchvision.transforms import v2

    if name not in AUGMENTATIONS:
        raise ConfigError(f"--augment {name!r} is not one of {', '.join(AUGMENTATIONS)}.")
    if name == "none":
        return None
    size = (image_size, image_size)
    if name == "fundus":
        return v2.Compose([
            v2.RandomResizedCrop(size, scale=(0.7, 1.0), ratio=(0.9, 1.1), antialias=True),
            v2.RandomHorizontalFlip(),
            v2.RandomVerticalFlip(),
            v2.RandomRotation(15),
            v2.ColorJitter(brightness=0.2, contrast=0.2),
        ])
    steps = [v2.RandomResizedCrop(size, scale=(0.85, 1.0), ratio=(0.9, 1.1), antialias=True)]
    if name == "flip":
        steps.append(v2.RandomHorizontalFlip())
    steps += [v2.RandomRotation(7), v2.ColorJitter(brightness=0.1, contrast=0.1)]
    return v2.Compose(steps)


def draw_seed(seed: int, epoch: int, position: int) -> int:
    """The RNG seed of one augmented image: a pure function of (seed, epoch, position)."""
    return ((seed * 1_000_003 + epoch) * 1_000_000_007 + position) % (2 ** 63)


class AugmentedSplit(Dataset):
    """A training split whose items are requested as ``(index, draw_seed)`` pairs (by
    ``EpochBatchSampler`` with ``augment=True``); each image is augmented under its own seed."""

    def __init__(self, dataset: Dataset, transform: Callable[[torch.Tensor], torch.Tensor]):
        self.dataset, self.transform = dataset, transform

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, item: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        index, seed = item
        image, target = self.dataset[index]
        generator = torch.default_generator  # v2 transforms draw from the global CPU RNG
        saved = generator.get_state()
        try:
            generator.manual_seed(seed)
            image = self.transform(image)
        finally:
            generator.set_state(saved)  # the training RNG is left as it was
        return image, target
