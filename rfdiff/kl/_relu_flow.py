"""Probability-flow log-density for 1D ReLU random features, kinks integrated exactly (private).

With ReLU features the score is piecewise linear in z, so ``div v = d f -
(g2/2) ds/dz`` is piecewise *constant*: ``ds/dz = sum_j c_j 1[W_j z + b_j(t) >= 0]``
with ``c_j = A_j W_j / m``. A Runge-Kutta method integrates such a step
function only to first order (every kink crossing costs ``O(c_j h)``), which
makes tight tolerances very expensive. Here only ``X`` is integrated by the
Runge-Kutta pair (its velocity is continuous); the log-density increment of
an accepted step ``[t_a, t_b]`` is then computed exactly up to the crossing
times:

    int_{t_a}^{t_b} div v dt = d log(alpha_b / alpha_a)
                             - sum_j c_j int_{t: j active} g2(t)/2 dt,

a feature active at both ends contributing ``c_j G_ab`` (``G_ab = int g2/2``,
trapezoid in t: exact for OU and the linear VP schedule) and one that flips
contributing the part before or after its crossing time ``t*``. ``t*`` solves
``W_j X(theta) + b_j(theta) = 0`` with ``X`` the cubic Hermite interpolant of
the step (in ``u = log t``) and ``b_j`` quadratic through the step's start,
middle and end (Newton from the linear root). Features are found from the
kinks ``z_j = -b_j/W_j`` sorted at ``t_a``: those within the trajectory's range
widened by the largest kink motion of the slowly moving bulk; the few fast
movers (small ``|W_j|``, far-away kinks) are checked for every trajectory.
"""
from __future__ import annotations

import math

import numba
import numpy as np

from ..model.batch import PARALLEL_MIN_WORK, KinkOrder, ScoreBatch, count_lt
from .._numba import twins
from ..numerics.rk import _lincomb


@numba.njit(inline="always", cache=True)
def _bias_quadratic(ba, bm, bb):
    """``(q1, q2)`` of the bias over a step, ``b(th) = ba + q1 th + q2 th^2``, the
    quadratic through ``(0, ba)``, ``(1/2, bm)``, ``(1, bb)``."""
    return 4.0 * bm - 3.0 * ba - bb, 2.0 * (ba + bb) - 4.0 * bm


@numba.njit(inline="always", cache=True)
def _tail(ts, ta, tb, g2ab, slope):
    """``int_{ts}^{tb} g2/2 dt`` with g2 linear over the step: ``g2(t) = g2(ta) +
    slope (t - ta)``, ``g2ab = g2(ta) + g2(tb)`` (trapezoid: exact)."""
    return 0.25 * (tb - ts) * (g2ab + slope * (ts - ta))


def _kernel_impl(xa, xb, va, vb, h, ua, ta, tb, g2a, g2b, cw, w, ba, bm, bb,
                 zs, js, ext, fast, out):
    """``out[b, i] = sum over features flipping in the step of sign * c_j G(t*, t_b)``
    (the correction to ``s'(X_a) G_ab``)."""
    B, k = xa.shape
    nz = zs.shape[0]
    nf = fast.shape[0]
    dt = tb - ta
    for b in numba.prange(B):
        for i in range(k):
            x0 = xa[b, i]
            x1 = xb[b, i]
            lo = min(x0, x1)
            hi = max(x0, x1)
            pad = 0.25 * (hi - lo) + ext
            acc = 0.0
            r = count_lt(zs, lo - pad)               # first kink >= lo - pad
            while r < nz and zs[r] <= hi + pad:
                j = js[r]
                r += 1
                acc += _flip(j, b, x0, x1, va[b, i], vb[b, i], h, ua, ta, dt, tb, g2a, g2b, cw, w, ba, bm, bb)
            for q in range(nf):
                j = fast[q]
                acc += _flip(j, b, x0, x1, va[b, i], vb[b, i], h, ua, ta, dt, tb, g2a, g2b, cw, w, ba, bm, bb)
            out[b, i] = acc


