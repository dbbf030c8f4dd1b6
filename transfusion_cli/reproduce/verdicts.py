"""What a claim test returns: per tested part an outcome, per claim a verdict, and the settings
(margins, level, learning floor) every rule reads.

A claim is tested in parts (one comparison each: an architecture, a label, a pair). Its
verdict: **consistent** when every part that could be tested agrees with the paper (an
intersection-union test: each part at level alpha, no correction needed); **inconsistent**
when any part contradicts it at the Bonferroni level alpha / k over its k parts;
**inconclusive** otherwise, with the reason (not learned, too few seeds, interval wider than
the margin, ...); **not run** when the evidence has nothing the claim needs. A part whose
arms have no spread over seeds is inconclusive ("too few seeds") in a study's evidence; in
published evidence (a paper's summary numbers) it is decided by the published-summary rule
(``published_rule``), and the verdict's reason says so.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from transfusion_cli.errors import ConfigError

# The arms every claim names, and what each claim says (the report and verdicts quote it).
PRETRAINED, RANDOM = "pretrained", "random"

STATEMENTS = {
    "C1": "ImageNet transfer gives no AUC gain for the standard models (equivalent to random)",
    "C2": "small CBR models perform comparably to the standard models",
    "C3": "source-task (ImageNet) accuracy does not predict medical accuracy",
    "C4": "with little data transfer helps more, and more for the large model",
    "C5": "large models change less from their initialisation than small ones",
    "C6": "feature reuse is confined to the lowest layers",
    "C7": "Mean Var init (weight scaling alone) converges clearly faster than random init",
    "C8": "transfusing the lowest blocks recovers most of transfer's speed-up; Gabor conv1 part",
}

CONSISTENT, INCONSISTENT = "consistent", "inconsistent"
INCONCLUSIVE, NOT_RUN = "inconclusive", "not run"
OUTCOMES = (CONSISTENT, INCONSISTENT, INCONCLUSIVE, NOT_RUN)
# How a part was decided: the calibrated test (intervals over seeds and patients), or the
# published-summary rule (a paper's point estimates without spread; never a study's).
CALIBRATED, PUBLISHED = "calibrated", "published-summary"
# An evidence file's ``purpose``: a pipeline check's verdicts test the code, not the paper.
PIPELINE_CHECK = "pipeline-check"
PIPELINE_SCOPE = "pipeline check, not the paper"


@dataclass
class ClaimSettings:
    """The claim tests' settings: a profile's ``claims:`` mapping or an evidence file's
    ``settings`` (documented defaults below; docs/reproduce-the-paper.md explains each)."""

    alpha: float = 0.05  # one-sided level of every test (intervals shown at 1 - 2 alpha)
    # C1: ImageNet vs random within +-margin counts as "no gain" (TOST). The paper reports
    # differences up to 0.3 points; 0.01 = one AUC point.
    margin_transfer: float = 0.01
    # C2, C3: "comparable" within +-margin (TOST). The paper's "about half a point" with its
    # own seed spread: its 0.5-point ResNet50-vs-CBR-LargeT gap must pass, so one point.
    margin_comparable: float = 0.01
    # C6: the CBRs' pretrained-vs-random and random-vs-random similarity "about equal" (TOST).
    # The paper (Figure 2, read to 0.01): CBR gaps 0.00-0.01 "equal", standard-model gaps
    # 0.03-0.04 "lower". 0.015 admits the equal gaps with half a reading step to spare, and
    # published_factor x 0.015 = 0.0225 stays more than half a step below the lower ones.
    margin_similarity: float = 0.015
    # Learning gate: an arm whose AUC interval's lower end is not above this did not learn.
    learning_floor: float = 0.6
    # C3: a source-task (ImageNet) gap that counts as "clearly better on the source task".
    source_gap: float = 0.02
    # Convergence target when the evidence asks for a relative one: this fraction of the fully
    # transferred arm's plateau (0.94 x the paper's 96.7 = 0.91, its absolute target).
    target_fraction: float = 0.94
    # Convergence: a win needs a lead of at least this many evaluation intervals.
    min_intervals: float = 2.0
    # C8: "most of the speed-up" is at least this fraction of full transfer's.
    most: float = 0.5
    # Published evidence only (a paper's point estimates without spread; never a study's):
    # a directional effect decides only at this multiple of the claim's margin (the paper's
    # smallest: Table 3's gain differences 0.021 against 1.5 x 0.01; Figure 2's 0.03 against
    # 1.5 x 0.015), and a contrary one likewise.
    published_factor: float = 1.5
    # ... and "faster" needs this ratio of steps (the slower arm's over the faster's). The
    # paper calls 8,208 vs 8,008 steps (ratio 1.02) the same speed and its smallest "faster"
    # is CBR-LargeW's Gabor, 104,104 vs 82,082 (ratio 1.27).
    published_step_ratio: float = 1.2

    @classmethod
    def from_mapping(cls, data: dict[str, Any] | None, where: str) -> ClaimSettings:
        """Defaults overridden by ``data``; unknown keys and bad values name the fix."""
        settings = cls()
        known = {f.name for f in fields(cls)}
        if data is not None and not isinstance(data, dict):
            raise ConfigError(f"{where} must be a mapping of claim settings, got {data!r}.")
        for key, value in (data or {}).items():
            if key not in known:
                raise ConfigError(f"{where}: unknown claims setting '{key}'; valid: "
                                  f"{', '.join(sorted(known))}.")
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ConfigError(f"{where}: claims setting {key} must be a non-negative "
                                  f"number (got {value!r}).")
            setattr(settings, key, float(value))
        if not 0 < settings.alpha < 0.5:
            raise ConfigError(f"{where}: claims setting alpha must lie between 0 and 0.5.")
        if settings.published_factor < 1 or settings.published_step_ratio <= 1:
            raise ConfigError(f"{where}: claims settings published_factor must be at least 1 "
                              "and published_step_ratio above 1.")
        return settings

    def to_dict(self) -> dict[str, float]:
        """Plain data (written into evidence.json)."""
        return asdict(self)


@dataclass
class PartResult:
    """One tested part of a claim."""

    name: str  # e.g. "table1 resnet50: pretrained - random (referable)"
    outcome: str  # CONSISTENT / INCONSISTENT / INCONCLUSIVE
    evidence: str  # the numbers: estimate, interval, test
    reason: str = ""  # why inconclusive; for the published-summary rule, how it decided
    power: str = ""  # the smallest effect this part resolves, and whether it can decide
    rule: str = CALIBRATED  # CALIBRATED, or PUBLISHED: decided from point estimates

    def text(self) -> str:
        """``name: evidence -> outcome (reason)``."""
        reason = f" ({self.reason})" if self.reason else ""
        outcome = "not testable" if self.outcome == NOT_RUN else self.outcome
        evidence = f"{self.evidence} -> " if self.evidence else ""
        return f"{self.name}: {evidence}{outcome}{reason}"


@dataclass
class Verdict:
    """One claim's verdict, the parts behind it and the method."""

    claim: str
    statement: str
    verdict: str
    evidence: str
    reason: str = ""
    parts: list[PartResult] = field(default_factory=list)
    power: str = ""
    method: str = ""
    scope: str = ""  # e.g. PIPELINE_SCOPE: what the verdict does *not* speak for

    def line(self) -> str:
        """``C1 statement: verdict (reason); evidence`` (``[scope]`` first when set)."""
        reason = f" ({self.reason})" if self.reason else ""
        scope = f"[{self.scope}] " if self.scope else ""
        head = f"{scope}{self.claim} {self.statement}: {self.verdict}{reason}"
        return f"{head}; {self.evidence}" if self.evidence else head

    def to_dict(self) -> dict[str, Any]:
        """Plain data."""
        return asdict(self)


