"""The building blocks of the claim rules: the learning gate, the spread check, and one part's
equivalence or one-sided test on a linear combination of arms (a difference, a difference of
differences), each returning a ``PartResult`` with its numbers, reason and power. A part whose
arms have no spread is inconclusive in a study's evidence and goes to the published-summary
rule (``published_rule``) in published evidence."""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np

from transfusion_cli.evaluation.claim_stats import (
    DIFFERENT,
    EQUIVALENT,
    GREATER,
    LESS,
    ArmSample,
    combined_draws,
    equivalence,
    interval,
    one_sided,
    rng_for,
)
from transfusion_cli.reproduce import published_rule
from transfusion_cli.reproduce.verdicts import (
    CONSISTENT,
    INCONCLUSIVE,
    INCONSISTENT,
    ClaimSettings,
    PartResult,
)

Term = tuple[float, str, ArmSample]  # (coefficient, arm name, the arm's sample)


def gate(name: str, sample: ArmSample, settings: ClaimSettings) -> str | None:
    """Why the arm did not learn (its interval's lower end not above the learning floor), or
    None when it did. Without any spread the point value is held against the floor."""
    floor = settings.learning_floor
    if not sample.has_uncertainty:
        return None if sample.mean > floor else (
            f"{name} not learned (AUC {sample.mean:.3f}, not above the floor {floor:g})")
    low = _lower_bound(name, sample, settings.alpha)
    if low > floor:
        return None
    return (f"{name} not learned (AUC {sample.mean:.3f}, lower bound {low:.3f} not above the "
            f"floor {floor:g})")


@lru_cache(maxsize=4096)
def _lower_bound(name: str, sample: ArmSample, alpha: float) -> float:
    """The lower end of the arm's ``1 - 2 alpha`` interval (one arm is gated by many parts)."""
    return interval(sample.draws(rng_for("gate", name)), 1 - 2 * alpha).low


def spread_problem(terms: Sequence[Term]) -> str | None:
    """Why an arm's seed-to-seed spread is unknown (one seed, or a mean without its spread),
    or None when every arm has it. A study that lacks it cannot decide: too few seeds."""
    single = [name for _, name, s in terms if s.n_seeds == 1]
    if single:
        return (f"too few seeds: {', '.join(single[:2])} has one, so the seed-to-seed spread "
                "is unknown")
    bare = [name for _, name, s in terms if s.sd is None]
    if bare:
        return f"too few seeds: the evidence gives {bare[0]} without its spread over seeds"
    return None


def combination(terms: Sequence[Term], key: str) -> tuple[float, np.ndarray, str]:
    """The point value, the draws of ``sum(coefficient * arm)`` and how patients entered."""
    estimate, draws, paired = combined_draws([(c, s) for c, _, s in terms], key)
    if paired:
        how = "patients paired"
    elif any(s.patient_se for _, _, s in terms):
        how = "patients unpaired (conservative)"
    else:
        how = "seeds only"
    return estimate, draws, how


def _unlearned(terms: Sequence[Term], settings: ClaimSettings, gated: bool) -> str | None:
    if gated:
        reasons = [r for _, name, s in terms if (r := gate(name, s, settings))]
        if reasons:
            return "; ".join(dict.fromkeys(reasons))
    return None


def _seeds(terms: Sequence[Term]) -> str:
    return "/".join(str(s.n_seeds) for _, _, s in terms)


