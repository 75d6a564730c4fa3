"""Probability-flow ODE likelihood and KL against analytic and independent references."""
import numpy as np
import pytest
from scipy.integrate import quad

import rfdiff as rf
from _references import kl_gauss, mixture_score, ode_generated_gaussian
from rfdiff.kl.ode import (ConvergenceError, generated_density, kl_ode, kl_ode_path,
                               log_density_ode)

OU = rf.OU()


def kl_prior_quad(target, T):
    """KL(p_T || pi) by adaptive quadrature (independent of the target's nodes)."""
    def f(x):
        lp = target.log_pt(np.array([[x]]), T, OU)[0]
        return np.exp(lp) * (lp - OU.prior_logpdf(np.array([[x]]))[0])
    mu = float(np.abs(target.means).max())
    pts = [-40.0, -mu, 0.0, mu, 40.0]
    return sum(quad(f, a, b, epsabs=1e-15, epsrel=1e-13, limit=400)[0] for a, b in zip(pts[:-1], pts[1:]))


def test_gaussian_exact_score_matches_analytic():
    mu, s2, t_min, T = 1.5, 0.3, 1e-3, 1.0
    target = rf.GaussianMixture([1.0], [[mu]], [s2])
    mg, vg = ode_generated_gaussian(mu, s2, t_min, T)
    a = np.exp(-t_min)
    ref0 = kl_gauss(mu, s2, mg, vg)
    reft = kl_gauss(a * mu, a * a * s2 + 1 - a * a, mg, vg)
    assert ref0 > 0.1                       # far from zero: T = 1 leaves p_T far from pi
    r = kl_ode(target.score_fn(OU), target, OU, t_min, T, tol=1e-7)
    assert r.converged and r.kind == "ode"
    assert r.value == pytest.approx(ref0, abs=1e-6)
    assert r.kl_tmin == pytest.approx(reft, abs=1e-6)
    assert r.error <= 1e-7 and abs(r.value - ref0) <= r.error
    assert r.work["nfev"] > 0 and r.mass_loss is None


def test_two_modes_exact_score_preserves_kl():
    """Invertible flow: KL(p_tmin || p_gen) = KL(p_T || pi) (right side by scipy quad)."""
    target, t_min, T = rf.two_modes(2.0, q1=0.3), 1e-3, 1.0
    ref = kl_prior_quad(target, T)
    assert ref > 0.05
    r = kl_ode(target.score_fn(OU), target, OU, t_min, T, tol=1e-8)
    assert r.kl_tmin == pytest.approx(ref, abs=1e-7)
    assert abs(r.kl_tmin - ref) <= r.kl_tmin_error + 1e-12


def test_closed_form_score_equals_target_score():
    """The target's score objects and a hand-written closed form give the same KL."""
    target = rf.two_modes(2.0, q1=0.3)
    a = kl_ode(target.score_fn(OU), target, OU, 1e-3, 1.0, tol=1e-7)
    b = kl_ode(mixture_score([0.3, 0.7], [-2.0, 2.0], [1.0, 1.0]), target, OU, 1e-3, 1.0, tol=1e-7)
    assert a.value == pytest.approx(b.value, abs=2e-7)


def _rf_problem(m=64, n=200, seed=0):
    target = rf.two_modes(2.0)
    x = target.sample(n, seed=seed)
    model = rf.RandomFeatureScore(m=m, seed=seed)
    sm = rf.ScoreMatching(model, x, t_min=1e-2, T=4.0, n_time=16)
    return target, sm, sm.flow()


@pytest.fixture(scope="module")
def rf_problem():
    return _rf_problem()


def test_error_estimate_is_honest(rf_problem):
    """The reported error bounds the difference to a 4x finer solve, for several scores."""
    target, sm, flow = rf_problem
    t_min, T = 1e-2, 4.0
    true = target.score_fn(OU)
    scores = {
        "true": (true, "nodes"),
        "perturbed": (rf.as_score(lambda z, t: true(z, t) + 0.3 * np.sin(z),
                                  lambda z, t: true.dz(z, t) + 0.3 * np.cos(z[:, 0])), "nodes"),
        "rf_early": (flow.score_at(10.0), "grid"),
        "rf_late": (flow.score_at(1e4), "grid"),
    }
    for name, (s, quadrature) in scores.items():
        tol = 1e-4
        r = kl_ode(s, target, OU, t_min, T, tol=tol, quadrature=quadrature, strict=False)
        fine = kl_ode(s, target, OU, t_min, T, tol=tol / 4, quadrature=quadrature, strict=False)
        assert r.converged and fine.converged, (name, r.message)
        assert abs(r.value - fine.value) <= r.error, name
        assert abs(r.kl_tmin - fine.kl_tmin) <= r.kl_tmin_error, name
        assert r.error <= tol


