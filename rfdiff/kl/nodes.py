"""Pieces shared by the KL solvers (private): argument checks, the quadrature
rules of the expectations, batch subsets and the assembly of results."""
from __future__ import annotations

import numpy as np

from .. import _validate as v
from .results import KLResult, Status, clip_negative
from ..process import OU, Process

#: largest Gauss-Hermite order used (numpy's rule loses its weights beyond ~400)
MAX_ORDER = 256

#: nodes whose weight is below NEGLIGIBLE / (number of nodes) of the total (on
#: the grid: where the law's density times the grid's length is below it) are
#: dropped (grid: weight 0, no ODE solve): together their part of a KL is
#: below NEGLIGIBLE x max |log p - log p_gen|. About half the nodes: the grid's
#: window and high-order Gauss-Hermite rules reach far into the tails
#: (15 standard deviations, where p ~ 1e-50).
NEGLIGIBLE = 1e-16


def as_process(process) -> Process:
    if process is None:
        return OU()
    if not isinstance(process, Process):
        raise ValueError(f"process must be an rfdiff Process, got {type(process).__name__}")
    return process


QUADRATURES = ("auto", "nodes", "grid")


class NodeSets:
    """Quadrature rules for ``E_{p_0}`` (when p_0 has a density) and ``E_{p_{t_min}}``,
    with the reference log-densities, at refinement levels 0, 1, 2, ... (cached).

    ``kind="nodes"``: the target's expectation nodes of order ``base 2^level``
    (Gauss-Hermite per component, Gauss-Legendre on a compact support): spectral
    for smooth integrands. ``kind="grid"`` (1D): the trapezoid rule with
    ``base 2^level`` panels on an interval holding the law's mass, weights
    ``h p(x)``: O(h^2) also across the kinks that ReLU features put into
    ``log p_gen``, where Gauss-Hermite converges slowly. Each level's grid
    contains the previous one. Nodes of negligible weight (:data:`NEGLIGIBLE`)
    are dropped; on the grid (to keep it nested) they get weight 0, the same
    nodes at every level.
    """

    def __init__(self, target, process, t_min, kind: str = "nodes", base: int = 16):
        self.target, self.process, self.t_min = target, process, t_min
        self.kind, self.base = kind, int(base)
        self.times = ([0.0] if getattr(target, "has_density_at_zero", True) else []) + [t_min]
        self._cache = {}
        self._windows = {}

    def window(self, which=None):
        """Interval of the grid rule: the target's order-64 nodes at every time of
        the rule (one window for all, so the grids coincide), padded by 5%."""
        if not self._windows:
            lo, hi = np.inf, -np.inf
            for t in self.times:
                x, _ = self.target.expectation_nodes(t, self.process, order=64)
                lo, hi = min(lo, float(x[:, 0].min())), max(hi, float(x[:, 0].max()))
            pad = 0.05 * (hi - lo)
            self._windows[None] = (lo - pad, hi + pad)
        return self._windows[None]

    def get(self, which: int, level: int):
        key = (which, level)
        if key not in self._cache:
            t = self.times[which]
            if self.kind == "nodes":
                x, w = self.target.expectation_nodes(t, self.process, order=self.base << level)
                x = np.asarray(x, dtype=np.float64)
                keep = np.isfinite(w) & (w > 0)
                keep[keep] = w[keep] * len(w) >= NEGLIGIBLE * w[keep].sum()
                x, w = x[keep], w[keep]
                if not x.size:
                    raise ValueError(f"target.expectation_nodes returned no usable nodes at order {self.base << level}")
                with np.errstate(divide="ignore"):
                    ref = np.asarray(self.target.log_pt(x, t, self.process), dtype=np.float64)
            else:
                # the same points for every law (one ODE solve serves both KLs);
                # where p underflows the weight is 0 and the reference is set to 0
                n = self.base << level if level >= 0 else max(self.base >> -level, 1)
                if ("grid", level) not in self._cache:
                    lo, hi = self.window()
                    self._cache[("grid", level)] = np.linspace(lo, hi, n + 1)[:, None]
                x = self._cache[("grid", level)]
                lo, hi = self.window()
                with np.errstate(divide="ignore", under="ignore"):
                    ref = np.asarray(self.target.log_pt(x, t, self.process), dtype=np.float64)
                    w = np.exp(ref) * ((hi - lo) / n)
                w[[0, -1]] *= 0.5
                bad = ~(np.isfinite(ref) & (w > 0))
                w[bad], ref[bad] = 0.0, 0.0
                w[np.exp(ref) * (hi - lo) < NEGLIGIBLE] = 0.0
            self._cache[key] = (x, w, ref)
        return self._cache[key]

    def extent(self, levels):
        """The smallest interval holding every rule's points at these levels (1D)."""
        lo, hi = np.inf, -np.inf
        for which in range(len(self.times)):
            for lev in levels:
                x = self.get(which, lev)[0][:, 0]
                lo, hi = min(lo, float(x.min())), max(hi, float(x.max()))
        return lo, hi


