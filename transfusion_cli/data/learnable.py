"""Refuse training labels that nothing can be learned from (before any training starts)."""

from __future__ import annotations

import numpy as np

from transfusion_cli.console import warn
from transfusion_cli.data.bundles import DatasetInfo
from transfusion_cli.errors import DataError

FIX = "check the dataset's labels and options (`tfx data stats`)"


def check_learnable(labels: np.ndarray, info: DatasetInfo, split: str = "training") -> None:
    """DataError when the split has no usable label or only one class; a multi-label finding
    with no usable label at all is warned about (that output is never trained)."""
    labels = np.asarray(labels, dtype=np.float64)
    total = len(labels)
    if total == 0:
        raise DataError(f"The {split} split of '{info.name}' is empty; {FIX}.")
    if info.task == "multilabel":
        _check_multilabel(labels.reshape(total, -1), info, split)
        return
    flat = labels.reshape(total, -1)[:, 0]
    usable = flat[~np.isnan(flat)]
    if len(usable) == 0:
        raise DataError(f"All {total} {split} labels of '{info.name}' are masked (uncertain or "
                        f"missing), so there is nothing to learn; {FIX}.")
    codes = (usable >= 0.5).astype(int) if info.task == "binary" else usable.astype(int)
    present = np.unique(codes)
    if len(present) < 2:
        names = list(info.class_names)
        if info.task == "binary" and len(names) != 2:
            names = [f"not {names[0]}", names[0]]
        only = names[present[0]] if 0 <= present[0] < len(names) else str(present[0])
        raise DataError(f"Every one of the {len(usable)} {split} images of '{info.name}' has "
                        f"class '{only}': a model cannot learn to tell classes apart from one "
                        f"class; {FIX}.")


def _check_multilabel(labels: np.ndarray, info: DatasetInfo, split: str) -> None:
    usable = ~np.isnan(labels)
    names = list(info.class_names)
    if not usable.any():
        raise DataError(f"All {labels.size} {split} labels of '{info.name}' ({len(labels)} "
                        f"images x {labels.shape[1]} findings) are masked (uncertain or "
                        f"missing, e.g. by uncertainty=u-ignore), so there is nothing to learn; "
                        f"{FIX}.")
    two_valued = [np.unique(labels[usable[:, k], k]).size >= 2 for k in range(labels.shape[1])]
    if not any(two_valued):
        raise DataError(f"No finding of '{info.name}' has both positive and negative {split} "
                        f"labels, so there is nothing to learn; {FIX}.")
    for k, name in enumerate(names):
        if not usable[:, k].any():
            warn(f"finding '{name}' has no usable {split} label (all {len(labels)} masked); "
                 "its output will not be trained.")
