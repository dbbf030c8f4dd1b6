"""Claims C7 and C8 on the evidence's convergence part: steps to a target AUC as time-to-event.

Each seed reaches the target at a step, or is censored at its last evaluated step (never
dropped). The target is absolute (the paper's 0.91) or relative: ``target_fraction`` of the
plateau of the architecture's fully transferred arm (a hybrid uses its base architecture's),
the plateau being the mean over that arm's seeds of the mean of each curve's last quarter.
Arms are compared with ``evaluation.censored.earlier_test`` (Gehan's rank test, exact); a win
needs a lead of at least ``min_intervals`` evaluation intervals (the test delays the faster
arm by that much), so a difference smaller than two evaluations is never a win.

- C7: per architecture, mean-var earlier than random.
- C8, per architecture: (a) each of transfusion up to stem/conv1, block1, block2 earlier than
  random; (b) "most of the speed-up": the transfusion arm of the highest of those blocks, delayed
  by ``most`` x (random's median - full transfer's median), still earlier than random;
  (c) a hybrid (Slim) against its own base architecture only (``base_arch``, else the name
  without ``-slim``), by the same rule as (b); (d) synthetic Gabor earlier than random.
  Transfusion of higher blocks (block3, ...) is not evidence for C8. C8's verdict is over the
  parts the evidence covers; the reason names the lowest-block transfusion arms it lacks.

In published evidence an arm given by one value (no spread over seeds) is compared by the
published-summary rule (``published_rule.steps_part``): a step ratio of at least
``published_step_ratio`` (and ``min_intervals`` evaluation intervals when the interval is
given); the "most" part delays the faster arm by ``most`` x the speed-up first.
"""

from __future__ import annotations

import math

import numpy as np

from transfusion_cli.evaluation.censored import (
    Event,
    earlier_test,
    km_median,
    shifted,
    smallest_p,
)
from transfusion_cli.reproduce.evidence_format import ConvergenceArm, ConvergencePart, EvidenceFile
from transfusion_cli.reproduce.published_rule import steps_part
from transfusion_cli.reproduce.verdicts import (
    CONSISTENT,
    INCONCLUSIVE,
    INCONSISTENT,
    NOT_RUN,
    PRETRAINED,
    RANDOM,
    STATEMENTS,
    ClaimSettings,
    PartResult,
    Verdict,
    combine,
)

MEAN_VAR, GABOR, TRANSFUSION = "mean-var", "gabor", "transfusion"
LOWEST_BLOCKS = ("stem", "conv1", "block1", "block2")  # C8's "lowest blocks", in order
SLIM_SUFFIX = "-slim"


