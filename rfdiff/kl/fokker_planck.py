"""The reverse-SDE density in 1D from its Fokker-Planck equation.

The sampler runs ``dY = [f(t) Y - g2(t) s(Y, t)] dt + g(t) dW`` backwards from
``Y_T ~ pi`` to ``t_min``. In the reverse time ``r = T - t`` its density q solves

    dq/dr + dJ/dy = 0,   J = b q - D dq/dy,   b(y, t) = -f(t) y + g2(t) s(y, t),   D = g2(t)/2,

(with the exact score, ``q = p_t`` solves it). Discretisation:

- space: cell-centred finite volumes on a grid over ``[lo, hi]`` (covering the
  target's quadrature nodes and +-9 prior standard deviations), zero-flux
  boundaries, and the Scharfetter-Gummel (exponentially fitted, Chang-Cooper
  type) flux at each face, ``J = (D/d) [B(-P) q_i - B(P) q_{i+1}]``,
  ``P = b d / D`` (d the distance of the cell centres), ``B(z) = z/(e^z - 1)``:
  exact for a locally constant drift, upwind at large cell Peclet number.
  A generated law much wider than the target (early in training the score
  is ~0 and the reverse SDE spreads the prior by ``e^T``) is detected by the
  density at the walls; those scores are solved again on a smoothly
  stretched grid (uniform core, sinh-type growth outside, :class:`FPGrid`)
  reaching 10x further, repeatedly;
- time: backward Euler in r, one tridiagonal solve per step (Thomas
  algorithm, numba), on steps uniform in ``log t + t/t_c``: logarithmic near
  ``t_min`` (the score changes on a log-time scale), at most ``t_c`` apart
  later (:func:`time_steps`).

``H + dr A`` (H the cell widths) is an M-matrix whose columns sum to the
widths, so every step preserves positivity and mass exactly (up to rounding;
``mass_loss`` reports it).
The scheme is first order in the step and second order in h; the KL is
computed on a sequence of grids ``(N, M), (2N, 2M), ...`` and extrapolated
(Richardson, exponents 1, 2, 3), the error estimate being the change of the
extrapolated value from the previous level. ``log q`` at the target's
quadrature nodes comes from a cubic spline through the cell values.

All scores of a batch (e.g. a random-feature flow at many taus) share grid
and steps: the score is evaluated at the faces once per step for all of them.
"""
from __future__ import annotations

import math

import numba
import numpy as np
from scipy.interpolate import CubicSpline
from scipy.special import lambertw, ndtr

from .. import _validate as v
from ..model.batch import ScoreBatch, make_batch
from .._numba import twins
from .results import ConvergenceError, KLResult, Status, finish
from .nodes import MAX_ORDER, NodeSets, as_process, assemble, check_common, flow_defaults, subset
from ..numerics.refine import Budget, Estimate, progress_bar, refine

__all__ = ["kl_sde", "kl_sde_path", "sde_density", "solve_fokker_planck", "FPGrid"]


@numba.njit(inline="always", cache=True)
def _bernoulli(z):
    """``B(z) = z / (exp(z) - 1)``, B(0) = 1. ``expm1`` keeps it accurate to a few
    ulp for every z (near 0 too; expm1 = inf past z ~ 710 gives the limit 0), and
    a branch-free form costs no mispredictions in the tridiagonal sweep."""
    return 1.0 if z == 0.0 else z / math.expm1(z)