def test_loose_tolerance_error_is_honest_for_memorising_flows():
    """Late in training (n = 1000, m = 512) log p_gen has spikes of width ~sigma(t_min)
    at the training points; grids coarser than that are pre-asymptotic. Before the
    grid's resolution floor, tol 5e-3 at tau = 1e9 returned 0.0184 +- 0.0045 where
    the value is 0.0248."""
    target = rf.two_modes(3.0)
    sm = rf.ScoreMatching(rf.RandomFeatureScore(m=512, seed=0), target.sample(1000, seed=0), n_time=64)
    flow = sm.flow()
    taus = np.array([1e9, 1e13])
    coarse = kl_ode_path(flow, taus, target, tol=5e-3)
    fine = kl_ode_path(flow, taus, target, tol=2e-4)
    assert np.all(np.abs(coarse.value - fine.value) <= coarse.error + fine.error)
    assert fine.value[0] == pytest.approx(0.0248, abs=1e-3)


def test_loose_tolerance_ode_error_needs_enough_steps():
    """At tol 5e-3 the first ODE solves take ~20 and ~40 steps, where two tolerances
    can agree by chance: with MIN_STEPS = 0, tau = 1e8 here came out 2.8x its
    combined error bar away from the tol-2e-4 value."""
    target = rf.two_modes(3.0)
    sm = rf.ScoreMatching(rf.RandomFeatureScore(m=128, seed=1), target.sample(300, seed=1), n_time=64)
    flow = sm.flow()
    taus = np.logspace(8, 12, 5)
    coarse = kl_ode_path(flow, taus, target, tol=5e-3)
    fine = kl_ode_path(flow, taus, target, tol=2e-4)
    assert np.all(np.abs(coarse.value - fine.value) <= coarse.error + fine.error)


def test_smooth_scores_are_not_held_to_min_steps():
    """MIN_STEPS is for ReLU kinks. Held to it, a smooth (tanh) flow at tol 1e-3
    kept refining the ODE tolerance while the quadrature level ran into its limit
    (ConvergenceError with every error below tol)."""
    target = rf.two_modes(2.0, q1=0.3)
    sm = rf.ScoreMatching(rf.RandomFeatureScore(m=64, seed=0, activation="tanh"), target.sample(200, seed=0),
                          n_time=16)
    r = kl_ode_path(sm.flow(), np.logspace(0, 6, 7), target, tol=1e-3)
    assert np.all(r.converged) and np.all(r.error <= 1e-3)
    exact = kl_ode(target.score_fn(OU), target, OU, 1e-3, 1.0, tol=1e-3)
    assert exact.work["atol"] >= 1e-5              # 15 steps suffice; MIN_STEPS took it to 1e-11


def test_path_equals_single_scores(rf_problem):
    target, sm, flow = rf_problem
    taus = np.array([0.0, 1.0, 1e3])
    path = kl_ode_path(flow, taus, target, tol=1e-4)
    assert path.value.shape == (3,) and np.all(path.converged)
    assert np.all(np.isfinite(path.value)) and np.all(path.error <= 1e-4)
    for i, tau in enumerate(taus):
        one = kl_ode(flow.score_at(tau), target, OU, 1e-2, 4.0, tol=1e-4)
        assert one.value == pytest.approx(path.value[i], abs=path.error[i] + one.error)
        assert path[i].value == path.value[i]


def test_grid_drops_the_same_negligible_nodes_at_every_level():
    """Grid nodes where p (hi - lo) < NEGLIGIBLE have weight 0 at every level (so a
    coarse level read off a finer one stays right), and only there."""
    from rfdiff.kl import nodes as kc
    sets = kc.NodeSets(rf.two_modes(3.0), OU, 1e-3, "grid", 64)
    lo, hi = sets.window()
    for which in (0, 1):
        zero = [sets.get(which, lev)[1] == 0 for lev in range(4)]
        for lev in range(3):
            assert np.array_equal(zero[lev], zero[lev + 1][::2])
        x, w, ref = sets.get(which, 3)
        assert np.array_equal(zero[3], np.exp(ref) * (hi - lo) < kc.NEGLIGIBLE)
        assert 0.3 < zero[3].mean() < 0.7         # the window's far tails only
        assert w.sum() == pytest.approx(1.0, abs=1e-9)


