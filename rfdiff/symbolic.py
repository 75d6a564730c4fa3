"""SymPy derivations, turned into NumPy functions once and cached.

The Gaussian component of a target under the forward process
``x_t = alpha x_0 + sigma eps`` with ``x_0 ~ N(mu, s2)`` (1D, or one eigen-direction
of a covariance) is

    l(z) = log N(z; alpha mu, v),   v = alpha^2 s2 + sigma2,
    l(z) = -(z - alpha mu)^2 / (2 v) - log(2 pi v) / 2,

and the mixture code needs ``l``, ``l' = dl/dz`` and ``l'' = d^2 l/dz^2``. They are
derived here with ``sympy.diff`` (not typed by hand) and lambdified to NumPy, so
the derivative formulas have a single source. The same holds for the
Kullback-Leibler divergence between two 1D Gaussians, used for ``KL(p_T || pi)``
of Gaussian targets and by the tests.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import sympy as sp

__all__ = ["gaussian_component", "gaussian_component_exprs", "kl_normal", "kl_normal_expr"]

_z, _mu, _s2, _alpha, _sigma2 = sp.symbols("z mu s2 alpha sigma2", real=True)
_m1, _m2 = sp.symbols("m1 m2", real=True)
_v1, _v2 = sp.symbols("v1 v2", positive=True)


def gaussian_component_exprs():
    """``(l, l', l'')`` as SymPy expressions in ``z, mu, s2, alpha, sigma2``."""
    v = _alpha**2 * _s2 + _sigma2
    log_n = -(_z - _alpha * _mu) ** 2 / (2 * v) - sp.log(2 * sp.pi * v) / 2
    return log_n, sp.diff(log_n, _z), sp.diff(log_n, _z, 2)


@lru_cache(maxsize=1)
def _component_funcs():
    args = (_z, _mu, _s2, _alpha, _sigma2)
    return tuple(sp.lambdify(args, e, modules="numpy") for e in gaussian_component_exprs())


def gaussian_component(z, mu, s2, alpha, sigma2):
    """``(l, l', l'')`` of ``l(z) = log N(z; alpha mu, alpha^2 s2 + sigma2)``.

    All arguments broadcast against each other; the three outputs have the
    broadcast shape (``l''`` does not depend on z, it is broadcast anyway).
    The caller guarantees ``alpha^2 s2 + sigma2 > 0``.
    """
    args = np.broadcast_arrays(*(np.asarray(a, dtype=np.float64) for a in (z, mu, s2, alpha, sigma2)))
    shape = args[0].shape
    return tuple(np.broadcast_to(np.asarray(f(*args), dtype=np.float64), shape)
                 for f in _component_funcs())


def kl_normal_expr():
    """``KL(N(m1, v1) || N(m2, v2))`` as a SymPy expression, from its definition.

    ``E_{N(m1,v1)}[log N(x; m1, v1) - log N(x; m2, v2)]`` with the Gaussian
    moments ``E[x - m1] = 0``, ``E[(x - m1)^2] = v1`` substituted.
    """
    d = _m1 - _m2
    # log N(x; m1, v1) - log N(x; m2, v2) with x = m1 + e; expand in e, then take E[e] = 0, E[e^2] = v1
    e = sp.symbols("e", real=True)
    diff = (-(e**2) / (2 * _v1) - sp.log(2 * sp.pi * _v1) / 2) - (-((e + d) ** 2) / (2 * _v2)
                                                                   - sp.log(2 * sp.pi * _v2) / 2)
    poly = sp.Poly(sp.expand(diff), e)
    moments = {0: 1, 1: 0, 2: _v1}
    return sp.simplify(sum(c * moments[k[0]] for k, c in zip(poly.monoms(), poly.coeffs())))


@lru_cache(maxsize=1)
def _kl_func():
    return sp.lambdify((_m1, _v1, _m2, _v2), kl_normal_expr(), modules="numpy")


def kl_normal(m1, v1, m2, v2):
    """``KL(N(m1, v1) || N(m2, v2)) = (v1 + (m1 - m2)^2) / (2 v2) - 1/2 + log(v2/v1)/2``, elementwise."""
    args = np.broadcast_arrays(*(np.asarray(a, dtype=np.float64) for a in (m1, v1, m2, v2)))
    return np.asarray(_kl_func()(*args), dtype=np.float64)
