"""A compactly supported, continuously differentiable 1D density and its p_t.

    p_t(z) = int_lo^hi p_0(x) N(z; alpha x, sigma^2) dx
           = (1/sigma) int exp(h(x)) dx / sqrt(2 pi),   h(x) = log p_0(x) - e(x)^2 / 2,
    e(x) = (z - alpha x) / sigma.

Both constructors give a log-concave ``p_0`` with ``log p_0 -> -inf`` at the ends,
so h is concave on (lo, hi): its maximiser x* is found by Newton's method on h'
(safeguarded by bisection), and the window where ``h > h(x*) - 46`` (beyond it
the integrand is below ``e^-46 ~ 1e-20`` of its peak and falls faster still) by
walking out from x* in doubling steps and bisecting on h. (A window set by the
Gaussian factor alone would miss the mass when ``p_0`` vanishes fast at an end,
as the bump does.) The
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

import numpy as np

from .. import _validate as v
from ..numerics.quadrature import composite_gauss_legendre, gauss_hermite_normal
from ._compact_kernels import (BETA, BUMP, TRANSITION, WINDOW_HALF, WINDOW_HALF_GRADED, p0_kernel,
                               pm_parallel, pm_serial, pt_parallel, pt_serial)
from .base import Target, check_process, scalar_time, time_arrays, use_parallel


@lru_cache(maxsize=1)
def _bump_log_norm() -> float:
    """``log int_{-1}^{1} exp(-1/(1 - u^2)) du`` (mpmath, 30 digits; 0.443993816168...)."""
    import mpmath as mp
    with mp.workdps(30):
        return float(mp.log(mp.quad(lambda u: mp.exp(-1 / (1 - u * u)), [-1, 0, 1])))


class CompactDensity(Target):
    """A C^1 density on ``[lo, hi]``; build it with :meth:`beta` or :meth:`bump`
    (``__init__(kind, a, b, lo, hi)`` takes already validated values).

    ``window_order`` Gauss-Legendre nodes per panel (10 panels, 18 for a Beta
    with non-integer a or b) integrate the window of every ``p_t`` evaluation;
    raise it to check convergence.
    """

    dim = 1

    def __init__(self, kind, a, b, lo, hi, *, window_order=16):
        self.kind, self.a, self.b, self.lo, self.hi = kind, float(a), float(b), float(lo), float(hi)
        self.window_order = v.positive_int("window_order", window_order, minimum=2)
        L = self.hi - self.lo
        if kind == BETA:
            from scipy.special import betaln
            log_norm = betaln(self.a, self.b) + (self.a + self.b - 1.0) * math.log(L)
        else:
            log_norm = _bump_log_norm() + math.log(0.5 * L)
        self._par = np.array([self.a, self.b, self.lo, self.hi, log_norm])
        half = WINDOW_HALF if kind == BUMP or self.polynomial else WINDOW_HALF_GRADED
        xi, w = composite_gauss_legendre(np.concatenate([-half[::-1], [0.0], half]), self.window_order)
        self._xi, self._logw = np.ascontiguousarray(xi), np.ascontiguousarray(np.log(w))

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
        return cls(BETA, a, b, lo, hi, **kw)

    @classmethod
    def bump(cls, center=0.0, halfwidth=1.0, **kw) -> "CompactDensity":
        """Smooth bump ``p_0(x) = exp(-1/(1 - u^2)) / (Z w)``, ``u = (x - c)/w``, |u| < 1;
        ``Z = int_{-1}^{1} exp(-1/(1-u^2)) du`` by mpmath (C^infinity, log-concave)."""
        c = v.real("center", center)
        w = v.positive("halfwidth", halfwidth)
        return cls(BUMP, 0.0, 0.0, c - w, c + w, **kw)

    @property
    def polynomial(self) -> bool:
        """Beta with integer a, b: p_0 is a polynomial on its support."""
        return self.kind == BETA and self.a.is_integer() and self.b.is_integer() and self.a + self.b <= 24

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
            p0_kernel(self.kind, self._par, np.ascontiguousarray(z[at0]), lp, sc, ds)
            logp[at0], score[at0], dscore[at0] = lp, sc, ds
        pos = ~at0
        if np.any(pos):
            m = pos.sum()
            lp, sc, ds = np.empty(m), np.empty(m), np.empty(m)
            kernel = pt_parallel if use_parallel(m, 16) else pt_serial
            kernel(self.kind, self._par, np.ascontiguousarray(z[pos]), np.ascontiguousarray(alpha[pos]),
                   np.sqrt(sigma2[pos]), self._xi, self._logw, lp, sc, ds)
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
        if self.kind == BUMP:
            half = np.array([0.9893, 0.98, 0.96, 0.93, 0.89, 0.83, 0.75, 0.6, 0.4, 0.2])
            u = np.concatenate([-half, [0.0], half[::-1]])
            return 0.5 * (self.lo + self.hi) + 0.5 * L * u
        f = np.array([0.0, 1e-12, 1e-9, 1e-6, 1e-4, 1e-3, 1e-2, 0.04, 0.1, 0.2, 0.35])
        return lo + L * np.concatenate([f, [0.5], 1.0 - f[::-1]])

    def _base_rule(self, order):
        n = order + int(math.ceil((self.a + self.b - 2.0) / 2.0)) if self.polynomial else max(order, 16)
        x, w = composite_gauss_legendre(self._base_edges, n)
        lp = np.empty_like(x)
        p0_kernel(self.kind, self._par, np.ascontiguousarray(x), lp, np.empty_like(x), np.empty_like(x))
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
        kernel = pm_parallel if use_parallel(z.shape[0], 8) else pm_serial
        kernel(self.kind, self._par, np.ascontiguousarray(z), a, s, self._base_edges, xi, wxi, TRANSITION, out)
        return out

    def _reflect(self):
        kw = {"window_order": self.window_order}
        if self.kind == BETA:
            return CompactDensity.beta(self.b, self.a, -self.hi, -self.lo, **kw)
        return CompactDensity.bump(-0.5 * (self.lo + self.hi), 0.5 * (self.hi - self.lo), **kw)

    # -- sampling and provenance ----------------------------------------------------------
    def sample(self, n, seed=0):
        """Beta: ``lo + (hi - lo) Beta(a, b)``; bump: rejection from the uniform."""
        n = v.positive_int("n", n)
        rng = np.random.default_rng(v.positive_int("seed", seed, minimum=0))
        L = self.hi - self.lo
        if self.kind == BETA:
            return (self.lo + L * rng.beta(self.a, self.b, size=n))[:, None]
        out = np.empty(0)
        while out.size < n:   # acceptance exp(1 - 1/(1-u^2)), about 60 %
            u = rng.uniform(-1.0, 1.0, size=2 * (n - out.size) + 16)
            with np.errstate(divide="ignore", under="ignore"):   # u = -1 exactly: density 0
                keep = rng.uniform(size=u.size) < np.exp(1.0 - 1.0 / ((1.0 - u) * (1.0 + u)))
            out = np.concatenate([out, u[keep]])
        return (0.5 * (self.lo + self.hi) + 0.5 * L * out[:n])[:, None]

    def describe(self):
        out = {"name": "CompactDensity", "kind": "beta" if self.kind == BETA else "bump",
               "lo": self.lo, "hi": self.hi, "window_order": self.window_order}
        if self.kind == BETA:
            out.update(a=self.a, b=self.b)
        return out

    def __repr__(self):
        if self.kind == BETA:
            return f"CompactDensity.beta(a={self.a}, b={self.b}, lo={self.lo}, hi={self.hi})"
        return f"CompactDensity.bump(center={0.5 * (self.lo + self.hi)}, halfwidth={0.5 * (self.hi - self.lo)})"
