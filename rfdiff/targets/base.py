"""The interface every data distribution ("target") implements.

A target is the law ``p_0`` of ``x_0`` in R^d. Under a forward process
(:mod:`rfdiff.process`) ``x_t = alpha_t x_0 + sigma_t eps`` has the marginal

    p_t(z) = int p_0(x) N(z; alpha_t x, sigma_t^2 I) dx,

and a target answers questions about ``p_t``:

- ``log_pt(z, t, process) -> (k,)``: ``log p_t(z)``;
- ``score(z, t, process) -> (k, d)``: ``grad_z log p_t(z)``;
- ``score_dz(z, t, process) -> (k,)``: ``Laplacian_z log p_t(z)`` (the score's
  divergence, in 1D ``d/dz`` of the score);
- ``evaluate(z, t, process)``: the three at once (one pass over the target);
- ``score_fn(process)``: an :class:`rfdiff.score.Score` wrapping the above;
- ``partial_moments(z, t, process, upper=False) -> (3, k)`` (1D only):
  ``M_r(z) = int_{-inf}^{z} x^r p_t(x) dx`` for r = 0, 1, 2, or with
  ``upper=True`` the upper tail ``int_z^{inf} x^r p_t(x) dx`` (accurate where
  ``M_r(inf) - M_r(z)`` would cancel); ``partial_moments_absolute(z, t, process)``
  the lower ones to absolute accuracy, for sums over many points (the exact
  ReLU Gram); ``Empirical`` overrides it with a rule whose cost does not grow with n;
- ``expectation_nodes(t, process, order) -> (nodes (k, d), weights (k,))`` with
  ``sum(weights) = 1`` and ``sum w f(nodes) ~= E_{p_t}[f]``;
- ``sample(n, seed) -> (n, d)``, ``dim``, ``describe() -> dict``.

Points ``z`` have shape ``(k, d)`` (a 1D array is k points when d = 1); ``t`` is
a scalar or an array of shape ``(k,)``, one time per point (``partial_moments``
and ``expectation_nodes`` take a scalar t).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import _validate as v
from ..process import Process
from ..score import Score


class Target:
    """Base class of data distributions; see the module docstring for the maths.

    Subclasses implement ``dim``, ``sample``, ``evaluate``, ``expectation_nodes``,
    ``describe`` and, in 1D, ``_lower_partial_moments`` and ``_reflect`` (the law
    of ``-x_0``, which turns upper-tail moments into lower-tail ones).
    """

    dim: int = 1
    #: whether ``p_0`` itself has a density (log_pt at t = 0 is allowed)
    has_density_at_zero: bool = True

    # -- to implement -----------------------------------------------------
    def sample(self, n, seed=0) -> np.ndarray:
        raise NotImplementedError

    def evaluate(self, z, t, process) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(log p_t(z) (k,), score (k, d), score divergence (k,))``."""
        raise NotImplementedError

    def expectation_nodes(self, t, process, order=20):
        raise NotImplementedError

    def describe(self) -> dict:
        raise NotImplementedError

    def _lower_partial_moments(self, z, t, process) -> np.ndarray:
        raise NotImplementedError(f"{type(self).__name__} has no partial moments")

    def _reflect(self) -> "Target":
        raise NotImplementedError(f"{type(self).__name__} cannot be reflected")

    # -- shared -----------------------------------------------------------
    def log_pt(self, z, t, process) -> np.ndarray:
        """``log p_t(z)`` for points z of shape (k, d): shape (k,)."""
        return self.evaluate(z, t, process)[0]

    def score(self, z, t, process) -> np.ndarray:
        """``grad_z log p_t(z)``: shape (k, d)."""
        return self.evaluate(z, t, process)[1]

    def score_dz(self, z, t, process) -> np.ndarray:
        """``Laplacian_z log p_t(z)`` (divergence of the score): shape (k,)."""
        return self.evaluate(z, t, process)[2]

    def score_fn(self, process) -> Score:
        """The true score of ``p_t`` as an :class:`rfdiff.score.Score`."""
        check_process(process)
        return TargetScore(self, process, self.dim)

    def partial_moments(self, z, t, process, upper: bool = False) -> np.ndarray:
        """``M_r(z) = int_{-inf}^{z} x^r p_t(x) dx``, r = 0, 1, 2: shape (3, k).

        With ``upper=True``: ``int_{z}^{inf} x^r p_t(x) dx``, computed as
        ``(-1)^r`` times the lower moment of the reflected law at ``-z``, so that
        right tails keep the relative accuracy left tails have. 1D only; t scalar.
        """
        if self.dim != 1:
            raise ValueError(f"partial_moments needs a 1D target, this one has dim={self.dim}")
        zz = v.points("z", z, 1)[:, 0]
        t = scalar_time(t, allow_zero=self.has_density_at_zero)
        check_process(process)
        if not upper:
            return self._lower_partial_moments(zz, t, process)
        out = self._reflect()._lower_partial_moments(-zz, t, process)
        out[1] = -out[1]
        return out


    def partial_moments_absolute(self, z, t, process) -> np.ndarray:
        """Lower partial moments (3, k) at points z (k,) to *absolute* accuracy
        (~1e-16 of the totals), which is what sums over many kinks such as the
        exact ReLU Gram need; targets with a faster such rule override this
        (``Empirical``: a Hermite expansion whose cost does not grow with n)."""
        return self.partial_moments(np.asarray(z)[:, None], t, process)

