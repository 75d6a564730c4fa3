"""Gaussian mixtures (any d), the two-mode and quantile families, low-rank
mixtures, and the shared Target interface."""
import json
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate, stats
from scipy.special import logsumexp

from rfdiff.process import OU, VP
from rfdiff.score import Score
from rfdiff.targets import (GaussianMixture, LowRankMixture, low_rank_mixture, quantile_mixture,
                            two_modes)

P = OU()
TIMES = [1e-3, 0.1, 1.0, 10.0]


def fd(f, z, h):
    """Fourth-order central difference of f at z (along the axis h points in)."""
    return (-f(z + 2 * h) + 8 * f(z + h) - 8 * f(z - h) + f(z - 2 * h)) / (12 * h)


def mix3():
    return GaussianMixture([0.2, 0.5, 0.3], [-2.0, 0.5, 3.0], [0.3, 1.0, 0.05])


def mix2d():
    covs = np.array([[[1.0, 0.6], [0.6, 0.8]], [[0.2, -0.05], [-0.05, 0.4]], [[0.5, 0.0], [0.0, 0.5]]])
    return GaussianMixture([0.3, 0.45, 0.25], [[-1.0, 0.5], [1.5, -0.5], [0.0, 2.0]], covs)


def reference_logpdf(g, z, t, process=P):
    """Independent reference: scipy multivariate normals + logsumexp."""
    a, s2 = process.alpha(t), process.sigma2(t)
    comps = [np.log(w) + stats.multivariate_normal(a * m, a * a * S + s2 * np.eye(g.dim)).logpdf(z)
             for w, m, S in zip(g.weights, g.means, g.covs)]
    return logsumexp(np.array(comps).reshape(len(comps), -1), axis=0)