def equivalence_part(name: str, terms: Sequence[Term], margin: float, settings: ClaimSettings,
                     tests: int, what: str = "AUC", gated: bool = True, size: str = "",
                     published: bool = False, published_kind: str = published_rule.EQUIVALENT,
                     cites: Sequence[str] = ()) -> PartResult:
    """The combination lies within +-``margin`` (consistent), beyond it (inconsistent), or the
    interval cannot tell. ``published``: the evidence is a paper's summary, so arms without
    spread go to the published-summary rule of ``published_kind``."""
    unlearned = _unlearned(terms, settings, gated)
    if unlearned:
        return PartResult(name, INCONCLUSIVE, _point(terms, what), reason=unlearned)
    missing = spread_problem(terms)
    if missing and published:
        return published_rule.point_part(name, terms, published_kind, margin, settings, what, cites)
    if missing:
        return PartResult(name, INCONCLUSIVE, _point(terms, what), reason=missing)
    estimate, draws, how = combination(terms, name)
    decision = equivalence(draws, estimate, margin, settings.alpha, tests)
    shown = decision.interval
    evidence = (f"{what} {shown.text()} ({shown.level:.0%} interval, {how}), "
                f"margin ±{margin:g}")
    power = (f"{name}: resolves ±{shown.half_width:.3f} with {_seeds(terms)} seeds{size}"
             + ("" if decision.decidable else f", wider than the margin {margin:g}: this "
                "design cannot show equivalence"))
    if decision.outcome == EQUIVALENT:
        return PartResult(name, CONSISTENT, evidence, power=power)
    if decision.outcome == DIFFERENT:
        return PartResult(name, INCONSISTENT, evidence, power=power)
    reason = ("interval wider than the margin" if not decision.decidable
              else "interval crosses the margin")
    return PartResult(name, INCONCLUSIVE, evidence, reason=reason, power=power)


def greater_part(name: str, terms: Sequence[Term], settings: ClaimSettings, tests: int,
                 what: str = "AUC", threshold: float = 0.0, resolution: float | None = None,
                 gated: bool = True, size: str = "", published: bool = False,
                 margin: float | None = None, cites: Sequence[str] = ()) -> PartResult:
    """The combination exceeds ``threshold`` (consistent), falls below it (inconsistent), or
    the interval covers it. ``resolution``: the effect the paper reports, for the power line.
    ``published``: arms without spread go to the published-summary rule, "greater" against
    ``margin`` (the claim's scale), or "not below" when ``threshold`` is ``-margin``."""
    unlearned = _unlearned(terms, settings, gated)
    if unlearned:
        return PartResult(name, INCONCLUSIVE, _point(terms, what), reason=unlearned)
    missing = spread_problem(terms)
    if missing and published:
        kind = published_rule.NOT_BELOW if threshold < 0 else published_rule.GREATER
        scale = -threshold if threshold < 0 else margin
        if scale is None:
            raise ValueError(f"{name}: the published-summary rule needs the claim's margin")
        return published_rule.point_part(name, terms, kind, scale, settings, what, cites)
    if missing:
        return PartResult(name, INCONCLUSIVE, _point(terms, what), reason=missing)
    estimate, draws, how = combination(terms, name)
    decision = one_sided(draws, estimate, threshold, settings.alpha, tests, resolution)
    shown = decision.interval
    evidence = f"{what} {shown.text()} ({shown.level:.0%} interval, {how})"
    power = f"{name}: resolves ±{shown.half_width:.3f} with {_seeds(terms)} seeds{size}"
    if resolution is not None and not decision.decidable:
        power += f", wider than the paper's effect {resolution:.3f}: this design cannot decide"
    if decision.outcome == GREATER:
        return PartResult(name, CONSISTENT, evidence, power=power)
    if decision.outcome == LESS:
        return PartResult(name, INCONSISTENT, evidence, power=power)
    if shown.high < threshold:  # below at the shown level, not after the correction
        reason = (f"below {threshold:g} at the {shown.level:.0%} level only, not after the "
                  f"Bonferroni correction for {tests} tests")
    else:
        reason = f"interval covers {threshold:g}"
    return PartResult(name, INCONCLUSIVE, evidence, reason=reason, power=power)


def _point(terms: Sequence[Term], what: str) -> str:
    estimate = sum(c * s.mean for c, _, s in terms)
    return f"{what} {estimate:+.3f} (point value)"
