"""CCA, SVCCA, PWCCA and CKA against textbook computations, published values and invariances.

The references below are written independently of transfusion_cli.similarity: covariance
inverse square roots through scipy.linalg.sqrtm/inv, SVCCA through an SVD of the data, PWCCA
through canonical variates in sample space, CKA through Gram matrices and HSIC.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.linalg
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from transfusion_cli.similarity import (
    MinibatchCKA,
    SimilarityError,
    SimilarityWarning,
    cca_coefficients,
    cca_from_moments,
    debiased_cka,
    debiased_cka_from_moments,
    linear_cka,
    linear_cka_from_moments,
    mean_cca,
    moments,
    pwcca,
    pwcca_from_moments,
    svcca,
    svcca_from_moments,
)

TOL = 1e-8
PROPERTY = settings(max_examples=25, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


# ---------------------------------------------------------------- textbook references
def _inv_sqrt(s: np.ndarray) -> np.ndarray:
    return np.real(scipy.linalg.inv(scipy.linalg.sqrtm(s)))


def ref_cca(x, y):
    """Singular values of Sxx^-1/2 Sxy Syy^-1/2 and the matrices behind them."""
    xc, yc = x - x.mean(0), y - y.mean(0)
    n = len(x)
    sxx, syy, sxy = xc.T @ xc / (n - 1), yc.T @ yc / (n - 1), xc.T @ yc / (n - 1)
    wx, wy = _inv_sqrt(sxx), _inv_sqrt(syy)
    u, rho, vt = np.linalg.svd(wx @ sxy @ wy, full_matrices=False)
    return rho, u, vt.T, wx, wy, xc, yc


def ref_svcca(x, y, keep=0.99):
    """SVD of each centred data matrix, top directions holding `keep` of Σσ², then CCA."""
    reduced = []
    for a in (x, y):
        ac = a - a.mean(0)
        u, s, _ = np.linalg.svd(ac, full_matrices=False)
        frac = np.cumsum(s**2) / np.sum(s**2)
        k = int(np.argmax(frac >= keep)) + 1
        reduced.append(u[:, :k] * s[:k])
    return ref_cca(*reduced)[0].mean()


def ref_pwcca(x, y):
    """Canonical variates of x in sample space, weights Σ_j |<h_i, x_j>| (Morcos et al.)."""
    rho, u, _, wx, _, xc, _ = ref_cca(x, y)
    h = xc @ wx @ u
    h /= np.linalg.norm(h, axis=0)
    alpha = np.abs(h.T @ xc).sum(axis=1)
    return float(np.sum(alpha / alpha.sum() * rho))


def _hsic_biased(k, l):  # noqa: E741
    n = len(k)
    h = np.eye(n) - np.ones((n, n)) / n
    return np.trace(k @ h @ l @ h) / (n - 1) ** 2


def _hsic_unbiased(k, l):  # noqa: E741
    n = len(k)
    kt, lt = k - np.diag(np.diag(k)), l - np.diag(np.diag(l))
    one = np.ones(n)
    return (np.trace(kt @ lt) + (one @ kt @ one) * (one @ lt @ one) / ((n - 1) * (n - 2))
            - 2 / (n - 2) * one @ kt @ lt @ one) / (n * (n - 3))


def ref_cka(x, y, debiased=False):
    """CKA from linear Gram matrices of the raw (uncentred) features."""
    k, l = x @ x.T, y @ y.T  # noqa: E741
    hsic = _hsic_unbiased if debiased else _hsic_biased
    return hsic(k, l) / np.sqrt(hsic(k, k) * hsic(l, l))


# ---------------------------------------------------------------- data
def related(seed: int, n: int = 300, p: int = 8, q: int = 6, noise: float = 1.0):
    """Two views of a shared latent with uneven scales (well conditioned)."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, 4))
    x = z @ rng.standard_normal((4, p)) + noise * rng.standard_normal((n, p))
    y = z @ rng.standard_normal((4, q)) + noise * rng.standard_normal((n, q))
    return x * rng.uniform(0.5, 2.0, p) + 3.0, y + rng.uniform(-1, 1, q)


def orthogonal(rng, d):
    q, r = np.linalg.qr(rng.standard_normal((d, d)))
    return q * np.sign(np.diag(r))


