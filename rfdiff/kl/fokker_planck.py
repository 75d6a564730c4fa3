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
from .results import ConvergenceError, KLResult, finish
from .nodes import NodeSets, as_process, assemble, check_common, flow_defaults, subset

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
    with np.errstate(divide="ignore"):
        lq = np.log(np.maximum(q, 1e-300))
    spl = CubicSpline(grid.centers, lq.T, axis=0, bc_type="not-a-knot")
    return spl(np.clip(x, grid.centers[0], grid.centers[-1])).T


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
                  min_levels=3, max_qlevel=4, max_stretch=1e6):
    """KL of the reverse-SDE density for every score of ``batch`` (arrays, no raising).

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
    converged = np.zeros(B, dtype=bool)
    mass = np.full(B, np.nan)
    messages = [""] * B
    work = {"levels": 0, "n_cells": 0, "n_steps": 0, "lo": lo, "hi": hi, "cell_steps": 0,
            "quadrature": quadrature, "quadrature_level": 1, "stretch": np.ones(B)}
    edge_tol = 1e-3 * tol
    pending = [(np.arange(B), 1.0)]
    while pending:
        idx, K = pending.pop()
        sub = subset(batch, idx)
        out = _sde_levels(sub, sets, process, t_min, T, tol, n_cells, n_steps, max_levels,
                          min_levels, max_qlevel, lo, hi, K, edge_tol, work)
        val, err, conv, msgs, ms, wide = out
        work["stretch"][idx] = K
        for j, b in enumerate(idx):
            value[:, b], error[:, b], converged[b], messages[b], mass[b] = val[:, j], err[:, j], conv[j], msgs[j], ms[j]
        if np.any(wide):
            if K * 10 <= max_stretch:
                pending.append((idx[wide], K * 10.0))
            else:
                for b in idx[wide]:
                    converged[b] = False
                    messages[b] = (f"generated density reaches the edge of a grid {max_stretch:g}x wider "
                                   "than the target's extent")
    return value, error, converged, messages, work, mass


def _sde_levels(batch, sets, process, t_min, T, tol, n_cells, n_steps, max_levels, min_levels,
                max_qlevel, lo, hi, K, edge_tol, work):
    """The level loop on one domain; returns per-member arrays and a ``wide`` mask."""
    n_sets = len(sets.times)
    B = batch.n
    value = np.full((n_sets, B), np.nan)
    error = np.full((n_sets, B), np.inf)
    converged = np.zeros(B, dtype=bool)
    mass = np.full(B, np.nan)
    wide = np.zeros(B, dtype=bool)
    messages = ["not converged"] * B
    kls = {}                      # (level, which, order) -> (B,) (NaN where not computed)
    active = np.arange(B)
    lev = 0
    sols = []
    for level in range(max_levels):
        N = (n_cells << level) * (2 if K > 1 else 1)
        M = n_steps << level
        grid = FPGrid(lo, hi, N, stretch=K)
        q, ml = solve_fokker_planck(subset(batch, active), process, t_min, T, grid, M)
        mass[active] = ml
        sols.append((grid, q, active))
        work["levels"] = max(work["levels"], level + 1)
        work["n_cells"], work["n_steps"] = max(work["n_cells"], N), max(work["n_steps"], M)
        work["cell_steps"] += N * M * len(active)
        if level == 0:
            wide[active] = edge_ratio(q) > edge_tol
            active = active[~wide[active]]
            if not active.size:
                break
        if level + 1 < min_levels:
            continue

        def kl_at(l, which, ql):
            key = (l, which, ql)
            if key not in kls:
                g_, q_, act_ = sols[l]
                x, w, ref = sets.get(which, ql)
                xx = np.clip(x[:, 0], g_.centers[0], g_.centers[-1])
                out = np.full(B, np.nan)
                with np.errstate(invalid="ignore", over="ignore"):
                    out[act_] = (ref[None, :] - _log_interp(g_, q_, xx)) @ w
                kls[key] = out
            return kls[key][active]

        while True:
            err_q = np.empty((n_sets, active.size))
            err_h = np.empty((n_sets, active.size))
            for s in range(n_sets):
                best, eh = _richardson([kl_at(l, s, lev + 1) for l in range(level + 1)])
                best_n, _ = _richardson([kl_at(l, s, lev) for l in range(level + 1)])
                value[s, active], err_h[s], err_q[s] = best, eh, np.abs(best - best_n)
            error[:, active] = err_h + err_q
            finite = np.all(np.isfinite(error[:, active]), axis=0)
            done = finite & np.all(error[:, active] <= tol, axis=0)
            open_ = finite & ~done
            if np.any(err_q[:, open_] > 0.5 * tol) and lev + 2 <= max_qlevel and \
                    np.any(err_q[:, open_] > err_h[:, open_]):
                lev += 1
                continue
            break
        converged[active[done]] = True
        for b in active[~finite]:
            messages[b] = "log q is not finite at quadrature nodes (generated density underflows)"
        active = active[open_]
        if not active.size:
            break
    work["quadrature_level"] = max(work["quadrature_level"], lev + 1)
    for b in range(B):
        if converged[b]:
            messages[b] = "converged"
        elif messages[b] == "not converged" and np.all(np.isfinite(error[:, b])):
            messages[b] = (f"refinement limit reached ({work['n_cells']} cells, {work['n_steps']} steps, "
                           f"quadrature level {lev + 1}); error {error[:, b].max():.2g} > tol {tol:g}")
    return value, error, converged, messages, mass, wide


def _assemble_sde(res, tol, scalar):
    value, error, converged, messages, work, mass = res
    return assemble(value, error, converged, messages, work, tol, "sde", mass_loss=mass, scalar=scalar)


def kl_sde(score, target, process=None, t_min: float = 1e-3, T: float = 8.0, tol: float = 1e-6, *,
           quadrature: str = "nodes", order: int = 32, n_grid: int = 512, n_cells: int = 256,
           n_steps: int = 64, max_levels: int = 7, strict: bool = True) -> KLResult:
    """KL between the data and the reverse-SDE sampler's generated law (1D).

    ``value = KL(p_0 || q_{t_min})``, ``kl_tmin = KL(p_{t_min} || q_{t_min})`` with q
    the Fokker-Planck density (see the module docstring). Grids of
    ``n_cells 2^l`` cells and ``n_steps 2^l`` steps, l < ``max_levels``, are
    extrapolated until the error estimate is below ``tol``; ``mass_loss``
    reports ``|1 - mass|`` on the finest grid. ``quadrature``: ``"nodes"`` (the
    target's nodes from ``order``; the SDE density is smooth) or ``"grid"``
    (trapezoid from ``n_grid`` panels). Raises :class:`ConvergenceError` when
    the tolerance is not met (``strict=False``: returned with ``converged=False``).
    """
    batch = make_batch(score)
    if batch.dim != 1:
        raise ValueError("kl_sde is 1D: the score must have dim 1")
    process, t_min, T, tol = check_common(target, process, t_min, T, tol, 1)
    res = _kl_sde_batch(batch, target, process, t_min, T, tol, *_sde_options(
        quadrature, order, n_grid, n_cells, n_steps, max_levels))
    return finish(_assemble_sde(res, tol, True), strict)


def kl_sde_path(flow, taus, target, process=None, t_min=None, T=None, tol: float = 1e-3, *,
                quadrature: str = "nodes", order: int = 32, n_grid: int = 512, n_cells: int = 256,
                n_steps: int = 64, max_levels: int = 6, strict: bool = True) -> KLResult:
    """:func:`kl_sde` for a 1D random-feature flow at many training times at once
    (grid and steps shared; one score evaluation per step for all taus)."""
    process, t_min, T = flow_defaults(flow, process, t_min, T)
    if flow.model.dim != 1:
        raise ValueError("kl_sde_path is 1D")
    process, t_min, T, tol = check_common(target, process, t_min, T, tol, 1)
    taus = np.atleast_1d(np.asarray(taus, dtype=np.float64))
    batch = make_batch(model=flow.model, A=flow.params(taus))
    res = _kl_sde_batch(batch, target, process, t_min, T, tol, *_sde_options(
        quadrature, order, n_grid, n_cells, n_steps, max_levels))
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
