"""CompactDensity: p_t by windowed log-space quadrature, checked against mpmath."""
import json
from functools import lru_cache

import mpmath as mp
import numpy as np
import pytest
from scipy import integrate, stats

from rfdiff.process import OU
from rfdiff.targets import CompactDensity

P = OU()


@lru_cache(maxsize=None)
def _bump_z():
    with mp.workdps(30):
        return mp.quad(lambda u: mp.exp(-1 / (1 - u * u)), [-1, 0, 1])


def mp_log_pt(c, z, t, dps=25):
    """Reference ``log p_t(z)`` by mpmath.quad, with its own breakpoints around the
    maximiser x* of the concave log-integrand (found by bisection in mpmath) at
    multiples of the local scale ``1/sqrt(-h''(x*))``."""
    with mp.workdps(dps):
        t = mp.mpf(t)
        a, s2 = mp.exp(-t), -mp.expm1(-2 * t)
        lo, hi, z = mp.mpf(c.lo), mp.mpf(c.hi), mp.mpf(z)
        if c.kind == 0:
            A, B = mp.mpf(c.a), mp.mpf(c.b)
            lnorm = mp.log(mp.beta(A, B)) + (A + B - 1) * mp.log(hi - lo)
            lp = lambda x: (A - 1) * mp.log(x - lo) + (B - 1) * mp.log(hi - x) - lnorm
            dlp = lambda x: (A - 1) / (x - lo) - (B - 1) / (hi - x)
            d2lp = lambda x: -(A - 1) / (x - lo) ** 2 - (B - 1) / (hi - x) ** 2
        else:
            w, cc = (hi - lo) / 2, (hi + lo) / 2
            lnorm = mp.log(_bump_z() * w)
            lp = lambda x: -1 / (1 - ((x - cc) / w) ** 2) - lnorm
            dlp = lambda x: -2 * (x - cc) / w**2 / (1 - ((x - cc) / w) ** 2) ** 2
            d2lp = lambda x: mp.diff(dlp, x)
        h = lambda x: (lp(x) if lo < x < hi else mp.ninf) - (z - a * x) ** 2 / (2 * s2)
        xl, xr = lo, hi
        for _ in range(dps * 4):
            xm = (xl + xr) / 2
            if dlp(xm) + a * (z - a * xm) / s2 > 0:
                xl = xm
            else:
                xr = xm
        xs = (xl + xr) / 2
        scale = 1 / mp.sqrt(-(d2lp(xs) - a * a / s2))
        pts = {lo, hi, xs}
        for k in [0.25, 0.5, 1, 2, 4, 8, 16, 32, 64, 128]:
            pts.update(q for q in (xs - k * scale, xs + k * scale) if lo < q < hi)
        hm = h(xs)
        val = mp.quad(lambda x: mp.exp(h(x) - hm), sorted(pts))
        return float(hm + mp.log(val) - mp.log(2 * mp.pi * s2) / 2)


def fd(f, z, h):
    return (-f(z + 2 * h) + 8 * f(z + h) - 8 * f(z - h) + f(z - 2 * h)) / (12 * h)


# z inside, at the edge, just outside and far outside the support [-1, 1]
CASES = [(z, t) for t in (1e-6, 1e-3, 1.0, 20.0) for z in (0.3, 1.0, 1.05, -50.0)]


@pytest.mark.parametrize("target", [CompactDensity.beta(), CompactDensity.bump()], ids=["beta33", "bump"])
def test_log_pt_matches_mpmath(target):
    z = np.array([c[0] for c in CASES])
    t = np.array([c[1] for c in CASES])
    got = target.log_pt(z, t, P)                    # one time per point
    ref = np.array([mp_log_pt(target, zi, ti) for zi, ti in CASES])
    np.testing.assert_allclose(got, ref, rtol=1e-10)