def _be_step_impl(q, s, faces, dist, width, f, g2, dr, cprime):
    """One backward-Euler step of the Scharfetter-Gummel scheme, in place.

    ``q`` (B, N) cell values, ``s`` (B, N-1) scores at the interior faces,
    ``dist`` (N-1) centre-to-centre distances, ``width`` (N) cell widths,
    ``cprime`` (B, N) workspace. The system is ``(H + dr A) q_new = H q_old``
    with ``H = diag(width)``: its columns sum to the cell widths (mass), its
    off-diagonals are <= 0 (column diagonally dominant: the Thomas algorithm
    needs no pivoting). The tridiagonal rows are built face by face inside the
    forward sweep; one division per cell.
    """
    B, N = q.shape
    D = 0.5 * g2
    for b in numba.prange(B):
        x = q[b]
        cp = cprime[b]
        low = 0.0               # -c B(-P) of the face left of cell i (row i's sub-diagonal)
        left = 0.0              # c B(P) of that face (its share of row i's diagonal)
        prev = 0.0              # d'_{i-1}
        for i in range(N):
            diag = width[i] + left
            up = 0.0
            if i < N - 1:
                d = dist[i]
                c = dr * D / d
                P = (-f * faces[i] + g2 * s[b, i]) * d / D
                bp = _bernoulli(P)
                diag += c * (bp + P)            # B(-P) = B(P) + P
                up = -c * bp
                next_low, left = -c * (bp + P), c * bp
            inv = 1.0 / (diag - low * cp[i - 1]) if i > 0 else 1.0 / diag
            cp[i] = up * inv
            prev = (x[i] * width[i] - low * prev) * inv
            x[i] = prev
            if i < N - 1:
                low = next_low
        for i in range(N - 2, -1, -1):
            x[i] -= cp[i] * x[i + 1]


_be_step_serial, _be_step_parallel = twins(_be_step_impl)
#: below this many cell updates a step runs serially (thread start-up costs more)
PARALLEL_MIN_WORK = 1 << 16


def _be_step(q, s, grid, f, g2, dr, work):
    kernel = _be_step_parallel if q.size >= PARALLEL_MIN_WORK and q.shape[0] > 1 else _be_step_serial
    kernel(q, s, grid.faces, grid.dist, grid.widths, f, g2, dr, work)


class FPGrid:
    """Cell-centred grid with ``N`` cells, the image of a uniform grid in
    ``xi in [-1, 1]`` under a smooth map (so that halving every cell keeps the
    error expansion smooth, which Richardson extrapolation needs).

    ``stretch = 1``: uniform on ``[lo, hi]``. ``stretch = K > 1``: the core
    ``[lo, hi]`` fills ``|xi| <= 1/2`` almost uniformly (spacing within 1% of
    uniform) and the map ``x = c + 2W [xi + gamma (sinh(beta xi)/beta - xi)]``
    reaches ``c +- K W`` at ``xi = +-1`` (W the core's half-width): room for
    generated densities much wider than the target and the prior.
    """

    def __init__(self, lo: float, hi: float, N: int, stretch: float = 1.0):
        self.lo, self.hi, self.N, self.stretch = float(lo), float(hi), int(N), float(stretch)
        xi = np.linspace(-1.0, 1.0, self.N + 1)
        c, W = 0.5 * (self.lo + self.hi), 0.5 * (self.hi - self.lo)
        if self.stretch <= 1.0:
            edges = c + W * xi
        else:
            beta, gamma = _stretch_params(self.stretch)
            edges = c + 2.0 * W * (xi + gamma * (np.sinh(beta * xi) / beta - xi))
        self.edges = edges
        self.widths = np.diff(edges)
        self.centers = 0.5 * (edges[:-1] + edges[1:])
        self.faces = np.ascontiguousarray(edges[1:-1])
        self.dist = np.diff(self.centers)

    def prior_cells(self, var: float) -> np.ndarray:
        """Cell averages of ``N(0, var)``, normalised to mass 1 on the grid
        (tails by the survival function, so no cancellation on the right)."""
        z = self.edges / math.sqrt(var)
        left = np.where(z[1:] <= 0, ndtr(z[1:]) - ndtr(z[:-1]), 0.0)
        right = np.where(z[1:] > 0, ndtr(-z[:-1]) - ndtr(-z[1:]), 0.0)
        mass = left + right
        return mass / (mass.sum() * self.widths)


def _stretch_params(K: float):
    """``(beta, gamma)`` with 1% stretch at ``|xi| = 1/2`` and ``x(1) = c + K W``.

    The 1% condition bounds the reach from below: as beta -> 0 the map reaches
    ``2 (1 + 0.08/6) W ~ 2.027 W``. Any smaller K gets that least reach (a grid
    a little wider than asked, never narrower)."""
    from scipy.optimize import brentq

    def excess(beta):
        gamma = 0.01 / (math.cosh(beta / 2) - 1.0)
        return 2.0 * (1.0 + gamma * (math.sinh(beta) / beta - 1.0)) - K
    beta = brentq(excess, 1e-3, 200.0) if excess(1e-3) < 0 else 1e-3
    return beta, 0.01 / (math.cosh(beta / 2) - 1.0)


