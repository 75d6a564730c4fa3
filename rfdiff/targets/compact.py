"""A compactly supported, continuously differentiable 1D density and its p_t.

    p_t(z) = int_lo^hi p_0(x) N(z; alpha x, sigma^2) dx
           = (1/sigma) int exp(h(x)) dx / sqrt(2 pi),   h(x) = log p_0(x) - e(x)^2 / 2,
    e(x) = (z - alpha x) / sigma.

Both constructors give a log-concave ``p_0`` with ``log p_0 -> -inf`` at the ends,
so h is concave on (lo, hi): its maximiser x* is found by bisection on h', and
the window where ``h > h(x*) - 46`` (beyond it the integrand is below
``e^-46 ~ 1e-20`` of its peak and falls faster still) by bisection on h. The
window is integrated with composite Gauss-Legendre in log space (log-sum-exp
over the nodes) in a numba kernel; its width follows the posterior of x given z
(``~ sigma/alpha`` for small t, the support for large t, ``~ 1e-7`` next to an
end when z is far outside at t = 1e-6). From the posterior moments of
``e = (z - alpha x)/sigma``:

    score    = d/dz log p_t = -E[e | z] / sigma = (alpha E[x|z] - z) / sigma^2,
    score_dz = (Var[e | z] - 1) / sigma^2       = (-1 + alpha^2 Var[x|z]/sigma^2) / sigma^2,

with e and its variance taken from the node coordinate directly (no
``z - alpha E[x]`` cancellation at small t). At t = 0, ``p_0`` itself: inside
the open support its log, ``d/dx log p_0`` and ``d^2/dx^2 log p_0``; outside it
(and at the ends) ``log p = -inf`` (the truth) with score and score_dz set to 0.
"""
from __future__ import annotations

import math
from functools import cached_property, lru_cache

import numba as nb
import numpy as np

from .. import _validate as v
from ..quadrature import composite_gauss_legendre, gauss_hermite_normal
from . import _gauss1d
from .base import Target, check_process, scalar_time, time_arrays

_BETA, _BUMP = 0, 1
_WINDOW_NATS = 46.0
# window panels (in the window's [-1, 1] coordinate), finer towards its ends; a
# Beta density with non-integer a or b has a non-analytic end point just outside
# the window (~1e-13 of its width at large t), which needs geometric grading
_WINDOW_HALF = np.array([0.3, 0.6, 0.9, 0.99, 1.0])
_WINDOW_HALF_GRADED = np.array([0.3, 0.6, 0.9, 0.99, 0.999, 0.9999, 1 - 1e-6, 1 - 1e-8, 1.0])
# the Gaussian transition of the partial moments: edges at x* + c sigma/alpha
_TRANSITION = np.array([-9.0, -6.0, -4.0, -3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0,
                        8.0, 10.0, 12.0, 14.0, 17.0, 20.0, 24.0, 28.0, 33.0, _gauss1d.U_ZERO])


@nb.njit(cache=True)
def _logp0(kind, par, x):
    lo, hi = par[2], par[3]
    if not (lo < x < hi):
        return -np.inf
    if kind == _BETA:
        return (par[0] - 1.0) * math.log(x - lo) + (par[1] - 1.0) * math.log(hi - x) - par[4]
    w = 0.5 * (hi - lo)
    return -1.0 / (((hi - x) / w) * ((x - lo) / w)) - par[4]


@nb.njit(cache=True)
def _dlogp0(kind, par, x):
    lo, hi = par[2], par[3]
    if kind == _BETA:
        return (par[0] - 1.0) / (x - lo) - (par[1] - 1.0) / (hi - x)
    w2 = 0.25 * (hi - lo) ** 2
    q = (hi - x) * (x - lo) / w2                  # 1 - u^2
    dq = ((hi - x) - (x - lo)) / w2
    return dq / (q * q)


@nb.njit(cache=True)
def _d2logp0(kind, par, x):
    lo, hi = par[2], par[3]
    if kind == _BETA:
        return -(par[0] - 1.0) / (x - lo) ** 2 - (par[1] - 1.0) / (hi - x) ** 2
    w2 = 0.25 * (hi - lo) ** 2
    q = (hi - x) * (x - lo) / w2
    dq = ((hi - x) - (x - lo)) / w2
    return -2.0 / (w2 * q * q) - 2.0 * dq * dq / (q * q * q)


@nb.njit(cache=True)
def _p0_kernel(kind, par, x, logp, score, dscore):
    for i in range(x.shape[0]):
        lp = _logp0(kind, par, x[i])
        logp[i] = lp
        if lp == -np.inf:
            score[i] = 0.0
            dscore[i] = 0.0
        else:
            score[i] = _dlogp0(kind, par, x[i])
            dscore[i] = _d2logp0(kind, par, x[i])


