"""The reverse-SDE density in 1D and the KL of the SDE sampler (the convention of :mod:`rfdiff.kl`).

The density q of the reverse SDE comes from its Fokker-Planck equation,
discretised in :mod:`rfdiff.kl.scharfetter_gummel` (finite volumes with the
Scharfetter-Gummel flux, backward Euler; positivity and mass preserved). The
KL is computed on a sequence of grids ``(N, M), (2N, 2M), ...`` and
extrapolated (Richardson, exponents 1, 2, 3), the error estimate being the
change of the extrapolated value from the previous level, by the refinement
loop of :mod:`rfdiff.numerics.refine` (:class:`_SDELevels` is its problem).
``log q`` at the target's quadrature nodes comes from a cubic spline through
the cell values. A generated law much wider than the target (early in
training the score is ~0 and the reverse SDE spreads the prior by ``e^T``)
is detected by the density at the walls; those scores are solved again on a
stretched grid reaching 10x further, repeatedly.
"""
from __future__ import annotations

import math

import numpy as np

from .. import _validate as v
from ..model.batch import make_batch
from .scharfetter_gummel import (FPGrid, PARALLEL_MIN_WORK, _be_step, _bernoulli, _log_interp,  # noqa: F401
                                 edge_ratio, solve_fokker_planck, time_steps)
from .results import ConvergenceError, KLResult, Status, finish
from .nodes import MAX_ORDER, NodeSets, as_process, assemble, check_common, flow_defaults, subset
from ..numerics.refine import Budget, Estimate, progress_bar, refine

__all__ = ["kl_sde", "kl_sde_path", "sde_density", "solve_fokker_planck", "FPGrid"]


def _domain(sets: NodeSets, levels, process, pad=0.05):
    sd = math.sqrt(float(process.prior_var))
    lo, hi = sets.extent(levels)
    lo, hi = min(lo, -9.0 * sd), max(hi, 9.0 * sd)
    w = hi - lo
    return lo - pad * w, hi + pad * w


def _richardson(levels):
    """Extrapolation tableau over levels halving (h, dt); exponents 1, 2, 3.
    Returns ``(best, error)`` arrays from the last two diagonal entries."""
    tab = [np.asarray(levels[0], dtype=np.float64)]
    prev_row = [tab[0]]
    best_prev = tab[0]
    best = tab[0]
    for l in range(1, len(levels)):
        row = [np.asarray(levels[l], dtype=np.float64)]
        for j in range(1, min(l, 3) + 1):
            row.append(row[j - 1] + (row[j - 1] - prev_row[j - 1]) / (2.0 ** j - 1.0))
        best_prev, best = best, row[-1]
        prev_row = row
    err = np.abs(best - best_prev) if len(levels) > 1 else np.full_like(best, np.inf)
    return best, err


def _kl_sde_batch(batch, target, process, t_min, T, tol, quadrature, base, n_cells, n_steps, max_levels,
                  min_levels=3, max_qlevel=4, max_stretch=1e6, budget=None, progress=None):
    """KL of the reverse-SDE density for every score of ``batch`` (arrays, no raising):
    ``(value, error, status, messages, work, mass_loss)``.

    Scores whose density reaches the domain's edge (early in training the
    generated law can be far wider than the target) are solved again on a
    stretched grid reaching 10x further, repeatedly (up to ``max_stretch``).
    """
    sets = NodeSets(target, process, t_min, quadrature, base)
    n_sets = len(sets.times)
    lo, hi = _domain(sets, (0, 1), process)
    B = batch.n
    value = np.full((n_sets, B), np.nan)
    error = np.full((n_sets, B), np.inf)
    status = np.full(B, int(Status.NOT_CONVERGED), dtype=np.int64)
    mass = np.full(B, np.nan)
    messages = [""] * B
    work = {"levels": 0, "n_cells": 0, "n_steps": 0, "lo": lo, "hi": hi, "cell_steps": 0,
            "quadrature": quadrature, "quadrature_level": 1, "stretch": np.ones(B), "seconds": 0.0}
    edge_tol = 1e-3 * tol
    pending = [(np.arange(B), 1.0)]
    bar = progress_bar(B, "kl_sde", progress)
    try:
        while pending:
            idx, K = pending.pop()
            prob = _SDELevels(subset(batch, idx), sets, process, t_min, T, n_cells, n_steps, max_levels,
                              min_levels, max_qlevel, lo, hi, K, edge_tol, work, tol)
            out = refine(prob, idx.size, tol, relative=True, budget=budget, progress=bar)
            work["stretch"][idx] = K
            work["seconds"] += out.seconds
            wide = prob.wide
            value[:, idx], error[:, idx], status[idx], mass[idx] = out.value, out.error, out.status, prob.mass
            for j, b in enumerate(idx):
                messages[b] = out.messages[j]
            if np.any(wide):
                if K * 10 <= max_stretch:
                    pending.append((idx[wide], K * 10.0))
                else:
                    for b in idx[wide]:
                        status[b] = int(Status.QUADRATURE_LIMIT)
                        messages[b] = (f"generated density reaches the edge of a grid {max_stretch:g}x wider "
                                       "than the target's extent")
    finally:
        if bar is not None:
            bar.close()
    return value, error, status, messages, work, mass