def time_steps(process, t_min: float, T: float, n_steps: int) -> np.ndarray:
    """Decreasing times from T to t_min, uniform in ``zeta = log t + t/t_c``:
    log-spaced near t_min (the score changes on a log scale there), at most
    ``t_c dzeta`` apart later, ``t_c = 1/(2 max|f|)`` (the drift's time scale;
    backward Euler is accurate only for steps well below it)."""
    tt = np.geomspace(t_min, T, 64)
    rate = float(np.max(np.abs(process.f(tt))))
    t_c = 0.5 / rate if rate > 0 else T
    zeta = np.linspace(math.log(T) + T / t_c, math.log(t_min) + t_min / t_c, int(n_steps) + 1)
    t = t_c * np.real(lambertw(np.exp(zeta - math.log(t_c))))
    t[0], t[-1] = T, t_min
    return t


def solve_fokker_planck(batch: ScoreBatch, process, t_min: float, T: float, grid: FPGrid, n_steps: int):
    """Cell values of the reverse-SDE density at ``t_min`` for every score of
    ``batch``: ``(q (B, N), mass_loss (B,))``. Starts from the prior's cell averages."""
    q0 = grid.prior_cells(float(process.prior_var))
    q = np.repeat(q0[None], batch.n, axis=0)
    t = time_steps(process, t_min, T, n_steps)
    faces = grid.faces[:, None]
    work = np.empty_like(q)
    for n in range(1, len(t)):
        tn = float(t[n])
        s, _ = batch(faces, tn, dz=False)
        _be_step(q, np.ascontiguousarray(s[..., 0]), grid, float(process.f(tn)),
                 float(process.g2(tn)), float(t[n - 1] - t[n]), work)
    mass_loss = np.abs(q @ grid.widths - 1.0)
    return q, mass_loss


def edge_ratio(q) -> np.ndarray:
    """``max(q_first, q_last) / max q`` (B,). A zero-flux wall at distance L bends
    the density near the mass by about the density at the wall (method of
    images), so a large ratio means the domain is too small."""
    top = np.maximum(q.max(axis=1), np.finfo(float).tiny)
    return np.maximum(q[:, 0], q[:, -1]) / top


def _log_interp(grid: FPGrid, q, x):
    """``log q`` at points x by a cubic spline through the cell values (B, k)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        lq = np.log(np.maximum(q, 1e-300))
    good = np.all(np.isfinite(lq), axis=1)
    out = np.full((q.shape[0], np.size(x)), np.nan)
    if np.any(good):                   # a non-finite density (a NaN score) gives NaN, reported by the caller
        spl = CubicSpline(grid.centers, lq[good].T, axis=0, bc_type="not-a-knot")
        out[good] = spl(np.clip(x, grid.centers[0], grid.centers[-1])).T
    return out


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
                n_cells: int = 256, n_steps: int = 64, max_levels: int = 7, lo=None, hi=None) -> np.ndarray:
    """The reverse-SDE density at points x (1D).

    ``log q`` at x from grids ``(n_cells 2^l, n_steps 2^l)`` is extrapolated
    (Richardson, as for the KL) until the change is below ``tol`` (absolute, in
    ``log q``, where q exceeds 1e-8 of its maximum); raises ConvergenceError otherwise.
    """
    batch = make_batch(score)
    if batch.dim != 1:
        raise ValueError("sde_density is 1D")
    process = as_process(process)
    t_min, T = v.window(t_min, T)
    x = v.points("x", x, 1)[:, 0]
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
        relevant = best > best.max() + math.log(1e-8)
        if np.all(err[relevant] <= tol):
            return np.exp(best)
    raise ConvergenceError(f"sde_density: log q did not converge to tol={tol:g} within max_levels={max_levels} "
                           f"(change {np.max(err[relevant]):.2g})")
