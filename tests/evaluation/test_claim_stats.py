"""The statistics behind the claim tests: the vectorised patient bootstrap of an AUC, the
two-level interval of an arm's mean (calibrated at three seeds), equivalence and one-sided
decisions, and the censored rank test of steps to a target."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from transfusion_cli.errors import DataError
from transfusion_cli.evaluation.censored import (
    Event,
    earlier_test,
    gehan,
    km_median,
    smallest_p,
)
from transfusion_cli.evaluation.claim_stats import (
    DIFFERENT,
    EQUIVALENT,
    GREATER,
    LESS,
    UNDECIDED,
    ArmSample,
    auc_interval,
    equivalence,
    interval,
    one_sided,
    patient_se,
    weighted_auc,
)


def test_weighted_auc_is_the_auc_of_repeated_cases_with_ties():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300)
    scores = np.round(y * 0.8 + rng.normal(size=300), 1)  # many ties
    weights = rng.integers(0, 4, (6, 300)).astype(float)
    expected = [roc_auc_score(np.repeat(y, w.astype(int)), np.repeat(scores, w.astype(int)))
                for w in weights]
    assert np.allclose(weighted_auc(y, scores, weights), expected)


def test_patient_bootstrap_resamples_patients_not_eyes():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 200)
    scores = y * 0.6 + rng.normal(size=200)
    one_eye = auc_interval(y, scores, n_boot=500, seed=3)
    assert one_eye[0] == pytest.approx(roc_auc_score(y, scores))
    assert one_eye[1] < one_eye[0] < one_eye[2]
    # Two identical eyes per patient: resampling patients gives exactly the one-eye interval;
    # resampling images would pretend to twice the data (a narrower interval).
    two_eyes = auc_interval(np.repeat(y, 2), np.repeat(scores, 2),
                            groups=np.repeat(np.arange(200), 2).tolist(), n_boot=500, seed=3)
    assert two_eyes == pytest.approx(one_eye)
    as_images = auc_interval(np.repeat(y, 2), np.repeat(scores, 2), n_boot=500, seed=3)
    assert as_images[2] - as_images[1] < 0.85 * (one_eye[2] - one_eye[1])
    with pytest.raises(DataError, match="both classes"):
        auc_interval([1, 1, 1], [0.2, 0.4, 0.9])


def test_two_level_interval_covers_at_its_level_with_three_seeds():
    """90 % intervals of an arm's mean from 3 seeds plus patient noise cover the truth about
    90 % of the time (a percentile bootstrap of 3 seeds would cover far less)."""
    rng = np.random.default_rng(5)
    truth, seed_sd, patient = 0.85, 0.01, 0.004
    covered = 0
    trials = 300
    for _ in range(trials):
        test_set_error = rng.normal(0, patient)  # one test set, shared by the seeds
        values = truth + test_set_error + rng.normal(0, seed_sd, 3)
        sample = ArmSample.from_values(values.tolist(), patient_se=patient)
        shown = interval(sample.draws(rng, 4000), 0.90)
        covered += shown.low <= truth <= shown.high
    assert 0.85 <= covered / trials <= 0.96


def test_arm_sample_spread_levels():
    assert not ArmSample.from_values([0.8]).has_seed_spread
    assert ArmSample.from_values([0.8], patient_se=0.01).has_uncertainty
    assert ArmSample.from_values([0.8, 0.82]).has_seed_spread
    assert not ArmSample(0.9, None, 3).has_uncertainty  # a published mean alone
    assert patient_se([(0.80, 0.84), (0.81, 0.85)]) == pytest.approx(0.02 / 1.959964, rel=1e-4)
    assert patient_se([]) is None


def test_equivalence_and_one_sided_decisions():
    rng = np.random.default_rng(0)
    tight = rng.normal(0.002, 0.002, 20000)
    assert equivalence(tight, 0.002, margin=0.01).outcome == EQUIVALENT
    far = rng.normal(0.05, 0.005, 20000)
    assert equivalence(far, 0.05, margin=0.01).outcome == DIFFERENT
    wide = rng.normal(0.0, 0.03, 20000)
    decision = equivalence(wide, 0.0, margin=0.01)
    assert decision.outcome == UNDECIDED and not decision.decidable
    assert one_sided(far, 0.05).outcome == GREATER
    assert one_sided(-far, -0.05).outcome == LESS
    assert one_sided(wide, 0.0).outcome == UNDECIDED
    # Bonferroni on the contrary side: a contrary effect just beyond one test's interval is
    # not enough when the claim has many parts.
    edge = rng.normal(-0.0035, 0.002, 20000)
    assert one_sided(edge, -0.0035, tests=1).outcome == LESS
    assert one_sided(edge, -0.0035, tests=50).outcome == UNDECIDED


def test_km_median_counts_censored_seeds():
    reached = [Event(40_000, True)] * 3
    assert km_median(reached) == 40_000
    one_of_three = [Event(20_000, True), Event(150_000, False), Event(150_000, False)]
    assert math.isinf(km_median(one_of_three))  # dropping the censored would say 20,000
    two_of_three = [Event(20_000, True), Event(30_000, True), Event(150_000, False)]
    assert km_median(two_of_three) == 30_000


def test_gehan_rank_test_with_censoring():
    fast = [Event(1000, True), Event(1100, True), Event(1200, True)]
    slow = [Event(5000, True), Event(6000, True), Event(9000, False)]
    assert gehan(fast, slow) == 9
    assert earlier_test(fast, slow) == pytest.approx(smallest_p(3, 3)) == pytest.approx(0.05)
    assert earlier_test(slow, fast) == 1.0
    # Delayed by more than its lead, the fast arm no longer wins.
    assert earlier_test(fast, slow, shift=4500) > 0.05
    # 1 of 3 seeds reaching at 20k is not earlier than 3 of 3 at 40k.
    one_of_three = [Event(20_000, True), Event(150_000, False), Event(150_000, False)]
    assert gehan(one_of_three, [Event(40_000, True)] * 3) < 0
    assert earlier_test(one_of_three, [Event(40_000, True)] * 3) > 0.5
    # Two censored seeds tell nothing about each other.
    assert gehan([Event(100, False)], [Event(200, False)]) == 0
    assert smallest_p(2, 2) == pytest.approx(1 / 6)


def test_rank_test_monte_carlo_beyond_exact_enumeration():
    rng = np.random.default_rng(0)
    a = [Event(float(s), True) for s in rng.normal(1000, 100, 12)]
    b = [Event(float(s), True) for s in rng.normal(3000, 100, 12)]
    assert earlier_test(a, b, max_exact=100, n_perm=2000) < 0.01
