"""Quadrature nodes: Gauss-Legendre on intervals and in log-time, Gauss-Hermite
for normal expectations.

Time integrals ``int_{t_min}^{T} h(t) dt`` are computed with Gauss-Legendre in
``u = log t`` (``dt = t du``): the integrands of diffusion losses change on a
log scale, so nodes spread evenly in log t converge far faster than in t.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .. import _validate as v


@lru_cache(maxsize=64)
def _leggauss(n: int):
    x, w = np.polynomial.legendre.leggauss(n)
    x.flags.writeable = False
    w.flags.writeable = False
    return x, w


@lru_cache(maxsize=64)
def _hermgauss(n: int):
    # probabilists' Hermite: E_{e ~ N(0,1)} h(e) ~= sum w_i h(x_i), sum w_i = 1
    x, w = np.polynomial.hermite_e.hermegauss(n)
    w = w / np.sqrt(2.0 * np.pi)
    x.flags.writeable = False
    w.flags.writeable = False
    return x, w


def gauss_legendre(a: float, b: float, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights of the n-point Gauss-Legendre rule on [a, b]."""
    x, w = _leggauss(int(n))
    half = 0.5 * (b - a)
    return 0.5 * (a + b) + half * x, half * w


def composite_gauss_legendre(edges, n: int) -> tuple[np.ndarray, np.ndarray]:
    """n-point Gauss-Legendre on every panel ``[edges[i], edges[i+1]]``."""
    edges = np.asarray(edges, dtype=np.float64)
    x, w = _leggauss(int(n))
    lo, hi = edges[:-1, None], edges[1:, None]
    half = 0.5 * (hi - lo)
    return (0.5 * (lo + hi) + half * x).ravel(), (half * w).ravel()


def gauss_hermite_normal(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights with ``E_{e ~ N(0,1)}[h(e)] ~= sum_i w_i h(x_i)``."""
    return _hermgauss(int(n))


@dataclass(frozen=True)
class TimeGrid:
    """Gauss-Legendre nodes in log t on ``[t_min, T]``.

    ``sum(weights * h(t)) ~= int_{t_min}^{T} h(t) dt`` (the plain integral);
    divide by ``T - t_min`` for the time average that the loss uses.
    """

    t: np.ndarray
    weights: np.ndarray
    t_min: float
    T: float

    @property
    def mean_weights(self) -> np.ndarray:
        """Weights of the uniform time average ``(T - t_min)^{-1} int dt``."""
        return self.weights / (self.T - self.t_min)


def log_time_grid(t_min: float, T: float, n: int) -> TimeGrid:
    """Gauss-Legendre rule with ``n`` nodes in ``log t`` on ``[t_min, T]``."""
    t_min, T = v.window(t_min, T)
    n = v.positive_int("n_time", n)
    u, wu = gauss_legendre(np.log(t_min), np.log(T), n)
    t = np.exp(u)
    return TimeGrid(t=t, weights=wu * t, t_min=t_min, T=T)


class LogTimeIntegral:
    """``int_{t_min}^{T} lam(t) h_b(t) dt`` for ``n`` quantities b, refinable (a
    problem of :func:`rfdiff.numerics.refine.refine`).

    ``h(t, o) -> (n,)`` is an expectation at time t computed with a rule of
    order ``o``. An evaluation at ``(n_t, o)`` returns ``I(2 n_t, 2 o)`` with the
    error ``|I(2 n_t, o) - I(n_t, o)| + |I(2 n_t, 2 o) - I(2 n_t, o)|`` (time
    nodes, then order), plus ``extra_error``; refinement doubles ``n_t`` while
    the time error exceeds ``tol / 2`` (up to ``max_n_time`` nodes), then ``o``
    (up to ``max_order``). While the time error is still being refined, the
    order term is not computed and the elements are held. ``h`` is cached by
    ``(t, o)`` (nested in nothing: Gauss-Legendre rules do not nest).
    """

    def __init__(self, h, lam, t_min, T, n_time, order, max_n_time, max_order, tol, extra_error=0.0):
        self.h, self.lam, self.t_min, self.T = h, lam, t_min, T
        self.n, self.o = int(n_time), int(order)
        self.max_n_time, self.max_order, self.tol = int(max_n_time), int(max_order), float(tol)
        self.extra = extra_error
        self.cache = {}
        self.err_t = self.err_o = None

    def _term(self, t, o):
        key = (float(t), o)
        if key not in self.cache:
            self.cache[key] = np.asarray(self.h(float(t), o), dtype=np.float64)
        return self.cache[key]

    def integral(self, n, o):
        grid = log_time_grid(self.t_min, self.T, n)
        vals = np.stack([self._term(t, o) for t in grid.t])            # (n_t, B)
        return (grid.weights * self.lam(grid.t)) @ vals

    def _time_open(self, active):
        return bool(np.any(self.err_t[active] > 0.5 * self.tol)) and 4 * self.n <= self.max_n_time

    def evaluate(self, active):
        from .refine import Estimate
        fine = self.integral(2 * self.n, self.o)
        self.err_t = np.abs(fine - self.integral(self.n, self.o))
        if self._time_open(active):
            return Estimate(fine[active], (self.err_t + self.extra)[active],
                            hold=np.ones(active.size, dtype=bool))
        best = self.integral(2 * self.n, 2 * self.o)
        self.err_o = np.abs(best - fine)
        return Estimate(best[active], (self.err_t + self.err_o + self.extra)[active])

    def refine(self, active, error, tols):
        from .refine import Status
        if self._time_open(active):
            self.n *= 2
            return None
        if self.err_o is not None and np.any(self.err_o[active] > 0.5 * self.tol) and 4 * self.o <= self.max_order:
            self.o *= 2
            return None
        return Status.QUADRATURE_LIMIT, (f"quadrature limit: {2 * self.n} time nodes (max_n_time="
                                         f"{self.max_n_time}) and order {2 * self.o} (max_order={self.max_order})")

    def summary(self):
        return {"n_time": 2 * self.n, "order": 2 * self.o, "n_evals": len(self.cache)}
