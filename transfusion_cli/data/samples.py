"""Sample images of a dataset saved as PNG files (`tfx data save`): something real to give
`tfx predict`, `tfx explain` and other tools that read image files."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from transfusion_cli.data.bundles import DatasetBundle, dataset_labels
from transfusion_cli.errors import ConfigError


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text).strip("-").lower() or "x"


def sample_indices(labels: np.ndarray, task: str, n: int, seed: int) -> list[int]:
    """``n`` indices spread over the classes (round-robin over a seeded shuffle of each)."""
    rng = np.random.default_rng(seed)
    if task != "multiclass":
        return sorted(rng.permutation(len(labels))[:n].tolist())
    by_class = [rng.permutation(np.flatnonzero(labels.reshape(-1) == c)).tolist()
                for c in np.unique(labels)]
    chosen: list[int] = []
    while len(chosen) < min(n, len(labels)):
        for members in by_class:
            if members and len(chosen) < n:
                chosen.append(members.pop(0))
    return chosen


def save_samples(bundle: DatasetBundle, out_dir: str | Path, n: int = 4, split: str = "test",
                 seed: int = 0) -> list[Path]:
    """Write ``n`` images of ``split`` as ``<split>-<index>-<label>.png`` into ``out_dir``;
    refuses to write over existing files."""
    from PIL import Image

    from transfusion_cli.io import atomic_write

    if n < 1:
        raise ConfigError(f"--n {n} must be at least 1.")
    dataset = bundle.split(split)
    labels = dataset_labels(dataset)
    info = bundle.info
    chosen = sample_indices(labels, info.task, n, seed)
    targets = []
    for index in chosen:
        label = np.asarray(labels[index]).reshape(-1)
        if info.task == "multiclass":
            name = info.class_names[int(label[0])]
        else:
            name = "+".join(info.class_names[i] for i, v in enumerate(label) if v == 1) or "none"
        targets.append((index, Path(out_dir) / f"{split}-{index:05d}-{_slug(name)}.png"))
    existing = [str(path) for _, path in targets if path.exists()]
    if existing:
        raise ConfigError(f"{existing[0]} already exists; choose an empty --out folder (tfx "
                          "does not overwrite files it may not have written).")
    written = []
    for index, path in targets:
        image, _ = dataset[index]
        array = image.permute(1, 2, 0).numpy()
        picture = Image.fromarray(array[..., 0] if array.shape[2] == 1 else array)
        written.append(atomic_write(path, lambda tmp, p=picture: p.save(tmp, format="PNG")))
    return written
