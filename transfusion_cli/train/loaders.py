"""Data for a run: the dataset, the --train-size subset, and the train / validation loaders."""

from __future__ import annotations

import warnings

import numpy as np
from torch.utils.data import DataLoader, Dataset, Subset

from transfusion_cli.data.build import build_dataset
from transfusion_cli.data.bundles import DatasetBundle, dataset_labels
from transfusion_cli.data.learnable import check_learnable
from transfusion_cli.errors import ConfigError
from transfusion_cli.train.config import FitConfig
from transfusion_cli.train.distributed import DistContext, shard_indices
from transfusion_cli.train.state import EpochBatchSampler


def load_bundle(config: FitConfig) -> DatasetBundle:
    """Build the configured dataset (data seed, options, image size)."""
    return build_dataset(config.data, data_dir=config.data_dir, image_size=config.image_size,
                         seed=config.data_seed, options=config.options,
                         skip_bad_images=config.skip_bad_images)


def train_subset_indices(labels: np.ndarray, size: int, task: str, seed: int) -> np.ndarray:
    """A fixed, seeded subset of ``size`` indices, stratified by class where the task allows."""
    from sklearn.model_selection import train_test_split

    total = len(labels)
    if size > total:
        raise ConfigError(f"--train-size {size} is larger than the training split ({total}); "
                          f"use at most {total}.")
    indices = np.arange(total)
    if size == total:
        return indices
    stratify = labels.reshape(total, -1)[:, 0] if task in ("multiclass", "binary") else None
    try:
        chosen, _ = train_test_split(indices, train_size=size, random_state=seed,
                                     stratify=stratify)
    except ValueError:  # too few examples of some class to stratify
        chosen, _ = train_test_split(indices, train_size=size, random_state=seed)
    return np.sort(chosen)


def training_split(bundle: DatasetBundle, config: FitConfig) -> Dataset:
    """The training split, cut to --train-size when given; labels nothing can be learned from
    are a DataError here, before training."""
    labels = dataset_labels(bundle.train)
    if config.train_size is None:
        check_learnable(labels, bundle.info)
        return bundle.train
    indices = train_subset_indices(labels, config.train_size, bundle.info.task, config.data_seed)
    check_learnable(labels[indices], bundle.info, f"--train-size {config.train_size} training")
    return Subset(bundle.train, indices.tolist())


def loader_kwargs(workers: int, pin_memory: bool) -> dict:
    """Worker and memory settings shared by the loaders."""
    kwargs: dict = {"num_workers": workers, "pin_memory": pin_memory}
    if workers > 0:
        kwargs.update(persistent_workers=True, prefetch_factor=4)
    return kwargs


def train_loader(dataset: Dataset, config: FitConfig, ctx: DistContext, workers: int,
                 pin_memory: bool, image_size: int | None = None
                 ) -> tuple[DataLoader, EpochBatchSampler]:
    """A loader whose batch order is set by ``EpochBatchSampler.set_position``; with
    ``config.augment`` other than none, each image is augmented under its own seed."""
    from transfusion_cli.train.augment import AugmentedSplit, make_augmentation

    transform = None
    if config.augment not in (None, "none"):
        if image_size is None:
            image_size = int(dataset[0][0].shape[-1])
        transform = make_augmentation(config.augment, image_size)
    if transform is not None:
        dataset = AugmentedSplit(dataset, transform)
    sampler = EpochBatchSampler(len(dataset), config.batch_size, config.seed, ctx.rank,
                                ctx.world_size, augment=transform is not None)
    if sampler.batches_per_epoch == 0:
        raise ConfigError(f"The training set has {len(dataset)} examples, fewer than one batch of "
                          f"{config.batch_size * ctx.world_size}; lower --batch-size.")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loader = DataLoader(dataset, batch_sampler=sampler,
                            **loader_kwargs(workers, pin_memory))
    return loader, sampler


def eval_loader(dataset: Dataset, batch_size: int, ctx: DistContext, workers: int,
                pin_memory: bool) -> DataLoader:
    """In-order loader over this rank's contiguous shard of ``dataset`` (no padding)."""
    if ctx.enabled:
        dataset = Subset(dataset, shard_indices(len(dataset), ctx).tolist())
    return DataLoader(dataset, batch_size=batch_size, shuffle=False,
                      **loader_kwargs(workers, pin_memory))
