"""Steps to a target as time-to-event: seeds that never reach the target are censored at their
last evaluated step, never dropped.

- ``km_median``: the Kaplan-Meier median (infinite when fewer than half of the seeds are known
  to have reached the target).
- ``earlier_test``: is arm A, delayed by ``shift`` steps, still earlier than arm B? Gehan's
  generalised Wilcoxon (Mann-Whitney with censoring) statistic, sum over pairs of +1 when A's
  seed is known to reach the target first, -1 when B's is, 0 when censoring leaves it open
  (both censored, or one censored before the other's event; exact ties count 0). The one-sided
  p-value is exact, over every split of the pooled seeds (a Monte Carlo permutation test when
  there are more than ``max_exact`` splits). With ``n_a`` and ``n_b`` seeds no p-value is
  below ``1 / C(n_a + n_b, n_a)`` (``smallest_p``): 3 against 3 seeds can reach 0.05, 2
  against 2 cannot.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from transfusion_cli.errors import DataError


@dataclass(frozen=True)
class Event:
    """One seed: the step at which it reached the target, or its last step when it did not."""

    step: float
    reached: bool

    def text(self) -> str:
        """``12000`` or ``>150000`` (censored)."""
        return f"{self.step:.0f}" if self.reached else f">{self.step:.0f}"


def km_median(events: Sequence[Event]) -> float:
    """The Kaplan-Meier median step (the first event step at which the estimated fraction not
    yet at the target drops to one half or below); ``inf`` when it never does."""
    if not events:
        raise DataError("A median of steps needs at least one seed.")
    at_risk, surviving = len(events), 1.0
    for step in sorted({e.step for e in events}):
        reached = sum(1 for e in events if e.step == step and e.reached)
        if reached:
            surviving *= 1 - reached / at_risk
            if surviving <= 0.5 + 1e-12:
                return float(step)
        at_risk -= sum(1 for e in events if e.step == step)
    return math.inf


def _pairwise(events: Sequence[Event]) -> np.ndarray:
    """U[i, j] = +1 when seed i is known to reach the target before seed j, -1 when after."""
    step = np.asarray([e.step for e in events], dtype=np.float64)
    reached = np.asarray([e.reached for e in events], dtype=bool)
    earlier = reached[:, None] & ((step[:, None] < step[None, :])
                                  | ((step[:, None] == step[None, :]) & ~reached[None, :]))
    return earlier.astype(np.int64) - earlier.T.astype(np.int64)


def gehan(a: Sequence[Event], b: Sequence[Event]) -> int:
    """Gehan's statistic: pairs where A's seed is known earlier minus pairs where B's is."""
    u = _pairwise([*a, *b])
    return int(u[: len(a), len(a):].sum())


def smallest_p(n_a: int, n_b: int) -> float:
    """The smallest one-sided p-value an exact rank test of ``n_a`` against ``n_b`` seeds can
    give."""
    return 1.0 / math.comb(n_a + n_b, n_a)


def shifted(events: Sequence[Event], shift: float) -> list[Event]:
    """The seeds with every step (event or censoring) moved ``shift`` later."""
    return [Event(e.step + shift, e.reached) for e in events]


def earlier_test(a: Sequence[Event], b: Sequence[Event], shift: float = 0.0,
                 max_exact: int = 20_000, n_perm: int = 20_000, seed: int = 0) -> float:
    """One-sided p-value that A, every seed delayed by ``shift`` steps, reaches the target
    earlier than B (module docstring)."""
    if not a or not b:
        raise DataError("A rank test of steps needs at least one seed in each arm.")
    pooled = [*shifted(a, shift), *b]
    u = _pairwise(pooled)
    n, n_a = len(pooled), len(a)
    observed = int(u[:n_a, n_a:].sum())
    if math.comb(n, n_a) <= max_exact:
        splits = np.zeros((math.comb(n, n_a), n), dtype=np.int64)
        for row, members in enumerate(itertools.combinations(range(n), n_a)):
            splits[row, list(members)] = 1
    else:
        rng = np.random.default_rng(seed)
        order = np.argsort(rng.random((n_perm, n)), axis=1)[:, :n_a]
        splits = np.zeros((n_perm, n), dtype=np.int64)
        np.put_along_axis(splits, order, 1, axis=1)
    stats = ((splits @ u) * (1 - splits)).sum(axis=1)
    return float((stats >= observed).mean())