def test_negligible_nodes_change_no_kl(rf_problem, monkeypatch):
    """Skipping the weight-0 nodes solves fewer trajectories and gives the KL of
    solving them all, within the error estimates."""
    from rfdiff.kl import nodes as kc
    target, sm, flow = rf_problem
    taus = np.array([10.0, 1e4])
    fast = kl_ode_path(flow, taus, target, tol=1e-5)
    monkeypatch.setattr(kc, "NEGLIGIBLE", 0.0)
    full = kl_ode_path(flow, taus, target, tol=1e-5)
    assert fast.work["nodes"] < 0.8 * full.work["nodes"]
    assert np.all(np.abs(fast.value - full.value) <= fast.error + full.error)
    assert np.all(np.abs(fast.kl_tmin - full.kl_tmin) <= fast.kl_tmin_error + full.kl_tmin_error)


def test_empirical_optimal_score_kl_is_finite():
    """The memorising score (Empirical.score_fn) generates a law close to p^_tmin;
    for Empirical the value is KL(p^_tmin || p_gen)."""
    x = rf.two_modes(2.0).sample(12, seed=3)
    emp = rf.Empirical(x)
    r = kl_ode(emp.score_fn(OU), emp, OU, 1e-2, 2.0, tol=1e-5, order=8)
    assert r.converged and np.isfinite(r.value)
    assert r.value == r.kl_tmin
    ref = kl_prior_quad_empirical(emp, 2.0)
    assert r.kl_tmin == pytest.approx(ref, abs=1e-5)


def kl_prior_quad_empirical(emp, T):
    def f(x):
        lp = emp.log_pt(np.array([[x]]), T, OU)[0]
        return np.exp(lp) * (lp - OU.prior_logpdf(np.array([[x]]))[0])
    return quad(f, -40, 40, epsabs=1e-14, epsrel=1e-12, limit=400, points=[0.0])[0]


@pytest.mark.parametrize("kind", ["ode", "sde"])
def test_generated_density_integrates_to_one(kind):
    s = mixture_score([0.3, 0.7], [-2.0, 2.0], [1.0, 1.0])
    x = np.linspace(-12, 12, 2401)
    p = generated_density(s, x, OU, 1e-3, 1.0, kind=kind, tol=1e-5)
    assert np.all(p >= 0)
    assert np.trapezoid(p, x) == pytest.approx(1.0, abs=1e-5)


def test_log_density_matches_affine_flow_map():
    mu, s2, t_min, T = 0.5, 2.0, 1e-3, 3.0
    target = rf.GaussianMixture([1.0], [[mu]], [s2])
    mg, vg = ode_generated_gaussian(mu, s2, t_min, T)
    x = np.linspace(-4, 5, 13)
    ref = -0.5 * (x - mg) ** 2 / vg - 0.5 * np.log(2 * np.pi * vg)
    got = log_density_ode(target.score_fn(OU), x, OU, t_min, T, atol=1e-10)
    np.testing.assert_allclose(got, ref, atol=1e-8)


def test_two_dimensional_gaussian_is_the_sum_of_its_coordinates():
    """d = 2, N(mu, diag(s2)): the flow acts coordinate-wise, KL = sum of 1D KLs."""
    mu, s2, t_min, T = np.array([1.0, -0.5]), np.array([0.3, 2.0]), 1e-3, 1.0
    target = rf.GaussianMixture([1.0], [mu], [np.diag(s2)])
    ref = sum(kl_gauss(m, v, *ode_generated_gaussian(m, v, t_min, T)) for m, v in zip(mu, s2))
    r = kl_ode(target.score_fn(OU), target, OU, t_min, T, tol=1e-6, order=8)
    assert r.value == pytest.approx(ref, abs=1e-6)


def test_vp_process_gaussian():
    """The general-process formula (drift f(t) x, g2(t)) against the affine flow map
    of a VP process: p_gen = N(a mu - r a_T mu, r^2 ... ) with r = sqrt(v_tmin/v_T)."""
    vp = rf.VP(beta_min=0.1, beta_max=20.0)
    mu, s2, t_min, T = 1.0, 0.5, 1e-3, 0.3
    target = rf.GaussianMixture([1.0], [[mu]], [s2])
    a = lambda t: float(vp.alpha(t))  # noqa: E731
    v = lambda t: a(t) ** 2 * s2 + float(vp.sigma2(t))  # noqa: E731
    r = np.sqrt(v(t_min) / v(T))
    mg, vg = a(t_min) * mu - r * a(T) * mu, r * r
    res = kl_ode(target.score_fn(vp), target, vp, t_min, T, tol=1e-7)
    assert res.value == pytest.approx(kl_gauss(mu, s2, mg, vg), abs=1e-6)


