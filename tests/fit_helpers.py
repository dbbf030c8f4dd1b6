"""Fake datasets for the fit tests (a plain module, imported by tests and loaded as a plugin).

In-process: ``with registry_with(fit_helpers): ...`` (or the ``fake_registry`` fixture)
registers them. Subprocesses (`python -m
transfusion_cli fit`, `torchrun`): ``fake_plugin_env(tmp_path)`` returns an environment whose
PYTHONPATH holds a dist-info declaring this module as a third-party tfx plugin.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from transfusion_cli.data.bundles import ArrayImageSplit, DatasetBundle, DatasetInfo
from transfusion_cli.hookspecs import hookimpl
from transfusion_cli.registry import DatasetSpec

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
GRADES = ("none", "mild", "moderate", "severe", "proliferative")
FINDINGS = ("Atelectasis", "Cardiomegaly", "Edema")


def _images(rng: np.random.Generator, n: int, size: int, channels: int,
            strength: np.ndarray) -> np.ndarray:
    """Noise plus a centred square whose brightness is ``strength`` (N, regions)."""
    images = rng.normal(90, 25, (n, size, size, channels))
    q = size // 4
    regions = [(slice(q, 3 * q), slice(q, 3 * q))] if strength.shape[1] == 1 else \
        [(slice(0, size // 2), slice(0, size)), (slice(size // 2, size), slice(0, size // 2)),
         (slice(size // 2, size), slice(size // 2, size))]
    for r, (rows, cols) in enumerate(regions[:strength.shape[1]]):
        images[:, rows, cols, :] += strength[:, r, None, None, None]
    return np.clip(images, 0, 255).astype(np.uint8)


def build_fake(task: str, options) -> DatasetBundle:
    """Tiny learnable splits of ``task``; sizes from options ``n_train`` / ``n_val``."""
    size = options.image_size
    n_train = int(options.extra.get("n_train", 96))
    n_val = int(options.extra.get("n_val", 40))
    rng = np.random.default_rng(options.seed)
    channels = 1 if task == "multilabel" else 3
    splits = []
    for n in (n_train, n_val, n_val):
        if task == "multiclass":
            labels = rng.integers(0, 5, n)
            labels[:5] = np.arange(5)[:n]
            strength = labels[:, None] * 8.0
        elif task == "binary":
            labels = rng.integers(0, 2, n).astype(np.float32)
            labels[:2] = (0, 1)
            strength = labels[:, None] * 15.0
        else:
            labels = rng.integers(0, 2, (n, len(FINDINGS))).astype(np.float32)
            labels[0], labels[1] = 0, 1
            strength = labels * 20.0
            labels[rng.random(labels.shape) < 0.15] = np.nan  # uncertain: masked
        splits.append(ArrayImageSplit(_images(rng, n, size, channels, strength), labels, task))
    if task == "multiclass":
        info = DatasetInfo("fake-retina", task, GRADES, 3, size, (0.4, 0.4, 0.4),
                           (0.2, 0.2, 0.2), referable_threshold=2,
                           selection_metric="referable_auc", options=dict(options.extra))
    elif task == "binary":
        info = DatasetInfo("fake-binary", task, ("positive",), 3, size, (0.4, 0.4, 0.4),
                           (0.2, 0.2, 0.2), selection_metric="auc")
    else:
        info = DatasetInfo("fake-chest", task, FINDINGS, 1, size, (0.4,), (0.2,),
                           selection_metric="mean_auc")
    manifest = {"train": [f"p{i}" for i in range(n_train)]} if task == "multiclass" else None
    return DatasetBundle(info, *splits, split_manifest=manifest)


SIZE_OPTIONS = {"n_train": "training examples", "n_val": "validation (and test) examples"}


@hookimpl
def tfx_register_datasets(register):
    for name, task in (("fake-retina", "multiclass"), ("fake-binary", "binary"),
                       ("fake-chest", "multilabel")):
        register(DatasetSpec(name, lambda options, _task=task: build_fake(_task, options),
                             f"fit tests: tiny {task} data", default_image_size=32,
                             options=SIZE_OPTIONS))


@contextmanager
def one_thread() -> Iterator[None]:
    """Torch on one thread: on a busy shared machine two spinning threads are much slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def copy_run(source: Path, tmp_path: Path, name: str = "run") -> Path:
    """A copy of run folder ``source`` in ``tmp_path`` (to change without touching the original)."""
    target = tmp_path / name
    shutil.copytree(source, target)
    return target


def fake_plugin_env(tmp_path: Path) -> dict[str, str | None]:
    """The environment changes (for ``tfx.subprocess(env=...)`` or ``tfx.environment(...)``)
    under which a `tfx` subprocess sees the fake datasets as an installed plugin."""
    site = tmp_path / "fake_site"
    dist_info = site / "tfx_fit_fakes-0.0.1.dist-info"
    if not dist_info.exists():
        dist_info.mkdir(parents=True)
        (dist_info / "METADATA").write_text(
            "Metadata-Version: 2.1\nName: tfx-fit-fakes\nVersion: 0.0.1\n")
        (dist_info / "entry_points.txt").write_text("[tfx]\nfit-fakes = fit_helpers\n")
    return {"PYTHONPATH": os.pathsep.join(filter(None, [str(site), str(HERE),
                                                        os.environ.get("PYTHONPATH")])),
            "TFX_LOAD_PLUGINS": None,  # third-party plugins (this one) load
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}


# `fit` options of tiny runs on the fake datasets (registered by `fit_fakes` or `registry_with`).
FAKE_RETINA = ["--data", "fake-retina", "--arch", "cbr-tiny", "--image-size", "32",
               "--batch-size", "8", "--option", "n_train=32", "--option", "n_val=16"]
TINY = ["--arch", "cbr-tiny", "--image-size", "32", "--batch-size", "8", "--option",
        "n_train=48", "--option", "n_val=24"]
