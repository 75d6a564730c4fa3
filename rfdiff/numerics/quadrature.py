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
