"""The KL of the probability-flow ODE's generated law (the convention of :mod:`rfdiff.kl`).

``log p_gen`` at quadrature nodes comes from :mod:`rfdiff.kl.log_density`
(exact change of variables along the ODE). Expectations use the target's
quadrature nodes (Gauss-Hermite per mixture component, Gauss-Legendre on a
compact support) or, in 1D, the trapezoid rule on a uniform grid weighted by
the target's density (the default for ReLU features, whose kinks make
``log p_gen`` only piecewise smooth, where Gauss-Hermite stalls): no
histograms, no density estimates.

Error control: every KL is computed with two quadrature rules (orders n and
2n, or grids of h and h/2) and two ODE tolerances (a, a/10); the reported
value uses the finer rule and the tight tolerance, and the reported error is
``|Q_fine - Q_coarse| + |Q(a/10) - Q(a)|``, a conservative estimate (the
coarse resolutions' errors). On grids the quadrature term is
``max(|Q_h/2 - Q_h|, |Q_h - Q_2h| / 2)`` (nested grids: free): with ReLU
features the trapezoid converges erratically until h resolves the kinks of
``log p_gen``, and one small difference alone can be a coincidence. Two
resolution floors keep the differences out of the pre-asymptotic regime,
where they agree by chance: grids start at panels of at most
``sigma(t_min)/2`` (the spike width of a memorising law), and an ODE pair
counts only when its coarser solve took at least :data:`MIN_STEPS` steps (1D
ReLU features, whose velocity has kinks). A plateau in the level sequence
can still hide an error. Nodes of negligible weight are not solved
(:data:`rfdiff.kl.nodes.NEGLIGIBLE`). Orders and tolerances are refined by
the refinement loop of :mod:`rfdiff.numerics.refine` (:class:`_ODEKL` is its
problem) until the error is below the tolerance or a work limit is hit; then
:class:`ConvergenceError` is raised naming it (``strict=False`` returns the
result with ``converged=False`` and its ``status``). Nothing returns NaN or
inf silently.
"""
from __future__ import annotations

import math

import numpy as np

from .. import _validate as v
from ..model.batch import ScoreBatch, make_batch
from .log_density import (RELATIVE_NATS, _error_norm, _resolve_method, generated_density,  # noqa: F401
                          log_density_ode, ode_log_density)
from .nodes import (MAX_ORDER, NodeSets, assemble, check_common, flow_defaults,
                         resolve_quadrature, subset)
from .results import BoundResult, ConvergenceError, KLResult, Status, finish
from ..numerics.refine import Budget, Estimate, progress_bar, refine

__all__ = ["kl_ode", "kl_ode_path", "log_density_ode", "generated_density", "KLResult",
           "BoundResult", "ConvergenceError"]

#: ratio between the two ODE tolerances of one error estimate
TOL_RATIO = 10.0

#: for 1D ReLU features (a velocity that is only Lipschitz: kinks), the coarser
#: solve of an ODE error estimate must take at least this many steps over
#: [t_min, T]: with fewer the solver is pre-asymptotic and two tolerances can
#: agree by chance. Smooth scores (dopri5) are not held to it: their
#: estimates are right from a few steps on, and a floor would only force
#: needlessly tight tolerances (docs/sections/refine.md has the measurements).
MIN_STEPS = 64