@nb.njit(cache=True, parallel=True)
def _pt_kernel(kind, par, z, alpha, sigma, xi, wxi, logp, score, dscore):
    lo, hi = par[2], par[3]
    for i in nb.prange(z.shape[0]):
        zi, a, s = z[i], alpha[i], sigma[i]
        s2 = s * s
        # maximiser of the concave h: h' = dlogp0 + alpha (z - alpha x)/sigma^2 decreases
        xl, xr = lo, hi
        for _ in range(200):
            xm = 0.5 * (xl + xr)
            if xm <= xl or xm >= xr:
                break
            if _dlogp0(kind, par, xm) + a * (zi - a * xm) / s2 > 0.0:
                xl = xm
            else:
                xr = xm
        xs = 0.5 * (xl + xr)
        level = _logp0(kind, par, xs) - 0.5 * ((zi - a * xs) / s) ** 2 - _WINDOW_NATS
        bounds = np.empty(2)
        for side in range(2):
            xl, xr = (lo, xs) if side == 0 else (xs, hi)
            for _ in range(200):
                xm = 0.5 * (xl + xr)
                if xm <= xl or xm >= xr:
                    break
                above = _logp0(kind, par, xm) - 0.5 * ((zi - a * xm) / s) ** 2 > level
                if above == (side == 0):
                    xr = xm
                else:
                    xl = xm
            bounds[side] = xl if side == 0 else xr
        xc = 0.5 * (bounds[0] + bounds[1])
        hx = 0.5 * (bounds[1] - bounds[0])
        ec = (zi - a * xc) / s
        he = a * hx / s                                 # e = ec - he * xi on the window
        top = -np.inf
        for j in range(xi.shape[0]):
            g = math.log(wxi[j]) + _logp0(kind, par, xc + hx * xi[j]) - 0.5 * (ec - he * xi[j]) ** 2
            if g > top:
                top = g
        tot = 0.0
        mean = 0.0
        m2 = 0.0
        for j in range(xi.shape[0]):
            e = math.exp(math.log(wxi[j]) + _logp0(kind, par, xc + hx * xi[j])
                         - 0.5 * (ec - he * xi[j]) ** 2 - top)
            if e == 0.0:
                continue
            tot += e
            delta = xi[j] - mean
            mean += e / tot * delta
            m2 += e * delta * (xi[j] - mean)
        logp[i] = top + math.log(tot) + math.log(hx) - math.log(s) - 0.5 * math.log(2.0 * math.pi)
        score[i] = -(ec - he * mean) / s
        dscore[i] = (he * he * m2 / tot - 1.0) / s2


@nb.njit(cache=True, parallel=True)
def _pm_kernel(kind, par, z, alpha, sigma, base, xi, wxi, trans, out):
    """``M_r(z) = int p_0(x) F_r(z; alpha x, sigma) dx`` (F_r: Gaussian partial
    moments; sigma = 0 means t = 0, F_r = x^r 1{x < z}) on the base panels merged
    with panels following F's transition around ``x* = z/alpha``."""
    lo, hi = base[0], base[-1]
    for i in nb.prange(z.shape[0]):
        zi = z[i]
        if sigma == 0.0:
            edges = np.minimum(base, zi)
        else:
            xst, sp = zi / alpha, sigma / alpha
            edges = np.sort(np.concatenate((base, np.minimum(np.maximum(xst + sp * trans, lo), hi))))
        a0 = 0.0
        a1 = 0.0
        a2 = 0.0
        for p in range(edges.shape[0] - 1):
            left, right = edges[p], edges[p + 1]
            if not right > left:
                continue
            if sigma > 0.0 and (zi - alpha * left) / sigma < -_gauss1d.U_ZERO:
                break
            mid, half = 0.5 * (left + right), 0.5 * (right - left)
            for j in range(xi.shape[0]):
                x = mid + half * xi[j]
                pw = half * wxi[j] * math.exp(_logp0(kind, par, x))
                if sigma == 0.0:
                    a0 += pw
                    a1 += pw * x
                    a2 += pw * x * x
                else:
                    c0, c1, c2 = _gauss1d.gauss_pm(zi, alpha * x, sigma)
                    a0 += pw * c0
                    a1 += pw * c1
                    a2 += pw * c2
        out[0, i] = a0
        out[1, i] = a1
        out[2, i] = a2


