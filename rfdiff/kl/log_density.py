"""Exact log-likelihood of the probability-flow ODE.

For a forward process ``dx = f(t) x dt + g(t) dW`` and a score ``s`` the
probability-flow ODE has velocity

    v(x, t) = f(t) x - (g2(t)/2) s(x, t),    div v = d f(t) - (g2(t)/2) div s,

and the generated law (the ODE run from ``pi`` at ``T`` down to ``t_min``)
has, at any point x, the exact log-density

    log p_gen(x) = log pi(X_T) + int_{t_min}^{T} div v(X_t, t) dt,

with ``X_t`` the forward solution of ``dX/dt = v`` from ``X_{t_min} = x``. For the
OU process (f = -1, g2 = 2) this is ``log pi(X_T) - int (1 + ds/dx) dt`` of
shared/SPEC.md §6. The ODE is integrated in ``u = log t`` (the score changes
on a log-time scale near ``t_min``) by an embedded Runge-Kutta pair
(:mod:`rfdiff.numerics.rk`) for all points at once: one score call per stage.

Random-feature flows: :func:`rfdiff.kl.ode.kl_ode_path` evaluates many training times at
once, every (tau, node) pair in one system whose stages compute the features
once (for 1D ReLU features, sorted kinks and prefix sums; see
:mod:`rfdiff.model.batch`). For 1D ReLU features the divergence is piecewise
constant in x, which a Runge-Kutta method integrates only to first order;
there only X is integrated by the Runge-Kutta pair and the log-density
increment of every step is exact up to the kink-crossing times
(:mod:`rfdiff.kl._relu_flow`).

The step's local error is absolute up to :data:`RELATIVE_NATS` of
``|log pi(X)|`` and relative beyond it.
"""
from __future__ import annotations

import numba
import numpy as np

from .. import _validate as v
from ..model.batch import ScoreBatch, make_batch
from ..numerics.rk import _lincomb, integrate
from .nodes import as_process
from .results import ConvergenceError
from ..process import Process

__all__ = ["ode_log_density", "log_density_ode", "generated_density", "RELATIVE_NATS"]

#: where ``|log pi(X)|`` exceeds this many nats, the ODE's local error is
#: controlled relative to it (:func:`_error_norm`): a generated law that puts
#: no mass where the data are (a memorising law, trajectories thrown far into
#: the prior's tail, log p_gen ~ -1e8) is then not solved to 1e-10 relative
RELATIVE_NATS = 100.0


def _flow_system(batch: ScoreBatch, process: Process, d: int):
    """``dy/du`` of the stacked (x, ell) system in u = log t."""
    def rhs(u, y):
        t = float(np.exp(u))
        x = y[..., :d]
        s, div = batch(x, t, dz=True)
        f, g2 = float(process.f(t)), float(process.g2(t))
        out = np.empty_like(y)
        out[..., :d] = t * (f * x - 0.5 * g2 * s)
        out[..., d] = t * (d * f - 0.5 * g2 * div)
        return out
    return rhs


def ode_log_density(batch: ScoreBatch, x, process: Process, t_min: float, T: float, *, atol: float,
                    weights=None, method: str = "dopri5", max_steps: int = 200_000, node_atol=None,
                    exact_kinks: bool = True):
    """``log p_gen(x)`` for every score of ``batch`` at the points ``x`` (k, d).

    Error norm per point: ``|err ell| + (1 + |x|/prior_var) |err x|`` (the
    error of ``log pi(X_T) + ell``). With ``weights`` (k,), the step is accepted
    when the weighted mean of that error (the error of a quadrature over the
    points) is ``<= atol`` for every score and the largest one is
    ``<= node_atol`` (default ``sqrt(atol)``); without, when the largest is ``<= atol``.
    For 1D ReLU random features (``exact_kinks``) only X is integrated by the
    Runge-Kutta pair and ``ell`` step by step with exact kink crossings
    (:mod:`rfdiff.kl._relu_flow`). Returns ``(logp (B, k), stats)``.
    """
    x = np.asarray(x, dtype=np.float64)
    k, d = x.shape
    order = np.argsort(x[:, 0], kind="stable") if d == 1 else np.arange(k)
    xs = x[order]
    B = batch.n
    kinks = exact_kinks and batch.piecewise_linear
    p = d if kinks else d + 1
    y0 = np.zeros((B, k, p))
    y0[..., :d] = xs[None]
    pv = float(process.prior_var)
    if weights is None:
        w = None
        cap = atol
    else:
        w = np.asarray(weights, dtype=np.float64)[order]
        cap = float(np.sqrt(atol)) if node_atol is None else float(node_atol)

    def norm(y, y_new, err):
        return _error_norm(y_new, err, d, pv, not kinks, np.empty(0) if w is None else w, cap, atol)

    if kinks:
        from ._relu_flow import make_aux
        rhs, aux = _velocity_system(batch, process, d), make_aux(batch, process, d)
    else:
        rhs, aux = _flow_system(batch, process, d), None
    y, stats = integrate(rhs, y0, float(np.log(t_min)), float(np.log(T)), norm, method=method,
                         max_steps=max_steps, aux=aux)
    ell = stats.extra.pop("aux", np.zeros((B, k))) if kinks else y[..., d]
    logp = np.empty((B, k))
    with np.errstate(over="ignore", invalid="ignore"):
        logp[:, order] = process.prior_logpdf(y[..., :d].reshape(-1, d)).reshape(B, k) + ell
    return logp, stats