class _SDELevels:
    """The level sequence on one domain (the problem of
    :func:`rfdiff.numerics.refine.refine`): level l solves on ``n_cells 2^l``
    cells (twice that on a stretched grid) and ``n_steps 2^l`` steps; an
    evaluation extrapolates the KLs over the levels solved so far (at least
    ``min_levels``), raising the quadrature level (up to ``max_qlevel``, and
    :data:`~rfdiff.kl.nodes.MAX_ORDER` nodes) while its error dominates.
    Scores whose level-0 density reaches the walls are set aside (``wide``)."""

    def __init__(self, batch, sets, process, t_min, T, n_cells, n_steps, max_levels, min_levels,
                 max_qlevel, lo, hi, K, edge_tol, work, tol):
        self.tol = tol
        self.batch, self.sets, self.process, self.t_min, self.T = batch, sets, process, t_min, T
        self.n_cells, self.n_steps, self.max_levels, self.min_levels = n_cells, n_steps, max_levels, min_levels
        self.max_qlevel, self.lo, self.hi, self.K, self.edge_tol, self.work = max_qlevel, lo, hi, K, edge_tol, work
        B = batch.n
        self.mass = np.full(B, np.nan)
        self.wide = np.zeros(B, dtype=bool)
        self.status = np.zeros(B, dtype=np.int64)
        self.detail = {}
        self.kls = {}                 # (level, which, order) -> (B,) (NaN where not computed)
        self.sols = []
        self.level = -1               # the finest level solved
        self.lev = 0                  # the quadrature level

    def _solve_level(self, active):
        level = self.level + 1
        N = (self.n_cells << level) * (2 if self.K > 1 else 1)
        M = self.n_steps << level
        grid = FPGrid(self.lo, self.hi, N, stretch=self.K)
        q, ml = solve_fokker_planck(subset(self.batch, active), self.process, self.t_min, self.T, grid, M)
        self.mass[active] = ml
        self.sols.append((grid, q, active))
        self.level = level
        w = self.work
        w["levels"] = max(w["levels"], level + 1)
        w["n_cells"], w["n_steps"] = max(w["n_cells"], N), max(w["n_steps"], M)
        w["cell_steps"] += N * M * len(active)
        bad = ~np.all(np.isfinite(q), axis=1)
        for j in np.flatnonzero(bad):
            self.status[active[j]] = int(Status.NOT_FINITE)
            self.detail[int(active[j])] = "the Fokker-Planck density is not finite (a non-finite score?)"
        if level == 0:
            self.wide[active] = ~bad & (edge_ratio(np.where(np.isfinite(q), q, 0.0)) > self.edge_tol)
            for b in active[self.wide[active]]:
                self.status[b] = int(Status.NOT_CONVERGED)
                self.detail[int(b)] = "the generated density reaches the domain's edge"

    def _kl_at(self, l, which, ql, active):
        key = (l, which, ql)
        if key not in self.kls:
            g_, q_, act_ = self.sols[l]
            x, w, ref = self.sets.get(which, ql)
            xx = np.clip(x[:, 0], g_.centers[0], g_.centers[-1])
            out = np.full(self.batch.n, np.nan)
            with np.errstate(invalid="ignore", over="ignore"):
                out[act_] = (ref[None, :] - _log_interp(g_, q_, xx)) @ w
            self.kls[key] = out
        return self.kls[key][active]

    def _qlevel_ok(self, lev):
        """Whether quadrature level ``lev`` exists (nodes: at most MAX_ORDER)."""
        return lev <= self.max_qlevel and (self.sets.kind != "nodes" or self.sets.base << lev <= MAX_ORDER)

    def evaluate(self, active):
        todo = active[self.status[active] == 0]
        while todo.size and self.level + 1 < self.max_levels and (self.level + 1 < self.min_levels
                                                                   or self.level < 0):
            self._solve_level(todo)
            todo = todo[self.status[todo] == 0]
        n_sets = len(self.sets.times)
        while True:
            value = np.empty((n_sets, active.size))
            err_q = np.empty((n_sets, active.size))
            err_h = np.empty((n_sets, active.size))
            for s in range(n_sets):
                best, eh = _richardson([self._kl_at(l, s, self.lev + 1, active) for l in range(self.level + 1)])
                best_n, _ = _richardson([self._kl_at(l, s, self.lev, active) for l in range(self.level + 1)])
                value[s], err_h[s], err_q[s] = best, eh, np.abs(best - best_n)
            error = err_h + err_q
            tl = self.tol * np.maximum(1.0, np.max(np.abs(np.where(np.isfinite(value), value, 0.0)), axis=0))
            ok = (self.status[active] == 0) & np.all(np.isfinite(error), axis=0)
            open_ = ok & ~np.all(error <= tl, axis=0)
            # the quadrature is refined while its error dominates (the KL's own tolerance rule)
            if (np.any(err_q[:, open_] > 0.5 * tl[open_]) and self._qlevel_ok(self.lev + 2)
                    and np.any(err_q[:, open_] > err_h[:, open_])):
                self.lev += 1
                continue
            break
        for b in active[(self.status[active] == 0) & ~np.all(np.isfinite(error), axis=0)]:
            self.detail[int(b)] = "log q is not finite at quadrature nodes (generated density underflows)"
        self.work["quadrature_level"] = max(self.work["quadrature_level"], self.lev + 1)
        return Estimate(value, error, status=self.status[active], detail=self.detail)

    def refine(self, active, error, tols):
        if self.level + 1 >= self.max_levels:
            w = self.work
            return Status.QUADRATURE_LIMIT, (f"refinement limit reached ({w['n_cells']} cells, {w['n_steps']} "
                                             f"steps, quadrature level {self.lev + 1})")
        self._solve_level(active)
        return None


