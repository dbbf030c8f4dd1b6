"""Statistics of the claim tests: an arm's uncertainty over seeds and patients, equivalence and
one-sided decisions on Monte Carlo draws, and a vectorised patient bootstrap of one AUC.

The method, exactly (the reproduce report and docs/reproduce-the-paper.md quote it):

- **Two levels.** An arm (one architecture x init x training size, several seeds) is
  summarised by its seeds' mean ``m``, their sample standard deviation ``s`` (ddof=1), the
  number of seeds ``n`` and the patient-level standard error ``p`` of one seed's value (from
  that seed's patient bootstrap, 95 % CI half-width / 1.96). A replicate of the arm's mean is
  ``m + s / sqrt(n) * T + p * Z`` with ``T`` Student-t with ``n - 1`` degrees of freedom (the
  seed level: t, not a resampling of the seeds, because a percentile bootstrap of three seeds
  gives intervals about 40 % too narrow) and ``Z`` standard normal (the patient level: one draw
  per replicate, since every seed of an arm is scored on the same test patients).
- **Paired patients.** When every arm of a comparison carries its patient bootstrap
  replicates from the same resamples of the same test set (same ``patient_key``: the study
  scores every arm on one set of resampled patients), the patient level of a combination of
  arms is ``sum(c_k * deviation_k[r])`` over one common replicate ``r`` per draw, which keeps
  the correlation of two models' errors on the same patients. Otherwise the arms' patient
  levels are drawn independently; arms that share a test set are positively correlated, so
  that overstates the uncertainty of a difference (conservative), and the result says so.
- Intervals are percentile intervals of ``draws`` replicates from a fixed seed (deterministic).
- **Decisions** at one-sided level ``alpha``: *equivalent* when the ``1 - 2 alpha`` interval
  lies inside ``(-margin, margin)`` (two one-sided tests); *different* when the interval at the
  Bonferroni level ``1 - 2 alpha / k`` (``k`` tests in the claim) lies entirely beyond the
  margin; *greater* / *less* likewise against a threshold.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field

import numpy as np

from transfusion_cli.errors import DataError
from transfusion_cli.evaluation.weighted import weighted_auc  # also this module's, for callers

DRAWS = 20_000
DRAW_SEED = 0
Z95 = 1.959963984540054  # two-sided 95 % normal quantile: CI half-width / Z95 = standard error

EQUIVALENT, DIFFERENT, UNDECIDED = "equivalent", "different", "undecided"
GREATER, LESS = "greater", "less"


@dataclass(frozen=True)
class ArmSample:
    """One arm's metric: its seeds' mean, spread and count, and one seed's patient-level SE."""

    mean: float
    sd: float | None  # over seeds (ddof=1); None when unknown (one seed, or a mean alone)
    n_seeds: int
    patient_se: float | None = None
    # The arm's seed-mean AUC on each patient bootstrap replicate minus on the full test set,
    # and the key of those resamples (arms with the same key were resampled together).
    patient_deviations: np.ndarray | None = field(default=None, compare=False, repr=False)
    patient_key: str | None = None

    @classmethod
    def from_values(cls, values: Sequence[float], patient_se: float | None = None) -> ArmSample:
        """From per-seed values (the sd needs at least two)."""
        array = np.asarray([v for v in values if v is not None and math.isfinite(v)], float)
        if len(array) == 0:
            raise DataError("An arm needs at least one finite value.")
        sd = float(array.std(ddof=1)) if len(array) >= 2 else None
        return cls(float(array.mean()), sd, len(array), patient_se)

    @property
    def has_seed_spread(self) -> bool:
        """Whether the seed-to-seed spread is known (at least two seeds and their sd)."""
        return self.sd is not None and self.n_seeds >= 2

    @property
    def has_uncertainty(self) -> bool:
        """Whether anything (seeds or patients) gives this arm an interval."""
        return self.has_seed_spread or self.patient_se is not None

    def seed_draws(self, rng: np.random.Generator, n: int = DRAWS) -> np.ndarray:
        """``n`` replicates of the arm's mean at the seed level only (Student t)."""
        values = np.full(n, self.mean, dtype=np.float64)
        if self.has_seed_spread:
            values += self.sd / math.sqrt(self.n_seeds) * rng.standard_t(self.n_seeds - 1, n)
        return values

    def draws(self, rng: np.random.Generator, n: int = DRAWS) -> np.ndarray:
        """``n`` replicates of the arm's mean (module docstring): seed level t, patient level
        normal; a level whose spread is unknown adds nothing."""
        values = self.seed_draws(rng, n)
        if self.patient_se:
            values += self.patient_se * rng.standard_normal(n)
        return values