def resolve_quadrature(quadrature, batch, dim):
    v.choice("quadrature", quadrature, QUADRATURES)
    if quadrature == "auto":
        return "grid" if batch.piecewise_linear else "nodes"
    if quadrature == "grid" and dim != 1:
        raise ValueError("quadrature='grid' is 1D only; use 'nodes'")
    return quadrature


def subset(batch, idx):
    return batch.subset(idx)


def assemble(value, error, status, messages, work, tol, kind, mass_loss=None, scalar=True):
    """A :class:`KLResult` from per-set rows (``value[0]``: the KL at t = 0 or the
    only set, ``value[-1]``: at t_min), with the sign convention of
    :func:`~rfdiff.kl.results.clip_negative` applied to both KLs."""
    status = np.asarray(status, dtype=np.int64)
    val, err, st0 = clip_negative(value[0], error[0], status, tol)
    kl_tmin, kl_tmin_err, st1 = clip_negative(value[-1], error[-1], status, tol)
    status = np.maximum(st0, st1)          # NEGATIVE (7) wins over CONVERGED (0) only
    messages = list(messages)
    for b in np.flatnonzero((status == Status.NEGATIVE) & (np.asarray([m == "converged" for m in messages]))):
        messages[b] = ("negative KL beyond its error bar (reported as 0, error widened to cover it): "
                       "the error estimate is wrong")
    converged = status == Status.CONVERGED
    if scalar:
        pick = lambda a: float(a[0])  # noqa: E731
        return KLResult(pick(val), pick(err), pick(kl_tmin), pick(kl_tmin_err), bool(converged[0]), messages[0],
                        kind, tol, work, None if mass_loss is None else float(mass_loss[0]),
                        Status(int(status[0])))
    msgs = sorted(set(messages))
    msg = "converged" if np.all(converged) else "; ".join(
        f"tau[{i}]: {m}" for i, m in enumerate(messages) if not converged[i])
    work = dict(work, messages=msgs)
    return KLResult(val, err, kl_tmin, kl_tmin_err, converged, msg, kind, tol, work, mass_loss, status)


def check_common(target, process, t_min, T, tol, d=None):
    process = as_process(process)
    t_min, T = v.window(t_min, T)
    tol = v.positive("tol", tol)
    if not hasattr(target, "expectation_nodes"):
        raise ValueError(f"target must be an rfdiff target, got {type(target).__name__}")
    if d is not None and target.dim != d:
        raise ValueError(f"target has dim {target.dim}, the score has dim {d}")
    return process, t_min, T, tol


def flow_defaults(flow, process, t_min, T):
    if getattr(flow, "model", None) is None:
        raise ValueError("flow must be an rfdiff Flow with its random-feature model (ScoreMatching(...).flow())")
    prob = getattr(flow, "problem", None)
    if process is None:
        process = prob.process if prob is not None else OU()
    if t_min is None:
        t_min = prob.t_min if prob is not None else 1e-3
    if T is None:
        T = prob.T if prob is not None else 8.0
    return process, t_min, T
