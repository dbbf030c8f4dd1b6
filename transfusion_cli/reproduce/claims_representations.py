"""Claims C5 and C6 on the evidence's representation part (similarities over seeds or network
pairs, in one named measure; the paper's is CCA).

- C5: per standard model and small CBR (random init), the similarity to initialisation
  averaged over the lower half of the blocks: standard - small above 0.
- C6, lower layers: per architecture, pretrained init's raise of similarity to init (pretrained
  - random) averaged over the bottom two blocks minus the same averaged over the blocks above
  them: above 0.
- C6, Figure 2 (the top two blocks, trained networks): for a standard model, random-vs-random
  minus pretrained-vs-random above 0; for a small CBR, the two within
  +-``margin_similarity`` (TOST), "about equal" as the paper reports.

An average over blocks uses each seed's own average when every block lists per-seed values,
else the mean of the blocks' spreads (the blocks taken as perfectly correlated: conservative).
A block flagged ``low_data`` (too few data points per neuron: CCA values are inflated) makes
the part that uses it inconclusive, naming the block; so does a network that did not learn (its
architecture and init fail the learning gate in a table of the same evidence). In published
evidence, similarities without spread (Figure 2's readings) are decided by the
published-summary rule: an ordering at ``published_factor`` x ``margin_similarity``, the CBRs'
"about equal" within ``margin_similarity``.
"""

from __future__ import annotations

import numpy as np

from transfusion_cli.evaluation.claim_stats import ArmSample
from transfusion_cli.reproduce.claim_tests import equivalence_part, gate, greater_part
from transfusion_cli.reproduce.evidence_format import EvidenceFile, Similarity
from transfusion_cli.reproduce.verdicts import (
    INCONCLUSIVE,
    PRETRAINED,
    RANDOM,
    STATEMENTS,
    ClaimSettings,
    PartResult,
    Verdict,
    combine,
)

PAPER_MEASURE = "cca"


def average(blocks: list[tuple[str, Similarity]]) -> ArmSample:
    """The blocks' average similarity over seeds (module docstring)."""
    values = [s.values for _, s in blocks]
    if all(v is not None for v in values) and len({len(v) for v in values}) == 1:
        return ArmSample.from_values(np.mean(np.asarray(values, dtype=float), axis=0).tolist())
    samples = [s.sample for _, s in blocks]
    sds = [s.sd for s in samples]
    return ArmSample(float(np.mean([s.mean for s in samples])),
                     None if any(sd is None for sd in sds) else float(np.mean(sds)),
                     min(s.n_seeds for s in samples))


def learned(evidence: EvidenceFile, name: str, arms: list[tuple[str, str]],
            settings: ClaimSettings) -> PartResult | None:
    """An inconclusive part when a network it compares did not learn: the same architecture
    and init in a table of the evidence fails the learning gate (the study's representation
    cells are its table cells). Without such a table, nothing to check."""
    reasons = []
    for part in evidence.performance.values():
        for arch, init in arms:
            arm = part.arm(arch, init)
            for label, sample in (arm.labels.items() if arm else []):
                reason = gate(f"{part.name} {arm.name()} ({label})", sample, settings)
                if reason:
                    reasons.append(reason)
    if not reasons:
        return None
    return PartResult(name, INCONCLUSIVE, "", reason="; ".join(dict.fromkeys(reasons)))


def _low_data(name: str, blocks: list[tuple[str, Similarity]]) -> PartResult | None:
    low = [block for block, s in blocks if s.low_data]
    if not low:
        return None
    return PartResult(name, INCONCLUSIVE, "", reason=f"too few data points per neuron in "
                      f"{', '.join(low)} (values inflated); probe more inputs")


def _method(evidence: EvidenceFile, what: str) -> str:
    reps = evidence.representations
    measure = reps.metric if reps else PAPER_MEASURE
    note = ("" if measure.lower() == PAPER_MEASURE
            else f" (the paper's measure is CCA, not {measure})")
    return (f"{what}; similarity measure {measure}{note}, on {reps.split if reps else '-'}; "
            "Student t over seeds or network pairs (pairs taken as independent)")


