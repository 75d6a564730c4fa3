"""Time-weighted denoising score matching of the random-feature model.

Training loss on the data ``x_1..x_n`` (time average over ``[t_min, T]``):

    L^(A) = 1/2 (T - t_min)^{-1} int_{t_min}^{T} lambda(t) (1/n) sum_i
            E_eps |s_A(alpha_t x_i + sigma_t eps, t) + eps/sigma_t|^2 dt
          = 1/2 [ tr(A G A^T)/m^2 - 2 tr(A C^T)/m + c0 ],

with ``G = avg_t lambda E_{p^_t}[phi phi^T]``, ``C = avg_t lambda E_{p^_t}[s^_t phi^T]``
(``s^_t`` the empirical optimal score, the conditional mean of ``-eps/sigma_t``)
and ``c0 = avg_t lambda d/sigma_t^2`` for denoising score matching
(``objective="dsm"``) or ``avg_t lambda E|s^_t|^2`` for explicit score
matching against ``s^_t`` (``"esm"``): the two differ only in ``c0``.
The population loss puts the true ``p_t`` and its score in place of ``p^_t``
and ``s^_t``; it is half the weighted L2 score error.

Weightings ``lambda(t)``: ``"sigma2"`` (``sigma_t^2``, default), ``"sigma"``
(``sigma_t/sqrt(d)``, seed 000's choice) and ``"likelihood"`` (``g(t)^2``,
the weighting of the KL bound). Times: Gauss-Legendre in ``log t``
(:func:`rfdiff.numerics.quadrature.log_time_grid`).

Single-noise-level mode (:meth:`ScoreMatching.single_level`): the same loss at
one fixed t with no time average, ``1/2 lambda(t) (1/n) sum_i E|s + eps/sigma_t|^2``;
with ``lambda = sigma_t^2`` this is half of ``(1/n) sum_i E|sigma_t s + eps|^2``,
so its training time is twice that of the unhalved loss.
"""
from __future__ import annotations

from functools import cached_property

import numpy as np

from .. import _validate as v
from .features import RandomFeatureScore
from .flow import Flow, QuadraticForm
from .gram import accumulate_rows, grid_rows_1d, qmc_rows, relu_exact_1d, sampled_rows
from ..backend import get_backend
from ..process import OU, Process
from ..numerics.quadrature import log_time_grid
from ..targets import Empirical

WEIGHTINGS = ("sigma2", "sigma", "likelihood")
METHODS = ("auto", "relu_exact", "grid", "rows")
OBJECTIVES = ("dsm", "esm")


def weighting(name: str, process: Process, t, d: int) -> np.ndarray:
    """``lambda(t)`` of the named weighting (see module docstring)."""
    t = np.asarray(t, dtype=np.float64)
    if name == "sigma2":
        return process.sigma2(t)
    if name == "sigma":
        return np.sqrt(process.sigma2(t) / d)
    if name == "likelihood":
        return process.g2(t)
    raise ValueError(f"weighting must be one of {list(WEIGHTINGS)}, got {name!r}")


