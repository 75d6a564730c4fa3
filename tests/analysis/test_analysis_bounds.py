import numpy as np
import pytest

from analysis import bounds
from analysis.fits import fit_power_law


def test_symbolic_exponents_match_numerical_minimisation():
    ns = np.logspace(4, 8, 9)
    taus = np.array([bounds.optimal_tau(nv, nv) for nv in ns])         # m = n
    slope = np.polyfit(np.log(ns), np.log(taus), 1)[0]
    assert slope == pytest.approx(bounds.theory_exponents()["tau_star_vs_n"], abs=5e-3)
    kl = np.array([bounds.bound_curve([t], nv, nv)[0] for t, nv in zip(taus, ns)])
    assert np.polyfit(np.log(ns), np.log(kl), 1)[0] == pytest.approx(-0.4, abs=5e-3)
    ms = np.logspace(3, 6, 7)
    t_n_inf = np.array([bounds.optimal_tau(1e30, mv) for mv in ms])
    assert np.polyfit(np.log(ms), np.log(t_n_inf), 1)[0] == pytest.approx(0.5, abs=5e-3)


def test_regime_formulas_are_stationary_points():
    r = bounds.regimes()["m_to_infinity"]
    f = lambda t: t**4 / (50.0 * 7.0) + 1 / t
    t_star = float(r.tau_star.subs({bounds.m: 50.0, bounds.n: 7.0}))
    h = 1e-6 * t_star
    assert (f(t_star + h) - f(t_star - h)) / (2 * h) == pytest.approx(0.0, abs=1e-6)


def test_power_law_fit_recovers_slope_and_interval_covers():
    rng = np.random.default_rng(0)
    x = np.logspace(1, 3, 8)
    covered = 0
    for rep in range(40):
        y = 3.0 * x[:, None] ** -0.4 * np.exp(0.05 * rng.standard_normal((8, 5)))
        fit = fit_power_law(x, y, n_boot=300, seed=rep)
        covered += fit.contains(-0.4)
        assert fit.ci_low < fit.slope < fit.ci_high
    assert covered >= 32          # nominal 95%: at least 80% of 40 intervals cover


def test_power_law_fit_rejects_bad_input():
    with pytest.raises(ValueError, match="positive"):
        fit_power_law([1, 2, 3], [1, -1, 2])
    with pytest.raises(ValueError, match="p >= 2"):
        fit_power_law([1], [1])