def combined_draws(terms: Sequence[tuple[float, ArmSample]], key: str,
                   n: int = DRAWS) -> tuple[float, np.ndarray, bool]:
    """``(estimate, draws, paired)`` of ``sum(c * arm)``: seed levels independent per arm;
    patient levels paired through common replicates when every arm carries replicates with
    the same key (module docstring), else independent normals."""
    estimate = sum(c * s.mean for c, s in terms)
    keys = {s.patient_key for _, s in terms}
    paired = (len(terms) > 1 and len(keys) == 1 and None not in keys
              and all(s.patient_deviations is not None for _, s in terms)
              and len({len(s.patient_deviations) for _, s in terms}) == 1)
    draws = np.zeros(n)
    for index, (c, sample) in enumerate(terms):
        rng = rng_for(key, str(index))
        draws += c * (sample.seed_draws(rng, n) if paired else sample.draws(rng, n))
    if paired:
        replicate = rng_for(key, "patients").integers(0, len(terms[0][1].patient_deviations), n)
        for c, sample in terms:
            draws += c * np.asarray(sample.patient_deviations)[replicate]
    return estimate, draws, paired


def patient_se(intervals: Sequence[tuple[float, float]]) -> float | None:
    """One seed's patient-level standard error from its seeds' 95 % CIs (root mean square of
    half-width / 1.96); None when no seed has a CI."""
    widths = [(high - low) / (2 * Z95) for low, high in intervals
              if low is not None and high is not None and math.isfinite(high - low)]
    return float(math.sqrt(np.mean(np.square(widths)))) if widths else None


def rng_for(*names: str) -> np.random.Generator:
    """A generator seeded from ``DRAW_SEED`` and ``names`` (stable across runs and machines), so
    each test draws its own reproducible stream."""
    key = "|".join(names).encode()
    return np.random.default_rng([DRAW_SEED, *key])


@dataclass(frozen=True)
class Interval:
    """A point estimate and its percentile interval at ``level``."""

    estimate: float
    low: float
    high: float
    level: float

    @property
    def half_width(self) -> float:
        """Half the interval's width: the smallest effect this design resolves."""
        return (self.high - self.low) / 2

    def text(self, digits: int = 3) -> str:
        """``+0.003 [-0.004, +0.010]``."""
        return f"{self.estimate:+.{digits}f} [{self.low:+.{digits}f}, {self.high:+.{digits}f}]"


def interval(draws: np.ndarray, level: float, estimate: float | None = None) -> Interval:
    """The percentile interval of ``draws`` (their median as the estimate unless given)."""
    if not 0 < level < 1:
        raise DataError(f"Confidence level must lie between 0 and 1 (got {level}).")
    low, mid, high = np.quantile(draws, [(1 - level) / 2, 0.5, (1 + level) / 2])
    return Interval(float(mid if estimate is None else estimate), float(low), float(high), level)


@dataclass(frozen=True)
class Decision:
    """A test's outcome, the interval shown (``1 - 2 alpha``) and what it resolves."""

    outcome: str  # EQUIVALENT / DIFFERENT / GREATER / LESS / UNDECIDED
    interval: Interval
    decidable: bool  # whether this design's interval is narrow enough to reach a decision


def equivalence(draws: np.ndarray, estimate: float, margin: float, alpha: float = 0.05,
                tests: int = 1) -> Decision:
    """Equivalent within ``margin`` (TOST), different beyond it (Bonferroni over ``tests``), or
    undecided. ``decidable``: the interval is narrower than the margin, so a true difference of
    zero could be shown equivalent."""
    shown = interval(draws, 1 - 2 * alpha, estimate)
    strict = interval(draws, 1 - 2 * alpha / max(tests, 1), estimate)
    if -margin < shown.low and shown.high < margin:
        outcome = EQUIVALENT
    elif strict.low > margin or strict.high < -margin:
        outcome = DIFFERENT
    else:
        outcome = UNDECIDED
    return Decision(outcome, shown, shown.half_width < margin)