def _plateau(arm: ConvergenceArm) -> float | None:
    tails = []
    for seed in arm.seeds:
        if seed.curve:
            values = [v for _, v in seed.curve]
            tails.append(float(np.mean(values[-max(1, len(values) // 4):])))
    return float(np.mean(tails)) if tails else None


def base_arch(arm: ConvergenceArm) -> str:
    """The architecture whose random and full-transfer arms a hybrid is judged against."""
    if arm.base_arch:
        return arm.base_arch
    return arm.arch[: -len(SLIM_SUFFIX)] if arm.arch.endswith(SLIM_SUFFIX) else arm.arch


def target_for(part: ConvergencePart, arch: str, settings: ClaimSettings) -> tuple[float | None,
                                                                                  str]:
    """(target, how it was set) for ``arch``; None with the reason when it cannot be set."""
    if part.relative is None and part.target is not None:
        return part.target, f"absolute target {part.target:g}"
    fraction = part.relative if part.relative is not None else settings.target_fraction
    source = part.arm(arch, part.relative_of)
    plateau = _plateau(source) if source else None
    if plateau is None:
        return None, (f"a relative target needs the curves of {arch} {part.relative_of}")
    if plateau <= settings.learning_floor:
        return None, (f"{arch} {part.relative_of} did not learn (plateau {plateau:.3f}, not "
                      f"above the floor {settings.learning_floor:g}): no relative target")
    return fraction * plateau, (f"target {fraction:g} x {arch} {part.relative_of} plateau "
                                f"{plateau:.3f} = {fraction * plateau:.3f}")


def events(arm: ConvergenceArm, target: float, absolute: float | None) -> list[Event]:
    """Each seed's step at the target, or its censoring step."""
    result = []
    for seed in arm.seeds:
        if seed.curve:
            reached = next((s for s, v in seed.curve if v >= target), None)
            last = max(s for s, _ in seed.curve)
            result.append(Event(reached, True) if reached is not None else
                          Event(max(last, seed.last_step or 0), False))
        elif absolute is not None and math.isclose(target, absolute):
            result.append(Event(seed.steps_to_target, True) if seed.steps_to_target is not None
                          else Event(seed.last_step, False))
    return result


def _interval(part: ConvergencePart) -> float | None:
    if part.eval_every:
        return part.eval_every
    steps = sorted({s for arm in part.arms for seed in arm.seeds for s, _ in seed.curve})
    return float(np.median(np.diff(steps))) if len(steps) > 1 else None


def _steps_text(name: str, seeds: list[Event]) -> str:
    median = km_median(seeds)
    head = "never (median not reached)" if math.isinf(median) else f"{median:,.0f}"
    return f"{name} {head} ({', '.join(e.text() for e in seeds)})"


class Race:
    """The convergence part seen at one architecture's target."""

    def __init__(self, part: ConvergencePart, arch: str, settings: ClaimSettings,
                 published: bool = False):
        self.part, self.arch, self.settings = part, arch, settings
        self.published = published
        self.target, self.how = target_for(part, arch, settings)
        self.interval = _interval(part)
        self.lead = settings.min_intervals * self.interval if self.interval else 0.0

    def seeds(self, arm: ConvergenceArm | None) -> list[Event]:
        """The arm's seeds as events at this target."""
        if arm is None or self.target is None:
            return []
        return events(arm, self.target, self.part.target)

    def faster(self, name: str, fast: ConvergenceArm, slow: ConvergenceArm, tests: int,
               extra: float = 0.0, extra_what: str = "") -> PartResult:
        """``fast`` reaches the target earlier than ``slow`` by at least the minimum lead and
        ``extra`` steps (consistent); ``slow`` earlier than ``fast`` delayed by ``extra``
        (inconsistent); else inconclusive. Published arms of one value each: the
        published-summary rule."""
        if self.target is None:
            return PartResult(name, INCONCLUSIVE, "", reason=self.how)
        a, b = self.seeds(fast), self.seeds(slow)
        if not a or not b:
            return PartResult(name, NOT_RUN, "", reason=f"the evidence gives no steps to "
                              f"{self.target:.3f} (no curves)")
        if self.published and min(len(a), len(b)) < 2:
            return steps_part(name, self._point(fast, a), self._point(slow, b), self.settings,
                              self.target, self.interval,
                              (extra_what, extra) if extra else None, (fast.cite, slow.cite))
        alpha = self.settings.alpha
        shift = max(self.lead, extra)
        p_win = earlier_test(a, b, shift=shift)
        p_against = earlier_test(b, shifted(a, extra))
        floor = smallest_p(len(a), len(b))
        fast_name = fast.init if fast.arch == self.arch else fast.arch
        evidence = (f"steps to {self.target:.3f}: {_steps_text(fast_name, a)} vs "
                    f"{_steps_text(slow.init, b)}; Gehan p = {p_win:.3g} with a lead of "
                    f"{shift:,.0f} steps")
        power = f"{name}: {len(a)} vs {len(b)} seeds, smallest possible p {floor:.3g}"
        if floor > alpha:
            power += f" > {alpha:g}: this design cannot decide"
        if not self.interval:
            power += "; evaluation interval unknown: no minimum lead"
        if p_win <= alpha:
            return PartResult(name, CONSISTENT, evidence, power=power)
        if p_against <= alpha / max(tests, 1):
            return PartResult(name, INCONSISTENT, evidence, power=power)
        reason = (f"too few seeds ({len(a)} vs {len(b)}: p cannot go below {floor:.2g})"
                  if floor > alpha else "rank test not significant")
        return PartResult(name, INCONCLUSIVE, evidence, reason=reason, power=power)

    def _point(self, arm: ConvergenceArm, seeds: list[Event]) -> tuple[str, float, bool]:
        """(name, steps, reached): the arm's median, or its last step when not reached."""
        median = km_median(seeds)
        name = arm.init if arm.arch == self.arch else f"{arm.arch} {arm.init}"
        if math.isinf(median):
            return name, max(e.step for e in seeds), False
        return name, median, True

    def speed_up(self) -> float | None:
        """Random's median steps minus full transfer's (random's last step when its median is
        not reached: a lower bound); None when full transfer is not faster."""
        random = self.seeds(self.part.arm(self.arch, RANDOM))
        full = self.seeds(self.part.arm(self.arch, PRETRAINED))
        if not random or not full:
            return None
        median_full, median_random = km_median(full), km_median(random)
        if math.isinf(median_full):
            return None
        if math.isinf(median_random):
            median_random = max(e.step for e in random)
        gap = median_random - median_full
        return gap if gap > 0 else None


def _archs(part: ConvergencePart) -> list[str]:
    return list(dict.fromkeys(a.arch for a in part.arms if part.arm(a.arch, RANDOM)))


def c7(evidence: EvidenceFile, settings: ClaimSettings) -> Verdict:
    """Mean Var earlier than random, per architecture."""
    part = evidence.convergence
    plans = [arch for arch in (_archs(part) if part else []) if part.arm(arch, MEAN_VAR)]
    parts = []
    for arch in plans:
        race = Race(part, arch, settings, evidence.published)
        parts.append(race.faster(f"{arch}: mean-var vs random", part.arm(arch, MEAN_VAR),
                                 part.arm(arch, RANDOM), len(plans)))
    return combine("C7", STATEMENTS["C7"], parts, _method(part, settings),
                   "needs convergence arms random and mean-var")


def _transfusion_block(init: str) -> str | None:
    kind, _, block = init.partition(":")
    return block if kind == TRANSFUSION and block in LOWEST_BLOCKS else None


def c8(evidence: EvidenceFile, settings: ClaimSettings) -> Verdict:
    """Lowest-block transfusion, Slim (own base only) and Gabor against random and full."""
    part = evidence.convergence
    plans: list[tuple[str, str, ConvergenceArm, float | None]] = []
    for arch in _archs(part) if part else []:
        lowest = sorted((a for a in part.arms if a.arch == arch and _transfusion_block(a.init)),
                        key=lambda a: LOWEST_BLOCKS.index(_transfusion_block(a.init)))
        plans += [("each", arch, a, None) for a in lowest]
        if lowest:
            plans.append(("most", arch, lowest[-1], settings.most))
        plans += [("most", arch, a, settings.most) for a in part.arms
                  if a.arch != arch and base_arch(a) == arch and a.init == PRETRAINED]
        if part.arm(arch, GABOR):
            plans.append(("each", arch, part.arm(arch, GABOR), None))
    parts = []
    for kind, arch, arm, most in plans:
        race = Race(part, arch, settings, evidence.published)
        random = part.arm(arch, RANDOM)
        label = arm.init if arm.arch == arch else f"{arm.arch} {arm.init}"
        if kind == "each":
            parts.append(race.faster(f"{arch}: {label} vs random", arm, random, len(plans)))
            continue
        name = f"{arch}: {label} recovers at least {most:.0%} of full transfer's speed-up"
        speed_up = race.speed_up()
        if speed_up is None:
            parts.append(PartResult(name, INCONCLUSIVE, "", reason=f"{arch} full transfer is "
                                    "not faster than random here: no speed-up to recover"))
            continue
        parts.append(race.faster(name, arm, random, len(plans), extra=most * speed_up,
                                 extra_what=f"{most:.0%} of the speed-up"))
    verdict = combine("C8", STATEMENTS["C8"], parts, _method(part, settings),
                      "needs convergence arms random with transfusion of the lowest blocks, a "
                      "hybrid of the same architecture, or gabor")
    lacking = [arch for arch in (_archs(part) if part else [])
               if part.arm(arch, PRETRAINED) and not any(
                   a.arch == arch and _transfusion_block(a.init) for a in part.arms)]
    if lacking and verdict.verdict != NOT_RUN:
        covered = (f"over the parts the evidence covers; not run: transfusion up to "
                   f"conv1/block1/block2 of {', '.join(lacking)} (no such arms)")
        verdict.reason = "; ".join(r for r in (verdict.reason, covered) if r)
    return verdict


def _method(part: ConvergencePart | None, settings: ClaimSettings) -> str:
    if part is None:
        return ""
    target = (f"absolute target {part.target:g}" if part.relative is None and part.target
              is not None else f"relative target: {part.relative or settings.target_fraction:g}"
              f" x the {part.relative_of} arm's plateau")
    return (f"steps to target on {part.split} `{part.metric}` ({target}) as time-to-event, "
            f"unreached seeds censored; Gehan rank test, exact, one-sided level "
            f"{settings.alpha:g}; a win needs a lead of {settings.min_intervals:g} evaluation "
            "intervals")
