"""Score and sample metrics against closed forms and brute-force references."""
import numpy as np
import pytest
from scipy.stats import norm

import rfdiff as rf
from rfdiff.metrics import (distance_to_empirical, generalizability, integrated_score_error,
                            l2_score_error, memorization_fraction, mmd, quantile_error,
                            quantile_error_1d, reproducibility, score_distance,
                            weighted_quantile_error)

OU = rf.OU()


def step_perturbation(base, c, a):
    """s' = s + c 1[x > a]."""
    return rf.as_score(lambda z, t: base(z, t) + c * (z > a))


@pytest.mark.parametrize("a, delta", [(1.0, 0.05), (1.0, 0.2), (-0.5, 0.5), (2.5, 0.01)])
def test_quantile_error_of_a_step_perturbation(a, delta):
    """Under N(0, 1): |s - s'| = c on x > a, so D^delta = c if P(x > a) > delta, else 0."""
    target = rf.GaussianMixture([1.0], [[0.0]], [1.0 - 1e-12])   # p_t ~ N(0, 1) for all t
    s = target.score_fn(OU)
    c = 0.7
    expected = c if norm.sf(a) > delta else 0.0
    r = quantile_error_1d(s, step_perturbation(s, c, a), target, 0.5, OU, delta=delta)
    assert r.value == expected
    assert r.error == 0.0
    # quadrature nodes: the same where P(x > a) is not within the rule's resolution of delta
    x, w = target.expectation_nodes(0.5, OU, order=64)
    q = quantile_error(s, step_perturbation(s, c, a), x, delta, t=0.5, weights=w)
    assert q.value == expected


def test_quantile_error_sampling_version_and_bootstrap():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4000, 1))
    s = rf.as_score(lambda z, t: -z)
    ref = rf.as_score(lambda z, t: -z + z ** 2)        # |diff| = x^2 ~ chi2(1)
    delta = 0.1
    r = quantile_error(s, ref, x, delta, t=1.0, n_boot=200, seed=1)
    exact = norm.isf(delta / 2) ** 2                   # P(x^2 > eps) = delta
    assert r.value == pytest.approx(exact, abs=4 * r.error)
    assert 0 < r.error < 0.2


def test_weighted_quantile_definition():
    d, w = np.array([5.0, 4.0, 3.0, 2.0, 1.0]), np.full(5, 0.2)
    assert weighted_quantile_error(d, w, 0.0) == 5.0
    assert weighted_quantile_error(d, w, 0.2) == 4.0      # P(|d| > 4) = 0.2 <= delta
    assert weighted_quantile_error(d, w, 0.39) == 4.0
    assert weighted_quantile_error(d, w, 0.4) == 3.0
    assert weighted_quantile_error(d, w, 0.99) == 1.0


def test_l2_error_of_shifted_score_and_integral():
    target, c = rf.two_modes(2.0), 0.4
    true = target.score_fn(OU)
    s = rf.as_score(lambda z, t: true(z, t) + c)
    np.testing.assert_allclose(l2_score_error(s, target, [0.01, 0.1, 1.0], OU), c * c, rtol=1e-12)
    r = integrated_score_error(s, target, OU, 1e-3, 4.0, weighting="likelihood")
    assert r.value == pytest.approx(c * c * (4.0 - 1e-3), rel=1e-10)
    r2 = integrated_score_error(s, target, OU, 1e-3, 4.0, weighting="sigma2", tol=1e-8)
    t_int = (4.0 - 1e-3) + 0.5 * (np.exp(-8.0) - np.exp(-2e-3))          # int sigma_t^2 dt
    assert r2.value == pytest.approx(c * c * t_int, rel=1e-7)
    assert r2.error < 1e-7


def test_l2_error_matches_monte_carlo():
    target = rf.two_modes(1.5)
    s = rf.as_score(lambda z, t: -z)
    t = 0.3
    x = target.sample(200_000, seed=0)
    a, s2 = np.exp(-t), -np.expm1(-2 * t)
    xt = a * x + np.sqrt(s2) * np.random.default_rng(1).standard_normal(x.shape)
    mc = np.mean((s(xt, t) - target.score(xt, t, OU)) ** 2)
    assert l2_score_error(s, target, t, OU) == pytest.approx(mc, rel=1e-2)