class _ODEKL:
    """The refinable KL of every score of ``batch`` (the problem of
    :func:`rfdiff.numerics.refine.refine`): a quadrature level ``lev`` and an ODE
    tolerance ``a``, shared by the active scores.

    One evaluation: the value uses rule ``lev + 1`` at ``a / TOL_RATIO``; the
    quadrature error compares it with rule ``lev`` (nested grids: free), the
    ODE error rule ``lev`` at ``a / TOL_RATIO`` with ``a`` (module docstring).
    """

    def __init__(self, batch, target, process, t_min, T, quadrature, base, max_level, method,
                 max_steps, min_atol=1e-14):
        self.batch, self.process, self.t_min, self.T = batch, process, t_min, T
        self.quadrature, self.max_level, self.method, self.max_steps = quadrature, max_level, method, max_steps
        self.min_atol = min_atol
        self.sets = NodeSets(target, process, t_min, quadrature, base)
        self.n_sets = len(self.sets.times)
        B = batch.n
        self.memo = {}     # (which, level, atol) -> (B, k) log p_gen, NaN where not computed
        self.work = {"nfev": 0, "n_steps": 0, "n_rejected": 0, "n_solves": 0, "nodes": 0}
        self.failed = np.zeros(B, dtype=np.int64)      # Status where a solve failed
        self.detail = {}
        self.nested = quadrature == "grid"     # the level-l grid is every other point of level l+1
        self.fewest = {}   # atol -> (B,) fewest steps of a solve at atol that held the member
        self.min_steps = MIN_STEPS if batch.piecewise_linear else 0
        self.err_q = np.zeros((self.n_sets, B))
        self.err_o = np.zeros((self.n_sets, B))
        self.lev = _first_level(self.sets, quadrature, process, t_min, max_level)
        self.a = None

    # -- solves -------------------------------------------------------------------
    def _solve(self, keys, atol, idx):
        """Fill memo for ``keys`` (which, level) at ``atol`` for batch members ``idx``;
        rules that share their points (grid mode) are solved once. Nested grids
        whose coarser level is known at this ``atol`` solve only the new (odd)
        nodes, with their own weighted error control: half the work per level."""
        blocks, spans, start = {}, [], 0
        for which, lev in keys:
            x, w, _ = self.sets.get(which, lev)
            prev = self.memo.get((which, lev - 1, atol)) if self.nested and lev > 0 else None
            odd = prev is not None and bool(np.all(np.isfinite(prev[idx])))
            xk, wk = (x[1::2], w[1::2]) if odd else (x, w)
            if (id(x), odd) not in blocks:
                blocks[(id(x), odd)] = [xk, np.zeros(len(xk)), start]
                start += len(xk)
            blk = blocks[(id(x), odd)]
            blk[1] = np.maximum(blk[1], wk / wk.sum())
            spans.append((which, lev, blk[2], len(x), odd))
        xs = [b[0] for b in blocks.values()]
        ws = [b[1] for b in blocks.values()]
        self._solve_subset(idx, np.concatenate(xs), np.concatenate(ws), atol, spans)

    def _solve_subset(self, idx, x, w, atol, spans):
        on = w > 0                        # nodes of weight 0 in every rule: no solve, log p_gen := 0
        logp = np.zeros((len(idx), len(x)))
        logp[:, on], st = ode_log_density(subset(self.batch, idx), x[on], self.process, self.t_min, self.T,
                                          atol=atol, weights=w[on], method=self.method,
                                          max_steps=self.max_steps)
        work = self.work
        work["nfev"] += st.nfev
        work["n_steps"] += st.n_steps
        work["n_rejected"] += st.n_rejected
        work["n_solves"] += 1
        steps = self.fewest.setdefault(atol, np.full(self.batch.n, np.inf))
        steps[idx] = np.minimum(steps[idx], st.n_steps)
        work["nodes"] = max(work["nodes"], int(on.sum()))
        if st.status != 0 and len(idx) > 1:
            # a common step serves all; isolate the member(s) that fail
            half = len(idx) // 2
            self._solve_subset(idx[:half], x, w, atol, spans)
            self._solve_subset(idx[half:], x, w, atol, spans)
            return
        for which, lev, start, n, odd in spans:
            arr = self.memo.setdefault((which, lev, atol), np.full((self.batch.n, n), np.nan))
            if odd:
                rows = idx[:, None]
                arr[rows, np.arange(1, n, 2)] = logp[:, start:start + n // 2]
                arr[rows, np.arange(0, n, 2)] = self.memo[(which, lev - 1, atol)][idx]
            else:
                arr[idx] = logp[:, start:start + n]
        if st.status != 0:
            budget = st.status == 2
            self.failed[idx] = Status.WORK_BUDGET if budget else Status.SOLVER_FAILED
            for b in idx:
                self.detail[int(b)] = (f"work budget: ODE solve took {st.message}" if budget else
                                       f"ODE solver failed: {st.message} (stiff or non-smooth score?)")

    def _quad(self, which, lev, atol):
        _, w, ref = self.sets.get(which, lev)
        lp = self.memo.get((which, lev, atol))
        if lp is None:
            return np.full(self.batch.n, np.nan)
        on = w > 0
        with np.errstate(invalid="ignore", over="ignore"):
            return (ref[None, on] - lp[:, on]) @ w[on]

    # -- the refinement protocol ----------------------------------------------------
    def evaluate(self, active):
        lev, a, n_sets = self.lev, self.a, self.n_sets
        fine = a / TOL_RATIO
        need = [((s, lev + 1), fine) for s in range(n_sets)]
        if not self.nested:
            need += [((s, lev), fine) for s in range(n_sets)]
        need += [((s, lev), a) for s in range(n_sets)]
        for atol in (fine, a):
            todo = active[self.failed[active] == 0]
            keys = [key for key, at in need if at == atol
                    and not (key + (atol,) in self.memo and np.all(np.isfinite(self.memo[key + (atol,)][todo])))]
            if keys and todo.size:
                self._solve(keys, atol, todo)
            if self.nested and atol == fine:
                for s in range(n_sets):
                    src_ = self.memo.get((s, lev + 1, fine))
                    if src_ is not None:
                        self.memo[(s, lev, fine)] = src_[:, ::2]
                        self.memo[(s, lev - 1, fine)] = src_[:, ::4]
        value = np.empty((n_sets, active.size))
        for s in range(n_sets):
            qf, qn, qc = self._quad(s, lev + 1, fine), self._quad(s, lev, fine), self._quad(s, lev, a)
            self.err_q[s], self.err_o[s] = np.abs(qf - qn), np.abs(qn - qc)
            if self.nested:
                # kinks make the trapezoid's convergence erratic until h resolves
                # them: also require the previous difference to be small
                self.err_q[s] = np.maximum(self.err_q[s], 0.5 * np.abs(qn - self._quad(s, lev - 1, fine)))
            value[s] = qf[active]
        error = (self.err_q + self.err_o)[:, active]
        for b in active:
            if self.failed[b] == 0 and not np.all(np.isfinite(error[:, active == b])):
                self.detail[int(b)] = "log p_gen is not finite at quadrature nodes (generated density underflows)"
        coarse_steps = self.fewest.get(a, np.zeros(self.batch.n))
        return Estimate(value, error, status=self.failed[active], detail=self.detail,
                        hold=coarse_steps[active] < self.min_steps)

    def refine(self, active, error, tols):
        """Raise the quadrature level and/or tighten the ODE tolerance, by the observed errors:
        O(h^2) per grid level, O(atol) for the ODE."""
        rq = float(np.max(self.err_q[:, active] / tols))
        ro = float(np.max(self.err_o[:, active] / tols))
        coarse_steps = self.fewest.get(self.a, np.zeros(self.batch.n))
        need_q = rq > 0.5
        need_o = ro > 0.5 or not need_q or bool(np.any(coarse_steps[active] < self.min_steps))
        grid = self.quadrature == "grid"
        dlev = 1 + int(rq > 0.5 * 16 and grid)
        if need_q and (self.lev + dlev >= self.max_level or
                       (not grid and self.sets.base << (self.lev + 2) > MAX_ORDER)):
            dlev = self.max_level - 1 - self.lev if grid else 0
            if dlev <= 0:
                return Status.QUADRATURE_LIMIT, (f"quadrature refinement limit reached ({self.quadrature}, "
                                                 f"level {self.lev + 1})")
        da = TOL_RATIO ** (1 + int(ro > 0.5 * 10 * TOL_RATIO))
        if need_o and self.a / da / TOL_RATIO < self.min_atol:
            return Status.TOLERANCE_LIMIT, f"ODE tolerance limit {self.min_atol:g} reached"
        if need_q:
            self.lev += dlev
        if need_o:
            self.a /= da
        return None

    def summary(self):
        size = self.sets.base << (self.lev + 1)
        return dict(self.work, quadrature=self.quadrature, atol=self.a / TOL_RATIO, method=self.method,
                    **({"order": size} if self.quadrature == "nodes" else {"n_grid": size}))


def _kl_batch(batch: ScoreBatch, target, process, t_min, T, tol, quadrature, base, max_level, method,
              max_steps, budget=None, progress=None, desc="kl_ode"):
    """KL for every score of ``batch``: ``(value, error, status, messages, work)`` (no raising)."""
    prob = _ODEKL(batch, target, process, t_min, T, quadrature, base, max_level, method, max_steps)
    prob.a = float(tol)
    bar = progress_bar(batch.n, desc, progress)
    try:
        out = refine(prob, batch.n, tol, relative=True, budget=budget, progress=bar)
    finally:
        if bar is not None:
            bar.close()
    work = dict(prob.summary(), seconds=out.seconds, refinements=out.iterations)
    return out.value, out.error, out.status, out.messages, work


def _first_level(sets, quadrature, process, t_min, max_level):
    """The grid's first level: panels no wider than ``sigma(t_min) / 2``. A
    memorising generated law has spikes of that width at the training points,
    and coarser grids are pre-asymptotic, where differences between levels
    underestimate the error. Capped at ``max_level - 1``."""
    if quadrature != "grid":
        return 0
    lo, hi = sets.window()
    panels = (hi - lo) / (0.5 * float(process.sigma(t_min)))
    return min(max(0, math.ceil(math.log2(panels / sets.base))), max_level - 1)


def kl_ode(score, target, process=None, t_min: float = 1e-3, T: float = 8.0, tol: float = 1e-6, *,
           quadrature: str = "auto", order: int = 16, n_grid: int = 256, max_level: int = 8,
           method: str = "auto", max_steps: int = 200_000, max_seconds: float | None = None,
           progress: bool | None = None, strict: bool = True) -> KLResult:
    """KL between the data and the probability-flow ODE's generated law.

    ``value`` and ``kl_tmin`` as in :mod:`rfdiff.kl`, each to accuracy ``tol``
    (absolute up to a KL of 1, relative beyond; the reported ``error`` is a
    conservative estimate). ``score``: any score object or callable
    ``(z, t) -> (k, d)`` with ``.dz``.

    ``quadrature``: ``"nodes"`` (the target's nodes, starting at ``order``),
    ``"grid"`` (1D trapezoid, starting at ``n_grid`` panels, or more: panels of
    at most ``sigma(t_min) / 2``, the width of a memorising law's spikes) or ``"auto"``
    (``grid`` for 1D ReLU random features, whose ``log p_gen`` has kinks,
    ``nodes`` otherwise); refined by doubling at most ``max_level`` times (8: up
    to 65 536 grid panels, which memorising late-training densities at tol 1e-4
    need).
    ``method``: ``"dopri5"``, ``"bs3"`` or ``"auto"`` (``bs3`` for 1D ReLU random
    features, whose kinks are integrated exactly and leave a velocity that is
    only Lipschitz, where high order buys nothing; ``dopri5`` otherwise).

    Work budget: ``max_level`` grid/order doublings, ``max_steps`` Runge-Kutta
    steps per ODE solve, ``max_seconds`` of wall time (``None``: no limit);
    ``progress``: a tqdm bar over the scores (``None``: when stderr is a
    terminal). Raises :class:`ConvergenceError` naming what failed or ran out
    when the tolerance cannot be met (``strict=False``: returned with
    ``converged=False`` and ``status`` saying why).
    """
    batch = make_batch(score)
    process, t_min, T, tol = check_common(target, process, t_min, T, tol, batch.dim)
    method = _resolve_method(method, batch)
    quadrature = resolve_quadrature(quadrature, batch, batch.dim)
    base = v.positive_int("order", order) if quadrature == "nodes" else v.positive_int("n_grid", n_grid)
    res = _kl_batch(batch, target, process, t_min, T, tol, quadrature, base,
                    v.positive_int("max_level", max_level), method, v.positive_int("max_steps", max_steps),
                    budget=Budget(max_seconds=max_seconds), progress=progress)
    return finish(assemble(*res, tol, "ode"), strict)


def kl_ode_path(flow, taus, target, process=None, t_min=None, T=None, tol: float = 1e-3, *,
                quadrature: str = "auto", order: int = 16, n_grid: int = 256, max_level: int = 8,
                method: str = "auto", max_steps: int = 200_000, max_seconds: float | None = None,
                progress: bool | None = None, strict: bool = True) -> KLResult:
    """:func:`kl_ode` for a random-feature flow at many training times at once.

    All (tau, node) pairs form one system; the parameters ``A(tau)`` come from
    one call of ``flow.params(taus)``. ``process``, ``t_min`` and ``T`` default
    to the flow's score-matching problem. Fields of the result are arrays over tau.
    """
    process, t_min, T = flow_defaults(flow, process, t_min, T)
    process, t_min, T, tol = check_common(target, process, t_min, T, tol, flow.model.dim)
    taus = np.atleast_1d(np.asarray(taus, dtype=np.float64))
    batch = make_batch(model=flow.model, A=flow.params(taus))
    method = _resolve_method(method, batch)
    quadrature = resolve_quadrature(quadrature, batch, batch.dim)
    base = v.positive_int("order", order) if quadrature == "nodes" else v.positive_int("n_grid", n_grid)
    res = _kl_batch(batch, target, process, t_min, T, tol, quadrature, base,
                    v.positive_int("max_level", max_level), method, v.positive_int("max_steps", max_steps),
                    budget=Budget(max_seconds=max_seconds), progress=progress, desc="kl_ode_path")
    return finish(assemble(*res, tol, "ode", scalar=False), strict)


