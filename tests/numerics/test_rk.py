"""rfdiff.numerics.rk: every embedded Runge-Kutta pair shows its design order.

Fixed steps h, h/2, h/4, ... on a problem with a known solution; the observed
order is the slope of log(global error) against log(h) (as diffrax's
``test_ode_order``). The propagated solution is integrated by
:func:`rfdiff.numerics.rk.integrate` itself (every step accepted, step factor 1);
the embedded one (weights ``b - e``) by a plain fixed-step driver over the same
tableau, and the step's error estimate must shrink like ``h^(err_order + 1)``.
"""
import numpy as np
import pytest

from rfdiff.numerics.rk import TABLEAUS, integrate

T0, T1 = 0.0, 2.0
Y0 = np.array([[1.0, 1.0], [2.0, 0.5]])


def rhs(u, y):
    """Non-autonomous and nonlinear: y1' = cos(u) y1, y2' = -y2^2."""
    return np.stack([np.cos(u) * y[:, 0], -y[:, 1] ** 2], axis=1)


def exact(u):
    return np.stack([Y0[:, 0] * np.exp(np.sin(u)), Y0[:, 1] / (1.0 + Y0[:, 1] * u)], axis=1)


def fixed_step(tab, weights, n_steps):
    """Explicit RK with the tableau's stages and the given output weights."""
    h = (T1 - T0) / n_steps
    y = Y0.copy()
    for i in range(n_steps):
        u = T0 + i * h
        k = []
        for c_i, a_i in zip(tab.c, tab.a):
            k.append(rhs(u + c_i * h, y + h * sum(a * kj for a, kj in zip(a_i, k))))
        y = y + h * sum(w * kj for w, kj in zip(weights, k))
    return y


def integrate_fixed(tab, n_steps):
    """rk.integrate with every step accepted at the initial step size."""
    h = (T1 - T0) / n_steps
    y, st = integrate(rhs, Y0, T0, T1, lambda y, y_new, err: 0.0, method=tab.name, h0=h, max_factor=1.0)
    assert st.status == 0 and n_steps <= st.n_steps <= n_steps + 1 and st.n_rejected == 0
    return y


def observed_order(hs, errors):
    return np.polyfit(np.log(hs), np.log(errors), 1)[0]


#: step counts per pair: errors well above round-off, in the asymptotic range
STEPS = {"dopri5": [16, 32, 64, 128], "bs3": [16, 32, 64, 128]}


def test_every_pair_is_tested():
    assert set(TABLEAUS) == set(STEPS)


@pytest.mark.parametrize("name", sorted(TABLEAUS))
def test_tableau_consistency(name):
    """Row sums of a equal c; b and b - e each sum to 1 (order >= 1)."""
    tab = TABLEAUS[name]
    for c_i, a_i in zip(tab.c, tab.a):
        assert sum(a_i) == pytest.approx(c_i, abs=1e-14)
    assert np.sum(tab.b) == pytest.approx(1.0, abs=1e-14)
    assert np.sum(tab.b - tab.e) == pytest.approx(1.0, abs=1e-14)


@pytest.mark.parametrize("name", sorted(TABLEAUS))
def test_propagated_solution_has_design_order(name):
    tab = TABLEAUS[name]
    ns = STEPS[name]
    hs = (T1 - T0) / np.array(ns, dtype=float)
    errs = []
    for n in ns:
        y = integrate_fixed(tab, n)
        # the code path and the plain driver take the same steps
        np.testing.assert_allclose(y, fixed_step(tab, tab.b, n), rtol=1e-12, atol=1e-14)
        errs.append(np.max(np.abs(y - exact(T1))))
    assert observed_order(hs, errs) == pytest.approx(tab.order, abs=0.3), errs


@pytest.mark.parametrize("name", sorted(TABLEAUS))
def test_embedded_solution_has_design_order(name):
    tab = TABLEAUS[name]
    ns = STEPS[name]
    hs = (T1 - T0) / np.array(ns, dtype=float)
    errs = [np.max(np.abs(fixed_step(tab, tab.b - tab.e, n) - exact(T1))) for n in ns]
    assert observed_order(hs, errs) == pytest.approx(tab.err_order, abs=0.3), errs


@pytest.mark.parametrize("name", sorted(TABLEAUS))
def test_error_estimate_is_local_error_of_embedded_order(name):
    """One step of size h: integrate's error estimate |h sum e_j k_j| ~ h^(err_order + 1)."""
    tab = TABLEAUS[name]
    hs = np.array([0.2, 0.1, 0.05, 0.025])
    ests = []
    for h in hs:
        seen = []

        def norm(y, y_new, err):
            seen.append(float(np.max(np.abs(err))))
            return 0.0

        integrate(rhs, Y0, T0, T0 + h, norm, method=name, h0=h)
        ests.append(seen[0])
    assert observed_order(hs, ests) == pytest.approx(tab.err_order + 1, abs=0.3), ests