@dataclass(frozen=True)
class TargetScore(Score):
    """``s(z, t) = grad_z log p_t(z)`` of a target under a process."""

    target: Any
    process: Process
    dim: int = 1

    def __call__(self, z, t) -> np.ndarray:
        return self.target.score(z, t, self.process)

    def dz(self, z, t) -> np.ndarray:
        return self.target.score_dz(z, t, self.process)


# -- helpers shared by the targets ---------------------------------------------
def check_process(process) -> Process:
    if not isinstance(process, Process):
        raise ValueError(f"process must be an rfdiff.process.Process, got {type(process).__name__}")
    return process


def scalar_time(t, *, allow_zero: bool) -> float:
    a = v.times("t", t, allow_zero=allow_zero)
    if a.ndim != 0:
        raise ValueError(f"t must be a scalar here, got shape {a.shape}")
    return float(a)


def time_arrays(t, k: int, process, *, allow_zero: bool):
    """Validated times as arrays of shape (k,): ``(t, alpha_t, sigma2_t)``."""
    check_process(process)
    a = v.times("t", t, allow_zero=allow_zero)
    if a.ndim == 0:
        a = np.full(k, float(a))
    elif a.shape != (k,):
        raise ValueError(f"t must be a scalar or have shape ({k},) (one time per point), got {a.shape}")
    return a, np.asarray(process.alpha(a), dtype=np.float64), np.asarray(process.sigma2(a), dtype=np.float64)


def probability_weights(weights, k: int | None = None, name: str = "weights") -> np.ndarray:
    """Validate weights: 1D, > 0, summing to 1 within 1e-12 (then renormalised)."""
    w = v.finite_array(name, weights, ndim=1)
    if w.size == 0:
        raise ValueError(f"{name} must not be empty")
    if k is not None and w.shape != (k,):
        raise ValueError(f"{name} must have shape ({k},), got {w.shape}")
    if np.any(w <= 0):
        raise ValueError(f"{name} must be > 0, got min {w.min()}")
    s = float(np.sum(w))
    if abs(s - 1.0) > 1e-12:
        raise ValueError(f"{name} must sum to 1, got {s!r}")
    return w / s


def gh_tensor(order: int, dim: int, active=None):
    """Tensor Gauss-Hermite rule for ``E_{e ~ N(0, I_dim)}``; directions with
    ``active[j] = False`` (zero variance) get the single node 0."""
    from ..numerics.quadrature import gauss_hermite_normal
    e, w = gauss_hermite_normal(order)
    if active is None:
        active = np.ones(dim, dtype=bool)
    grids, wts = [], []
    for j in range(dim):
        if active[j]:
            grids.append(e)
            wts.append(w)
        else:
            grids.append(np.zeros(1))
            wts.append(np.ones(1))
    mesh = np.meshgrid(*grids, indexing="ij")
    wmesh = np.meshgrid(*wts, indexing="ij")
    nodes = np.stack([g.ravel() for g in mesh], axis=1)
    weights = np.prod(np.stack([g.ravel() for g in wmesh], axis=1), axis=1)
    return nodes, weights


def use_parallel(k: int, min_points: int) -> bool:
    """Whether a numba kernel over k points should run its ``prange`` version:
    thread start-up costs more than it saves on a few points (and much more on a
    loaded machine), so small calls run serially."""
    import numba
    return k >= min_points and numba.get_num_threads() > 1


def sobol_normals(n_points: int, dim: int, seed: int) -> np.ndarray:
    """``n_points`` scrambled-Sobol N(0, I_dim) vectors: the first ``n_points`` points
    of :class:`scipy.stats.qmc.Sobol` (scrambled, seeded by ``seed``) mapped through
    the normal quantile ``Phi^-1`` (``scipy.special.ndtri``, the map ``scipy.stats.norm.ppf``
    uses), with u clipped to ``[1e-16, 1 - 1e-16]`` so that no coordinate is infinite.
    The one Sobol-normal generator of rfdiff (:func:`rfdiff.model.gram.qmc_normals` is it).
    Any n works: the first n points of a scrambled Sobol sequence are still
    low-discrepancy; only the exact balance of 2^k points is lost (a power of 2 is best)."""
    import warnings

    from scipy.special import ndtri
    from scipy.stats import qmc

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The balance properties", category=UserWarning)
        u = qmc.Sobol(dim, scramble=True, seed=seed).random(n_points)
    return ndtri(np.clip(u, 1e-16, 1.0 - 1e-16))