def c5(evidence: EvidenceFile, settings: ClaimSettings) -> Verdict:
    """Similarity to init over the lower blocks, random init: standard above small."""
    reps = evidence.representations
    to_init = reps.to_init if reps else {}
    standard = [a for a in evidence.roles.get("standard", []) if RANDOM in to_init.get(a, {})]
    small = [a for a in evidence.roles.get("small", []) if RANDOM in to_init.get(a, {})]
    pairs = [(b, s) for b in standard for s in small]
    parts = []
    for big, little in pairs:
        name = f"{reps.metric} to init, lower blocks, random init: {big} - {little}"
        lower = {a: to_init[a][RANDOM][:max(1, len(to_init[a][RANDOM]) // 2)]
                 for a in (big, little)}
        flagged = (learned(evidence, name, [(big, RANDOM), (little, RANDOM)], settings)
                   or _low_data(name, lower[big] + lower[little]))
        parts.append(flagged or greater_part(
            name, [(1, big, average(lower[big])), (-1, little, average(lower[little]))],
            settings, len(pairs), what=f"{reps.metric} difference", gated=False,
            published=evidence.published, margin=settings.margin_similarity))
    return combine("C5", STATEMENTS["C5"], parts, _method(evidence, "standard - small above 0"),
                   "needs similarity to init of a standard and a small model (random init)")


def c6(evidence: EvidenceFile, settings: ClaimSettings) -> Verdict:
    """Pretrained raises similarity to init only low; Figure 2 at the top two blocks."""
    reps = evidence.representations
    parts: list[PartResult] = []
    if reps is None:
        return combine("C6", STATEMENTS["C6"], [], "", "needs the representations part")
    plans = []
    for arch, arms in reps.to_init.items():
        if RANDOM in arms and PRETRAINED in arms and min(len(arms[RANDOM]),
                                                         len(arms[PRETRAINED])) >= 3:
            plans.append(("lower", arch))
    standard, small = evidence.roles.get("standard", []), evidence.roles.get("small", [])
    for arch, pair in reps.figure2.items():
        if {"pretrained_vs_random", "random_vs_random"} <= set(pair) and arch in standard + small:
            plans.append(("figure2", arch))
    for kind, arch in plans:
        gated = learned(evidence, f"{arch} ({kind})", [(arch, RANDOM), (arch, PRETRAINED)],
                        settings)
        parts.append(gated or (_lower_part(reps, arch, settings, len(plans),
                                           evidence.published) if kind == "lower"
                               else _figure2_part(reps, arch, arch in standard, settings,
                                                  len(plans), evidence.published)))
    return combine("C6", STATEMENTS["C6"], parts,
                   _method(evidence, "lower: raise at the bottom two blocks minus above, above "
                           f"0; Figure 2: standard random-vs-random minus pretrained-vs-random "
                           f"above 0, CBRs equivalent within ±{settings.margin_similarity:g}"),
                   "needs similarity to init of random and pretrained runs, or Figure 2 pairs")


def _lower_part(reps, arch: str, settings: ClaimSettings, tests: int,
                published: bool) -> PartResult:
    random, pretrained = reps.to_init[arch][RANDOM], reps.to_init[arch][PRETRAINED]
    name = f"{arch} {reps.metric} to init, pretrained - random: bottom two blocks - above"
    flagged = _low_data(name, random + pretrained)
    if flagged:
        return flagged
    terms = [(1, f"{arch} pretrained bottom", average(pretrained[:2])),
             (-1, f"{arch} random bottom", average(random[:2])),
             (-1, f"{arch} pretrained above", average(pretrained[2:])),
             (1, f"{arch} random above", average(random[2:]))]
    return greater_part(name, terms, settings, tests, what=f"{reps.metric} raise difference",
                        gated=False, published=published, margin=settings.margin_similarity)


def _figure2_part(reps, arch: str, is_standard: bool, settings: ClaimSettings,
                  tests: int, published: bool) -> PartResult:
    pair = reps.figure2[arch]
    cites = (reps.figure2_cite.get(arch, ""),)
    blocks = ", ".join(reps.figure2_blocks.get(arch) or ["top two blocks"])
    across, within = pair["pretrained_vs_random"], pair["random_vs_random"]
    flagged = _low_data(f"{arch} Figure 2", [(blocks, across), (blocks, within)])
    if flagged:
        return flagged
    if is_standard:
        name = f"{arch} Figure 2 ({blocks}): random-vs-random - pretrained-vs-random"
        return greater_part(name, [(1, f"{arch} random-vs-random", within.sample),
                                   (-1, f"{arch} pretrained-vs-random", across.sample)],
                            settings, tests, what=f"{reps.metric} difference", gated=False,
                            published=published, margin=settings.margin_similarity,
                            cites=cites)
    name = f"{arch} Figure 2 ({blocks}): pretrained-vs-random - random-vs-random"
    return equivalence_part(name, [(1, f"{arch} pretrained-vs-random", across.sample),
                                   (-1, f"{arch} random-vs-random", within.sample)],
                            settings.margin_similarity, settings, tests,
                            what=f"{reps.metric} difference", gated=False,
                            published=published, cites=cites)