def invertible(rng, d):
    """Well-conditioned but far from orthogonal (singular values 0.3 .. 3)."""
    return orthogonal(rng, d) @ np.diag(np.geomspace(0.3, 3.0, d)) @ orthogonal(rng, d)


def constructed(n=1000, seed=42):
    """similarity.md §6.2: canonical correlations rho with closed-form CKA/PWCCA/SVCCA."""
    k = 8
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(np.column_stack([np.ones(n), rng.standard_normal((n, 2 * k))]))
    e = q[:, 1:]
    rho = np.array([0.95, 0.9, 0.8, 0.7, 0.5, 0.3, 0.2, 0.1])
    a = np.array([8, 6, 5, 4, 3, 0.2, 0.1, 0.05])
    b = np.array([7, 6, 5, 3, 2, 1, 0.1, 0.05])
    u = e[:, :k]
    v = rho * e[:, :k] + np.sqrt(1 - rho**2) * e[:, k:]
    return u * a, v * b, rho, a, b


METRICS = {"cca": mean_cca, "svcca": svcca, "pwcca": pwcca, "cka": linear_cka,
           "cka_debiased": debiased_cka}


# ---------------------------------------------------------------- agreement with references
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_agrees_with_textbook_computations(seed):
    x, y = related(seed)
    assert np.allclose(cca_coefficients(x, y), ref_cca(x, y)[0], atol=TOL, rtol=0)
    assert mean_cca(x, y) == pytest.approx(ref_cca(x, y)[0].mean(), abs=TOL)
    assert svcca(x, y) == pytest.approx(ref_svcca(x, y), abs=TOL)
    assert svcca(x, y, variance=0.9) == pytest.approx(ref_svcca(x, y, 0.9), abs=TOL)
    assert pwcca(x, y) == pytest.approx(ref_pwcca(x, y), abs=TOL)
    assert pwcca(y, x) == pytest.approx(ref_pwcca(y, x), abs=TOL)
    assert linear_cka(x, y) == pytest.approx(ref_cka(x, y), abs=TOL)
    assert debiased_cka(x, y) == pytest.approx(ref_cka(x, y, debiased=True), abs=TOL)


def test_pwcca_details_give_the_y_weighted_value():
    x, y = related(5)
    result = pwcca_from_moments(moments(x, y))
    assert result.details["weights"] == "x"
    assert result.details["pwcca_y"] == pytest.approx(ref_pwcca(y, x), abs=TOL)


def test_gram_form_when_fewer_points_than_neurons_matches_reference():
    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((30, 50)), rng.standard_normal((30, 40))
    y[:, :20] += x[:, :20]
    assert linear_cka(x, y) == pytest.approx(ref_cka(x, y), abs=TOL)
    assert debiased_cka(x, y) == pytest.approx(ref_cka(x, y, debiased=True), abs=TOL)


def test_closed_form_constructed_case():
    x, y, rho, a, b = constructed()
    assert np.allclose(cca_coefficients(x, y), rho, atol=1e-12)
    assert mean_cca(x, y) == pytest.approx(0.55625, abs=1e-12)
    assert linear_cka(x, y) == pytest.approx(0.822636954056, abs=1e-12)
    assert linear_cka(x, y) == pytest.approx(
        np.sum(a**2 * b**2 * rho**2) / np.sqrt(np.sum(a**4) * np.sum(b**4)), abs=1e-12)
    assert pwcca(x, y) == pytest.approx(0.811574952562, abs=1e-12)
    assert pwcca(x, y) == pytest.approx(np.sum(a * rho) / np.sum(a), abs=1e-12)
    result = svcca_from_moments(moments(x, y), 0.99)
    assert result.value == pytest.approx(0.77, abs=1e-12)
    assert (result.details["kx"], result.details["ky"]) == (5, 5)
    # Canonical correlations survive any invertible map of X.
    t = invertible(np.random.default_rng(0), 8)
    assert np.allclose(cca_coefficients(x @ t, y), rho, atol=1e-10)


def test_kornblith_demo_values():
    np.random.seed(1337)  # the demo's legacy seeding
    x = np.random.randn(100, 10)
    y = np.random.randn(100, 10) + x
    assert linear_cka(x, y) == pytest.approx(0.557613, abs=5e-7)
    assert debiased_cka(x, y) == pytest.approx(0.513456, abs=5e-7)
    # Mean squared CCA with centring (the demo's uncentred cca gives 0.543124).
    assert cca_from_moments(moments(x, y)).details["cca_mean_sq"] == pytest.approx(
        0.545396, abs=5e-7)


