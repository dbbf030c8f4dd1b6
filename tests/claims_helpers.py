"""Evidence files built in code for the claim tests: arms from per-seed values, convergence seeds,
similarities, and whole files (the paper-like, chance-level, seed-noise-only and contrary ones).
"""

from __future__ import annotations

import zlib
from typing import Any

import numpy as np

from transfusion_cli.reproduce.evidence_format import FORMAT, VERSION, parse_evidence

ROLES = {"standard": ["resnet50"], "small": ["cbr-tiny"]}
LABEL = "referable"


_TEST_SET = np.random.default_rng(123).standard_normal(1000)  # one test set's resampling noise


def seeds(values, half_width: float = 0.002, paired: float | None = None,
          arm_seed: int = 0) -> dict[str, Any]:
    """A label's per-seed AUCs, each with a patient CI of ``half_width``; with ``paired`` (a
    correlation), also replicates of one shared test set, correlated that much across arms."""
    label: dict[str, Any] = {"seeds": [{"seed": i, "value": float(v),
                                        "ci95": [float(v) - half_width, float(v) + half_width]}
                                       for i, v in enumerate(values)]}
    if paired is not None:
        se = half_width / 1.96
        own = np.random.default_rng(arm_seed).standard_normal(len(_TEST_SET))
        deviations = se * (paired * _TEST_SET + np.sqrt(1 - paired ** 2) * own)
        label["patient_bootstrap"] = {"key": "test-set", "deviations": deviations.tolist()}
    return label


def arm(arch: str, init: str, values, train_size: int | None = None, half_width: float = 0.002,
        paired: float | None = None, **extra) -> dict[str, Any]:
    """A table arm with one label."""
    label = seeds(values, half_width, paired, arm_seed=zlib.crc32(f"{arch}{init}{train_size}"
                                                                   .encode()))
    entry = {"arch": arch, "init": init, "labels": {LABEL: label}, **extra}
    if train_size is not None:
        entry["train_size"] = train_size
    return entry


def conv_arm(arch: str, init: str, steps, last_step: int = 100_000,
             **extra) -> dict[str, Any]:
    """A convergence arm: ``None`` in ``steps`` is a seed that never reached the target."""
    return {"arch": arch, "init": init, **extra,
            "seeds": [{"seed": i, "last_step": last_step,
                       **({"steps_to_target": s} if s is not None else {})}
                      for i, s in enumerate(steps)]}


def blocks(values_per_block, low_data: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """Similarity to init per block: ``{block: [per-seed values]}``."""
    return [{"block": name, "values": list(values), "low_data": name in low_data}
            for name, values in values_per_block.items()]


def document(parts: dict[str, Any], roles=None, settings=None, **top) -> dict[str, Any]:
    """A whole evidence file's JSON value."""
    return {"format": FORMAT, "version": VERSION, "title": "test evidence",
            "roles": roles or ROLES, "settings": settings or {}, "parts": parts, **top}


def evidence(parts: dict[str, Any], **kwargs):
    """The parsed evidence file."""
    return parse_evidence(document(parts, **kwargs), "test.json")


def noisy(rng: np.random.Generator, centre: float, sd: float, n: int = 3) -> list[float]:
    """``n`` seeds around ``centre``."""
    return np.clip(rng.normal(centre, sd, n), 0.0, 1.0).round(4).tolist()


_arm = arm


def full_document(auc, gain, big_minus_small, little_gain, steps, similarity,
                  rng: np.random.Generator, sd: float = 0.002, half_width: float = 0.005,
                  block_sd: float = 0.01, seeds_n: int = 3, paired: float | None = 0.9
                  ) -> dict[str, Any]:
    """Evidence for every claim from a few knobs (the paper-like, null and contrary files):
    ``auc`` the base AUC; ``gain`` transfer's gain on all data; ``big_minus_small`` standard
    minus small CBR; ``little_gain`` (large, small) transfer gains with little data;
    ``steps`` {init: per-seed steps or None}; ``similarity`` {name: value} of representations;
    ``paired``: the arms carry patient replicates of one test set, correlated that much."""
    def values(centre):
        return noisy(rng, centre, sd, seeds_n)

    def arm(*args, **kwargs):
        return _arm(*args, paired=paired, **kwargs)

    small_auc = auc - big_minus_small
    table1 = {"arms": [arm("resnet50", "random", values(auc), half_width=half_width),
                       arm("resnet50", "pretrained", values(auc + gain), half_width=half_width),
                       arm("cbr-tiny", "random", values(small_auc), half_width=half_width),
                       arm("cbr-tiny", "pretrained", values(small_auc + gain),
                           half_width=half_width)]}
    table3 = {"arms": [arm("resnet50", "random", values(auc - 0.03), 5000, half_width),
                       arm("resnet50", "pretrained", values(auc - 0.03 + little_gain[0]), 5000,
                           half_width),
                       arm("cbr-tiny", "random", values(auc - 0.03), 5000, half_width),
                       arm("cbr-tiny", "pretrained", values(auc - 0.03 + little_gain[1]), 5000,
                           half_width)]}
    convergence = {"eval_every": 1000, "target": {"absolute": 0.9},
                   "arms": [conv_arm("resnet50", init, s) for init, s in steps.items()]}

    def sim(centre):
        return noisy(rng, centre, block_sd, seeds_n)

    s = similarity
    representations = {
        "metric": "cca",
        "to_init": {
            "resnet50": {
                "random": blocks({"stem": sim(s["big_low"]), "block1": sim(s["big_low"]),
                                  "block2": sim(s["big_high"]), "block3": sim(s["big_high"])}),
                "pretrained": blocks({"stem": sim(s["big_low"] + s["raise_low"]),
                                      "block1": sim(s["big_low"] + s["raise_low"]),
                                      "block2": sim(s["big_high"] + s["raise_high"]),
                                      "block3": sim(s["big_high"] + s["raise_high"])})},
            "cbr-tiny": {"random": blocks({"block1": sim(s["small_low"]),
                                           "block2": sim(s["small_low"]),
                                           "block3": sim(s["small_high"]),
                                           "block4": sim(s["small_high"])})}},
        "figure2": {
            "resnet50": {"blocks": ["block3", "block4"],
                         "pretrained_vs_random": {"values": sim(s["big_across"])},
                         "random_vs_random": {"values": sim(s["big_within"])}},
            "cbr-tiny": {"blocks": ["block3", "block4"],
                         "pretrained_vs_random": {"values": sim(s["small_across"])},
                         "random_vs_random": {"values": sim(s["small_within"])}}}}
    return document({"table1": table1, "table3": table3, "convergence": convergence,
                     "representations": representations},
                    source_scores={"resnet50": {"value": 0.76}, "cbr-tiny": {"value": 0.40}})


PAPER_LIKE_SIMILARITY = {"big_low": 0.9, "big_high": 0.6, "small_low": 0.4, "small_high": 0.3,
                         "raise_low": 0.08, "raise_high": 0.0, "big_across": 0.24,
                         "big_within": 0.30, "small_across": 0.36, "small_within": 0.36}
NULL_SIMILARITY = {"big_low": 0.5, "big_high": 0.5, "small_low": 0.5, "small_high": 0.5,
                   "raise_low": 0.0, "raise_high": 0.0, "big_across": 0.36,
                   "big_within": 0.36, "small_across": 0.36, "small_within": 0.36}