@pytest.mark.parametrize("tau", [1e10])
def test_stiff_late_training_score_is_finite_or_reports(tau):
    """tau = 1e10, m = 512: a finite KL with the tolerance met, or a clear
    ConvergenceError -- never inf/NaN."""
    target = rf.two_modes(3.0)
    x = target.sample(1000, seed=0)
    model = rf.RandomFeatureScore(m=512, seed=0)
    flow = rf.ScoreMatching(model, x, n_time=24).flow()
    try:
        r = kl_ode(flow.score_at(tau), target, OU, 1e-3, 8.0, tol=1e-3, max_steps=20_000)
    except ConvergenceError as exc:
        assert "converge" in str(exc) or "limit" in str(exc) or "failed" in str(exc)
        res = exc.result
        assert res is not None and not res.converged
        return
    assert r.converged and np.isfinite(r.value) and np.isfinite(r.error) and r.error <= 1e-3


def test_convergence_error_and_strict_flag():
    target = rf.two_modes(2.0)
    s = mixture_score([0.5, 0.5], [-2.0, 2.0], [1.0, 1.0])
    with pytest.raises(ConvergenceError) as info:
        kl_ode(s, target, OU, 1e-3, 1.0, tol=1e-12, max_level=1)
    assert info.value.result is not None and not info.value.result.converged
    r = kl_ode(s, target, OU, 1e-3, 1.0, tol=1e-12, max_level=1, strict=False)
    assert not r.converged and np.isfinite(r.value) and "limit" in r.message
    # a score that blows up: a clear failure, not NaN
    bad = rf.as_score(lambda z, t: -1e3 * z ** 3, lambda z, t: -3e3 * z[:, 0] ** 2)
    with pytest.raises(ConvergenceError):
        kl_ode(bad, target, OU, 1e-3, 1.0, tol=1e-4, max_steps=2000)


def test_validation():
    target = rf.two_modes(2.0)
    s = mixture_score([0.5, 0.5], [-2.0, 2.0], [1.0, 1.0])
    with pytest.raises(ValueError, match="t_min"):
        kl_ode(s, target, OU, 2.0, 1.0)
    with pytest.raises(ValueError, match="tol"):
        kl_ode(s, target, OU, tol=-1.0)
    with pytest.raises(ValueError, match="quadrature"):
        kl_ode(s, target, OU, quadrature="simpson")
    with pytest.raises(ValueError, match="score must be callable"):
        kl_ode(3.0, target, OU)


@pytest.mark.parametrize("activation, dim", [("relu", 1), ("softplus", 1), ("relu", 2), ("tanh", 3)])
def test_batched_feature_scores_equal_single_scores(activation, dim):
    """The batched evaluation (features once, sorted kinks for 1D ReLU, chunked
    GEMMs otherwise) equals each score called on its own."""
    from rfdiff.model import batch as _batch
    model = rf.RandomFeatureScore(m=200, dim=dim, activation=activation, seed=1)
    A = np.random.default_rng(0).standard_normal((4, dim, 200))
    batch = _batch.RFBatch(model, A)
    x = np.sort(3 * np.random.default_rng(1).standard_normal((4, 50, dim)), axis=1)
    for pts in (x, x[0], x[:, ::-1], x[0, ::-1]):      # per-score / shared, ascending / not
        s, div = batch(pts, 0.3)
        for b in range(4):
            xb = pts if pts.ndim == 2 else pts[b]
            sc = model.score_fn(A[b])
            np.testing.assert_allclose(s[b], sc(xb, 0.3), atol=1e-13)
            np.testing.assert_allclose(div[b], sc.dz(xb, 0.3), atol=1e-13)


def test_exact_kink_increments_match_runge_kutta_on_the_divergence(rf_problem):
    """1D ReLU: log p_gen from X-only integration with exact kink crossings equals
    the plain Runge-Kutta integration of (X, ell) at a tight tolerance."""
    from rfdiff.model.batch import make_batch
    from rfdiff.kl.ode import ode_log_density
    target, sm, flow = rf_problem
    batch = make_batch(flow.score_at(1e3))
    x = np.linspace(-5, 5, 41)[:, None]
    exact, _ = ode_log_density(batch, x, OU, 1e-2, 4.0, atol=1e-8)
    plain, _ = ode_log_density(batch, x, OU, 1e-2, 4.0, atol=1e-8, exact_kinks=False, method="dopri5")
    np.testing.assert_allclose(exact, plain, atol=2e-5)       # the plain RK is first order at kinks