def one_sided(draws: np.ndarray, estimate: float, threshold: float = 0.0, alpha: float = 0.05,
              tests: int = 1, resolution: float | None = None) -> Decision:
    """Greater than ``threshold`` (the ``1 - 2 alpha`` interval above it), less (the Bonferroni
    interval below it) or undecided. ``decidable``: the half-width is below ``resolution``
    (the effect the claim expects), when given."""
    shown = interval(draws, 1 - 2 * alpha, estimate)
    strict = interval(draws, 1 - 2 * alpha / max(tests, 1), estimate)
    if shown.low > threshold:
        outcome = GREATER
    elif strict.high < threshold:
        outcome = LESS
    else:
        outcome = UNDECIDED
    decidable = True if resolution is None else shown.half_width < resolution
    return Decision(outcome, shown, decidable)


def _unit_weights(y_true: np.ndarray, groups: Sequence[Hashable] | None, n_boot: int,
                  rng: np.random.Generator) -> np.ndarray:
    """(n_boot, n_cases) case weights of a stratified (cluster) bootstrap: each replicate draws,
    within each stratum, as many units as it holds, with replacement; a case weighs as many
    times as its unit was drawn (``bootstrap.resampling_units`` defines units and strata)."""
    from transfusion_cli.evaluation.bootstrap import resampling_units

    weights = np.zeros((n_boot, len(y_true)))
    for _, units in resampling_units(y_true, groups):
        k = len(units)
        picks = rng.integers(0, k, size=(n_boot, k)) + k * np.arange(n_boot)[:, None]
        counts = np.bincount(picks.ravel(), minlength=n_boot * k).reshape(n_boot, k)
        cases = np.concatenate(units)
        unit_of_case = np.repeat(np.arange(k), [len(u) for u in units])
        weights[:, cases] = counts[:, unit_of_case]
    return weights


def auc_replicates(y_true: Sequence[int], scores: Sequence[float],
                   groups: Sequence[Hashable] | None = None, n_boot: int = 2000, seed: int = 0,
                   chunk: int = 250) -> tuple[float, np.ndarray]:
    """``(auc, replicates)``: one model's ROC AUC and its value on each of ``n_boot``
    stratified patient (cluster) bootstrap replicates, all at once (``chunk`` rows of weights
    at a time). The resamples depend only on the labels, the groups and ``seed``, so every
    model scored on the same test set is resampled identically (``resampling_key``)."""
    y, s = np.asarray(y_true).astype(int).ravel(), np.asarray(scores, dtype=np.float64).ravel()
    if len(y) != len(s):
        raise DataError(f"{len(s)} scores for {len(y)} labels; give one per case.")
    if len(np.unique(y)) < 2:
        raise DataError("An AUC needs both classes among the cases.")
    point = float(weighted_auc(y, s, np.ones((1, len(y))))[0])
    rng = np.random.default_rng(seed)
    values = []
    for start in range(0, n_boot, chunk):
        weights = _unit_weights(y, groups, min(chunk, n_boot - start), rng)
        values.append(weighted_auc(y, s, weights))
    return point, np.concatenate(values)


def resampling_key(y_true: Sequence[int], groups: Sequence[Hashable] | None, n_boot: int,
                   seed: int) -> str:
    """A short key naming ``auc_replicates``' resamples of one test set (equal keys: the same
    resampled patients)."""
    digest = hashlib.sha256(np.asarray(y_true).astype(np.int64).tobytes())
    digest.update("|".join(map(str, groups)).encode() if groups is not None else b"-")
    digest.update(f"|{n_boot}|{seed}".encode())
    return digest.hexdigest()[:16]


def auc_interval(y_true: Sequence[int], scores: Sequence[float],
                 groups: Sequence[Hashable] | None = None, n_boot: int = 2000, seed: int = 0,
                 level: float = 0.95, chunk: int = 250) -> tuple[float, float, float]:
    """``(auc, low, high)``: one model's ROC AUC with its stratified patient (cluster) bootstrap
    percentile interval (``auc_replicates``)."""
    from transfusion_cli.evaluation.bootstrap import percentile_interval

    point, values = auc_replicates(y_true, scores, groups, n_boot, seed, chunk)
    low, high = percentile_interval(values.tolist(), level)
    return point, low, high
