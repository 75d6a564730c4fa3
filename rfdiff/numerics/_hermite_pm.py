"""Fast partial moments of a large equal-width Gaussian mixture (Hermite expansion).

For ``p(x) = sum_i w_i N(x; mu_i, s^2)`` the partial moments
``M_r(z) = int_{-inf}^{z} x^r p(x) dx`` (r = 0, 1, 2) cost O(n) per point when
summed directly. The exact ReLU Gram assembly needs them at m kinks for each
of n_time nodes, i.e. O(n m n_time) erfc calls. This kernel groups the sorted
means into boxes of width ``s/2`` and expands each box about its centre c
(``mu_i = c + s e_i``, ``|e_i| <= 1/4``, ``u0 = (z - c)/s``):

    sum_i w_i e_i^j Phi(u0 - e_i) = sum_k (-1)^k Phi^(k)(u0)/k! S_{k+j},
    sum_i w_i e_i^j phi(u0 - e_i) = sum_k (-1)^k Phi^(k+1)(u0)/k! S_{k+j},

with box moments ``S_k = sum_i w_i e_i^k`` and ``Phi^(k+1)(u) = (-1)^k He_k(u) phi(u)``
(probabilists' Hermite polynomials by recurrence). Truncated after ``K = 18``
terms the remainder is below ``4^-19/sqrt(19!) ~ 1e-20`` per unit weight: the
result equals the direct sum to round-off (tested). In terms of these sums,
with ``A_j``, ``B_j`` the two expansions:

    M0 = A_0,  M1 = c A_0 + s A_1 - s B_0,
    M2 = (c^2 + s^2) A_0 + 2 c s A_1 + s^2 A_2 - s ((c + z) B_0 + s B_1).

Components more than 9 s left of z contribute their full moments (prefix
sums); components more than 9 s right of z are dropped (< 1e-19 of their
weight): the accuracy is absolute, ~1e-16 of the totals, which is what the
Gram matrix needs. Boxes with few members are summed directly. Cost per point:
O(#boxes within +-9 s), independent of n.
"""
from __future__ import annotations

import math

import numba as nb
import numpy as np

from .._numba import twins

K = 18
_CUT = 9.0
_DIRECT_BELOW = 12          # boxes with fewer members are summed directly
_SQRT2 = math.sqrt(2.0)
_INV_SQRT2PI = 1.0 / math.sqrt(2.0 * math.pi)


@nb.njit(cache=True)
def _boxes(mu, w, s):
    """Greedy boxes of width s/2 over sorted ``mu``: starts, centres, moments S_k."""
    n = mu.shape[0]
    h = 0.5 * s
    starts = np.empty(n + 1, dtype=np.int64)
    nb_ = 0
    i = 0
    while i < n:
        starts[nb_] = i
        lo = mu[i]
        while i < n and mu[i] < lo + h:
            i += 1
        nb_ += 1
    starts[nb_] = n
    starts = starts[: nb_ + 1]
    centres = np.empty(nb_)
    S = np.zeros((nb_, K + 3))
    for b in range(nb_):
        c = mu[starts[b]] + 0.25 * s
        centres[b] = c
        for i in range(starts[b], starts[b + 1]):
            e = (mu[i] - c) / s
            p = w[i]
            for k in range(K + 3):
                S[b, k] += p
                p *= e
    return starts, centres, S


@nb.njit(cache=True, inline="always")
def _direct(z, m, s, w):
    u = (z - m) / s
    p = 0.5 * math.erfc(-u / _SQRT2)
    ph = math.exp(-0.5 * u * u) * _INV_SQRT2PI
    return w * p, w * (m * p - s * ph), w * ((m * m + s * s) * p - s * ph * (m + z))


def hermite_partial_moments(z, mu, w, p0, p1, p2, s, out):
    """``out[:, i] = (M0, M1, M2)(z_i)`` for sorted means ``mu`` with weights ``w``.

    ``p0, p1, p2`` are the prefix sums (length n + 1) of ``w``, ``w mu``, ``w mu^2``.
    """
    starts, centres, S = _boxes(mu, w, s)
    nbox = centres.shape[0]
    box_of = np.empty(mu.shape[0], dtype=np.int64)
    for b in range(nbox):
        for i in range(starts[b], starts[b + 1]):
            box_of[i] = b
    inv_fact = np.empty(K + 1)
    inv_fact[0] = 1.0
    for k in range(1, K + 1):
        inv_fact[k] = inv_fact[k - 1] / k
    for q in nb.prange(z.shape[0]):
        zq = z[q]
        j0 = np.searchsorted(mu, zq - _CUT * s)
        j1 = np.searchsorted(mu, zq + _CUT * s)
        a0 = p0[j0]
        a1 = p1[j0]
        a2 = p2[j0] + s * s * p0[j0]
        if j1 > j0:
            D = np.empty(K + 2)
            for b in range(box_of[j0], box_of[j1 - 1] + 1):
                lo = max(starts[b], j0)
                hi = min(starts[b + 1], j1)
                if hi - lo < _DIRECT_BELOW or lo != starts[b] or hi != starts[b + 1]:
                    for i in range(lo, hi):
                        c0, c1, c2 = _direct(zq, mu[i], s, w[i])
                        a0 += c0
                        a1 += c1
                        a2 += c2
                    continue
                c = centres[b]
                u = (zq - c) / s
                ph = math.exp(-0.5 * u * u) * _INV_SQRT2PI
                D[0] = 0.5 * math.erfc(-u / _SQRT2)
                he_prev, he = 0.0, 1.0                     # He_{-1}, He_0
                for k in range(K + 1):                     # D[k+1] = (-1)^k He_k(u) phi(u)
                    D[k + 1] = (-he if k % 2 else he) * ph
                    he_prev, he = he, u * he - k * he_prev
                A0 = A1 = A2 = B0 = B1 = 0.0
                for k in range(K + 1):
                    sg = -inv_fact[k] if k % 2 else inv_fact[k]
                    ak = sg * D[k]
                    bk = sg * D[k + 1]
                    A0 += ak * S[b, k]
                    A1 += ak * S[b, k + 1]
                    A2 += ak * S[b, k + 2]
                    B0 += bk * S[b, k]
                    B1 += bk * S[b, k + 1]
                a0 += A0
                a1 += c * A0 + s * A1 - s * B0
                a2 += (c * c + s * s) * A0 + 2.0 * c * s * A1 + s * s * A2 - s * ((c + zq) * B0 + s * B1)
        out[0, q] = a0
        out[1, q] = a1
        out[2, q] = a2
    return out


_hpm_serial, _hpm_parallel = twins(hermite_partial_moments)


def mixture_partial_moments(z, mu, w, p0, p1, p2, s):
    """Partial moments (3, k) at points z (k,) of ``sum_i w_i N(mu_i, s^2)`` with
    ascending ``mu`` and prefix sums ``p0, p1, p2`` of ``w, w mu, w mu^2``, to
    absolute accuracy (see the module docstring)."""
    z = np.asarray(z, dtype=np.float64)
    order = np.argsort(z)                  # neighbouring points share boxes: cache-friendly
    out = np.empty((3, len(z)))
    # threads pay off only for many points (their start-up costs ~ms on a busy machine)
    kernel = _hpm_parallel if len(z) >= 2048 else _hpm_serial
    kernel(np.ascontiguousarray(z[order]), mu, w, p0, p1, p2, s, out)
    res = np.empty_like(out)
    res[:, order] = out
    return res
