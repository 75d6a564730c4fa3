"""The Fokker-Planck equation of the reverse SDE in 1D: its discretisation and solver.

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
  The grid can be smoothly stretched (uniform core, sinh-type growth
  outside, :class:`FPGrid`) to reach far beyond the core;
- time: backward Euler in r, one tridiagonal solve per step (Thomas
  algorithm, numba), on steps uniform in ``log t + t/t_c``: logarithmic near
  ``t_min`` (the score changes on a log-time scale), at most ``t_c`` apart
  later (:func:`time_steps`).

``H + dr A`` (H the cell widths) is an M-matrix whose columns sum to the
widths, so every step preserves positivity and mass exactly (up to rounding;
``mass_loss`` reports it).
The scheme is first order in the step and second order in h. All scores of a
batch (e.g. a random-feature flow at many taus) share grid and steps: the
score is evaluated at the faces once per step for all of them.
"""
from __future__ import annotations

import math

import numba
import numpy as np
from scipy.interpolate import CubicSpline
from scipy.special import lambertw, ndtr

from .._numba import twins
from ..model.batch import ScoreBatch

__all__ = ["FPGrid", "solve_fokker_planck", "time_steps", "edge_ratio"]


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
