"""A verdict per claim C1-C8 of the paper, from the measured evidence (no training here).

Verdicts: ``consistent`` / ``inconsistent`` with the paper, ``mixed`` (part of the claim
holds), ``inconclusive`` (the runs cannot decide, e.g. nothing reached the target) and
``not run`` (the runs the claim needs are missing). A difference counts as a real gain or loss
only when its 95 % CI excludes zero AND it is larger than the study's margin (default 0.005
AUC, half a point: the paper's own "comparable" scale); tfx's choice, stated in the report.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from transfusion_cli.reproduce.evidence import ArmResult, Comparison, PartEvidence

CONSISTENT, INCONSISTENT, MIXED = "consistent", "inconsistent", "mixed"
INCONCLUSIVE, NOT_RUN = "inconclusive", "not run"
PRETRAINED, RANDOM = "pretrained", "random"
SOURCE_GAP = 0.02  # source-task AUC gap that counts as "clearly better on the source task"
FASTER = 0.9  # "clearly fewer steps": at most 90 % of random init's
MOST = 0.5  # "most of the speed-up": at least half of random -> pretrained


@dataclass
class Verdict:
    """One claim's verdict and the evidence behind it."""

    claim: str
    statement: str
    verdict: str
    evidence: str

    def line(self) -> str:
        """``C1 ...: evidence: verdict``."""
        if self.verdict == NOT_RUN:
            return f"{self.claim} {self.statement}: not run ({self.evidence})"
        return f"{self.claim} {self.statement}: {self.evidence}: {self.verdict} with the paper"


@dataclass
class Evidence:
    """Everything the claims read."""

    parts: dict[str, PartEvidence] = field(default_factory=dict)
    roles: dict[str, list[str]] = field(default_factory=dict)
    source_scores: dict[str, float] = field(default_factory=dict)
    source_label: str = "ImageNet"
    representations: dict[str, Any] | None = None
    margin: float = 0.005


STATEMENTS = {
    "C1": "ImageNet transfer gives no significant AUC gain for the standard models",
    "C2": "small CBR models perform comparably to the standard models",
    "C3": "source-task (ImageNet) accuracy does not predict medical accuracy",
    "C4": "with little data transfer helps more, and more for the large model",
    "C5": "large models change less from their initialisation than small ones",
    "C6": "feature reuse is confined to the lowest layers",
    "C7": "Mean Var init (weight scaling alone) converges clearly faster than random init",
    "C8": "transfusing the lowest blocks recovers most of transfer's speed-up; Gabor conv1 part",
}


def gain(c: Comparison, margin: float) -> bool:
    """b is really better than a."""
    return c.ci_low > 0 and c.difference > margin


def loss(c: Comparison, margin: float) -> bool:
    """b is really worse than a."""
    return c.ci_high < 0 and c.difference < -margin


def _transfer(part: PartEvidence | None, archs: list[str] | None = None) -> list[Comparison]:
    if part is None:
        return []
    return [c for c in part.comparisons if c.arch_a == c.arch_b and c.init_a == RANDOM
            and c.init_b == PRETRAINED and (archs is None or c.arch_a in archs)]


def _describe(comparisons: list[Comparison], limit: int = 4) -> str:
    shown = [f"{c.what}" + (f" ({c.label})" if c.label not in ("referable", "positive") else "")
             + f" {c.text()}" for c in comparisons[:limit]]
    more = len(comparisons) - limit
    return "; ".join(shown) + (f"; and {more} more" if more > 0 else "")


def c1(ev: Evidence) -> Verdict:
    """Transfer vs random on the large tasks, standard models."""
    standard = ev.roles.get("standard") or []
    comparisons = (_transfer(ev.parts.get("table1"), standard)
                   + _transfer(ev.parts.get("table2"), standard))
    if not comparisons:
        return _verdict("C1", NOT_RUN, "needs table1/table2 cells of a standard model, random "
                        "and pretrained")
    gains = [c for c in comparisons if gain(c, ev.margin)]
    verdict = INCONSISTENT if gains else CONSISTENT
    return _verdict("C1", verdict, "difference " + _describe(gains or comparisons))


def c2(ev: Evidence) -> Verdict:
    """Small CBRs vs standard models, same init, table1."""
    part = ev.parts.get("table1")
    small, standard = ev.roles.get("small") or [], ev.roles.get("standard") or []
    comparisons = [c for c in (part.comparisons if part else []) if c.arch_a in standard
                   and c.arch_b in small and c.init_a == c.init_b]
    if not comparisons:
        return _verdict("C2", NOT_RUN, "needs table1 cells of a small CBR and a standard model")
    losses = [c for c in comparisons if loss(c, ev.margin)]
    ratio = _param_ratio(part.arms, small, standard)
    text = "difference " + _describe(losses or comparisons) + ratio
    return _verdict("C2", INCONSISTENT if losses else CONSISTENT, text)