@numba.njit(inline="always", cache=True)
def _flip(j, b, x0, x1, v0, v1, h, ua, ta, dt, tb, g2a, g2b, cw, w, ba, bm, bb):
    wj = w[j]
    pa = wj * x0 + ba[j]
    pb = wj * x1 + bb[j]
    act_a = pa >= 0.0
    if act_a == (pb >= 0.0):
        return 0.0
    q1, q2 = _bias_quadratic(ba[j], bm[j], bb[j])
    th = _newton_theta(x0, x1, v0, v1, h, wj, ba[j], bb[j], q1, q2)
    tail = _tail(math.exp(ua + th * h), ta, tb, g2a + g2b, (g2b - g2a) / dt)
    return -cw[b, j] * tail if act_a else cw[b, j] * tail


_flip_serial, _flip_parallel = twins(_kernel_impl)


#: steps up to this length in u = log t evaluate exp(theta h) by its Taylor
#: polynomial (degree 11: relative error < (1/8)^12 / 12! ~ 3e-20), which
#: lets the crossing loop vectorise; longer steps call exp
_EXP_POLY_MAX_H = 0.125


@numba.njit(inline="always", cache=True)
def _newton_theta(x0, x1, v0, v1, h, wj, baj, bbj, q1, q2):
    """Crossing parameter theta of ``w X(theta) + b(theta) = 0``: the linear root, then
    one Newton step on the cubic Hermite ``X`` and the quadratic ``b = ba + q1 th + q2 th^2``
    (kept when it stays in [0, 1]; a select, no branch, so loops over it vectorise)."""
    pa = wj * x0 + baj
    pb = wj * x1 + bbj
    th = pa / (pa - pb)
    hv0 = h * v0
    hv1 = h * v1
    t2 = th * th
    t3 = t2 * th
    xh = (2 * t3 - 3 * t2 + 1) * x0 + (t3 - 2 * t2 + th) * hv0 + (3 * t2 - 2 * t3) * x1 + (t3 - t2) * hv1
    dxh = (6 * t2 - 6 * th) * (x0 - x1) + (3 * t2 - 4 * th + 1) * hv0 + (3 * t2 - 2 * th) * hv1
    g = wj * xh + baj + th * (q1 + th * q2)
    dg = wj * dxh + q1 + 2.0 * th * q2
    tn = th - g / dg                      # dg = 0 gives inf/nan: the comparisons reject it
    return tn if (tn >= 0.0) & (tn <= 1.0) else th


@numba.njit(inline="always", cache=True)
def _exp_taylor(x):
    """exp(x) for |x| <= 1/8 (degree-11 Taylor polynomial, Horner)."""
    r = 1.0 + x * (1.0 / 11.0)
    r = 1.0 + x * r * (1.0 / 10.0)
    r = 1.0 + x * r * (1.0 / 9.0)
    r = 1.0 + x * r * (1.0 / 8.0)
    r = 1.0 + x * r * (1.0 / 7.0)
    r = 1.0 + x * r * (1.0 / 6.0)
    r = 1.0 + x * r * (1.0 / 5.0)
    r = 1.0 + x * r * (1.0 / 4.0)
    r = 1.0 + x * r * (1.0 / 3.0)
    r = 1.0 + x * r * (1.0 / 2.0)
    return 1.0 + x * r


#: crossings are gathered into blocks of this many (contiguous arrays), so that
#: the arithmetic runs as one long vectorisable loop instead of many short ones
_BLOCK = 256


@numba.njit(inline="always", cache=True, error_model="numpy")
def _flush(n, blk, idx, out, h, ua, ta, tb, g2ab, slope):
    """``out[idx[p]] += c int_{t*}^{t_b} g2/2 dt`` for the ``n`` crossings held in
    ``blk`` (rows: x0, x1, v0, v1, w, ba, bb, q1, q2, c, scratch); ``t* = t_a
    exp(theta h)``, g2 linear in t over the step."""
    x0, x1, v0, v1, w, ba, bb, q1, q2, c, tail = (blk[0], blk[1], blk[2], blk[3], blk[4], blk[5], blk[6],
                                                  blk[7], blk[8], blk[9], blk[10])
    if h <= _EXP_POLY_MAX_H:
        for p in range(n):
            th = _newton_theta(x0[p], x1[p], v0[p], v1[p], h, w[p], ba[p], bb[p], q1[p], q2[p])
            tail[p] = c[p] * _tail(ta * _exp_taylor(th * h), ta, tb, g2ab, slope)
    else:
        for p in range(n):
            th = _newton_theta(x0[p], x1[p], v0[p], v1[p], h, w[p], ba[p], bb[p], q1[p], q2[p])
            tail[p] = c[p] * _tail(math.exp(ua + th * h), ta, tb, g2ab, slope)
    for p in range(n):
        out[idx[p]] += tail[p]