def combine(claim: str, statement: str, parts: list[PartResult], method: str,
            missing: str = "") -> Verdict:
    """The claim's verdict from its parts (module docstring). A part marked ``not run`` (the
    evidence has its arms but no spread to test them with) is listed, not counted."""
    if not parts:
        return Verdict(claim, statement, NOT_RUN, "", reason=missing or "nothing to test",
                       method=method)
    tested = [p for p in parts if p.outcome != NOT_RUN]
    untested = [p for p in parts if p.outcome == NOT_RUN]
    against = [p for p in tested if p.outcome == INCONSISTENT]
    open_parts = [p for p in tested if p.outcome == INCONCLUSIVE]
    if against:
        verdict = INCONSISTENT
        reason = f"contradicted by {len(against)} of {len(tested)} tested parts"
        shown = against
    elif tested and not open_parts:
        verdict, reason, shown = CONSISTENT, "", tested
    else:
        verdict, shown = INCONCLUSIVE, open_parts or untested
        reasons = list(dict.fromkeys(p.reason for p in shown if p.reason))
        reason = "; ".join(reasons[:3]) + ("; ..." if len(reasons) > 3 else "")
    if verdict != INCONCLUSIVE:
        reason = "; ".join(r for r in (reason, _published(shown, tested)) if r)
    if untested and verdict != INCONCLUSIVE:
        reason = "; ".join(r for r in (reason, f"{len(untested)} parts not testable "
                                       f"({untested[0].reason})") if r)
    evidence = "; ".join(p.text() for p in shown[:4])
    if len(shown) > 4:
        evidence += f"; and {len(shown) - 4} more parts"
    power = "; ".join(dict.fromkeys(p.power for p in tested if p.power))
    return Verdict(claim, statement, verdict, evidence, reason, parts, power, method)


def _published(shown: list[PartResult], tested: list[PartResult]) -> str:
    """Which of the deciding parts the published-summary rule decided, and how."""
    published = [p for p in shown if p.rule == PUBLISHED]
    if not published:
        return ""
    how = "; ".join(f"{p.name}: {p.reason}" for p in published[:2])
    more = f"; and {len(published) - 2} more" if len(published) > 2 else ""
    rest = len(tested) - sum(p.rule == PUBLISHED for p in tested)
    calibrated = f"; {rest} by the calibrated test" if rest else ""
    return (f"{len(published)} of {len(tested)} parts decided by the published-summary rule "
            f"({how}{more}){calibrated}")