def test_distance_to_empirical():
    x = rf.two_modes(2.0).sample(30, seed=0)
    emp = rf.Empirical(x)
    s_hat = emp.score_fn(OU)
    assert distance_to_empirical(s_hat, emp, 0.1, OU) == pytest.approx(0.0, abs=1e-20)
    target = rf.two_modes(2.0)
    d = distance_to_empirical(target.score_fn(OU), emp, [0.01, 1.0], OU)
    assert d[0] > d[1] > 0                       # the memorising score differs most at small t
    assert score_distance(target.score_fn(OU), s_hat, emp, 1.0, OU, order=16) == pytest.approx(d[1])


def test_memorization_fraction():
    rng = np.random.default_rng(0)
    train = rng.standard_normal((50, 2))
    copies = train[rng.integers(0, 50, 200)] + 1e-4 * rng.standard_normal((200, 2))
    assert memorization_fraction(copies, train).value == 1.0
    fresh = rng.standard_normal((2000, 2))
    r = memorization_fraction(fresh, train)
    assert r.value < 0.3 and r.error > 0
    assert memorization_fraction(fresh, rf.Empirical(train)).value == r.value
    # ratio threshold is a parameter
    assert memorization_fraction(fresh, train, ratio=0.99).value > r.value


def test_reproducibility_and_generalizability():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((500, 3))
    assert reproducibility(a, a.copy(), threshold=1e-3).value == 1.0
    b = a + 0.5 * rng.standard_normal(a.shape)
    r = reproducibility(a, b, threshold=0.1)
    assert r.value < 0.05
    np.testing.assert_allclose(r.info["distances"], np.linalg.norm(a - b, axis=1) / np.sqrt(3))
    rel = reproducibility(a, b, threshold=0.1, metric="relative")
    assert 0 <= rel.value <= 1
    train = rng.standard_normal((100, 3))
    assert generalizability(train[:40], train, threshold=0.01).value == 0.0
    assert generalizability(rng.standard_normal((300, 3)) + 10, train, threshold=0.01).value == 1.0


def test_mmd_unbiased_and_standard_error():
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((300, 2)), rng.standard_normal((250, 2))
    r = mmd(x, y, bandwidth=1.0)
    # brute force unbiased MMD^2
    k = lambda a, b: np.exp(-((a[:, None] - b[None]) ** 2).sum(-1) / 2.0)  # noqa: E731
    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    n, m = len(x), len(y)
    ref = ((kxx.sum() - np.trace(kxx)) / (n * (n - 1)) + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
           - 2 * kxy.mean())
    assert r.value == pytest.approx(ref, rel=1e-12)
    assert abs(r.value) < 4 * r.error
    far = mmd(x, y + 1.0)
    assert far.value > 5 * far.error and far.info["bandwidth"] > 0


def test_quantile_error_bootstrap_matches_the_order_statistic_standard_error():
    """|x|, x ~ N(0, 1): the sample (1 - delta) quantile has asymptotic standard error
    sqrt(delta (1 - delta) / n) / f(q), f = 2 phi the density of |x| at q = z_{delta/2};
    the bootstrap's (scipy.stats.bootstrap) agrees within its own noise (~n^-1/4)."""
    n, delta = 4000, 0.1
    x = np.random.default_rng(11).standard_normal(n)
    r = quantile_error(x, np.zeros(n), x, delta, n_boot=600, seed=3)
    q = norm.isf(delta / 2)
    assert r.value == pytest.approx(q, abs=0.05)
    assert r.error == pytest.approx(np.sqrt(delta * (1 - delta) / n) / (2 * norm.pdf(q)), rel=0.3)
    again = quantile_error(x, np.zeros(n), x, delta, n_boot=600, seed=3)
    assert again.error == r.error                                   # same seed, same numbers
    assert np.isnan(quantile_error(x, np.zeros(n), x, delta, n_boot=1).error)    # no resamples: no SE