def _merge_impl(xa, xb, va, vb, h, ua, ta, tb, g2a, g2b, cw, w, ba, bm, bb,
                feat, ord_a, z_a, ord_b, z_b, out):
    """The same correction when every row of ``xa`` and ``xb`` is ascending (a 1D
    flow keeps the order of its trajectories): the trajectories where feature j
    flips are exactly those between its kink's insertion points in ``xa`` and in
    ``xb``, found by one merge walk per score; no candidate is wasted.

    ``feat``: features with ``W != 0``; ``ord_a``/``z_a``: positions into ``feat``
    sorted by the kink at t_a, and those kinks (same at t_b).
    """
    B, k = xa.shape
    nf = feat.shape[0]
    slope = (g2b - g2a) / (tb - ta)              # g2 is linear in t over the step
    g2ab = g2a + g2b
    for b in numba.prange(B):
        outb = out[b]
        for i in range(k):
            outb[i] = 0.0
        pos_a = np.empty(nf, dtype=np.int64)
        pos_b = np.empty(nf, dtype=np.int64)
        i = 0
        for r in range(nf):
            while i < k and xa[b, i] < z_a[r]:
                i += 1
            pos_a[ord_a[r]] = i
        i = 0
        for r in range(nf):
            while i < k and xb[b, i] < z_b[r]:
                i += 1
            pos_b[ord_b[r]] = i
        blk = np.empty((11, _BLOCK))
        idx = np.empty(_BLOCK, dtype=np.int64)
        n = 0
        for q in range(nf):
            lo = pos_a[q]
            hi = pos_b[q]
            if lo == hi:
                continue
            j = feat[q]
            wj = w[j]
            # trajectories [lo, hi) flip: off (sign -1) when they were active at t_a,
            # i.e. right of the kink for W > 0, left of it for W < 0
            sgn = -1.0 if (lo < hi) == (wj > 0.0) else 1.0
            if lo > hi:
                lo, hi = hi, lo
            baj = ba[j]
            bbj = bb[j]
            c = sgn * cw[b, j]
            q1, q2 = _bias_quadratic(baj, bm[j], bbj)
            for ii in range(lo, hi):
                blk[0, n] = xa[b, ii]
                blk[1, n] = xb[b, ii]
                blk[2, n] = va[b, ii]
                blk[3, n] = vb[b, ii]
                blk[4, n] = wj
                blk[5, n] = baj
                blk[6, n] = bbj
                blk[7, n] = q1
                blk[8, n] = q2
                blk[9, n] = c
                idx[n] = ii
                n += 1
                if n == _BLOCK:
                    _flush(n, blk, idx, outb, h, ua, ta, tb, g2ab, slope)
                    n = 0
        _flush(n, blk, idx, outb, h, ua, ta, tb, g2ab, slope)


# numpy error model: divisions without zero checks (the Newton step guards its own)
_merge_serial, _merge_parallel = twins(_merge_impl, error_model="numpy")