def _velocity_system(batch: ScoreBatch, process: Process, d: int):
    """``dX/du = t v(X, t)`` alone."""
    def rhs(u, y):
        t = float(np.exp(u))
        s, _ = batch(y, t, dz=False)
        f, g2 = float(process.f(t)), float(process.g2(t))
        return _lincomb(np, t * f, y, [-0.5 * g2 * t], [s])
    return rhs


@numba.njit(cache=True, nogil=True)
def _error_norm(y_new, err, d, pv, with_ell, w, cap, atol):
    """The step's error norm (see :func:`ode_log_density`): ``max e / cap`` over
    points and, with weights ``w`` (empty: none), ``max_b sum_i w_i e_bi / atol``,
    ``e = (1 + |x_new|_1 / pv) |err_x|_1 (+ |err_ell|)``, divided by
    ``|x_new|_1^2 / (2 pv RELATIVE_NATS)`` where that exceeds 1; NaN gives inf."""
    B, k, _ = err.shape
    largest = 0.0
    weighted = 0.0
    total = 0.0                  # NaN when any e is (every e >= 0: no inf - inf)
    for b in range(B):
        acc = 0.0
        for i in range(k):
            xn = 0.0
            ex = 0.0
            for c in range(d):
                xn += abs(y_new[b, i, c])
                ex += abs(err[b, i, c])
            e = (1.0 + xn / pv) * ex
            if with_ell:
                e += abs(err[b, i, d])
            # relative beyond RELATIVE_NATS: a trajectory that runs far into the
            # prior's tail (log pi(X) ~ -x^2 / 2 pv) is held to a relative error
            scale = 0.5 * xn * xn / pv / RELATIVE_NATS
            if scale > 1.0:
                e /= scale
            largest = max(largest, e)
            total += e
            if w.size:
                acc += e * w[i]
        weighted = max(weighted, acc)
    if total != total:
        return np.inf
    return max(largest / cap, weighted / atol)


# -- KL of a batch of scores ------------------------------------------------------
def _resolve_method(method, batch):
    v.choice("method", method, ("auto", "dopri5", "bs3"))
    if method == "auto":
        return "bs3" if batch.piecewise_linear else "dopri5"
    return method


def log_density_ode(score, x, process=None, t_min: float = 1e-3, T: float = 8.0, *, atol: float = 1e-9,
                    method: str = "auto", max_steps: int = 200_000) -> np.ndarray:
    """``log p_gen(x)`` of the probability-flow ODE at points x (k, d), each to
    about ``atol`` (local error control per point). Raises ConvergenceError on failure."""
    batch = make_batch(score)
    process = as_process(process)
    t_min, T = v.window(t_min, T)
    x = v.points("x", x, batch.dim)
    logp, st = ode_log_density(batch, x, process, t_min, T, atol=v.positive("atol", atol),
                               method=_resolve_method(method, batch), max_steps=max_steps)
    if st.status != 0 or not np.all(np.isfinite(logp)):
        raise ConvergenceError(f"probability-flow ODE failed: {st.message}")
    return logp[0]


def generated_density(score, x, process=None, t_min: float = 1e-3, T: float = 8.0, kind: str = "ode",
                      tol: float = 1e-8, **kw) -> np.ndarray:
    """The generated density ``p_gen`` at points ``x`` (for plots).

    ``kind="ode"``: exact probability-flow density (:func:`log_density_ode`);
    ``kind="sde"``: the reverse-SDE density from the Fokker-Planck solver
    (1D), interpolated to ``x``.
    """
    v.choice("kind", kind, ("ode", "sde"))
    if kind == "ode":
        return np.exp(log_density_ode(score, x, process, t_min, T, atol=tol, **kw))
    from .fokker_planck import sde_density
    return sde_density(score, x, process, t_min, T, tol=tol, **kw)