def _assemble_sde(res, tol, scalar):
    value, error, status, messages, work, mass = res
    return assemble(value, error, status, messages, work, tol, "sde", mass_loss=mass, scalar=scalar)


def kl_sde(score, target, process=None, t_min: float = 1e-3, T: float = 8.0, tol: float = 1e-6, *,
           quadrature: str = "nodes", order: int = 32, n_grid: int = 512, n_cells: int = 256,
           n_steps: int = 64, max_levels: int = 7, max_seconds: float | None = None,
           progress: bool | None = None, strict: bool = True) -> KLResult:
    """KL between the data and the reverse-SDE sampler's generated law (1D).

    ``value`` and ``kl_tmin`` as in :mod:`rfdiff.kl`, with ``p_gen`` the
    Fokker-Planck density q (see the module docstring). Grids of
    ``n_cells 2^l`` cells and ``n_steps 2^l`` steps, l < ``max_levels``, are
    extrapolated until the error estimate is below ``tol`` (absolute up to a
    KL of 1, relative beyond); ``mass_loss`` reports ``|1 - mass|`` on the
    finest grid. ``quadrature``: ``"nodes"`` (the target's nodes from ``order``,
    at most :data:`~rfdiff.kl.nodes.MAX_ORDER`; the SDE density is smooth) or
    ``"grid"`` (trapezoid from ``n_grid`` panels). Work budget: ``max_levels``
    grids, ``max_seconds`` of wall time (``None``: no limit); ``progress``: a
    tqdm bar (``None``: when stderr is a terminal). Raises
    :class:`ConvergenceError` naming what failed or ran out when the tolerance
    is not met (``strict=False``: returned with ``converged=False`` and
    ``status`` saying why).
    """
    batch = make_batch(score)
    if batch.dim != 1:
        raise ValueError("kl_sde is 1D: the score must have dim 1")
    process, t_min, T, tol = check_common(target, process, t_min, T, tol, 1)
    res = _kl_sde_batch(batch, target, process, t_min, T, tol, *_sde_options(
        quadrature, order, n_grid, n_cells, n_steps, max_levels), budget=Budget(max_seconds=max_seconds),
        progress=progress)
    return finish(_assemble_sde(res, tol, True), strict)