def make_aux(batch: ScoreBatch, process, d: int = 1):
    """The ``aux`` callback of :func:`rfdiff.numerics.rk.integrate` for the (X only)
    probability-flow system of a 1D piecewise-linear batch (its
    :class:`~rfdiff.model.batch.Pieces`): returns the exact log-density
    increment of each accepted step, shape (B, k)."""
    first = batch.pieces(1.0)
    w, cw = first.w, first.jump
    nonzero = np.flatnonzero(w != 0)
    zero = np.flatnonzero(w == 0)
    orders = KinkOrder()

    def aux(u, h, y, y_new, f_start, f_end):
        ta, tb = math.exp(u), math.exp(u + h)
        ba, bm, bb = (batch.pieces(t).bias for t in (ta, math.exp(u + 0.5 * h), tb))
        g2a, g2b = float(process.g2(ta)), float(process.g2(tb))
        xa = np.ascontiguousarray(y[..., 0])
        xb = np.ascontiguousarray(y_new[..., 0])
        va = np.ascontiguousarray(f_start[..., 0])
        vb = np.ascontiguousarray(f_end[..., 0])
        za = -ba[nonzero] / w[nonzero]
        zb = -bb[nonzero] / w[nonzero]
        par = xa.shape[0] > 1 and xa.shape[0] * (xa.shape[1] + nonzero.size) >= PARALLEL_MIN_WORK
        ordered = _ascending_rows(xa) & _ascending_rows(xb)
        every = bool(np.all(ordered))
        corr = np.empty_like(xa) if every else np.zeros_like(xa)
        if np.any(ordered):
            oa = orders.argsort("a", za).copy()
            ob = orders.argsort("a", zb)
            rows = np.flatnonzero(ordered)
            sub = (slice(None),) if every else (rows,)
            c = corr if every else np.zeros((rows.size, xa.shape[1]))
            (_merge_parallel if par else _merge_serial)(
                xa[sub], xb[sub], va[sub], vb[sub], h, u, ta, tb, g2a, g2b, cw[sub], w, ba, bm, bb,
                nonzero, oa, np.ascontiguousarray(za[oa]), ob, np.ascontiguousarray(zb[ob]), c)
            if not every:
                corr[rows] = c
        if not every:
            rows = np.flatnonzero(~ordered)
            motion = np.abs(zb - za)
            ext = float(np.quantile(motion, 0.98)) if motion.size else 0.0
            slow = motion <= ext
            order = np.argsort(za[slow], kind="stable")
            xlo, xhi = float(min(xa.min(), xb.min())), float(max(xa.max(), xb.max()))
            far = (np.minimum(za, zb) > xhi + ext) | (np.maximum(za, zb) < xlo - ext)
            fast = np.ascontiguousarray(nonzero[~slow & ~far], dtype=np.int64)
            c = np.zeros((rows.size, xa.shape[1]))
            (_flip_parallel if par else _flip_serial)(
                xa[rows], xb[rows], va[rows], vb[rows], h, u, ta, tb, g2a, g2b, cw[rows], w, ba, bm, bb,
                np.ascontiguousarray(za[slow][order]), np.ascontiguousarray(nonzero[slow][order]), ext, fast, c)
            corr[rows] = c
        for j in zero:                     # W_j = 0: the feature flips for every point at once
            if (ba[j] >= 0) != (bb[j] >= 0):
                th = _bias_root(ba[j], bm[j], bb[j])
                tail = _tail(math.exp(u + th * h), ta, tb, g2a + g2b, (g2b - g2a) / (tb - ta))
                corr += (-1.0 if ba[j] >= 0 else 1.0) * cw[:, j][:, None] * tail
        _, sa = batch(y[..., :d], ta, dz=True)            # s'(X_a, t_a) = sum of active c_j
        G = 0.25 * (tb - ta) * (g2a + g2b)
        dlog_alpha = float(process.log_alpha(tb) - process.log_alpha(ta))
        inc = _lincomb(np, -G, sa, [-1.0], [corr])
        inc += d * dlog_alpha
        return inc
    return aux


@numba.njit(cache=True, nogil=True)
def _ascending_rows(x):
    """Whether each row of ``x`` (B, k) is ascending (NaN: not)."""
    out = np.ones(x.shape[0], dtype=np.bool_)
    for b in range(x.shape[0]):
        for i in range(1, x.shape[1]):
            if not x[b, i] >= x[b, i - 1]:
                out[b] = False
                break
    return out


def _bias_root(ba, bm, bb):
    """Root in [0, 1] of the quadratic through (0, ba), (1/2, bm), (1, bb)."""
    th = ba / (ba - bb)
    for _ in range(20):
        g = ba * (1 - th) * (1 - 2 * th) + 4 * bm * th * (1 - th) + bb * th * (2 * th - 1)
        dg = ba * (4 * th - 3) + 4 * bm * (1 - 2 * th) + bb * (4 * th - 1)
        if dg == 0:
            break
        new = min(max(th - g / dg, 0.0), 1.0)
        if abs(new - th) < 1e-15:
            break
        th = new
    return th