def test_non_integer_beta_matches_mpmath():
    c = CompactDensity.beta(2.5, 4.0, -1.0, 2.0)
    for z, t in [(0.3, 1e-3), (2.0, 1e-3), (-3.0, 1.0), (0.5, 20.0)]:
        assert c.log_pt([z], t, P)[0] == pytest.approx(mp_log_pt(c, z, t), rel=1e-10)


@pytest.mark.parametrize("target", [CompactDensity.beta(), CompactDensity.bump(),
                                    CompactDensity.beta(2.5, 4.0, -1, 2)], ids=["beta33", "bump", "beta2.5"])
def test_resolution_is_converged(target):
    fine = type(target)(target.kind, target.a, target.b, target.lo, target.hi, window_order=48)
    z = np.concatenate([np.linspace(-1.5, 2.5, 41), [-50.0, 50.0]])
    for t in (1e-6, 1e-3, 0.1, 1.0, 20.0):
        L, S, D = target.evaluate(z, t, P)
        Lf, Sf, Df = fine.evaluate(z, t, P)
        np.testing.assert_allclose(L, Lf, rtol=1e-12)
        np.testing.assert_allclose(S, Sf, rtol=1e-10, atol=1e-10 * np.abs(Sf).max())
        np.testing.assert_allclose(D, Df, rtol=1e-9, atol=1e-9 * np.abs(Df).max())


@pytest.mark.parametrize("t", [1e-3, 0.1, 1.0, 10.0])
@pytest.mark.parametrize("target", [CompactDensity.beta(), CompactDensity.bump(0.5, 2.0)], ids=["beta", "bump"])
def test_score_and_derivative_are_finite_differences(target, t):
    z = np.linspace(target.lo - 0.5, target.hi + 0.5, 31)
    h = 2e-3 * min(1.0, float(np.sqrt(P.sigma2(t))))
    L, S, D = target.evaluate(z, t, P)
    np.testing.assert_allclose(S[:, 0], fd(lambda q: target.log_pt(q, t, P), z, h),
                               rtol=1e-7, atol=1e-7 * np.abs(S).max())
    np.testing.assert_allclose(D, fd(lambda q: target.score(q, t, P)[:, 0], z, h),
                               rtol=1e-7, atol=1e-7 * np.abs(D).max())


def test_t0_is_p0_with_minus_inf_outside():
    c = CompactDensity.beta(3.0, 2.0, -1.0, 3.0)
    z = np.array([-2.0, -1.0, -0.5, 0.7, 2.9, 3.0, 7.0])
    with np.errstate(all="raise"):
        L, S, D = c.evaluate(z, 0.0, P)
    inside = (z > -1) & (z < 3)
    np.testing.assert_allclose(L[inside], stats.beta(3, 2, loc=-1, scale=4).logpdf(z[inside]), rtol=1e-13)
    assert np.all(L[~inside] == -np.inf) and np.all(S[~inside] == 0) and np.all(D[~inside] == 0)
    zi = z[inside]
    np.testing.assert_allclose(S[inside, 0], fd(lambda q: c.log_pt(q, 0.0, P), zi, 1e-4), rtol=1e-8)
    np.testing.assert_allclose(D[inside], fd(lambda q: c.score(q, 0.0, P)[:, 0], zi, 1e-4), rtol=1e-8)
    b = CompactDensity.bump(1.0, 0.5)
    assert b.log_pt([1.0], 0.0, P)[0] == pytest.approx(-1.0 - np.log(0.5 * float(_bump_z())), rel=1e-14)


@pytest.mark.parametrize("t", [1e-6, 1e-3, 1.0, 20.0])
def test_far_outside_is_finite_without_warnings(t):
    for c in (CompactDensity.beta(), CompactDensity.bump()):
        with np.errstate(all="raise"):
            L, S, D = c.evaluate(np.array([-50.0, 50.0]), t, P)
        assert np.all(np.isfinite(L)) and np.all(np.isfinite(S)) and np.all(np.isfinite(D))
        assert S[0, 0] > 0 > S[1, 0]
        # far outside the posterior of x sits at the nearest end: score ~ -(z -+ alpha)/sigma^2
        sig2, a = P.sigma2(t), P.alpha(t)
        np.testing.assert_allclose(S[:, 0], [(50 - a) / sig2, -(50 - a) / sig2], rtol=0.05)


