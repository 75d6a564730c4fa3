"""Numba kernels of :mod:`rfdiff.targets.compact` (see its docstring for the maths).

``kind`` selects the density (0: scaled Beta, 1: bump) and ``par`` holds
``[a, b, lo, hi, log normaliser]``.
"""
from __future__ import annotations

import math

import numba as nb
import numpy as np

from . import _gauss1d

BETA, BUMP = 0, 1
WINDOW_NATS = 46.0
# window panels (in the window's [-1, 1] coordinate), finer towards its ends; a
# Beta density with non-integer a or b has a non-analytic end point just outside
# the window (~1e-13 of its width at large t), which needs geometric grading
WINDOW_HALF = np.array([0.3, 0.6, 0.9, 0.99, 1.0])
WINDOW_HALF_GRADED = np.array([0.3, 0.6, 0.9, 0.99, 0.999, 0.9999, 1 - 1e-6, 1 - 1e-8, 1.0])
# the Gaussian transition of the partial moments: edges at x* + c sigma/alpha
TRANSITION = np.array([-9.0, -6.0, -4.0, -3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0,
                        8.0, 10.0, 12.0, 14.0, 17.0, 20.0, 24.0, 28.0, 33.0, _gauss1d.U_ZERO])


@nb.njit(cache=True)
def logp0(kind, par, x):
    lo, hi = par[2], par[3]
    if not (lo < x < hi):
        return -np.inf
    if kind == BETA:
        return (par[0] - 1.0) * math.log(x - lo) + (par[1] - 1.0) * math.log(hi - x) - par[4]
    w = 0.5 * (hi - lo)
    return -1.0 / (((hi - x) / w) * ((x - lo) / w)) - par[4]


@nb.njit(cache=True)
def dlogp0(kind, par, x):
    lo, hi = par[2], par[3]
    if kind == BETA:
        return (par[0] - 1.0) / (x - lo) - (par[1] - 1.0) / (hi - x)
    w2 = 0.25 * (hi - lo) ** 2
    q = (hi - x) * (x - lo) / w2                  # 1 - u^2
    dq = ((hi - x) - (x - lo)) / w2
    return dq / (q * q)


@nb.njit(cache=True)
def d2logp0(kind, par, x):
    lo, hi = par[2], par[3]
    if kind == BETA:
        return -(par[0] - 1.0) / (x - lo) ** 2 - (par[1] - 1.0) / (hi - x) ** 2
    w2 = 0.25 * (hi - lo) ** 2
    q = (hi - x) * (x - lo) / w2
    dq = ((hi - x) - (x - lo)) / w2
    return -2.0 / (w2 * q * q) - 2.0 * dq * dq / (q * q * q)


@nb.njit(cache=True)
def p0_kernel(kind, par, x, logp, score, dscore):
    for i in range(x.shape[0]):
        lp = logp0(kind, par, x[i])
        logp[i] = lp
        if lp == -np.inf:
            score[i] = 0.0
            dscore[i] = 0.0
        else:
            score[i] = dlogp0(kind, par, x[i])
            dscore[i] = d2logp0(kind, par, x[i])


@nb.njit(cache=True)
def log_integrand(kind, par, z, a, s, x):
    """log-integrand ``h(x) = log p_0(x) - ((z - alpha x)/sigma)^2 / 2``."""
    return logp0(kind, par, x) - 0.5 * ((z - a * x) / s) ** 2


@nb.njit(cache=True)
def window(kind, par, z, a, s):
    """``[xa, xb]``: where the concave h is within WINDOW_NATS of its maximum."""
    lo, hi = par[2], par[3]
    s2 = s * s
    # maximiser: Newton on h' (decreasing from +inf at lo to -inf at hi), bisection
    # whenever a Newton step leaves the bracket
    xl, xr = lo, hi
    x = min(max(z / a, lo + 0.25 * (hi - lo)), hi - 0.25 * (hi - lo))
    for _ in range(200):
        g = dlogp0(kind, par, x) + a * (z - a * x) / s2
        if g > 0.0:
            xl = x
        else:
            xr = x
        curv = d2logp0(kind, par, x) - a * a / s2
        xn = x - g / curv
        if not (xl < xn < xr):
            xn = 0.5 * (xl + xr)
        if abs(xn - x) <= 1e-9 / math.sqrt(-curv) or xn == x:
            x = xn
            break
        x = xn
    scale = 1.0 / math.sqrt(-(d2logp0(kind, par, x) - a * a / s2))
    level = log_integrand(kind, par, z, a, s, x) - WINDOW_NATS
    ends = np.empty(2)
    for side in range(2):
        sgn = -1.0 if side == 0 else 1.0
        inner, outer = x, x
        step = scale
        while True:   # walk out geometrically until h drops below the level
            outer = x + sgn * step
            if outer <= lo or outer >= hi:
                outer = lo if side == 0 else hi
                break
            if log_integrand(kind, par, z, a, s, outer) < level:
                break
            inner = outer
            step *= 2.0
        for _ in range(200):   # bisection between inner (above) and outer (below)
            xm = 0.5 * (inner + outer)
            if xm == inner or xm == outer or abs(outer - inner) <= 1e-12 * scale:
                break
            if log_integrand(kind, par, z, a, s, xm) < level:
                outer = xm
            else:
                inner = xm
        ends[side] = outer
    return ends[0], ends[1]