class ScoreMatching:
    """The score-matching problem of a random-feature model on a training set.

    Parameters
    ----------
    model : RandomFeatureScore
    data : array (n, d) (a 1D array is n points in 1D) or an ``Empirical``
    process : forward process (default ``OU()``)
    t_min, T : the time window, ``0 < t_min < T``
    weighting : ``"sigma2"``, ``"sigma"`` or ``"likelihood"``
    n_time : Gauss-Legendre nodes in log t. The integrand is only piecewise
        smooth in t (a ReLU feature with a small ``|W_j|`` switches on and off
        in time where ``b_j(t)`` crosses 0), so convergence is algebraic
        (~N^-2.5); the default for 1D ReLU, 256, is within 1e-6 of a 4x finer
        rule (tested). Smooth activations converge fast: default 64. The rows
        method (d > 1), whose Monte-Carlo error dominates: default 32.
        :meth:`quadrature_error` estimates the error of any choice.
    method : ``"auto"`` (``relu_exact`` for 1D ReLU, ``grid`` for other 1D
        activations, ``rows`` for d > 1), or one of them explicitly
    objective : ``"dsm"`` or ``"esm"`` (which ``c0`` the training loss reports)
    z_density, z_order : grid method: panels per ``sigma_t`` and GL order
    n_eps, seed : rows method: Sobol noises per data point, and their seed
    n_rows_population : rows method: samples per time node for the population loss
    backend : array backend of the assembly (``"numpy"``, ``"cupy"``, ``"auto"`` or a
        :class:`~rfdiff.backend.Backend`): the row GEMMs and the O(m^2 n_time) part of
        the exact ReLU Gram run there; also the default backend of :meth:`flow`
    """

    def __init__(self, model: RandomFeatureScore, data, process: Process | None = None,
                 t_min: float = 1e-3, T: float = 8.0, weighting: str = "sigma2", *,
                 n_time: int | None = None, method: str = "auto", objective: str = "dsm",
                 z_density: float = 4.0, z_order: int = 8, n_eps: int = 16,
                 n_rows_population: int = 4096, seed: int = 0, backend="numpy"):
        if not isinstance(model, RandomFeatureScore):
            raise ValueError(f"model must be a RandomFeatureScore, got {type(model).__name__}")
        self.model = model
        self.data = data if isinstance(data, Empirical) else Empirical(_as_data(data, model.dim))
        if self.data.x.shape[1] != model.dim:
            raise ValueError(f"data must have dimension {model.dim} (the model's dim), "
                             f"got {self.data.x.shape[1]}")
        self.process = OU() if process is None else process
        if not isinstance(self.process, Process):
            raise ValueError(f"process must be an rfdiff Process, got {type(process).__name__}")
        self.t_min, self.T = v.window(t_min, T)
        self.weighting = v.choice("weighting", weighting, WEIGHTINGS)
        self.objective = v.choice("objective", objective, OBJECTIVES)
        self.method = self._resolve_method(v.choice("method", method, METHODS))
        if n_time is None:
            n_time = 32 if self.method == "rows" else 256 if model.act.piecewise_linear else 64
        self.n_time = v.positive_int("n_time", n_time)
        self.z_density = v.positive("z_density", z_density)
        self.z_order = v.positive_int("z_order", z_order)
        self.n_eps = v.positive_int("n_eps", n_eps)
        self.n_rows_population = v.positive_int("n_rows_population", n_rows_population)
        self.seed = v.positive_int("seed", seed, minimum=0)
        self.backend = get_backend(backend)
        grid = log_time_grid(self.t_min, self.T, self.n_time)
        self.t_nodes, self.t_weights = grid.t, grid.mean_weights
        self.single_t = None

    @classmethod
    def single_level(cls, model, data, t: float, process=None, weighting="sigma2", **kw):
        """The loss at one noise level ``t`` (no time average)."""
        t = v.real("t", t, lo=0.0, lo_open=True)
        self = cls(model, data, process, t_min=t, T=2 * t, weighting=weighting, n_time=1, **kw)
        self.t_nodes, self.t_weights = np.array([t]), np.array([1.0])
        self.single_t = t
        return self

    def _resolve_method(self, method):
        d = self.model.dim
        if method == "auto":
            if d > 1:
                return "rows"
            return "relu_exact" if self.model.act.piecewise_linear else "grid"
        if method in ("relu_exact", "grid") and d != 1:
            raise ValueError(f"method={method!r} is 1D only; use 'rows' for dim={d}")
        if method == "relu_exact" and not self.model.act.piecewise_linear:
            raise ValueError("method='relu_exact' needs activation='relu'")
        return method

    # -- assembly --------------------------------------------------------
    @property
    def omega(self) -> np.ndarray:
        """Time-average weights times ``lambda(t)`` at the time nodes."""
        return self.t_weights * weighting(self.weighting, self.process, self.t_nodes, self.model.dim)

    def _rows(self, target):
        if self.method == "grid":
            return grid_rows_1d(target, self.process, self.t_nodes, self.omega,
                                self.z_density, self.z_order)
        if target is self.data:
            return qmc_rows(self.data, self.process, self.t_nodes, self.omega, self.n_eps, self.seed)
        return sampled_rows(target, self.process, self.t_nodes, self.omega,
                            self.n_rows_population, self.seed)

    def training_rows(self):
        """The quadrature rows ``(z, t, weight, y)`` of the training loss, concatenated
        (grid and rows methods; ``relu_exact`` has none)."""
        if self.method == "relu_exact":
            raise ValueError("method='relu_exact' integrates exactly and has no rows; "
                             "build the ScoreMatching with method='grid' for row-based training")
        chunks = list(self._rows(self.data))
        z = np.concatenate([c[0] for c in chunks])
        t = np.concatenate([np.full(len(c[0]), c[1]) for c in chunks])
        w = np.concatenate([c[2] for c in chunks])
        y = np.concatenate([c[3] for c in chunks])
        return z, t, w, y

    def _gram_cross(self, target):
        """``(G, C, c0)``; ``c0 = avg_t lambda E_{p_t}|y|^2`` comes from the same rows
        (grid/rows methods; ``None`` for ``relu_exact``, see :meth:`_c0`)."""
        if self.method == "relu_exact":
            G, C = relu_exact_1d(self.model, target, self.process, self.t_nodes, self.omega, self.backend)
            return G, C, None
        return accumulate_rows(self.model, self._rows(target), self.backend)

    def _c0(self, target, c0_rows):
        """The rows' ``c0``, or (``relu_exact``, which has no rows) :meth:`weighted_fisher`."""
        return self.weighted_fisher(target) if c0_rows is None else c0_rows

    def weighted_fisher(self, target) -> float:
        """``avg_t lambda(t) E_{p_t}|grad log p_t|^2`` at this problem's time nodes:
        the ``c0`` of the target's population form (with ``target = data``: of
        the esm training loss). 1D: Gauss-Legendre panels over the mass of
        ``p_t`` (the grid method's z-rows; the target's own Gauss-Hermite nodes
        converge slowly for the score of a mixture, whose square is not
        polynomial: 4e-4 off at t = 1e-3 with order 40). d > 1: the target's
        expectation nodes."""
        total = 0.0
        if self.model.dim == 1:
            rows = grid_rows_1d(target, self.process, self.t_nodes, self.omega, self.z_density, self.z_order)
            for _, _, w, y in rows:
                total += float(np.sum(w * np.sum(y * y, axis=1)))
            return total
        for t, om in zip(self.t_nodes, self.omega):
            z, w = target.expectation_nodes(t, self.process, order=40)
            y = target.score(z, t, self.process)
            total += om * float(w @ np.sum(y * y, axis=1))
        return total

    @cached_property
    def train_form(self) -> QuadraticForm:
        """The training loss as a :class:`QuadraticForm` (``c0`` per ``objective``)."""
        G, C, c0_rows = self._gram_cross(self.data)
        return QuadraticForm(G, C, self._train_c0(c0_rows), self._info(self.objective))

    def _train_c0(self, c0_rows):
        """The training loss's ``c0``: ``avg_t lambda d/sigma_t^2`` (dsm) or the
        empirical optimal score's ``avg_t lambda E|s^_t|^2`` (esm)."""
        if self.objective == "dsm":
            return float(np.sum(self.omega * self.model.dim / self.process.sigma2(self.t_nodes)))
        return self._c0(self.data, c0_rows)

    def quadratic_form(self, target=None) -> QuadraticForm:
        """Training form (``target=None``) or the population form for ``target``."""
        if target is None:
            return self.train_form
        if getattr(target, "dim", None) != self.model.dim:
            raise ValueError(f"target must have dim {self.model.dim}")
        G, C, c0_rows = self._gram_cross(target)
        c0 = self._c0(target, c0_rows)
        return QuadraticForm(G, C, c0, self._info("population"))

    def flow(self, A0=None, backend=None, rcond=None, dtype=np.float64) -> Flow:
        """Eigendecompose once; the returned :class:`~rfdiff.model.flow.Flow` answers any tau.

        Uses the sample-space (rows x rows) kernel when the rows method has
        fewer rows than features. ``backend``: default this problem's.
        """
        if self.method == "rows":
            n_rows = self.data.n * self.n_eps * len(self.t_nodes)
            if n_rows < self.model.m:          # G is never formed: C and c0 from the same rows
                z, t, w, y = self.training_rows()
                phi = self.model.features(z, t)
                cross = (w[:, None] * y).T @ phi
                c0 = self._train_c0(float(np.sum(w * np.sum(y * y, axis=1))))
                return Flow.from_rows(phi, w, cross, c0, A0=A0, backend=backend or self.backend,
                                      rcond=rcond, problem=self, model=self.model)
        return Flow.from_gram(self.train_form, A0=A0, backend=backend or self.backend, rcond=rcond,
                              dtype=dtype, problem=self, model=self.model)

    def quadrature_error(self, factor: int = 2) -> dict:
        """Relative change of G and C when the time quadrature (and the z-grid)
        is refined by ``factor``: an error estimate of the default sizes."""
        fine = ScoreMatching(self.model, self.data, self.process, self.t_min, self.T, self.weighting,
                             n_time=self.n_time * factor, method=self.method, objective=self.objective,
                             z_density=self.z_density * factor, z_order=self.z_order,
                             n_eps=self.n_eps, seed=self.seed, backend=self.backend)
        if self.single_t is not None:
            raise ValueError("single-level mode has no time quadrature to refine")
        a, b = self.train_form, fine.train_form
        return {"gram": _rel(a.gram, b.gram), "cross": _rel(a.cross, b.cross), "c0": _rel(a.c0, b.c0)}

    def _info(self, objective):
        return {"objective": objective, "method": self.method, "n_time": self.n_time,
                "weighting": self.weighting, "t_min": self.t_min, "T": self.T,
                "single_t": self.single_t}

    def describe(self) -> dict:
        """Parameters for provenance records."""
        out = self._info(self.objective)
        out.update(model=self.model.describe(), process=self.process.describe(), n=self.data.n,
                   z_density=self.z_density, z_order=self.z_order, n_eps=self.n_eps, seed=self.seed,
                   backend=self.backend.name)
        return out


def _rel(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), np.finfo(float).tiny))


def _as_data(data, dim):
    x = v.finite_array("data", data)
    if x.ndim == 1 and dim == 1:
        x = x[:, None]
    if x.ndim != 2:
        raise ValueError(f"data must have shape (n, {dim}), got {x.shape}")
    if x.shape[0] < 1:
        raise ValueError("data must hold n >= 1 points")
    return x
