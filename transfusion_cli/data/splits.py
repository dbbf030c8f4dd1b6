"""Seeded train / val / test splits by group (patient), stratified, and their split.json record.

Every image of one group (a patient: both eyes, every study) lands in the same split. Groups
are sorted before shuffling, so the split depends only on the data and the seed, not on the
order of rows in a CSV file.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np

from transfusion_cli.errors import ConfigError


def check_fractions(dataset: str, val_fraction: float, test_fraction: float) -> None:
    """val + test must leave something to train on."""
    if val_fraction + test_fraction >= 1.0:
        raise ConfigError(f"Dataset '{dataset}': val_fraction {val_fraction} + test_fraction "
                          f"{test_fraction} leave nothing to train on; keep their sum below 1.")


def _round(x: float) -> int:
    return int(np.floor(x + 0.5))


def _stratum_counts(n: int, fractions: Sequence[float]) -> list[int]:
    """How many of ``n`` groups go to each held-out split (train gets the rest).

    Rounded per split; when the stratum has a group to spare for every split that asks for
    any, each such split gets at least one, so small classes still reach val and test.
    """
    counts = [_round(n * f) for f in fractions]
    wanted = [f > 0 for f in fractions]
    if n >= sum(wanted) + 1:
        counts = [max(c, 1) if w else c for c, w in zip(counts, wanted, strict=True)]
    while sum(counts) >= n and n > 0 and any(counts):  # leave train at least one group
        largest = int(np.argmax(counts))
        counts[largest] -= 1
    return counts


def group_split(groups: Sequence[Hashable], strata: Sequence[Hashable] | None,
                fractions: dict[str, float], seed: int) -> dict[str, np.ndarray]:
    """Split items into ``train`` and the held-out splits in ``fractions`` (e.g. val, test).

    ``groups[i]`` is item i's group (patient); ``strata[i]`` its stratum key (e.g. the grade).
    A group's stratum is the largest key among its items, so a patient with one healthy and
    one severe eye is stratified as severe. Returns sorted item indices per split.
    """
    groups = list(groups)
    held_out = [name for name in fractions if name != "train"]
    group_items: dict[Hashable, list[int]] = defaultdict(list)
    for index, group in enumerate(groups):
        group_items[group].append(index)
    group_stratum: dict[Hashable, Any] = {}
    for group, items in group_items.items():
        group_stratum[group] = max(strata[i] for i in items) if strata is not None else 0
    by_stratum: dict[Any, list[Hashable]] = defaultdict(list)
    for group in sorted(group_items, key=str):
        by_stratum[group_stratum[group]].append(group)
    rng = np.random.default_rng(seed)
    assignment: dict[str, list[int]] = {name: [] for name in ("train", *held_out)}
    for stratum in sorted(by_stratum, key=str):
        members = by_stratum[stratum]
        order = rng.permutation(len(members))
        counts = _stratum_counts(len(members), [fractions[name] for name in held_out])
        start = 0
        for name, count in zip(held_out, counts, strict=True):
            for position in order[start: start + count]:
                assignment[name].extend(group_items[members[position]])
            start += count
        for position in order[start:]:
            assignment["train"].extend(group_items[members[position]])
    return {name: np.array(sorted(items), dtype=np.int64) for name, items in assignment.items()}


def stratum_keys(labels: np.ndarray, task: str) -> list[int]:
    """Per-item stratum: the class (multi-class, binary) or any positive label (multi-label)."""
    labels = np.asarray(labels)
    if task == "multilabel":
        return [int(np.nansum(row) > 0) for row in labels.reshape(len(labels), -1)]
    return [int(value) for value in labels.reshape(len(labels), -1)[:, 0]]


def split_manifest(method: str, groups: Sequence[Hashable], indices: dict[str, np.ndarray],
                   seed: int, **details: Any) -> dict[str, Any]:
    """The record written as split.json: how the split was made and which patients went where."""
    groups = list(groups)
    patients = {name: sorted({str(groups[i]) for i in idx}) for name, idx in indices.items()}
    return {
        "method": method,
        "seed": seed,
        **details,
        "counts": {name: {"patients": len(patients[name]), "images": int(len(idx))}
                   for name, idx in indices.items()},
        "patients": patients,
    }
