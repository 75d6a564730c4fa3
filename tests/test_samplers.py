"""Particle samplers against the exact generated densities (KS tests, fixed seeds)."""
import numpy as np
import pytest
from scipy import stats

import rfdiff as rf
from _references import ode_generated_gaussian, sde_generated_gaussian
from rfdiff.kl.ode import generated_density
from rfdiff.samplers import (euler_maruyama, heun, prior_noise, probability_flow, time_schedule)

OU = rf.OU()
MU, S2, T_MIN, T = 1.0, 0.25, 1e-2, 2.0


def gaussian_score():
    """Exact score of p_0 = N(MU, S2) under OU (closed form, numpy)."""
    def s(z, t):
        t = np.reshape(t, (-1, 1))
        a = np.exp(-t)
        return -(z - a * MU) / (a * a * S2 - np.expm1(-2 * t))
    return rf.as_score(s)


def ode_law():
    return ode_generated_gaussian(MU, S2, T_MIN, T)


def sde_law():
    return sde_generated_gaussian(MU, S2, T_MIN, T, rtol=1e-12, atol=1e-14)


def ks_pvalue(x, mean, var):
    return stats.kstest(x[:, 0], "norm", args=(mean, np.sqrt(var))).pvalue


def test_schedule():
    ts = time_schedule(T, T_MIN, 10)
    assert ts[0] == T and ts[-1] == T_MIN and len(ts) == 11 and np.all(np.diff(ts) < 0)
    np.testing.assert_allclose(ts[1:] / ts[:-1], ts[1] / ts[0])
    lin = time_schedule(T, T_MIN, 10, kind="linear")
    np.testing.assert_allclose(np.diff(lin), np.diff(lin)[0])
    with pytest.raises(ValueError):
        time_schedule(1.0, 2.0, 10)


def test_heun_matches_exact_ode_law():
    x_T = prior_noise(4000, seed=1)
    x = heun(gaussian_score(), x_T, time_schedule(T, T_MIN, 200), OU)
    m, v = ode_law()
    assert ks_pvalue(x, m, v) > 0.01
    assert x.mean() == pytest.approx(m, abs=4 * np.sqrt(v / 4000))


def test_adaptive_flow_matches_exact_map():
    """The exact flow map is affine: x_tmin = m_gen + sqrt(v_gen) x_T (x_T ~ N(0, 1))."""
    x_T = prior_noise(500, seed=2)
    x, st = probability_flow(gaussian_score(), x_T, OU, T_MIN, T, rtol=1e-9, atol=1e-11, return_stats=True)
    m, v = ode_law()
    np.testing.assert_allclose(x, m + np.sqrt(v) * x_T, atol=1e-7)
    assert st.status == 0 and st.nfev > 0
    # Heun converges to the same map at second order
    e1 = np.abs(heun(gaussian_score(), x_T, time_schedule(T, T_MIN, 50), OU) - x).max()
    e2 = np.abs(heun(gaussian_score(), x_T, time_schedule(T, T_MIN, 100), OU) - x).max()
    assert 3.0 < e1 / e2 < 5.0


def test_euler_maruyama_matches_exact_sde_law():
    x_T = prior_noise(4000, seed=3)
    x = euler_maruyama(gaussian_score(), x_T, time_schedule(T, T_MIN, 400), OU, rng=7)
    m, v = sde_law()
    assert ks_pvalue(x, m, v) > 0.01


def test_two_mode_samplers_match_generated_densities():
    """Two modes, exact score: Heun samples vs the ODE density, Euler-Maruyama samples
    vs the Fokker-Planck density (numerical CDFs from generated_density)."""
    target = rf.two_modes(2.0, q1=0.3)
    s = target.score_fn(OU)
    grid = np.linspace(-9, 9, 3601)
    x_T = prior_noise(3000, seed=4)
    for kind, sampler in (("ode", lambda: heun(s, x_T, time_schedule(1.0, T_MIN, 200), OU)),
                          ("sde", lambda: euler_maruyama(s, x_T, time_schedule(1.0, T_MIN, 400), OU, rng=5))):
        p = generated_density(s, grid, OU, T_MIN, 1.0, kind=kind, tol=1e-4)
        cdf = np.concatenate([[0.0], np.cumsum(0.5 * (p[1:] + p[:-1]) * np.diff(grid))])
        cdf /= cdf[-1]
        res = stats.kstest(sampler()[:, 0], lambda q: np.interp(q, grid, cdf))
        assert res.pvalue > 0.01, kind


def test_same_noise_same_samples_and_explicit_noise():
    s = gaussian_score()
    x_T = prior_noise(64, seed=0)
    ts = time_schedule(T, T_MIN, 20)
    np.testing.assert_array_equal(heun(s, x_T, ts, OU), heun(s, x_T, ts, OU))
    noise = np.random.default_rng(9).standard_normal((20, 64, 1))
    a = euler_maruyama(s, x_T, ts, OU, noise=noise)
    b = euler_maruyama(s, x_T, ts, OU, noise=noise)
    np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="noise"):
        euler_maruyama(s, x_T, ts, OU, noise=noise[:5])
    with pytest.raises(ValueError, match="decreasing"):
        heun(s, x_T, ts[::-1], OU)
    for sampler in (lambda: heun(s, x_T, ts, OU, backend="tpu"),
                    lambda: probability_flow(s, x_T, OU, T_MIN, T, backend="tpu")):
        with pytest.raises(ValueError, match="backend must be one of"):
            sampler()


def test_samplers_in_two_dimensions():
    """d = 2 Gaussian with exact score: the ODE sample covariance is the generated one."""
    target = rf.GaussianMixture([1.0], [[1.0, -1.0]], [[[0.5, 0.2], [0.2, 0.3]]])
    s = target.score_fn(OU)
    x_T = prior_noise(3000, dim=2, seed=6)
    x = probability_flow(s, x_T, OU, T_MIN, 3.0, rtol=1e-6, atol=1e-8)
    assert x.shape == (3000, 2)
    # per coordinate the law is Gaussian; p_3 is close to pi, so the samples are close to p_tmin
    m, C = target.mean_cov(T_MIN, OU)
    np.testing.assert_allclose(x.mean(0), m, atol=0.06)
    np.testing.assert_allclose(np.cov(x.T), C, atol=0.06)


def test_random_feature_scores_and_reproducibility():
    """RF scores go through the batched (sorted-kink) evaluation: the same samples as
    the plain dense evaluation; two models from the same noise give RP < 1, a model
    with itself RP = 1."""
    from rfdiff.metrics import reproducibility
    target = rf.two_modes(2.0)
    x = target.sample(200, seed=0)
    flows = [rf.ScoreMatching(rf.RandomFeatureScore(m=64, seed=s), x, t_min=T_MIN, T=T, n_time=12).flow()
             for s in (1, 2)]
    s1 = flows[0].score_at(1e3)
    dense = rf.as_score(lambda z, t: s1.model.score(s1.A, z, t))
    x_T = prior_noise(300, seed=8)
    ts = time_schedule(T, T_MIN, 60)
    a = heun(s1, x_T, ts, OU)
    np.testing.assert_allclose(a, heun(dense, x_T, ts, OU), atol=1e-12)
    b = heun(flows[1].score_at(1e3), x_T, ts, OU)
    assert reproducibility(a, a, threshold=1e-9).value == 1.0
    assert reproducibility(a, b, threshold=1e-3).value < 1.0
