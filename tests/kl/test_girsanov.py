"""The Girsanov bound: analytic cases and the inequality along a training trajectory."""
import numpy as np
import pytest
from scipy.integrate import quad

import rfdiff as rf
from rfdiff.kl.fokker_planck import kl_sde, kl_sde_path
from rfdiff.kl.girsanov import girsanov_bound, girsanov_bound_path, kl_prior

OU = rf.OU()


def test_exact_score_bound_is_kl_prior():
    target, t_min, T = rf.two_modes(2.0, q1=0.3), 1e-3, 1.0
    b = girsanov_bound(target.score_fn(OU), target, OU, t_min, T, tol=1e-8)
    assert b.score_term == pytest.approx(0.0, abs=1e-14)
    f = lambda x: np.exp(target.log_pt(np.array([[x]]), T, OU)[0]) * (  # noqa: E731
        target.log_pt(np.array([[x]]), T, OU)[0] - OU.prior_logpdf(np.array([[x]]))[0])
    ref = quad(f, -30, 30, epsabs=1e-14, epsrel=1e-13, limit=400, points=[-2, 0, 2])[0]
    assert b.value == pytest.approx(ref, abs=1e-9)
    assert b.kl_prior == pytest.approx(kl_prior(target, OU, T)[0])


def test_shifted_score_term_is_analytic():
    """s = grad log p_t + c: E|s - grad log p_t|^2 = c^2 at every t, so the score
    term is 1/2 int g2 c^2 dt = c^2 (T - t_min) for OU (g2 = 2)."""
    target, t_min, T, c = rf.two_modes(1.0), 1e-3, 4.0, 0.3
    true = target.score_fn(OU)
    s = rf.as_score(lambda z, t: true(z, t) + c)
    b = girsanov_bound(s, target, OU, t_min, T, tol=1e-9)
    assert b.score_term == pytest.approx(c * c * (T - t_min), rel=1e-10)
    assert b.converged and b.error < 1e-9


def test_bound_holds_for_perturbed_scores():
    target, t_min, T = rf.two_modes(2.0), 1e-2, 2.0
    true = target.score_fn(OU)
    for s in (rf.as_score(lambda z, t: true(z, t) + 0.5 * np.sin(2 * z)),
              rf.as_score(lambda z, t: 0.7 * true(z, t)),
              rf.as_score(lambda z, t: -z)):
        b = girsanov_bound(s, target, OU, t_min, T, tol=1e-5)
        k = kl_sde(s, target, OU, t_min, T, tol=1e-5)
        assert k.kl_tmin - k.kl_tmin_error <= b.value + b.error


def test_girsanov_inequality_along_rf_trajectory():
    """KL(p_tmin || p_gen^SDE) <= bound at every tau of a random-feature flow."""
    target = rf.two_modes(2.5)
    x = target.sample(300, seed=1)
    sm = rf.ScoreMatching(rf.RandomFeatureScore(m=96, seed=3), x, t_min=1e-2, T=4.0, n_time=16)
    flow = sm.flow()
    taus = np.logspace(-1, 8, 10)
    b = girsanov_bound_path(flow, taus, target, tol=1e-4)
    k = kl_sde_path(flow, taus, target, tol=1e-4)
    assert b.value.shape == taus.shape and np.all(b.converged) and np.all(k.converged)
    assert np.all(k.kl_tmin - k.kl_tmin_error <= b.value + b.error)
    # the bound is not vacuous: it tracks the KL within a factor
    assert np.all(b.value < 20 * k.kl_tmin + 1.0)
    # the path version equals the single-score version
    one = girsanov_bound(flow.score_at(taus[4]), target, OU, 1e-2, 4.0, tol=1e-4)
    assert one.value == pytest.approx(b.value[4], abs=one.error + b.error[4])


def test_not_converged_raises_or_reports():
    from rfdiff.kl.ode import ConvergenceError
    target = rf.two_modes(2.0)
    s = rf.as_score(lambda z, t: -z / (np.reshape(t, (-1, 1)) + 1e-3))
    with pytest.raises(ConvergenceError):
        girsanov_bound(s, target, OU, 1e-3, 8.0, tol=1e-14, max_n_time=64)
    r = girsanov_bound(s, target, OU, 1e-3, 8.0, tol=1e-14, max_n_time=64, strict=False)
    assert not r.converged and np.isfinite(r.value)