# -- values against references -------------------------------------------------------
@pytest.mark.parametrize("t", [0.0] + TIMES)
def test_mixture_logpdf_matches_scipy(t):
    for g, z in [(mix3(), np.linspace(-5, 5, 11)[:, None]),
                 (mix2d(), np.random.default_rng(1).normal(size=(9, 2)) * 2)]:
        np.testing.assert_allclose(g.log_pt(z, t, P), reference_logpdf(g, z, t), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("t", TIMES)
@pytest.mark.parametrize("target", [mix3(), two_modes(3.0, 0.3), two_modes(15.0)])
def test_1d_score_and_derivative_are_finite_differences(target, t):
    z = np.linspace(-5, 5, 41)
    # step: a small fraction of the narrowest scale (component width, or the width
    # ~ 1/(alpha |mu|) of the switch between far-apart modes)
    sd = float(np.sqrt(P.sigma2(t) + P.alpha(t) ** 2 * target.covs.min()))
    h = 2e-3 * min(1.0, sd, 1.0 / (P.alpha(t) * np.abs(target.means).max()))
    L, S, D = target.evaluate(z, t, P)
    fs = fd(lambda q: target.log_pt(q, t, P), z, h)
    fds = fd(lambda q: target.score(q, t, P)[:, 0], z, h)
    np.testing.assert_allclose(S[:, 0], fs, rtol=1e-7, atol=1e-7 * np.abs(S).max())
    np.testing.assert_allclose(D, fds, rtol=1e-7, atol=1e-7 * np.abs(D).max())


@pytest.mark.parametrize("t", TIMES)
def test_2d_and_3d_score_and_divergence_are_finite_differences(t):
    rng = np.random.default_rng(3)
    A = rng.normal(size=(2, 3, 3))
    g3 = GaussianMixture([0.4, 0.6], rng.normal(size=(2, 3)), A @ np.swapaxes(A, 1, 2) + 0.1 * np.eye(3))
    for g in (mix2d(), g3):
        z = rng.normal(size=(6, g.dim))
        h = 1e-3
        S, D = g.score(z, t, P), g.score_dz(z, t, P)
        div = np.zeros(len(z))
        for j in range(g.dim):
            e = np.zeros(g.dim)
            e[j] = h
            f = lambda s: g.log_pt(z + s * e / h, t, P)
            grad_j = (-f(2 * h) + 8 * f(h) - 8 * f(-h) + f(-2 * h)) / (12 * h)
            np.testing.assert_allclose(S[:, j], grad_j, rtol=1e-7, atol=1e-7 * np.abs(S).max())
            fs = lambda s: g.score(z + s * e / h, t, P)[:, j]
            div += (-fs(2 * h) + 8 * fs(h) - 8 * fs(-h) + fs(-2 * h)) / (12 * h)
        np.testing.assert_allclose(D, div, rtol=1e-7, atol=1e-7 * np.abs(D).max())


def test_per_point_times_equal_scalar_times():
    g = mix2d()
    z = np.random.default_rng(0).normal(size=(5, 2))
    ts = np.array([0.0, 1e-3, 0.3, 2.0, 15.0])
    L, S, D = g.evaluate(z, ts, P)
    for i, t in enumerate(ts):
        Li, Si, Di = g.evaluate(z[i:i + 1], t, P)
        np.testing.assert_array_equal([L[i], D[i]], [Li[0], Di[0]])
        np.testing.assert_array_equal(S[i], Si[0])


@pytest.mark.parametrize("t", [0.0, 1e-3, 1.0])
def test_1d_density_integrates_to_one(t):
    for g in (mix3(), two_modes(3.0, 0.2)):
        f = lambda x: np.exp(g.log_pt(np.array([x]), t, P)[0])
        val = integrate.quad(f, -np.inf, np.inf, points=None, epsabs=1e-13, epsrel=1e-13, limit=400)[0] \
            if t > 0.5 else sum(integrate.quad(f, a, b, epsabs=1e-14, epsrel=1e-13, limit=400)[0]
                                for a, b in [(-30, -2), (-2, 0.5), (0.5, 3), (3, 30)])
        assert val == pytest.approx(1.0, abs=1e-11)


def test_2d_density_integrates_to_one_on_a_grid():
    g = mix2d()
    x, w = np.polynomial.legendre.leggauss(160)
    x, w = 9 * x, 9 * w                                  # [-9, 9]^2 holds all mass to 1e-12
    X, Y = np.meshgrid(x, x, indexing="ij")
    for t in (0.0, 0.5):
        dens = np.exp(g.log_pt(np.stack([X.ravel(), Y.ravel()], 1), t, P)).reshape(X.shape)
        assert w @ dens @ w == pytest.approx(1.0, abs=1e-10)


@settings(max_examples=40, deadline=None)
@given(mu=st.floats(-20, 20), s2=st.floats(0.01, 10), t=st.floats(0, 20), z=st.floats(-60, 60))
def test_single_component_is_a_gaussian(mu, s2, t, z):
    g = GaussianMixture([1.0], [mu], [s2])
    a, v = P.alpha(t), P.alpha(t) ** 2 * s2 + P.sigma2(t)
    L, S, D = g.evaluate(np.array([z]), t, P)
    assert L[0] == pytest.approx(stats.norm.logpdf(z, a * mu, np.sqrt(v)), rel=1e-12, abs=1e-12)
    assert S[0, 0] == pytest.approx(-(z - a * mu) / v, rel=1e-12, abs=1e-12)
    assert D[0] == pytest.approx(-1.0 / v, rel=1e-12)


# -- tails and extreme times -------------------------------------------------------------
@pytest.mark.parametrize("t", [1e-6, 1e-3, 1.0, 20.0])
def test_far_tails_are_finite_and_follow_the_outer_component(t):
    g = two_modes(3.0, 0.3)
    z = np.array([-50.0, 50.0])
    with np.errstate(all="raise"):
        L, S, D = g.evaluate(z, t, P)
    assert np.all(np.isfinite(L)) and np.all(np.isfinite(S)) and np.all(np.isfinite(D))
    a = P.alpha(t)   # unit variances: v = alpha^2 + sigma^2 = 1 under OU
    if t < 1.0:      # one component dominates completely
        np.testing.assert_allclose(S[:, 0], [-(-50 + 3 * a), -(50 - 3 * a)], rtol=1e-13)
        np.testing.assert_allclose(L, [stats.norm.logpdf(-50, -3 * a) + np.log(0.3),
                                       stats.norm.logpdf(50, 3 * a) + np.log(0.7)], rtol=1e-13)
    np.testing.assert_allclose(D, -1.0, rtol=1e-12)


def test_quantile_mixture_far_mode_is_resolved():
    g = quantile_mixture(1e-3, 1e4)
    with np.errstate(all="raise"):
        L, S, D = g.evaluate(np.array([0.0, 5e3, 1e4, -1e4]), 1e-3, P)
    assert np.all(np.isfinite(L))
    a = P.alpha(1e-3)
    assert L[2] == pytest.approx(np.log(1e-3) + stats.norm.logpdf(1e4, 1e4 * a), rel=1e-12)
    assert S[2, 0] == pytest.approx(-(1e4 - 1e4 * a), rel=1e-10)
    assert quantile_mixture(1e-3, 10.0, sign=-1).means[1, 0] == -10.0


# -- expectations ----------------------------------------------------------------------------
@pytest.mark.parametrize("t", [0.0, 0.01, 1.0])
def test_expectation_nodes_exact_moments(t):
    g = mix3()
    z, w = g.expectation_nodes(t, P, order=6)
    assert w.sum() == pytest.approx(1.0, abs=1e-15)
    a, s2 = P.alpha(t), P.sigma2(t)
    m, v = a * g.means[:, 0], a * a * g.covs[:, 0, 0] + s2
    for r, comp in [(1, m), (2, m**2 + v), (3, m**3 + 3 * m * v), (4, m**4 + 6 * m**2 * v + 3 * v**2)]:
        assert w @ z[:, 0] ** r == pytest.approx(g.weights @ comp, rel=1e-13)
    g2 = mix2d()
    z, w = g2.expectation_nodes(t, P, order=5)
    mean, cov = g2.mean_cov(t, P)
    np.testing.assert_allclose(w @ z, mean, rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose((z - mean).T @ ((z - mean) * w[:, None]), cov, rtol=1e-12, atol=1e-14)


def test_expectation_nodes_qmc_in_high_dimension():
    g = low_rank_mixture(6, 2, 3, seed=1)
    z, w = g.expectation_nodes(0.2, P, qmc_points=4096, seed=3)
    mean, cov = g.mean_cov(0.2, P)
    assert w.sum() == pytest.approx(1.0)
    np.testing.assert_allclose((z * w[:, None]).T @ z, cov + np.outer(mean, mean), atol=2e-3)


# -- low rank --------------------------------------------------------------------------------
def test_low_rank_samples_on_subspaces_with_right_covariance():
    g = low_rank_mixture(d=8, r=2, K=3, seed=4)
    assert isinstance(g, LowRankMixture) and g.bases.shape == (3, 8, 2)
    np.testing.assert_allclose(np.einsum("kdi,kdj->kij", g.bases, g.bases), np.broadcast_to(np.eye(2), (3, 2, 2)),
                               atol=1e-14)
    x = g.sample(40000, seed=5)
    assert g.subspace_distance(x).max() < 1e-12
    assert g.subspace_distance(np.ones((1, 8))).min() > 0.1
    cov_ref = np.einsum("k,kdi,kei->de", g.weights, g.bases, g.bases)
    n = len(x)
    # entries of the sample covariance have standard deviation <= sqrt(2/n) here
    np.testing.assert_allclose(x.T @ x / n, cov_ref, atol=6 * np.sqrt(2.0 / n))
    np.testing.assert_array_equal(x, g.sample(40000, seed=5))


def test_low_rank_score_is_fd_and_t0_raises():
    g = low_rank_mixture(d=4, r=1, K=2, seed=0)
    z = np.random.default_rng(1).normal(size=(5, 4))
    t, h = 0.05, 1e-4
    S = g.score(z, t, P)
    for j in range(4):
        e = np.zeros(4)
        e[j] = h
        fdj = (-g.log_pt(z + 2 * e, t, P) + 8 * g.log_pt(z + e, t, P) - 8 * g.log_pt(z - e, t, P)
               + g.log_pt(z - 2 * e, t, P)) / (12 * h)
        np.testing.assert_allclose(S[:, j], fdj, rtol=1e-7, atol=1e-7 * np.abs(S).max())
    with pytest.raises(ValueError, match="positive definite"):
        g.log_pt(z, 0.0, P)
    assert g.has_density_at_zero is False


# -- interface ----------------------------------------------------------------------------
def test_score_fn_sample_describe_and_vp():
    g = mix2d()
    s = g.score_fn(P)
    assert isinstance(s, Score) and s.dim == 2
    z = np.random.default_rng(2).normal(size=(4, 2))
    np.testing.assert_array_equal(s(z, 0.3), g.score(z, 0.3, P))
    np.testing.assert_array_equal(s.dz(z, np.full(4, 0.3)), g.score_dz(z, 0.3, P))
    x = g.sample(1000, seed=7)
    assert x.shape == (1000, 2)
    np.testing.assert_array_equal(x, g.sample(1000, seed=7))
    assert not np.array_equal(x, g.sample(1000, seed=8))
    json.dumps(g.describe())
    vp = VP()
    np.testing.assert_allclose(g.log_pt(z, 0.4, vp), reference_logpdf(g, z, 0.4, vp), rtol=1e-12)
    assert two_modes(2.0).log_pt(0.5, 0.1, P).shape == (1,)


def test_sample_statistics_match_mean_cov():
    g = mix2d()
    x = g.sample(50000, seed=11)
    mean, cov = g.mean_cov(0.0, P)
    np.testing.assert_allclose(x.mean(0), mean, atol=5 * np.sqrt(cov.diagonal().max() / len(x)))
    np.testing.assert_allclose(np.cov(x.T), cov, atol=0.05)


# -- validation ---------------------------------------------------------------------------
@pytest.mark.parametrize("args, match", [
    (([0.5, 0.6], [0.0, 1.0], [1.0, 1.0]), "weights must sum to 1"),
    (([1.5, -0.5], [0.0, 1.0], [1.0, 1.0]), "weights must be > 0"),
    (([0.5, 0.5], [0.0, np.nan], [1.0, 1.0]), "means"),
    (([0.5, 0.5], [0.0, 1.0, 2.0], [1.0, 1.0]), "means"),
    (([0.5, 0.5], [0.0, 1.0], [1.0, -1.0]), "covs"),
    (([0.5, 0.5], [[0.0, 0.0], [1.0, 1.0]], [[[1.0, 2.0], [2.0, 1.0]]] * 2), "covs must be positive semidefinite"),
    (([0.5, 0.5], [[0.0, 0.0], [1.0, 1.0]], [[[1.0, 0.5], [0.0, 1.0]]] * 2), "covs must be symmetric"),
    (([0.5, 0.5], [[0.0, 0.0], [1.0, 1.0]], np.ones((2, 3, 3))), "covs"),
])
def test_mixture_rejects_bad_input(args, match):
    with pytest.raises(ValueError, match=match):
        GaussianMixture(*args)


def test_family_and_call_validation():
    for bad, match in [(lambda: two_modes(0.0), "mu"), (lambda: two_modes(-1.0), "mu"),
                       (lambda: two_modes(2.0, q1=1.0), "q1"), (lambda: two_modes(2.0, q1=0.0), "q1"),
                       (lambda: quantile_mixture(1.5, 10.0), "eta"), (lambda: quantile_mixture(0.1, -1.0), "R"),
                       (lambda: quantile_mixture(0.1, 1.0, sign=2), "sign"),
                       (lambda: low_rank_mixture(3, 4, 2), "r"),
                       (lambda: LowRankMixture(np.ones((2, 3, 1))), "bases"),
                       (lambda: mix3().log_pt([0.0], -1.0, P), "t"),
                       (lambda: mix3().log_pt([0.0, 1.0], [0.1, 0.2, 0.3], P), "t"),
                       (lambda: mix2d().log_pt(np.zeros((3, 3)), 0.1, P), "z"),
                       (lambda: mix3().log_pt([0.0], 0.1, "OU"), "process"),
                       (lambda: mix3().sample(0), "n"),
                       (lambda: mix2d().partial_moments(np.zeros((2, 2)), 0.1, P), "1D")]:
        with pytest.raises(ValueError, match=match):
            bad()


def test_sobol_normals_is_the_one_generator():
    """gram.qmc_normals and targets.base.sobol_normals give the same numbers; they are
    Phi^-1 of scipy's scrambled Sobol points, and their moments are those of N(0, I)."""
    from scipy.stats import norm, qmc

    from rfdiff.model.gram import qmc_normals
    from rfdiff.targets.base import sobol_normals

    for n, d, seed in ((1024, 3, 0), (1000, 2, 7)):          # 1000: no balance warning either
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            e = sobol_normals(n, d, seed)
        np.testing.assert_array_equal(e, qmc_normals(n, d, seed))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)       # the reference's own balance warning
            u = qmc.Sobol(d, scramble=True, seed=seed).random(n)
        np.testing.assert_array_equal(e, norm.ppf(u))
        np.testing.assert_allclose(e.mean(axis=0), 0.0, atol=5e-3)
        np.testing.assert_allclose(np.cov(e.T), np.eye(d), atol=2e-2)