@pytest.mark.parametrize("t", [0.0, 1e-3, 1.0])
def test_density_integrates_to_one(t):
    for c in (CompactDensity.beta(), CompactDensity.bump(), CompactDensity.beta(2.5, 4.0, 0.0, 1.0)):
        f = lambda x: np.exp(c.log_pt(np.array([x]), t, P)[0])
        s = float(np.sqrt(P.sigma2(t)))
        lo, hi = c.lo * P.alpha(t) - 12 * s, c.hi * P.alpha(t) + 12 * s
        edges = np.linspace(lo, hi, 9)
        val = sum(integrate.quad(f, a, b, epsabs=1e-14, epsrel=1e-13, limit=200)[0]
                  for a, b in zip(edges[:-1], edges[1:]))
        assert val == pytest.approx(1.0, abs=1e-10)


@pytest.mark.parametrize("t", [0.0, 0.3])
def test_expectation_nodes_moments(t):
    a, s2 = P.alpha(t), P.sigma2(t)
    c = CompactDensity.beta(3.0, 4.0, -1.0, 2.0)
    z, w = c.expectation_nodes(t, P, order=4)
    ref = stats.beta(3, 4, loc=-1, scale=3)
    assert w.sum() == pytest.approx(1.0, abs=1e-15)
    assert w @ z[:, 0] == pytest.approx(a * ref.mean(), rel=1e-13)
    assert w @ z[:, 0] ** 2 == pytest.approx(a * a * ref.moment(2) + s2, rel=1e-13)
    assert w @ z[:, 0] ** 4 == pytest.approx(
        a**4 * ref.moment(4) + 6 * a**2 * ref.moment(2) * s2 + 3 * s2**2, rel=1e-12)
    b = CompactDensity.bump(0.5, 2.0)
    z, w = b.expectation_nodes(t, P, order=8)
    with mp.workdps(25):
        m2 = mp.quad(lambda u: u * u * mp.exp(-1 / (1 - u * u)), [-1, 0, 1]) / _bump_z()
    var0 = 4.0 * float(m2)
    assert w @ z[:, 0] == pytest.approx(a * 0.5, rel=1e-13)
    assert w @ (z[:, 0] - a * 0.5) ** 2 == pytest.approx(a * a * var0 + s2, rel=1e-13)


def test_sampling_reproducible_and_distributed():
    for c, ref in [(CompactDensity.beta(3, 3, -1, 1), stats.beta(3, 3, loc=-1, scale=2)), (CompactDensity.bump(), None)]:
        x = c.sample(20000, seed=3)
        assert x.shape == (20000, 1) and np.all((x > c.lo) & (x < c.hi))
        np.testing.assert_array_equal(x, c.sample(20000, seed=3))
        zg, wg = c.expectation_nodes(0.0, P, order=8)
        var = float(wg @ zg[:, 0] ** 2)
        assert abs(x.mean()) < 5 * np.sqrt(var / len(x))
        assert x.var() == pytest.approx(var, rel=0.05)
        if ref is not None:
            assert stats.kstest(x[:, 0], ref.cdf).pvalue > 1e-3
    json.dumps(CompactDensity.bump().describe())
    json.dumps(CompactDensity.beta().describe())


def test_validation():
    for bad, match in [(lambda: CompactDensity.beta(1.0, 3.0), "a"), (lambda: CompactDensity.beta(3.0, 0.5), "b"),
                       (lambda: CompactDensity.beta(3, 3, 1.0, 1.0), "lo"),
                       (lambda: CompactDensity.bump(0.0, 0.0), "halfwidth"),
                       (lambda: CompactDensity.beta().log_pt([0.0], -0.1, P), "t"),
                       (lambda: CompactDensity.beta().log_pt(np.zeros((2, 2)), 0.1, P), "z")]:
        with pytest.raises(ValueError, match=match):
            bad()