# ---------------------------------------------------------------- identity and invariances
@pytest.mark.parametrize("name", sorted(METRICS))
def test_identity_gives_one(name):
    x, _ = related(7)
    assert METRICS[name](x, x) == pytest.approx(1.0, abs=1e-10)


SEEDS = st.integers(0, 2**31 - 1)


@PROPERTY
@given(seed=SEEDS, p=st.integers(2, 9), q=st.integers(2, 9))
def test_cca_invariant_to_invertible_maps_and_translation(seed, p, q):
    rng = np.random.default_rng(seed)
    x, y = related(seed, p=p, q=q)
    base = cca_coefficients(x, y)
    gx, gy = invertible(rng, p), invertible(rng, q)
    shifted = x @ gx + rng.normal(0, 10, p)
    assert np.allclose(cca_coefficients(shifted, y @ gy), base, atol=TOL)
    assert np.allclose(cca_coefficients(y, x), base, atol=TOL)  # symmetric
    assert mean_cca(shifted, y) == pytest.approx(base.mean(), abs=TOL)


@PROPERTY
@given(seed=SEEDS, scale=st.floats(0.05, 20.0))
def test_svcca_invariant_to_orthogonal_scaling_translation(seed, scale):
    rng = np.random.default_rng(seed)
    x, y = related(seed, p=9, q=7)
    base = svcca(x, y)
    qx, qy = orthogonal(rng, 9), orthogonal(rng, 7)
    assert svcca(scale * x @ qx + rng.normal(0, 5, 9), y) == pytest.approx(base, abs=TOL)
    assert svcca(x, scale * y @ qy - 4.0) == pytest.approx(base, abs=TOL)


@PROPERTY
@given(seed=SEEDS, scale=st.floats(0.05, 20.0))
def test_pwcca_invariances(seed, scale):
    """Any invertible map of the second argument; of the first only scaling, translation,
    permutation and sign flips of neurons."""
    rng = np.random.default_rng(seed)
    x, y = related(seed, p=8, q=6)
    base = pwcca(x, y)
    assert pwcca(x, y @ invertible(rng, 6) + rng.normal(0, 5, 6)) == pytest.approx(base, abs=TOL)
    perm, signs = rng.permutation(8), rng.choice([-1.0, 1.0], 8)
    transformed = scale * (x[:, perm] * signs) + rng.normal(0, 5, 8)
    assert pwcca(transformed, y) == pytest.approx(base, abs=TOL)


@PROPERTY
@given(seed=SEEDS, scale=st.floats(0.05, 20.0))
def test_cka_invariant_to_orthogonal_maps_and_isotropic_scaling(seed, scale):
    rng = np.random.default_rng(seed)
    x, y = related(seed, p=8, q=6)
    for fn in (linear_cka, debiased_cka):
        base = fn(x, y)
        assert fn(scale * x @ orthogonal(rng, 8) + 2.0, y) == pytest.approx(base, abs=TOL)
        assert fn(x, scale * y @ orthogonal(rng, 6)) == pytest.approx(base, abs=TOL)
        assert fn(y, x) == pytest.approx(base, abs=TOL)


# ---------------------------------------------------------------- non-invariances
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cka_changes_under_general_invertible_maps(seed):
    rng = np.random.default_rng(seed)
    x, y = related(seed, p=8, q=6)
    g = invertible(rng, 8)
    assert abs(linear_cka(x @ g, y) - linear_cka(x, y)) > 1e-3
    assert abs(debiased_cka(x @ g, y) - debiased_cka(x, y)) > 1e-3
    assert abs(mean_cca(x @ g, y) - mean_cca(x, y)) < TOL  # while CCA does not move


def test_svcca_changes_under_general_invertible_maps():
    """The 99 % truncation depends on the basis: shrinking X's strongest direction makes
    SVCCA drop it (ρ = .9, .8, .7, .5 remain: 0.725 instead of 0.77)."""
    x, y, *_ = constructed()
    shrink = np.diag([0.01, 1, 1, 1, 1, 1, 1, 1.0])
    assert svcca(x, y) == pytest.approx(0.77, abs=1e-12)
    assert svcca(x @ shrink, y) == pytest.approx(0.725, abs=1e-12)
    assert abs(mean_cca(x @ shrink, y) - mean_cca(x, y)) < TOL


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pwcca_changes_under_orthogonal_maps_of_the_first_argument(seed):
    rng = np.random.default_rng(seed)
    x, y = related(seed, p=8, q=6)
    assert abs(pwcca(x @ orthogonal(rng, 8), y) - pwcca(x, y)) > 1e-4


