"""rfdiff.symbolic: SymPy-derived Gaussian component terms and the Gaussian KL."""
import numpy as np
import pytest
import sympy as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate, stats

from rfdiff import symbolic


def test_component_expressions_are_the_gaussian_derivatives():
    l0, l1, l2 = symbolic.gaussian_component_exprs()
    z, mu, s2, a, sig2 = sp.symbols("z mu s2 alpha sigma2", real=True)
    v = a**2 * s2 + sig2
    assert sp.simplify(l1 - (-(z - a * mu) / v)) == 0
    assert sp.simplify(l2 - (-1 / v)) == 0
    # l integrates to 1 over z (it is a log-density)
    val = sp.integrate(sp.exp(l0.subs({mu: 1, s2: 2, a: sp.Rational(1, 2), sig2: sp.Rational(3, 4)})),
                       (z, -sp.oo, sp.oo))
    assert sp.simplify(val - 1) == 0


@settings(max_examples=60, deadline=None)
@given(z=st.floats(-60, 60), mu=st.floats(-10, 10), s2=st.floats(0, 5),
       t=st.floats(1e-6, 20))
def test_component_matches_scipy_and_closed_form(z, mu, s2, t):
    a, sig2 = np.exp(-t), -np.expm1(-2 * t)
    l0, l1, l2 = symbolic.gaussian_component(z, mu, s2, a, sig2)
    v = a * a * s2 + sig2
    np.testing.assert_allclose(l0, stats.norm.logpdf(z, a * mu, np.sqrt(v)), rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(l1, -(z - a * mu) / v, rtol=1e-13, atol=1e-300)
    np.testing.assert_allclose(l2, -1.0 / v, rtol=1e-14)


def test_component_broadcasts_and_finite_differences():
    z = np.linspace(-3, 3, 7)[:, None]
    mu, s2 = np.array([[-1.0, 2.0]]), np.array([[0.5, 1.5]])
    l0, l1, l2 = symbolic.gaussian_component(z, mu, s2, 0.8, 0.36)
    assert l0.shape == l1.shape == l2.shape == (7, 2)
    h = 1e-3
    f = lambda q: symbolic.gaussian_component(q, mu, s2, 0.8, 0.36)[0]
    fd = (-f(z + 2 * h) + 8 * f(z + h) - 8 * f(z - h) + f(z - 2 * h)) / (12 * h)
    np.testing.assert_allclose(l1, fd, rtol=1e-10, atol=1e-10)


def test_kl_normal_against_quadrature_and_closed_form():
    m1, v1, m2, v2 = 0.3, 0.7, -1.1, 2.5
    ref = integrate.quad(lambda x: stats.norm.pdf(x, m1, np.sqrt(v1))
                         * (stats.norm.logpdf(x, m1, np.sqrt(v1)) - stats.norm.logpdf(x, m2, np.sqrt(v2))),
                         -30, 30, epsabs=1e-14, limit=200)[0]
    assert symbolic.kl_normal(m1, v1, m2, v2) == pytest.approx(ref, rel=1e-11)
    closed = (v1 + (m1 - m2) ** 2) / (2 * v2) - 0.5 + 0.5 * np.log(v2 / v1)
    assert symbolic.kl_normal(m1, v1, m2, v2) == pytest.approx(closed, rel=1e-14)
    assert symbolic.kl_normal([0.0, 1.0], 1.0, [0.0, 1.0], 1.0) == pytest.approx([0.0, 0.0], abs=1e-15)
