"""Fokker-Planck density of the reverse SDE: analytic references, conservation, positivity."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.integrate import solve_ivp

import rfdiff as rf
from _references import kl_gauss, mixture_score, sde_generated_gaussian
from rfdiff.model.batch import make_batch
from rfdiff.kl.fokker_planck import (FPGrid, _be_step, kl_sde, kl_sde_path, sde_density,
                                  solve_fokker_planck, time_steps)
from rfdiff.kl.ode import ConvergenceError, kl_ode

OU = rf.OU()


def test_gaussian_exact_score_matches_analytic():
    mu, s2, t_min, T = 2.5, 0.2, 1e-3, 0.5
    target = rf.GaussianMixture([1.0], [[mu]], [s2])
    mg, vg = sde_generated_gaussian(mu, s2, t_min, T)
    a = np.exp(-t_min)
    ref0 = kl_gauss(mu, s2, mg, vg)
    reft = kl_gauss(a * mu, a * a * s2 + 1 - a * a, mg, vg)
    assert ref0 > 0.1                       # far from zero: p_T is far from pi
    r = kl_sde(target.score_fn(OU), target, OU, t_min, T, tol=1e-7)
    assert r.converged and r.kind == "sde"
    assert r.value == pytest.approx(ref0, abs=1e-6)
    assert r.kl_tmin == pytest.approx(reft, abs=1e-6)
    assert abs(r.value - ref0) <= r.error
    assert r.mass_loss < 1e-10


def test_two_modes_data_processing_and_mass():
    """Exact score: the ODE keeps KL(p_T || pi); the SDE contracts it (data processing)."""
    target, t_min, T = rf.two_modes(2.0, q1=0.3), 1e-3, 1.0
    s = mixture_score([0.3, 0.7], [-2.0, 2.0], [1.0, 1.0])
    ode = kl_ode(target.score_fn(OU), target, OU, t_min, T, tol=1e-7)
    sde = kl_sde(s, target, OU, t_min, T, tol=1e-6)
    assert sde.converged and sde.mass_loss < 1e-10
    assert sde.kl_tmin + sde.kl_tmin_error <= ode.kl_tmin
    assert sde.kl_tmin > 0


def test_zero_score_wide_density_on_stretched_grid():
    """s = 0: the reverse SDE spreads to N(0, 2 e^{2(T - t_min)} - 1), far wider than
    the target; the solver must widen its grid (and say so) and still be exact."""
    target, t_min, T = rf.two_modes(3.0), 1e-3, 8.0
    zero = rf.as_score(lambda z, t: np.zeros_like(z))
    P = 2 * np.exp(2 * (T - t_min)) - 1
    x, w = target.expectation_nodes(0.0, OU, order=64)
    ref = float((target.log_pt(x, 0.0, OU) + 0.5 * x[:, 0] ** 2 / P + 0.5 * np.log(2 * np.pi * P)) @ w)
    r = kl_sde(zero, target, OU, t_min, T, tol=1e-4)
    assert r.work["stretch"][0] > 1
    assert r.value == pytest.approx(ref, abs=1e-4)


def test_rf_path_equals_single_and_ode_sde_both_converge():
    target = rf.two_modes(2.0)
    x = target.sample(200, seed=0)
    sm = rf.ScoreMatching(rf.RandomFeatureScore(m=48, seed=2), x, t_min=1e-2, T=4.0, n_time=16)
    flow = sm.flow()
    taus = np.array([1.0, 1e2, 1e5])
    path = kl_sde_path(flow, taus, target, tol=1e-4)
    assert np.all(path.converged) and np.all(path.mass_loss < 1e-10)
    one = kl_sde(flow.score_at(1e2), target, OU, 1e-2, 4.0, tol=1e-4)
    assert one.value == pytest.approx(path.value[1], abs=one.error + path.error[1])
    ode = kl_ode(flow.score_at(1e2), target, OU, 1e-2, 4.0, tol=1e-4)
    assert ode.converged and np.isfinite(ode.value) and np.isfinite(one.value)


def test_error_estimate_is_honest():
    target, t_min, T = rf.two_modes(2.0, q1=0.3), 1e-2, 2.0
    true = mixture_score([0.3, 0.7], [-2.0, 2.0], [1.0, 1.0])
    scores = [true, rf.as_score(lambda z, t: true(z, t) + 0.3 * np.tanh(z)),
              rf.as_score(lambda z, t: 0.5 * true(z, t))]
    for s in scores:
        r = kl_sde(s, target, OU, t_min, T, tol=1e-5)
        fine = kl_sde(s, target, OU, t_min, T, tol=1e-5 / 4)
        assert abs(r.value - fine.value) <= r.error
        assert abs(r.kl_tmin - fine.kl_tmin) <= r.kl_tmin_error


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000), st.floats(0.01, 2.0), st.floats(0.0, 50.0))
def test_step_is_positive_and_conservative(seed, dr, scale):
    """Any drift, any step: backward Euler with Scharfetter-Gummel fluxes keeps
    q >= 0 and its mass (an M-matrix whose columns sum to the cell widths)."""
    rng = np.random.default_rng(seed)
    grid = FPGrid(-5.0, 5.0, 64, stretch=1.0 + 20 * rng.random())
    q = rng.random((2, grid.N)) ** 4
    q /= (q @ grid.widths)[:, None]
    s = scale * rng.standard_normal((2, grid.N - 1))
    _be_step(q, s, grid, -1.0, 2.0, dr, np.empty_like(q))
    assert np.all(q >= 0)
    np.testing.assert_allclose(q @ grid.widths, 1.0, atol=1e-13)


@pytest.mark.parametrize("stretch", [1.5, 2.0, 2.001, 2.02, 2.03, 5.0, 1e6])
def test_stretched_grid_reaches_at_least_the_asked_width(stretch):
    """The stretched map covers [c - K W, c + K W] (exactly when K exceeds the
    map's least reach ~2.027, the least reach below it), its edges increase,
    and the core [lo, hi] stays within 1% of uniform."""
    grid = FPGrid(-5.0, 5.0, 64, stretch=stretch)
    reach, least = grid.edges[-1] / 5.0, 2.0 * (1 + 0.08 / 6)
    if stretch > least:
        assert reach == pytest.approx(stretch, rel=1e-9)
    else:
        assert reach == pytest.approx(least, rel=1e-6)
    assert grid.edges[0] == pytest.approx(-grid.edges[-1]) and np.all(np.diff(grid.edges) > 0)
    core = np.abs(grid.centers) < 2.5
    assert np.ptp(grid.widths[core]) <= 0.02 * grid.widths[core].mean()


def test_step_equals_a_dense_solve_of_the_scharfetter_gummel_system():
    """The fused build-and-Thomas step against numpy's dense solve of the same
    tridiagonal system, assembled face by face from the flux formula."""
    rng = np.random.default_rng(3)
    grid = FPGrid(-4.0, 4.0, 40, stretch=5.0)
    q = rng.random((3, grid.N))
    s = 3.0 * rng.standard_normal((3, grid.N - 1))
    f, g2, dr = -1.0, 2.0, 0.3
    ref = np.empty_like(q)
    for b in range(3):
        M = np.diag(grid.widths).astype(float)
        for i in range(grid.N - 1):
            d, D = grid.dist[i], 0.5 * g2
            c = dr * D / d
            P = (-f * grid.faces[i] + g2 * s[b, i]) * d / D
            bp, bm = P / np.expm1(P), -P / np.expm1(-P)       # B(P), B(-P)
            M[i, i] += c * bm
            M[i, i + 1] -= c * bp
            M[i + 1, i + 1] += c * bp
            M[i + 1, i] -= c * bm
        ref[b] = np.linalg.solve(M, grid.widths * q[b])
    _be_step(q, s, grid, f, g2, dr, np.empty_like(q))
    np.testing.assert_allclose(q, ref, rtol=1e-12)


def test_mass_conserved_over_a_whole_solve():
    s = mixture_score([0.5, 0.5], [-3.0, 3.0], [0.01, 0.01])
    q, ml = solve_fokker_planck(make_batch(s), OU, 1e-3, 8.0, FPGrid(-10, 10, 2000), 400)
    assert ml[0] < 1e-10 and np.all(q >= 0)


def test_time_steps_are_log_spaced_near_t_min():
    t = time_steps(OU, 1e-3, 8.0, 100)
    assert t[0] == 8.0 and t[-1] == 1e-3 and np.all(np.diff(t) < 0)
    assert np.max(-np.diff(t)) <= 0.5 * 9.0 / 100 * 8        # at most t_c dzeta apart
    r = t[-2] / t[-1]
    assert r == pytest.approx(t[-3] / t[-2], rel=1e-2)        # geometric near t_min


def test_sde_density_integrates_to_one():
    s = mixture_score([0.3, 0.7], [-2.0, 2.0], [1.0, 1.0])
    x = np.linspace(-10, 10, 801)
    p = sde_density(s, x, OU, 1e-2, 2.0, tol=1e-4)
    assert np.trapezoid(p, x) == pytest.approx(1.0, abs=1e-5)


def test_sde_density_error_estimate_and_absolute_floor():
    """The exact score of N(mu, 1) run by the reverse SDE from N(0, 1) over [t_min, T]
    generates N(mu (e^{-t_min} - e^{t_min - 2T}), 1) (tests/test_metrics_tv.py)."""
    from scipy.stats import norm
    mu, t_min, T = 1.5, 1e-3, 4.0
    s = rf.GaussianMixture([1.0], [[mu]], [1.0]).score_fn(OU)
    exact = norm.pdf(np.linspace(-8, 8, 161) - mu * (np.exp(-t_min) - np.exp(t_min - 2 * T)))
    x = np.linspace(-8, 8, 161)
    q, dq = sde_density(s, x, OU, t_min, T, tol=1e-5, return_error=True)
    assert np.all(np.abs(q - exact) <= 10 * dq + 1e-12)       # the estimate tracks the true error
    assert np.max(np.abs(q - exact)) < 1e-5
    # relative alone fails where q is tiny (1e-8 of its max) within 3 levels; an absolute floor converges
    with pytest.raises(ConvergenceError, match="atol=0"):
        sde_density(s, x, OU, t_min, T, tol=1e-9, max_levels=3)
    q2, dq2 = sde_density(s, x, OU, t_min, T, tol=1e-9, atol=5e-4, max_levels=3, return_error=True)
    assert np.all((dq2 <= 5e-4) | (dq2 <= q2 * np.expm1(1e-9)))
    assert np.max(np.abs(q2 - exact)) < 1e-3
    with pytest.raises(ValueError, match="atol"):
        sde_density(s, x, OU, t_min, T, atol=-1.0)


def test_not_converged_is_reported():
    target = rf.two_modes(2.0)
    s = mixture_score([0.5, 0.5], [-2.0, 2.0], [1.0, 1.0])
    with pytest.raises(ConvergenceError):
        kl_sde(s, target, OU, 1e-3, 1.0, tol=1e-12, max_levels=3)
    r = kl_sde(s, target, OU, 1e-3, 1.0, tol=1e-12, max_levels=3, strict=False)
    assert not r.converged and np.isfinite(r.value) and "limit" in r.message
    with pytest.raises(ValueError, match="1D"):
        kl_sde(rf.as_score(lambda z, t: -z, dim=2), rf.GaussianMixture([1.0], [[0.0, 0.0]], [1.0]), OU)


def test_bernoulli_function_is_accurate_everywhere():
    import mpmath as mp

    from rfdiff.kl.fokker_planck import _bernoulli
    for z in np.concatenate([-np.logspace(-9, 3, 60), [0.0], np.logspace(-9, 3, 60)]):
        ref = float(mp.mpf(z) / mp.expm1(mp.mpf(z))) if z != 0 else 1.0
        assert _bernoulli(z) == pytest.approx(ref, rel=1e-14, abs=1e-300)


def test_vp_process_gaussian():
    """General process (VP, beta 0.1..20): Gaussian mean/variance ODEs of the reverse
    SDE, dm/dt = f m + g2 (m - a mu)/v, dP/dt = 2 (f + g2/v) P - g2 (t decreasing)."""
    vp = rf.VP(beta_min=0.1, beta_max=20.0)
    mu, s2, t_min, T = 1.0, 0.5, 1e-3, 0.3
    target = rf.GaussianMixture([1.0], [[mu]], [s2])
    a = lambda t: float(vp.alpha(t))  # noqa: E731
    v = lambda t: a(t) ** 2 * s2 + float(vp.sigma2(t))  # noqa: E731

    def rhs(t, y):
        f, g2 = float(vp.f(t)), float(vp.g2(t))
        return [f * y[0] + g2 * (y[0] - a(t) * mu) / v(t), 2 * (f + g2 / v(t)) * y[1] - g2]
    sol = solve_ivp(rhs, (T, t_min), [0.0, 1.0], method="DOP853", rtol=1e-12, atol=1e-14)
    ref = kl_gauss(mu, s2, sol.y[0, -1], sol.y[1, -1])
    r = kl_sde(target.score_fn(vp), target, vp, t_min, T, tol=1e-6)
    assert r.value == pytest.approx(ref, abs=1e-6) and r.mass_loss < 1e-10
