"""The Girsanov (KL chain-rule) bound on the reverse-SDE sampler's error.

For the reverse SDE with score s started from ``pi`` at T (Chen et al. 2023;
the chain rule of KL on path space plus data processing),

    KL(p_{t_min} || p_gen^SDE) <= KL(p_T || pi) + 1/2 int_{t_min}^{T} g2(t) E_{p_t}|s - grad log p_t|^2 dt,

which for the OU process (g2 = 2) is ``KL(p_T || pi) + int E_{p_t}|s - grad log p_t|^2 dt``:
the *plain* time integral, not the time average the training loss uses. No
such bound holds for the probability-flow ODE.

Quadrature: Gauss-Legendre in ``u = log t`` with n and 2n nodes (n doubled
until they agree to ``tol/2``); ``E_{p_t}`` by the target's expectation nodes at
orders o and 2o, or, for 1D ReLU random features, by Gauss-Legendre panels
broken at the features' kinks (o and 2o uniform panels plus the kinks: the
integrand is smooth between kinks, where Gauss-Hermite converges slowly);
``KL(p_T || pi)`` by the target's nodes at T. The reported error is the sum of
the three differences (conservative).
"""
from __future__ import annotations

import numpy as np

from .. import _validate as v
from ..model.batch import ScoreBatch, make_batch
from .results import BoundResult, Status, finish
from .nodes import check_common, flow_defaults
from ..numerics.quadrature import LogTimeIntegral, composite_gauss_legendre
from ..numerics.refine import Budget, refine

__all__ = ["girsanov_bound", "girsanov_bound_path", "score_term_path", "kl_prior"]


def kl_prior(target, process, T: float, order: int = 32):
    """``KL(p_T || pi)`` by the target's nodes at T: ``(value, |Q_2o - Q_o|)``."""
    vals = []
    for o in (order, 2 * order):
        x, w = target.expectation_nodes(T, process, order=o)
        lp = np.asarray(target.log_pt(x, T, process)) - process.prior_logpdf(x)
        vals.append(float(lp @ w))
    return vals[1], abs(vals[1] - vals[0])


def _score_term_at(batch: ScoreBatch, target, process, t: float, order: int, kinks: bool = False):
    """``E_{p_t}|s_b - grad log p_t|^2`` for every score b: shape (B,).

    ``kinks`` (1D ReLU random features): composite 4-point Gauss-Legendre on
    ``order`` uniform panels over the law's mass, with the features' kinks
    ``z_j(t)`` as extra breakpoints -- the integrand is smooth between them, so
    this converges fast where Gauss-Hermite (``kinks=False``, the target's
    nodes of this order) stalls on the kinks.
    """
    if kinks:
        x, w = _kink_rule(batch, target, process, t, order)
    else:
        x, w = target.expectation_nodes(t, process, order=order)
        x = np.asarray(x, dtype=np.float64)
    s, _ = batch(x, t, dz=False)
    ref = np.asarray(target.score(x, t, process), dtype=np.float64)
    diff = s - ref[None]
    return np.einsum("bkd,bkd,k->b", diff, diff, w)


def _kink_rule(batch, target, process, t, n_panels):
    xn, _ = target.expectation_nodes(t, process, order=64)
    lo, hi = float(xn.min()), float(xn.max())
    pad = 0.05 * (hi - lo)
    lo, hi = lo - pad, hi + pad
    z = batch.kinks(t)
    edges = np.unique(np.concatenate([np.linspace(lo, hi, n_panels + 1), z[(z > lo) & (z < hi)]]))
    x, wq = composite_gauss_legendre(edges, 4)
    with np.errstate(under="ignore"):
        p = np.exp(np.asarray(target.log_pt(x[:, None], t, process), dtype=np.float64))
    wt = wq * p
    return x[:, None], wt / wt.sum()


def _bound_batch(batch, target, process, t_min, T, tol, n_time, order, max_n_time, max_order=320,
                 quadrature="auto", with_prior=True, budget=None):
    """The bound's terms for every score of ``batch``: ``(score_term, its error, kl_prior,
    its error, status, message, work)`` (no raising)."""
    kinks = quadrature == "kinks" or (quadrature == "auto" and batch.piecewise_linear)
    if kinks and not batch.piecewise_linear:
        raise ValueError("quadrature='kinks' needs a 1D ReLU random-feature score")
    if kinks:
        order, max_order = max(int(order), 32), max(max_order, 64 * 16)
    kp, kp_err = kl_prior(target, process, T, 32 if kinks else order) if with_prior else (0.0, 0.0)
    prob = LogTimeIntegral(lambda t, o: _score_term_at(batch, target, process, t, o, kinks),
                           lambda t: 0.5 * process.g2(t), t_min, T, n_time, order, max_n_time, max_order,
                           tol, extra_error=kp_err)
    out = refine(prob, batch.n, tol, budget=budget)
    conv = out.converged
    msg = "converged" if np.all(conv) else "; ".join(sorted(set(m for m, c in zip(out.messages, conv) if not c)))
    work = dict(prob.summary(), seconds=out.seconds)
    return out.value, out.error - kp_err, kp, kp_err, out.status, msg, work