@lru_cache(maxsize=1)
def _bump_log_norm() -> float:
    """``log int_{-1}^{1} exp(-1/(1 - u^2)) du`` (mpmath, 30 digits; 0.443993816168...)."""
    import mpmath as mp
    with mp.workdps(30):
        return float(mp.log(mp.quad(lambda u: mp.exp(-1 / (1 - u * u)), [-1, 0, 1])))


class CompactDensity(Target):
    """A C^1 density on ``[lo, hi]``; build it with :meth:`beta` or :meth:`bump`.

    ``window_order`` Gauss-Legendre nodes per panel (10 panels, 18 for a Beta
    with non-integer a or b) integrate the window of every ``p_t`` evaluation;
    raise it to check convergence.
    """

    dim = 1

    def __init__(self, kind, a, b, lo, hi, *, window_order=16):
        self.kind, self.a, self.b, self.lo, self.hi = kind, float(a), float(b), float(lo), float(hi)
        self.window_order = v.positive_int("window_order", window_order, minimum=2)
        L = self.hi - self.lo
        if kind == _BETA:
            from scipy.special import betaln
            log_norm = betaln(self.a, self.b) + (self.a + self.b - 1.0) * math.log(L)
        else:
            log_norm = _bump_log_norm() + math.log(0.5 * L)
        self._par = np.array([self.a, self.b, self.lo, self.hi, log_norm])
        half = _WINDOW_HALF if kind == _BUMP or self.polynomial else _WINDOW_HALF_GRADED
        xi, w = composite_gauss_legendre(np.concatenate([-half[::-1], [0.0], half]), self.window_order)
        self._xi, self._wxi = np.ascontiguousarray(xi), np.ascontiguousarray(w)

    @classmethod
    def beta(cls, a=3.0, b=3.0, lo=-1.0, hi=1.0, **kw) -> "CompactDensity":
        """Scaled Beta: ``p_0(x) = u^(a-1) (1-u)^(b-1) / (B(a, b) (hi - lo))``, ``u = (x-lo)/(hi-lo)``.

        a, b > 1 (p_0 continuous, log-concave); p_0 is C^1 on R only for
        a, b >= 2, hence the default a = b = 3.
        """
        a = v.real("a", a, lo=1.0, lo_open=True)
        b = v.real("b", b, lo=1.0, lo_open=True)
        lo, hi = v.real("lo", lo), v.real("hi", hi)
        if not lo < hi:
            raise ValueError(f"lo must be < hi, got lo={lo}, hi={hi}")
        return cls(_BETA, a, b, lo, hi, **kw)

    @classmethod
    def bump(cls, center=0.0, halfwidth=1.0, **kw) -> "CompactDensity":
        """Smooth bump ``p_0(x) = exp(-1/(1 - u^2)) / (Z w)``, ``u = (x - c)/w``, |u| < 1;
        ``Z = int_{-1}^{1} exp(-1/(1-u^2)) du`` by mpmath (C^infinity, log-concave)."""
        c = v.real("center", center)
        w = v.positive("halfwidth", halfwidth)
        return cls(_BUMP, 0.0, 0.0, c - w, c + w, **kw)

    @property
    def polynomial(self) -> bool:
        """Beta with integer a, b: p_0 is a polynomial on its support."""
        return self.kind == _BETA and self.a.is_integer() and self.b.is_integer() and self.a + self.b <= 24

    # -- p_t -------------------------------------------------------------------------
    def evaluate(self, z, t, process):
        """``(log p_t, score, score_dz)`` (t = 0: p_0 itself; see the module docstring)."""
        z = np.ascontiguousarray(v.points("z", z, 1)[:, 0])
        t, alpha, sigma2 = time_arrays(t, z.shape[0], process, allow_zero=True)
        k = z.shape[0]
        logp, score, dscore = np.empty(k), np.empty(k), np.empty(k)
        at0 = t == 0.0
        if np.any(at0):
            lp, sc, ds = np.empty(at0.sum()), np.empty(at0.sum()), np.empty(at0.sum())
            _p0_kernel(self.kind, self._par, np.ascontiguousarray(z[at0]), lp, sc, ds)
            logp[at0], score[at0], dscore[at0] = lp, sc, ds
        pos = ~at0
        if np.any(pos):
            m = pos.sum()
            lp, sc, ds = np.empty(m), np.empty(m), np.empty(m)
            _pt_kernel(self.kind, self._par, np.ascontiguousarray(z[pos]), np.ascontiguousarray(alpha[pos]),
                       np.sqrt(sigma2[pos]), self._xi, self._wxi, lp, sc, ds)
            logp[pos], score[pos], dscore[pos] = lp, sc, ds
        return logp, score[:, None], dscore

    # -- quadrature on the support ------------------------------------------------------
    @cached_property
    def _base_edges(self):
        """Panels on the effective support: one for a polynomial p_0; otherwise
        graded towards the ends (the bump's ends are where log p_0 = max - 46)."""
        lo, L = self.lo, self.hi - self.lo
        if self.polynomial:
            return np.array([lo, self.hi])
        if self.kind == _BUMP:
            half = np.array([0.9893, 0.98, 0.96, 0.93, 0.89, 0.83, 0.75, 0.6, 0.4, 0.2])
            u = np.concatenate([-half, [0.0], half[::-1]])
            return 0.5 * (self.lo + self.hi) + 0.5 * L * u
        f = np.array([0.0, 1e-12, 1e-9, 1e-6, 1e-4, 1e-3, 1e-2, 0.04, 0.1, 0.2, 0.35])
        return lo + L * np.concatenate([f, [0.5], 1.0 - f[::-1]])

    def _base_rule(self, order):
        n = order + int(math.ceil((self.a + self.b - 2.0) / 2.0)) if self.polynomial else max(order, 16)
        x, w = composite_gauss_legendre(self._base_edges, n)
        lp = np.empty_like(x)
        _p0_kernel(self.kind, self._par, np.ascontiguousarray(x), lp, np.empty_like(x), np.empty_like(x))
        return x, w * np.exp(lp)

    def expectation_nodes(self, t, process, order=20):
        """``E_{p_t} f ~= sum w f(nodes)``: Gauss-Legendre on the support weighted by
        p_0 (t = 0), times Gauss-Hermite in the noise (t > 0, ``alpha x + sigma e``).

        A polynomial p_0 (integer Beta) gets one panel with enough nodes to be
        exact for polynomial f of degree <= 2 order - 1; otherwise graded panels
        with max(order, 16) nodes each.
        """
        t = scalar_time(t, allow_zero=True)
        check_process(process)
        order = v.positive_int("order", order)
        x, w = self._base_rule(order)
        if t > 0.0:
            a, s = float(process.alpha(t)), math.sqrt(float(process.sigma2(t)))
            e, we = gauss_hermite_normal(order)
            x = (a * x[:, None] + s * e[None, :]).ravel()
            w = (w[:, None] * we[None, :]).ravel()
        return x[:, None], w / w.sum()

    def _lower_partial_moments(self, z, t, process):
        a, s = float(process.alpha(t)), math.sqrt(float(process.sigma2(t)))
        xi, wxi = composite_gauss_legendre(np.array([-1.0, 1.0]), 16)
        out = np.empty((3, z.shape[0]))
        _pm_kernel(self.kind, self._par, np.ascontiguousarray(z), a, s, self._base_edges,
                   xi, wxi, _TRANSITION, out)
        return out

    def _reflect(self):
        kw = {"window_order": self.window_order}
        if self.kind == _BETA:
            return CompactDensity.beta(self.b, self.a, -self.hi, -self.lo, **kw)
        return CompactDensity.bump(-0.5 * (self.lo + self.hi), 0.5 * (self.hi - self.lo), **kw)

    # -- sampling and provenance ----------------------------------------------------------
    def sample(self, n, seed=0):
        """Beta: ``lo + (hi - lo) Beta(a, b)``; bump: rejection from the uniform."""
        n = v.positive_int("n", n)
        rng = np.random.default_rng(v.positive_int("seed", seed, minimum=0))
        L = self.hi - self.lo
        if self.kind == _BETA:
            return (self.lo + L * rng.beta(self.a, self.b, size=n))[:, None]
        out = np.empty(0)
        while out.size < n:   # acceptance exp(1 - 1/(1-u^2)), about 60 %
            u = rng.uniform(-1.0, 1.0, size=2 * (n - out.size) + 16)
            with np.errstate(divide="ignore", under="ignore"):   # u = -1 exactly: density 0
                keep = rng.uniform(size=u.size) < np.exp(1.0 - 1.0 / ((1.0 - u) * (1.0 + u)))
            out = np.concatenate([out, u[keep]])
        return (0.5 * (self.lo + self.hi) + 0.5 * L * out[:n])[:, None]

    def describe(self):
        out = {"name": "CompactDensity", "kind": "beta" if self.kind == _BETA else "bump",
               "lo": self.lo, "hi": self.hi, "window_order": self.window_order}
        if self.kind == _BETA:
            out.update(a=self.a, b=self.b)
        return out

    def __repr__(self):
        if self.kind == _BETA:
            return f"CompactDensity.beta(a={self.a}, b={self.b}, lo={self.lo}, hi={self.hi})"
        return f"CompactDensity.bump(center={0.5 * (self.lo + self.hi)}, halfwidth={0.5 * (self.hi - self.lo)})"