@nb.njit(cache=True)
def pt_point(kind, par, z, a, s, xi, logw, g):
    """``(log p_t, score, score_dz)`` at one point from the window quadrature."""
    xa, xb = window(kind, par, z, a, s)
    xc, hx = 0.5 * (xa + xb), 0.5 * (xb - xa)
    ec = (z - a * xc) / s
    he = a * hx / s                                     # e = ec - he * xi on the window
    top = -np.inf
    for j in range(xi.shape[0]):
        g[j] = logw[j] + logp0(kind, par, xc + hx * xi[j]) - 0.5 * (ec - he * xi[j]) ** 2
        if g[j] > top:
            top = g[j]
    tot = 0.0
    mean = 0.0
    m2 = 0.0
    for j in range(xi.shape[0]):
        e = math.exp(g[j] - top)
        if e == 0.0:
            continue
        tot += e
        delta = xi[j] - mean
        mean += e / tot * delta
        m2 += e * delta * (xi[j] - mean)
    logp = top + math.log(tot) + math.log(hx) - math.log(s) - 0.5 * math.log(2.0 * math.pi)
    return logp, -(ec - he * mean) / s, (he * he * m2 / tot - 1.0) / (s * s)


@nb.njit(cache=True, parallel=True)
def pt_parallel(kind, par, z, alpha, sigma, xi, logw, logp, score, dscore):
    for i in nb.prange(z.shape[0]):
        g = np.empty(xi.shape[0])
        logp[i], score[i], dscore[i] = pt_point(kind, par, z[i], alpha[i], sigma[i], xi, logw, g)


@nb.njit(cache=True)
def pt_serial(kind, par, z, alpha, sigma, xi, logw, logp, score, dscore):
    g = np.empty(xi.shape[0])
    for i in range(z.shape[0]):
        logp[i], score[i], dscore[i] = pt_point(kind, par, z[i], alpha[i], sigma[i], xi, logw, g)


@nb.njit(cache=True)
def pm_point(kind, par, z, alpha, sigma, base, xi, wxi, trans):
    """``M_r(z) = int p_0(x) F_r(z; alpha x, sigma) dx`` (F_r: Gaussian partial
    moments; sigma = 0 means t = 0, F_r = x^r 1{x < z}) on the base panels merged
    with panels following F's transition around ``x* = z/alpha``."""
    lo, hi = base[0], base[-1]
    if sigma == 0.0:
        edges = np.minimum(base, z)
    else:
        xst, sp = z / alpha, sigma / alpha
        edges = np.sort(np.concatenate((base, np.minimum(np.maximum(xst + sp * trans, lo), hi))))
    a0 = 0.0
    a1 = 0.0
    a2 = 0.0
    for p in range(edges.shape[0] - 1):
        left, right = edges[p], edges[p + 1]
        if not right > left:
            continue
        if sigma > 0.0 and (z - alpha * left) / sigma < -_gauss1d.U_ZERO:
            break
        mid, half = 0.5 * (left + right), 0.5 * (right - left)
        for j in range(xi.shape[0]):
            x = mid + half * xi[j]
            pw = half * wxi[j] * math.exp(logp0(kind, par, x))
            if sigma == 0.0:
                a0 += pw
                a1 += pw * x
                a2 += pw * x * x
            else:
                # nodes come in ascending x: see _gauss1d.sorted_sum_pm for the flag
                c0, c1, c2 = _gauss1d.gauss_pm(z, alpha * x, sigma, a0 < pw)
                a0 += pw * c0
                a1 += pw * c1
                a2 += pw * c2
    return a0, a1, a2


@nb.njit(cache=True, parallel=True)
def pm_parallel(kind, par, z, alpha, sigma, base, xi, wxi, trans, out):
    for i in nb.prange(z.shape[0]):
        out[0, i], out[1, i], out[2, i] = pm_point(kind, par, z[i], alpha, sigma, base, xi, wxi, trans)


@nb.njit(cache=True)
def pm_serial(kind, par, z, alpha, sigma, base, xi, wxi, trans, out):
    for i in range(z.shape[0]):
        out[0, i], out[1, i], out[2, i] = pm_point(kind, par, z[i], alpha, sigma, base, xi, wxi, trans)
