"""Embedded explicit Runge-Kutta pairs with step-size control (private).

One stacked system ``dy/du = F(u, y)``, ``y`` of shape (n, p), is integrated
with a *common* step for all n rows, so that every stage is one vectorised
evaluation (one score call for all points at one time). The caller supplies
the error norm: ``norm(y, y_new, err) -> float`` (accept the step when <= 1),
which lets the likelihood weight each row by its quadrature weight.

Pairs: Dormand-Prince 5(4) (``"dopri5"``, FSAL, 6 evaluations a step) and
Bogacki-Shampine 3(2) (``"bs3"``, FSAL, 3 a step; cheaper when the right-hand
side is only piecewise smooth, e.g. ReLU features, where high order buys
nothing). Local extrapolation: the higher-order solution is propagated.

Failure is reported, never hidden: ``status`` is 0 on success, 1 when the step
size underflowed (``h < min_step``: a stiff or non-smooth right-hand side),
2 when ``max_steps`` was exceeded, 3 when the solution became non-finite.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numba
import numpy as np


@dataclass(frozen=True)
class Tableau:
    name: str
    c: np.ndarray
    a: tuple
    b: np.ndarray
    e: np.ndarray          # b - b_hat: the embedded error weights
    order: int             # order of the propagated solution
    err_order: int         # order of the embedded one


DOPRI5 = Tableau(
    "dopri5",
    c=np.array([0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0]),
    a=((),
       (1 / 5,),
       (3 / 40, 9 / 40),
       (44 / 45, -56 / 15, 32 / 9),
       (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
       (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
       (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84)),
    b=np.array([35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84, 0.0]),
    e=np.array([71 / 57600, 0.0, -71 / 16695, 71 / 1920, -17253 / 339200, 22 / 525, -1 / 40]),
    order=5, err_order=4)

BS3 = Tableau(
    "bs3",
    c=np.array([0.0, 1 / 2, 3 / 4, 1.0]),
    a=((), (1 / 2,), (0.0, 3 / 4), (2 / 9, 1 / 3, 4 / 9)),
    b=np.array([2 / 9, 1 / 3, 4 / 9, 0.0]),
    e=np.array([2 / 9 - 7 / 24, 1 / 3 - 1 / 4, 4 / 9 - 1 / 3, -1 / 8]),
    order=3, err_order=2)

TABLEAUS = {"dopri5": DOPRI5, "bs3": BS3}


@dataclass
class ODEStats:
    status: int = 0
    message: str = "ok"
    nfev: int = 0
    n_steps: int = 0
    n_rejected: int = 0
    h_min: float = np.inf
    u_fail: float | None = None
    extra: dict = field(default_factory=dict)


@numba.njit(cache=True, nogil=True)
def _lincomb_kernel(beta, y, coef, ks, out):
    for i in range(out.shape[0]):
        acc = beta * y[i] if beta != 0.0 else 0.0
        for j in range(len(ks)):
            acc += coef[j] * ks[j][i]
        out[i] = acc


def _lincomb(xp, beta, y, coef, ks):
    """``beta y + sum_j coef[j] ks[j]`` (terms with ``coef[j] = 0`` skipped): one
    pass of a numba loop for NumPy arrays instead of two array passes a term."""
    terms = [(c, k) for c, k in zip(coef, ks) if c != 0.0]
    if xp is np and terms:
        out = np.empty_like(y)
        _lincomb_kernel(float(beta), y.reshape(-1), np.array([c for c, _ in terms]),
                        tuple(np.ascontiguousarray(k).reshape(-1) for _, k in terms), out.reshape(-1))
        return out
    out = y * beta if beta != 0.0 else xp.zeros_like(y)
    for c, k in terms:
        out += c * k
    return out


def integrate(rhs, y0, u0: float, u1: float, norm, *, method: str = "dopri5",
              h0: float | None = None, max_steps: int = 100_000, min_step: float | None = None,
              max_factor: float = 5.0, safety: float = 0.9, aux=None, xp=np):
    """Integrate ``dy/du = rhs(u, y)`` from ``u0`` to ``u1 > u0``; returns ``(y1, stats)``.

    ``aux(u, h, y, y_new, f_start, f_end) -> increment``, if given, is called for
    every accepted step (``f_*`` the right-hand side at the step's ends, for
    Hermite interpolation); the increments are summed into ``stats.extra["aux"]``.
    ``xp``: the array module of ``y`` (NumPy, or CuPy with ``y0`` on the device).
    """
    tab = TABLEAUS[method]
    span = u1 - u0
    if min_step is None:
        min_step = 1e-10 * span
    y = xp.array(y0, dtype=np.float64)
    stats = ODEStats()
    u = u0
    k = [None] * len(tab.c)
    with np.errstate(over="ignore", invalid="ignore"):
        k[0] = rhs(u, y)
    stats.nfev += 1
    if not bool(xp.all(xp.isfinite(k[0]))):
        stats.status, stats.message, stats.u_fail = 3, "right-hand side not finite at the start", u
        return y, stats
    h = min(h0 if h0 is not None else 1e-2 * span, span)
    expo = -1.0 / (tab.err_order + 1)
    last_rejected = False
    while u < u1:
        if stats.n_steps + stats.n_rejected >= max_steps:
            stats.status, stats.message, stats.u_fail = 2, f"more than max_steps={max_steps} steps", u
            return y, stats
        if h < min_step:
            stats.status, stats.u_fail = 1, u
            stats.message = f"step size underflow (h={h:.3g} < {min_step:.3g}) at u={u:.6g}"
            return y, stats
        h = min(h, u1 - u)
        with np.errstate(over="ignore", invalid="ignore"):
            for i in range(1, len(tab.c)):
                yi = _lincomb(xp, 1.0, y, [h * aij for aij in tab.a[i]], k)
                k[i] = rhs(u + tab.c[i] * h, yi)
            stats.nfev += len(tab.c) - 1
            y_new = yi                       # FSAL: the last stage is at the new point
            err = _lincomb(xp, 0.0, y, [h * ej for ej in tab.e], k)
            en = norm(y, y_new, err)
        if not np.isfinite(en):
            en = np.inf
        if en <= 1.0:
            if aux is not None:
                inc = aux(u, h, y, y_new, k[0], k[-1])
                total = stats.extra.get("aux")
                stats.extra["aux"] = inc if total is None else total + inc
            u = u + h if u + h < u1 else u1
            y = y_new
            k[0] = k[-1]
            stats.n_steps += 1
            stats.h_min = min(stats.h_min, h)
            fac = max_factor if en == 0 else min(max_factor, safety * en ** expo)
            if last_rejected:
                fac = min(fac, 1.0)
            h *= max(fac, 0.2)
            last_rejected = False
        else:
            stats.n_rejected += 1
            h *= max(0.1, safety * en ** expo) if np.isfinite(en) else 0.1
            last_rejected = True
    if not bool(xp.all(xp.isfinite(y))):
        stats.status, stats.message, stats.u_fail = 3, "solution not finite", u
    return y, stats
