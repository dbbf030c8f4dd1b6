"""The published-summary rule: a claim's part decided from a paper's point estimates when the
paper gives no spread over seeds for them (Table 2, Table 3, Figure 2, the convergence steps).

It applies only to evidence whose ``source`` is ``published``; a study's evidence without
spread is inconclusive ("too few seeds"), so noise can never pass through this rule. Without
an interval nothing is significant, so the rule asks for an effect robustly beyond the claim's
own scale, and states the numbers it compared (docs/reproduce-the-paper.md, "Published
summaries"). With ``F`` = ``published_factor``, ``m`` the claim's margin and ``e`` the point
estimate of the part's difference:

- **equivalent** ("comparable", "about equal"): consistent when ``|e| <= m``, inconsistent
  when ``|e| >= F m``;
- **no gain** (C1: transfer's gain ``e``): consistent when ``e <= m`` (a deficit is no gain),
  inconsistent when ``e >= F m``;
- **not below** (C3: ``e >= -m``): consistent when ``e >= -m``, inconsistent when ``e <= -F m``;
- **greater** ("helps more", orderings): consistent when ``e >= F m``, inconsistent when
  ``e <= -F m``;
- **faster** (steps to a target): consistent when the slower arm needs at least
  ``published_step_ratio`` times the faster's steps and, where the evidence gives the
  evaluation interval, ``min_intervals`` intervals more; inconsistent the other way round by the
  same amounts.

Anything between is inconclusive, with the numbers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from transfusion_cli.evaluation.claim_stats import ArmSample
from transfusion_cli.reproduce.verdicts import (
    CONSISTENT,
    INCONCLUSIVE,
    INCONSISTENT,
    PUBLISHED,
    ClaimSettings,
    PartResult,
)

EQUIVALENT, NO_GAIN, NOT_BELOW, GREATER = "equivalent", "no gain", "not below", "greater"
KINDS = (EQUIVALENT, NO_GAIN, NOT_BELOW, GREATER)
HEAD = "published point estimates, no spread"
_EPS = 1e-9  # published numbers are decimals: 0.27 - 0.24 must count as 0.03


def _cited(cites: Sequence[str]) -> str:
    shown = list(dict.fromkeys(c for c in cites if c))
    return f"; {', '.join(shown)}" if shown else ""


def point_part(name: str, terms: Sequence[tuple[float, str, ArmSample]], kind: str,
               margin: float, settings: ClaimSettings, what: str = "AUC",
               cites: Sequence[str] = ()) -> PartResult:
    """One part decided from the terms' point estimates (module docstring)."""
    if kind not in KINDS:
        raise ValueError(f"unknown published-summary kind {kind!r}")
    e = sum(c * s.mean for c, _, s in terms)
    big = settings.published_factor * margin
    f, m = f"{settings.published_factor:g} x margin {margin:g}", f"margin {margin:g}"
    if kind == EQUIVALENT:
        agree, against = abs(e) <= margin + _EPS, abs(e) >= big - _EPS
        agree_text, against_text = f"|{e:+.3f}| <= {m}", f"|{e:+.3f}| >= {f}"
        open_text = f"{m} < |{e:+.3f}| < {f}"
    elif kind == NO_GAIN:
        agree, against = e <= margin + _EPS, e >= big - _EPS
        agree_text = f"{e:+.3f} <= {m}" + (" (a deficit is no gain)" if e < -margin else "")
        against_text, open_text = f"{e:+.3f} >= {f}", f"{m} < {e:+.3f} < {f}"
    elif kind == NOT_BELOW:
        agree, against = e >= -margin - _EPS, e <= -big + _EPS
        agree_text, against_text = f"{e:+.3f} >= -{m}", f"{e:+.3f} <= -{f}"
        open_text = f"-{f} < {e:+.3f} < -{m}"
    else:
        agree, against = e >= big - _EPS, e <= -big + _EPS
        agree_text, against_text = f"{e:+.3f} >= {f}", f"{e:+.3f} <= -{f}"
        open_text = f"|{e:+.3f}| < {f}"
    evidence = f"{what} {e:+.3f} ({HEAD}{_cited(cites)})"
    power = (f"{name}: {HEAD}: no interval; decides only at {f}"
             + (f" (within {m} for equivalence)" if kind in (EQUIVALENT, NO_GAIN) else ""))
    if agree:
        return PartResult(name, CONSISTENT, evidence, f"{HEAD}: {agree_text}", power, PUBLISHED)
    if against:
        return PartResult(name, INCONSISTENT, evidence, f"{HEAD}: {against_text}", power,
                          PUBLISHED)
    return PartResult(name, INCONCLUSIVE, evidence, f"{HEAD}: {open_text}", power, PUBLISHED)


def _steps(value: float, reached: bool) -> str:
    return f"{value:,.0f}" if reached else f">{value:,.0f} (not reached)"


def steps_part(name: str, fast: tuple[str, float, bool], slow: tuple[str, float, bool],
               settings: ClaimSettings, target: float, interval: float | None,
               extra: tuple[str, float] | None = None, cites: Sequence[str] = ()
               ) -> PartResult:
    """``fast`` (name, steps, reached) earlier than ``slow`` from one published value each;
    ``extra`` (what, steps) delays the faster arm first (C8's "most of the speed-up")."""
    fast_name, a, a_reached = fast
    slow_name, b, b_reached = slow
    if extra:
        a += extra[1]
        fast_name = f"({fast_name} + {extra[0]})"
    ratio = settings.published_step_ratio
    lead = settings.min_intervals * interval if interval else 0.0
    lead_text = (f" and {settings.min_intervals:g} evaluation intervals ({lead:,.0f} steps)"
                 if lead else "")
    evidence = (f"steps to {target:.3f}: {fast_name} {_steps(a, a_reached)} vs {slow_name} "
                f"{_steps(b, b_reached)} ({HEAD}{_cited(cites)})")
    power = (f"{name}: {HEAD}: no rank test; decides only at a step ratio of {ratio:g}"
             + (lead_text or "; evaluation interval not given: the ratio alone"))
    quotient = b / a if a > 0 else math.inf
    # An unreached arm's steps are a lower bound: enough to show the other arm is faster.
    alone = "" if lead else " (evaluation interval not given: the ratio alone)"
    if a_reached and quotient >= ratio - _EPS and b - a >= lead:
        return PartResult(name, CONSISTENT, evidence, f"{HEAD}: {slow_name} / {fast_name} = "
                          f"{b:,.0f} / {a:,.0f} = {quotient:.2f} >= {ratio:g}{lead_text}{alone}",
                          power, PUBLISHED)
    if b_reached and b > 0 and a / b >= ratio - _EPS and a - b >= lead:
        return PartResult(name, INCONSISTENT, evidence, f"{HEAD}: {fast_name} / {slow_name} "
                          f"= {a:,.0f} / {b:,.0f} = {a / b:.2f} >= {ratio:g}{lead_text}{alone}: "
                          "slower", power, PUBLISHED)
    return PartResult(name, INCONCLUSIVE, evidence, f"{HEAD}: {slow_name} / {fast_name} = "
                      f"{quotient:.2f}, not beyond {ratio:g}{lead_text} either way{alone}",
                      power, PUBLISHED)