# ---------------------------------------------------------------- degenerate inputs
def test_dead_and_duplicated_units_drop_the_rank_and_change_nothing():
    x, y = related(11, p=8, q=6)
    dead = np.column_stack([x, np.zeros(len(x))])
    duplicated = np.column_stack([x, x[:, 2]])
    for variant in (dead, duplicated):
        result = cca_from_moments(moments(variant, y))
        assert result.details["rank_x"] == 8 and result.details["p"] == 9
        assert result.value == pytest.approx(mean_cca(x, y), abs=1e-10)
        assert np.isfinite(svcca(variant, y)) and np.isfinite(pwcca(variant, y))
    # A dead neuron adds no variance and no weight; a duplicate changes the variance spectrum
    # (SVCCA's truncation) and counts twice in PWCCA's weights, as the definitions say.
    assert svcca(dead, y) == pytest.approx(svcca(x, y), abs=1e-10)
    assert pwcca(dead, y) == pytest.approx(pwcca(x, y), abs=1e-10)


def test_rank_deficient_layer_uses_its_numerical_rank():
    rng = np.random.default_rng(4)
    x, y = related(4, p=5, q=6)
    wide = x @ rng.standard_normal((5, 40))  # 40 neurons, rank 5
    result = cca_from_moments(moments(wide, y))
    assert result.details["rank_x"] == 5 and result.details["coefficients"] == 5
    assert result.value == pytest.approx(mean_cca(x, y), abs=1e-8)


@pytest.mark.parametrize("fn", [cca_coefficients, mean_cca, svcca, pwcca])
def test_cca_family_needs_more_points_than_neurons(fn):
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((20, 30)), rng.standard_normal((20, 5))
    with pytest.raises(SimilarityError, match="more data points than neurons"):
        fn(x, y)


@pytest.mark.parametrize("name", sorted(METRICS))
def test_constant_layer_is_nan_with_a_reason(name):
    x, _ = related(1)
    constant = np.full((len(x), 4), 0.1)
    with pytest.warns(SimilarityWarning, match="constant"):
        value = METRICS[name](x, constant)
    assert np.isnan(value)


def test_constant_layer_reason_from_moments():
    x, _ = related(1)
    m = moments(np.full((len(x), 3), 7.0), x, debiased=True)
    for fn in (cca_from_moments, svcca_from_moments, pwcca_from_moments,
               linear_cka_from_moments, debiased_cka_from_moments):
        result = fn(m)
        assert np.isnan(result.value) and "x is constant" in result.reason


def test_debiased_cka_of_independent_data_is_near_zero():
    rng = np.random.default_rng(11)
    x, y = rng.standard_normal((400, 64)), rng.standard_normal((400, 64))
    assert abs(debiased_cka(x, y)) < 0.01
    assert linear_cka(x, y) > 0.1  # the biased estimator is inflated at this n/p
    mb = MinibatchCKA()
    for start in range(0, 400, 100):
        mb.update(x[start:start + 100], y[start:start + 100])
    assert abs(mb.value()) < 0.02


def test_torch_tensors_are_accepted():
    x, y = related(2)
    tx, ty = torch.tensor(x, dtype=torch.float32), torch.tensor(y, dtype=torch.float32)
    for fn in METRICS.values():
        assert fn(tx, ty) == pytest.approx(fn(x.astype(np.float32), y.astype(np.float32)),
                                           abs=1e-12)


def test_shape_errors_are_clear():
    with pytest.raises(SimilarityError, match="same inputs"):
        linear_cka(np.ones((10, 2)), np.ones((9, 2)))
    with pytest.raises(SimilarityError, match="2-D"):
        svcca(np.ones((10, 2, 2)), np.ones((10, 2)))
    with pytest.raises(SimilarityError, match="variance"):
        x, y = related(0)
        svcca(x, y, variance=1.5)


def test_no_warning_for_ordinary_inputs():
    x, y = related(9)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for fn in METRICS.values():
            fn(x, y)