def _param_ratio(arms: list[ArmResult], small: list[str], standard: list[str]) -> str:
    params = {a.arch: a.params for a in arms if a.params}
    pairs = [(s, b) for s in small for b in standard if s in params and b in params]
    if not pairs:
        return ""
    s, b = pairs[0]
    return f"; {s} has {params[s] / params[b]:.0%} of {b}'s parameters"


def c3(ev: Evidence) -> Verdict:
    """A clear source-task gap between two architectures, against their medical gap."""
    part = ev.parts.get("table1")
    scores = ev.source_scores
    comparisons = [c for c in (part.comparisons if part else []) if c.arch_a != c.arch_b
                   and c.init_a == c.init_b and c.arch_a in scores and c.arch_b in scores]
    if not comparisons:
        return _verdict("C3", NOT_RUN, f"needs {ev.source_label} scores of two table1 "
                        "architectures and their table1 cells")
    findings, verdicts = [], []
    for c in comparisons:
        source_gap = scores[c.arch_b] - scores[c.arch_a]
        head = (f"{ev.source_label} {c.arch_b} - {c.arch_a} = {source_gap:+.3f}, medical "
                f"{c.text()}")
        if abs(source_gap) < SOURCE_GAP:
            verdicts.append(INCONCLUSIVE)
            findings.append(head + " (source gap too small to test)")
            continue
        follows = gain(c, ev.margin) if source_gap > 0 else loss(c, ev.margin)
        verdicts.append(INCONSISTENT if follows else CONSISTENT)
        findings.append(head)
    return _verdict("C3", _combine(verdicts), "; ".join(findings[:3]))


def c4(ev: Evidence) -> Verdict:
    """Transfer's gain on small data vs full data, and large vs small models."""
    small_data = {c.arch_a: c for c in _transfer(ev.parts.get("table3"))}
    if not small_data:
        return _verdict("C4", NOT_RUN, "needs table3 cells, random and pretrained")
    full = {c.arch_a: c for c in _transfer(ev.parts.get("table1"))}
    standard = [a for a in ev.roles.get("standard") or [] if a in small_data]
    small = [a for a in ev.roles.get("small") or [] if a in small_data]
    checks, findings = [], []
    for arch in standard:
        if arch in full:
            more = small_data[arch].difference > full[arch].difference
            checks.append(more)
            findings.append(f"{arch} gain {small_data[arch].difference:+.3f} on little data vs "
                            f"{full[arch].difference:+.3f} on all")
        for other in small:
            more = small_data[arch].difference > small_data[other].difference
            checks.append(more)
            findings.append(f"little-data gain {arch} {small_data[arch].text()} vs {other} "
                            f"{small_data[other].text()}")
    if not checks:
        return _verdict("C4", INCONCLUSIVE, "table3 has no standard model to compare: "
                        + _describe(list(small_data.values())))
    verdict = CONSISTENT if all(checks) else INCONSISTENT if not any(checks) else MIXED
    return _verdict("C4", verdict, "; ".join(findings[:3]))


def _mean(values: list[float]) -> float:
    finite = [v for v in values if v is not None and not math.isnan(v)]
    return sum(finite) / len(finite) if finite else math.nan


