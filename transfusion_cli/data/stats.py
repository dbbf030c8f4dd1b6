"""Label statistics of a built dataset: task, channels, options and label counts per split."""

from __future__ import annotations

from typing import Any

from transfusion_cli.data import SPLITS


def label_stats(bundle: Any) -> dict[str, Any]:
    """Task, channels, size, options and per-split label counts of a built dataset."""
    import numpy as np

    from transfusion_cli.data.bundles import dataset_labels

    meta = bundle.info
    result: dict[str, Any] = {
        "dataset": meta.name, "task": meta.task, "channels": meta.channels,
        "image_size": meta.image_size, "classes": list(meta.class_names),
        "mean": list(meta.mean), "std": list(meta.std),
        "referable_threshold": meta.referable_threshold,
        "selection_metric": meta.selection_metric, "options": dict(meta.options), "splits": {},
    }
    for name in SPLITS:
        dataset = getattr(bundle, name)
        if dataset is None:
            continue
        labels = dataset_labels(dataset)
        entry: dict[str, Any] = {"images": len(dataset)}
        if meta.task == "multilabel":
            labels = labels.reshape(len(labels), -1).astype(np.float64)
            entry["labels"] = {
                label: {"positive": int((labels[:, k] == 1).sum()),
                        "negative": int((labels[:, k] == 0).sum()),
                        "masked": int(np.isnan(labels[:, k]).sum())}
                for k, label in enumerate(meta.class_names)}
            entry["no_positive_label"] = int((~(labels == 1).any(axis=1)).sum())
        else:
            flat = labels.reshape(len(labels), -1)[:, 0] if len(labels) else labels.reshape(0)
            if meta.task == "binary":
                names = list(meta.class_names)
                if len(names) != 2:
                    names = [f"not {names[0]}" if names else "negative",
                             names[0] if names else "positive"]
                codes = (flat >= 0.5).astype(int)
            else:
                names, codes = list(meta.class_names), flat.astype(int)
            counts = np.bincount(codes, minlength=len(names))
            entry["classes"] = {label: int(counts[k]) for k, label in enumerate(names)}
            if meta.referable_threshold is not None:
                entry["referable"] = int((codes >= meta.referable_threshold).sum())
        result["splits"][name] = entry
    return result