def kl_sde_path(flow, taus, target, process=None, t_min=None, T=None, tol: float = 1e-3, *,
                quadrature: str = "nodes", order: int = 32, n_grid: int = 512, n_cells: int = 256,
                n_steps: int = 64, max_levels: int = 6, max_seconds: float | None = None,
                progress: bool | None = None, strict: bool = True) -> KLResult:
    """:func:`kl_sde` for a 1D random-feature flow at many training times at once
    (grid and steps shared; one score evaluation per step for all taus)."""
    process, t_min, T = flow_defaults(flow, process, t_min, T)
    if flow.model.dim != 1:
        raise ValueError("kl_sde_path is 1D")
    process, t_min, T, tol = check_common(target, process, t_min, T, tol, 1)
    taus = np.atleast_1d(np.asarray(taus, dtype=np.float64))
    batch = make_batch(model=flow.model, A=flow.params(taus))
    res = _kl_sde_batch(batch, target, process, t_min, T, tol, *_sde_options(
        quadrature, order, n_grid, n_cells, n_steps, max_levels), budget=Budget(max_seconds=max_seconds),
        progress=progress)
    return finish(_assemble_sde(res, tol, False), strict)


def _sde_options(quadrature, order, n_grid, n_cells, n_steps, max_levels):
    v.choice("quadrature", quadrature, ("nodes", "grid"))
    base = v.positive_int("order", order) if quadrature == "nodes" else v.positive_int("n_grid", n_grid)
    return (quadrature, base, v.positive_int("n_cells", n_cells, minimum=8),
            v.positive_int("n_steps", n_steps), v.positive_int("max_levels", max_levels))


def sde_density(score, x, process=None, t_min: float = 1e-3, T: float = 8.0, *, tol: float = 1e-6,
                atol: float = 0.0, n_cells: int = 256, n_steps: int = 64, max_levels: int = 7, lo=None, hi=None,
                return_error: bool = False):
    """The reverse-SDE density at points x (1D).

    ``log q`` at x from grids ``(n_cells 2^l, n_steps 2^l)`` is extrapolated
    (Richardson, as for the KL) until, at every x where q exceeds 1e-8 of its
    maximum, the change ``e`` in ``log q`` is below ``tol`` or the density's
    change ``q (e^e - 1)`` is below ``atol`` (an absolute floor, as in ODE error
    control; 0: relative only); raises ConvergenceError otherwise.
    ``return_error``: also return that per-point estimate ``q (e^e - 1)``.
    """
    batch = make_batch(score)
    if batch.dim != 1:
        raise ValueError("sde_density is 1D")
    process = as_process(process)
    t_min, T = v.window(t_min, T)
    x = v.points("x", x, 1)[:, 0]
    tol = v.positive("tol", tol)
    atol = v.real("atol", atol, lo=0.0)
    sd = math.sqrt(float(process.prior_var))
    a = min(-9.0 * sd, float(x.min())) if lo is None else float(lo)
    b = max(9.0 * sd, float(x.max())) if hi is None else float(hi)
    pad = 0.05 * (b - a)
    levels = []
    for level in range(max_levels):
        grid = FPGrid(a - pad, b + pad, n_cells << level)
        q, _ = solve_fokker_planck(batch, process, t_min, T, grid, n_steps << level)
        levels.append(_log_interp(grid, q, x)[0])
        if level < 2:
            continue
        best, err = _richardson(levels)
        q_best = np.exp(best)
        dq = q_best * np.expm1(err)
        relevant = best > best.max() + math.log(1e-8)
        if np.all((err <= tol) | (dq <= atol) | ~relevant):
            return (q_best, dq) if return_error else q_best
    open_ = relevant & (err > tol) & (dq > atol)
    raise ConvergenceError(f"sde_density: log q did not converge to tol={tol:g} (atol={atol:g} in q) within "
                           f"max_levels={max_levels} (change {np.max(err[open_]):.2g} in log q, "
                           f"{np.max(dq[open_]):.2g} in q)")
