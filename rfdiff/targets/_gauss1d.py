"""Partial moments of 1D Gaussians and of sums of many of them (numba).

For ``x ~ N(m, s^2)`` and ``u = (z - m)/s``:

    M0 = Phi(u),   M1 = m Phi(u) - s phi(u),   M2 = (m^2 + s^2) Phi(u) - s phi(u) (m + z),

with ``M_r = int_{-inf}^{z} x^r N(x; m, s^2) dx``. Written around z instead
(``x = z - s y``), with ``x_ = -u`` and the repeated normal tail integrals
``Hh_n(x_) = int_{x_}^{inf} (t - x_)^n / n! phi(t) dt``:

    M0 = Hh_0,   M1 = z Hh_0 - s Hh_1,   M2 = z^2 Hh_0 - 2 z s Hh_1 + 2 s^2 Hh_2.

The first form is used for ``u >= 0``. Left of the mean it cancels (``m Phi ~
s phi``, without bound as ``m/s`` grows), so for ``u < 0`` the second form is
used: directly for ``x_ < 3`` (relative error ~1e-13 at worst), and in the tail
``x_ >= 3`` with the ratios ``r_n = Hh_n / Hh_{n-1} = 1 / (x_ + (n + 1) r_{n+1})``
of the backward continued fraction (~1e-16 with ``20 + 120/x_`` terms) and
``Hh_0 = erfc(x_/sqrt 2)/2``: every moment keeps its relative accuracy down to
underflow (``u ~ -38.6``), limited only by the ``~eps u^2`` conditioning of
``exp(-u^2/2)``.
"""
from __future__ import annotations

import math

import numba as nb
import numpy as np

_SQRT2 = math.sqrt(2.0)
_INV_SQRT2PI = 1.0 / math.sqrt(2.0 * math.pi)
#: beyond this many standard deviations left of z a component has Phi(u) = 1 in
#: double precision and phi(u) * u < 1e-17: it contributes its full moments
U_FULL = 9.0
#: beyond this many standard deviations right of z, Phi(u) underflows to 0
U_ZERO = 38.7


@nb.njit(cache=True, inline="always")
def gauss_pm(z, m, s, accurate_tail=True):
    """``(M0, M1, M2)`` of ``N(m, s^2)`` below z (see the module docstring).

    ``accurate_tail=False`` skips the continued fraction and uses the direct
    forms for ``u < -3`` too (relative error ~ eps u^4 of this term): for sums
    where the term is known to be small next to what has been accumulated.
    """
    u = (z - m) / s
    if u >= 0.0:
        p = 0.5 * math.erfc(-u / _SQRT2)
        ph = math.exp(-0.5 * u * u) * _INV_SQRT2PI
        return p, m * p - s * ph, (m * m + s * s) * p - s * ph * (m + z)
    x = -u
    p = 0.5 * math.erfc(x / _SQRT2)
    if p == 0.0:
        return 0.0, 0.0, 0.0
    if x < 3.0 or not accurate_tail:
        # Hh_1 = phi - x Hh_0, 2 Hh_2 = (1 + x^2) Hh_0 - x phi: cancel by ~x^2 .. x^4 / 2
        ph = math.exp(-0.5 * x * x) * _INV_SQRT2PI
        hh1 = ph - x * p
        hh2x2 = (1.0 + x * x) * p - x * ph
    else:
        r = 0.0
        r2 = 0.0
        for n in range(int(20.0 + 120.0 / x), 0, -1):
            r = 1.0 / (x + (n + 1) * r)
            if n == 2:
                r2 = r
        hh1 = p * r
        hh2x2 = 2.0 * hh1 * r2
    return p, z * p - s * hh1, z * z * p - 2.0 * z * s * hh1 + s * s * hh2x2


