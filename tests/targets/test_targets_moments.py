"""Partial moments M_r(z) = int_{-inf}^z x^r p_t(x) dx of the 1D targets."""
import mpmath as mp
import numpy as np
import pytest
from scipy import integrate

from rfdiff.process import OU
from rfdiff.targets import CompactDensity, Empirical, GaussianMixture, two_modes
from rfdiff.targets import _gauss1d

P = OU()
ZS = np.array([-6.0, -0.7, 0.4, 1.1, 7.0])


def targets():
    rng = np.random.default_rng(0)
    return {"mixture": GaussianMixture([0.2, 0.5, 0.3], [-2.0, 0.5, 3.0], [0.3, 1.0, 0.05]),
            "two_modes": two_modes(3.0, 0.3),
            "beta": CompactDensity.beta(3.0, 2.0, -1.0, 1.5),
            "bump": CompactDensity.bump(0.2, 1.0),
            "empirical": Empirical(rng.normal(size=12))}


def quad_moments(target, z, t):
    """``[int_{-inf}^z x^r p_t(x) dx]_r`` by adaptive quadrature (scipy quad_vec)."""
    f = lambda x: x ** np.arange(3) * np.exp(target.log_pt(np.array([x]), t, P)[0])
    compact = isinstance(target, CompactDensity)
    lo = target.lo if compact and t == 0 else -40.0
    if z <= lo:
        return np.zeros(3)
    breaks = np.linspace(-4, 4, 9) if not compact else np.array([target.lo, target.hi])
    edges = np.unique(np.clip(np.concatenate([[lo, z], breaks]), lo, z))
    return sum(integrate.quad_vec(f, a, b, epsabs=1e-15, epsrel=1e-13, limit=400)[0]
               for a, b in zip(edges[:-1], edges[1:]))


@pytest.mark.parametrize("t", [0.0, 1e-3, 0.3, 5.0])
@pytest.mark.parametrize("name", ["mixture", "two_modes", "beta", "bump", "empirical"])
def test_partial_moments_match_quadrature(name, t):
    target = targets()[name]
    if t == 0.0 and name == "empirical":
        pytest.skip("p^_0 has no density")
    M = target.partial_moments(ZS, t, P)
    ref = np.stack([quad_moments(target, z, t) for z in ZS], axis=1)
    np.testing.assert_allclose(M, ref, rtol=1e-10, atol=1e-10)
    z, w = target.expectation_nodes(t, P, order=8)
    total = np.array([w.sum(), w @ z[:, 0], w @ z[:, 0] ** 2])
    np.testing.assert_allclose(target.partial_moments([60.0], t, P)[:, 0], total, rtol=1e-13, atol=1e-15)
    upper = target.partial_moments(ZS, t, P, upper=True)
    np.testing.assert_allclose(M + upper, total[:, None] * np.ones_like(M), rtol=1e-13, atol=1e-14)
    assert np.all(np.diff(M[0]) >= 0) and np.all((M[0] >= 0) & (M[0] <= 1 + 1e-15))


def test_gaussian_partial_moments_keep_relative_accuracy_in_the_left_tail():
    m, s = 1.7, 0.6
    mp.mp.dps = 40
    for u in [2.0, -0.5, -2.9, -3.1, -5.0, -10.0, -20.0, -35.0]:
        z = m + s * u
        got = np.array(_gauss1d.gauss_pm(z, m, s))
        zz, mm, ss = mp.mpf(z), mp.mpf(m), mp.mpf(s)
        uu = (zz - mm) / ss
        Phi, phi = mp.ncdf(uu), mp.npdf(uu)
        ref = [Phi, mm * Phi - ss * phi, (mm**2 + ss**2) * Phi - ss * phi * (mm + zz)]
        ref = np.array([float(r) for r in ref])
        # u = (z - m)/s carries a rounding error of ~eps, which exp(-u^2/2) turns into
        # a relative error ~ eps u^2: the conditioning limit, reached in the tail
        rtol = 8e-16 * u * u if u <= -3 else 1e-13
        np.testing.assert_allclose(got[[0, 2]], ref[[0, 2]], rtol=rtol)
        assert abs(got[1] - ref[1]) <= rtol * np.sqrt(ref[0]) * np.sqrt(ref[2])
    assert _gauss1d.gauss_pm(m - 40 * s, m, s) == (0.0, 0.0, 0.0)


def test_sorted_empirical_kernel_equals_full_sum():
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.normal(size=3000), [40.0, -35.0]])
    emp = Empirical(x)
    z = np.concatenate([np.linspace(-45, 45, 300), rng.normal(size=300)])
    for t in (1e-4, 0.05, 2.0):
        a, s = P.alpha(t), np.sqrt(P.sigma2(t))
        fast = emp.partial_moments(z, t, P)
        full = _gauss1d.mixture_pm(z, a * x, np.full(x.size, s), np.full(x.size, 1 / x.size))
        np.testing.assert_allclose(fast, full, rtol=1e-12, atol=1e-15)
    with np.errstate(all="raise"):
        big = emp.partial_moments(np.linspace(-5, 5, 20000), 1e-3, P)
    assert np.all(np.isfinite(big))