@pytest.mark.parametrize("h", [0.05, 0.6])          # exp by its Taylor polynomial / by exp itself
def test_merge_kernel_equals_brute_force_crossing_scan(h):
    """The blocked merge kernel (ordered trajectories) finds the same kink crossings,
    with the same crossing times, as the kernel that checks every feature for
    every trajectory."""
    from rfdiff.kl._relu_flow import _flip_serial, _merge_serial    # (the parallel twin: same source)
    rng = np.random.default_rng(3)
    B, k, m = 3, 300, 400                   # > _BLOCK crossings per score: several flushes
    w = rng.standard_normal(m)
    ba = rng.standard_normal(m)
    bb = ba + 0.3 * rng.standard_normal(m)
    bm = 0.5 * (ba + bb) + 0.02 * rng.standard_normal(m)
    xa = np.sort(rng.uniform(-3, 3, (B, k)), axis=1)
    xb = np.sort(xa + 0.4 + 0.1 * np.sin(xa), axis=1)
    va, vb = (xb - xa) / h + 0.1 * rng.standard_normal((2, B, k))
    ta = 0.2
    ua, tb = np.log(ta), ta * np.exp(h)
    g2a, g2b = 2.0, 2.3
    cw = rng.standard_normal((B, m))
    feat = np.arange(m)
    za, zb = -ba / w, -bb / w
    oa, ob = np.argsort(za), np.argsort(zb)
    args = (xa, xb, va, vb, h, ua, ta, tb, g2a, g2b, cw, w, ba, bm, bb)
    brute = np.zeros((B, k))
    _flip_serial(*args, np.empty(0), np.empty(0, np.int64), 0.0, feat, brute)
    assert np.count_nonzero(brute) > 0.9 * B * k
    out = np.full((B, k), np.nan)
    _merge_serial(*args, feat, oa, za[oa], ob, zb[ob], out)
    np.testing.assert_allclose(out, brute, rtol=1e-12, atol=1e-14)


def test_fused_step_kernels_equal_numpy():
    """The numba helpers of the ODE loop against the NumPy expressions they replace."""
    from rfdiff.numerics.rk import _lincomb
    from rfdiff.kl._relu_flow import _ascending_rows
    from rfdiff.kl.ode import _error_norm
    rng = np.random.default_rng(0)
    y, k1, k2 = (rng.normal(size=(3, 50, 2)) for _ in range(3))
    assert np.allclose(_lincomb(np, 0.7, y, [0.0, -2.0, 0.5], [y, k1, k2]), 0.7 * y - 2.0 * k1 + 0.5 * k2,
                       rtol=0, atol=1e-14)
    assert np.allclose(_lincomb(np, 0.0, y * np.nan, [1.5], [k1]), 1.5 * k1, rtol=0, atol=1e-15)

    class Generic:                                    # any other array module: the plain path
        zeros_like = staticmethod(np.zeros_like)
    assert np.allclose(_lincomb(Generic, 0.7, y, [0.0, -2.0], [y, k1]), 0.7 * y - 2.0 * k1, atol=1e-14)

    w = rng.random(50)
    for d, with_ell in ((2, False), (1, True)):
        e = (1 + np.abs(y[..., :d]).sum(-1) / 2.5) * np.abs(k1[..., :d]).sum(-1)
        if with_ell:
            e = e + np.abs(k1[..., d])
        ref = max(e.max() / 1e-3, (e @ w).max() / 1e-6)
        assert _error_norm(y, k1, d, 2.5, with_ell, w, 1e-3, 1e-6) == pytest.approx(ref, rel=1e-12)
        assert _error_norm(y, k1, d, 2.5, with_ell, np.empty(0), 1e-3, 1e-6) == pytest.approx(e.max() / 1e-3)
    bad = k1.copy()
    bad[2, 7, 0] = np.nan
    assert _error_norm(y, bad, 1, 2.5, True, w, 1e-3, 1e-6) == np.inf

    x = np.sort(rng.normal(size=(4, 30)), axis=1)
    x[1, 5], x[2, -1] = x[1, 4] - 1e-9, np.nan
    assert list(_ascending_rows(x)) == [True, False, False, True]
    assert list(_ascending_rows(np.zeros((2, 1)))) == [True, True]