def c5(ev: Evidence) -> Verdict:
    """Similarity to init (random init, lower half of the blocks): large vs small."""
    reps = ev.representations or {}
    to_init = reps.get("to_init") or {}
    standard = [a for a in ev.roles.get("standard") or [] if RANDOM in to_init.get(a, {})]
    small = [a for a in ev.roles.get("small") or [] if RANDOM in to_init.get(a, {})]
    if not standard or not small:
        return _verdict("C5", NOT_RUN, "needs representations of a standard and a small model")

    def lower(arch: str) -> float:
        values = [v for _, v in to_init[arch][RANDOM]]
        return _mean(values[:max(1, len(values) // 2)])

    checks = [lower(b) > lower(s) for b in standard for s in small]
    text = ", ".join(f"{a} {lower(a):.2f}" for a in standard + small)
    metric = reps.get("metric", "CCA")
    verdict = CONSISTENT if all(checks) else INCONSISTENT if not any(checks) else MIXED
    return _verdict("C5", verdict, f"mean {metric} to init over the lower blocks (random "
                    f"init): {text}")


def c6(ev: Evidence) -> Verdict:
    """Pretrained raises similarity to init only low; Fig 2 at the top two blocks."""
    reps = ev.representations or {}
    to_init, fig2 = reps.get("to_init") or {}, reps.get("fig2") or {}
    checks, findings = [], []
    for arch, arms in to_init.items():
        if RANDOM in arms and PRETRAINED in arms and len(arms[RANDOM]) >= 4:
            delta = [p - r for (_, p), (_, r) in zip(arms[PRETRAINED], arms[RANDOM],
                                                      strict=False)]
            low, high = _mean(delta[:2]), _mean(delta[-2:])
            checks.append(low > high)
            findings.append(f"{arch} pretrained - random similarity to init: bottom two "
                            f"{low:+.2f}, top two {high:+.2f}")
    for arch, values in fig2.items():
        across, within = values.get("pretrained_vs_random"), values.get("random_vs_random")
        if across is None or within is None:
            continue
        checks.append(across < within)
        findings.append(f"{arch} top two blocks: pretrained-vs-random {across:.2f}, "
                        f"random-vs-random {within:.2f}")
    if not checks:
        return _verdict("C6", NOT_RUN, "needs representations of random and pretrained runs")
    verdict = CONSISTENT if all(checks) else INCONSISTENT if not any(checks) else MIXED
    return _verdict("C6", verdict, "; ".join(findings[:4]))


def _steps(arm: ArmResult | None) -> float:
    """Steps to target; infinity when no seed reached it."""
    if arm is None or not arm.reached or arm.steps_to_target is None:
        return math.inf
    return float(arm.steps_to_target)


def _steps_text(arm: ArmResult) -> str:
    if arm.reached and arm.steps_to_target is not None:
        return f"{arm.steps_to_target:.0f} steps"
    return f"not reached in {arm.last_step} steps"


def _convergence_arms(ev: Evidence) -> dict[str, dict[str, ArmResult]]:
    part = ev.parts.get("convergence")
    arms: dict[str, dict[str, ArmResult]] = {}
    for arm in part.arms if part else []:
        arms.setdefault(arm.arch, {})[arm.init] = arm
    return arms


def c7(ev: Evidence) -> Verdict:
    """Mean Var vs random: steps to the target."""
    checks, findings = [], []
    for arch, arms in _convergence_arms(ev).items():
        if RANDOM not in arms or "mean-var" not in arms:
            continue
        random, mean_var = _steps(arms[RANDOM]), _steps(arms["mean-var"])
        findings.append(f"{arch}: mean-var {_steps_text(arms['mean-var'])} vs random "
                        f"{_steps_text(arms[RANDOM])}")
        if math.isinf(random) and math.isinf(mean_var):
            checks.append(None)
        else:
            checks.append(mean_var <= FASTER * random)
    if not checks:
        return _verdict("C7", NOT_RUN, "needs convergence cells with random and mean-var")
    decided = [c for c in checks if c is not None]
    if not decided:
        return _verdict("C7", INCONCLUSIVE, "; ".join(findings) + " (neither reached the "
                        "target)")
    verdict = CONSISTENT if all(decided) else INCONSISTENT if not any(decided) else MIXED
    return _verdict("C7", verdict, "; ".join(findings))


def c8(ev: Evidence) -> Verdict:
    """Transfusion of the lowest blocks / Slim recovers most of the speed-up; Gabor part."""
    checks, findings = [], []
    all_arms = _convergence_arms(ev)
    for arch, arms in all_arms.items():
        if RANDOM not in arms or PRETRAINED not in arms:
            continue
        random, full = _steps(arms[RANDOM]), _steps(arms[PRETRAINED])
        if not full < random:
            findings.append(f"{arch}: full transfer {_steps_text(arms[PRETRAINED])} vs random "
                            f"{_steps_text(arms[RANDOM])}: no speed-up to recover")
            checks.append(None)
            continue
        budget = random - MOST * (random - full) if not math.isinf(random) else math.inf
        partial = [a for label, a in arms.items() if label.startswith("transfusion")]
        partial += [a[PRETRAINED] for name, a in all_arms.items()
                    if name != arch and "slim" in name and PRETRAINED in a]
        if partial:
            best = min(partial, key=_steps)
            steps = _steps(best)
            checks.append(steps <= budget if not math.isinf(budget) else not math.isinf(steps))
            findings.append(f"{arch}: {best.arch} {best.init} {_steps_text(best)}, full "
                            f"transfer {_steps_text(arms[PRETRAINED])}, random "
                            f"{_steps_text(arms[RANDOM])}")
        if "gabor" in arms:
            checks.append(_steps(arms["gabor"]) < random)
            findings.append(f"{arch}: gabor {_steps_text(arms['gabor'])}")
    if not checks:
        return _verdict("C8", NOT_RUN, "needs convergence cells with random, pretrained and "
                        "transfusion or gabor")
    decided = [c for c in checks if c is not None]
    if not decided:
        return _verdict("C8", INCONCLUSIVE, "; ".join(findings))
    verdict = CONSISTENT if all(decided) else INCONSISTENT if not any(decided) else MIXED
    return _verdict("C8", verdict, "; ".join(findings[:4]))


def _combine(verdicts: list[str]) -> str:
    decided = [v for v in verdicts if v in (CONSISTENT, INCONSISTENT)]
    if not decided:
        return INCONCLUSIVE
    if all(v == CONSISTENT for v in decided):
        return CONSISTENT
    return INCONSISTENT if all(v == INCONSISTENT for v in decided) else MIXED


def _verdict(claim: str, verdict: str, evidence: str) -> Verdict:
    return Verdict(claim, STATEMENTS[claim], verdict, evidence)


def all_verdicts(evidence: Evidence) -> list[Verdict]:
    """C1..C8 in order."""
    return [rule(evidence) for rule in (c1, c2, c3, c4, c5, c6, c7, c8)]