def _result(st, st_err, kp, kp_err, status, msg, work, tol, scalar):
    pick = (lambda a: float(a[0])) if scalar else (lambda a: a)  # noqa: E731
    conv = status == Status.CONVERGED
    return BoundResult(pick(kp + st), pick(st_err + kp_err), kp, kp_err, pick(st), pick(st_err),
                       bool(conv[0]) if scalar else conv, msg, tol, work,
                       Status(int(status[0])) if scalar else status)


def _quadrature(quadrature):
    return v.choice("quadrature", quadrature, ("auto", "nodes", "kinks"))


def girsanov_bound(score, target, process=None, t_min: float = 1e-3, T: float = 8.0, tol: float = 1e-6, *,
                   n_time: int = 16, order: int = 20, max_n_time: int = 2048, quadrature: str = "auto",
                   max_seconds: float | None = None, strict: bool = True) -> BoundResult:
    """``KL(p_T || pi) + 1/2 int g2 E_{p_t}|s - grad log p_t|^2 dt`` with its quadrature error.

    An upper bound on ``KL(p_{t_min} || p_gen^SDE)`` (the ``kl_tmin`` of
    :func:`rfdiff.kl_sde`). Raises :class:`ConvergenceError` when ``tol`` is not
    met within ``max_n_time`` time nodes, order 320 and ``max_seconds``
    (``strict=False``: returned with ``converged=False`` and ``status`` saying
    why). ``quadrature``: ``"nodes"`` (the target's nodes, ``order`` doubled up
    to 320), ``"kinks"`` (1D ReLU random features: Gauss-Legendre panels broken
    at the kinks) or ``"auto"`` (``kinks`` where it applies).
    """
    batch = make_batch(score)
    _quadrature(quadrature)
    process, t_min, T, tol = check_common(target, process, t_min, T, tol, batch.dim)
    res = _bound_batch(batch, target, process, t_min, T, tol, v.positive_int("n_time", n_time),
                       v.positive_int("order", order), max_n_time, quadrature=quadrature,
                       budget=Budget(max_seconds=max_seconds))
    return finish(_result(*res, tol, True), strict)


def girsanov_bound_path(flow, taus, target, process=None, t_min=None, T=None, tol: float = 1e-3, *,
                        n_time: int = 16, order: int = 20, max_n_time: int = 2048,
                        quadrature: str = "auto", max_seconds: float | None = None,
                        strict: bool = True) -> BoundResult:
    """:func:`girsanov_bound` for a random-feature flow at many taus (arrays over tau)."""
    return _path(flow, taus, target, process, t_min, T, tol, n_time, order, max_n_time, quadrature,
                 max_seconds, strict, with_prior=True)


def score_term_path(flow, taus, target, process=None, t_min=None, T=None, tol: float = 1e-3, *,
                    n_time: int = 16, order: int = 20, max_n_time: int = 2048,
                    quadrature: str = "auto", max_seconds: float | None = None,
                    strict: bool = True) -> BoundResult:
    """The score term ``1/2 int g2 E_{p_t}|s - grad log p_t|^2 dt`` of
    :func:`girsanov_bound_path` alone (``kl_prior = 0``), for any target with
    a score, e.g. the training set (``Empirical``: the distance to the
    empirical optimal score under the training law)."""
    return _path(flow, taus, target, process, t_min, T, tol, n_time, order, max_n_time, quadrature,
                 max_seconds, strict, with_prior=False)


def _path(flow, taus, target, process, t_min, T, tol, n_time, order, max_n_time, quadrature, max_seconds,
          strict, with_prior):
    process, t_min, T = flow_defaults(flow, process, t_min, T)
    process, t_min, T, tol = check_common(target, process, t_min, T, tol, flow.model.dim)
    taus = np.atleast_1d(np.asarray(taus, dtype=np.float64))
    batch = make_batch(model=flow.model, A=flow.params(taus))
    res = _bound_batch(batch, target, process, t_min, T, tol, v.positive_int("n_time", n_time),
                       v.positive_int("order", order), max_n_time, quadrature=_quadrature(quadrature),
                       with_prior=with_prior, budget=Budget(max_seconds=max_seconds))
    return finish(_result(*res, tol, False), strict)