@nb.njit(cache=True)
def _mixture_pm_point(z, m, s, w):
    a0 = 0.0
    a1 = 0.0
    a2 = 0.0
    for k in range(m.shape[0]):
        c0, c1, c2 = gauss_pm(z, m[k], s[k])
        a0 += w[k] * c0
        a1 += w[k] * c1
        a2 += w[k] * c2
    return a0, a1, a2


@nb.njit(cache=True)
def _mixture_pm_serial(z, m, s, w, out):
    for i in range(z.shape[0]):
        out[0, i], out[1, i], out[2, i] = _mixture_pm_point(z[i], m, s, w)


def mixture_pm(z, m, s, w):
    """``(3, k)``: ``sum_k w_k M_r(z_i; m_k, s_k)`` for a few components (serial:
    a few components cost less than starting threads)."""
    out = np.empty((3, z.shape[0]))
    _mixture_pm_serial(z, m, s, w, out)
    return out


@nb.njit(cache=True)
def kahan_prefix(a):
    """``out[j] = sum_{i<j} a[i]`` (length n + 1) with compensated summation."""
    out = np.empty(a.shape[0] + 1)
    s = 0.0
    c = 0.0
    out[0] = 0.0
    for i in range(a.shape[0]):
        y = a[i] - c
        tt = s + y
        c = (tt - s) - y
        s = tt
        out[i + 1] = s
    return out


@nb.njit(cache=True)
def _sorted_pm_point(z, xs, ws, p0, p1, p2, alpha, s):
    n = xs.shape[0]
    j0 = np.searchsorted(xs, (z - U_FULL * s) / alpha)
    a0 = p0[j0]
    a1 = alpha * p1[j0]
    a2 = alpha * alpha * p2[j0] + s * s * p0[j0]
    for j in range(j0, n):
        mj = alpha * xs[j]
        u = (z - mj) / s
        if u < -U_ZERO:
            break
        # once a full component's weight has been accumulated, a right-tail term's
        # ~eps u^4 relative error is below eps u^4 Phi(u) < 0.1 eps of the total
        c0, c1, c2 = gauss_pm(z, mj, s, a0 < ws[j])
        a0 += ws[j] * c0
        a1 += ws[j] * c1
        a2 += ws[j] * c2
        if u < -3.0:
            rest = p0[n] - p0[j + 1]
            if rest * c0 <= 1e-17 * a0 and rest * c2 <= 1e-17 * a2:
                break
    return a0, a1, a2


@nb.njit(cache=True, parallel=True)
def _sorted_pm_parallel(z, xs, ws, p0, p1, p2, alpha, s, out):
    for i in nb.prange(z.shape[0]):
        out[0, i], out[1, i], out[2, i] = _sorted_pm_point(z[i], xs, ws, p0, p1, p2, alpha, s)


@nb.njit(cache=True)
def _sorted_pm_serial(z, xs, ws, p0, p1, p2, alpha, s, out):
    for i in range(z.shape[0]):
        out[0, i], out[1, i], out[2, i] = _sorted_pm_point(z[i], xs, ws, p0, p1, p2, alpha, s)


def sorted_sum_pm(z, xs, ws, p0, p1, p2, alpha, s, parallel):
    """Partial moments ``(3, k)`` of ``sum_i w_i N(alpha x_i, s^2)`` with ``xs`` ascending.

    Components more than ``U_FULL`` s left of z contribute their full moments
    ``(w, w alpha x, w (alpha^2 x^2 + s^2))``, summed once into the prefix sums
    ``p0, p1, p2`` of ``w, w x, w x^2`` (compensated). The rest are visited
    rightwards from there; once a component lies right of z (where its moments
    per unit weight decrease with its mean) and the remaining weight times its
    moments is below 1e-17 of what has been accumulated, the remainder is
    dropped. Cost: O(log n + #components within ~10 s of z) per point.
    """
    out = np.empty((3, z.shape[0]))
    (_sorted_pm_parallel if parallel else _sorted_pm_serial)(z, xs, ws, p0, p1, p2, alpha, s, out)
    return out
