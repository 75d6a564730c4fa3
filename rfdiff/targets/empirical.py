"""The training set as a target: the empirical law and its optimal score.

For data ``x_1..x_n`` with weights ``w_i`` (default 1/n) the forward marginal is

    p^_t(z) = sum_i w_i N(z; alpha_t x_i, sigma_t^2 I),

its score is the **empirical optimal score** (the minimiser of denoising score
matching on the training set)

    s^_t(z) = sum_i pi_i(z) (alpha_t x_i - z) / sigma_t^2,
    pi_i(z) = softmax_i (log w_i - |z - alpha_t x_i|^2 / (2 sigma_t^2)),

and its divergence is ``(-d + tr Cov_pi[alpha_t x - z] / sigma_t^2) / sigma_t^2``
(1D: ``(-1 + alpha_t^2 Var_pi[x] / sigma_t^2) / sigma_t^2``). ``p^_0`` is a sum of
point masses, so t must be > 0. Numba kernels, parallel over evaluation points,
O(n d) per point: one pass for the log-sum-exp maximum, one that accumulates
the normaliser and, with West's weighted updates, the mean and variance of the
residuals ``r_i = alpha_t x_i - z`` (deviations from the running mean, never
``E[r^2] - E[r]^2``, which cancels when the posterior is sharp).
"""
from __future__ import annotations

import hashlib
import math
from functools import cached_property

import numba as nb
import numpy as np

from .. import _validate as v
from ..numerics._hermite_pm import mixture_partial_moments
from . import _gauss1d
from .base import (Target, check_process, gh_tensor, probability_weights, scalar_time, sobol_normals,
                   use_parallel)


@nb.njit(cache=True)
def _empirical_point(z, x, logw, a, s2, mean, res, lg):
    """``(log p^_t(z), div)``; the score ``mean / s2`` is left in ``mean``."""
    n, d = x.shape
    top = -np.inf
    for j in range(n):
        q = 0.0
        for c in range(d):
            r = a * x[j, c] - z[c]
            q += r * r
        lg[j] = logw[j] - 0.5 * q / s2
        if lg[j] > top:
            top = lg[j]
    tot = 0.0
    m2 = 0.0
    for c in range(d):
        mean[c] = 0.0
    for j in range(n):
        if lg[j] - top < -700.0:   # below 1e-304 of the largest weight: skip the work
            continue
        e = math.exp(lg[j] - top)
        tot += e
        f = e / tot
        for c in range(d):   # West's weighted mean/variance update
            res[c] = a * x[j, c] - z[c]
            delta = res[c] - mean[c]
            mean[c] += f * delta
            m2 += e * delta * (res[c] - mean[c])
    for c in range(d):
        mean[c] /= s2
    logp = top + math.log(tot) - 0.5 * d * math.log(2.0 * math.pi * s2)
    return logp, (-d + m2 / tot / s2) / s2


@nb.njit(cache=True, parallel=True)
def _empirical_parallel(z, x, logw, alpha, sigma2, logp, score, div):
    for i in nb.prange(z.shape[0]):
        res = np.empty(x.shape[1])
        lg = np.empty(x.shape[0])
        logp[i], div[i] = _empirical_point(z[i], x, logw, alpha[i], sigma2[i], score[i], res, lg)


@nb.njit(cache=True)
def _empirical_serial(z, x, logw, alpha, sigma2, logp, score, div):
    res = np.empty(x.shape[1])
    lg = np.empty(x.shape[0])
    for i in range(z.shape[0]):
        logp[i], div[i] = _empirical_point(z[i], x, logw, alpha[i], sigma2[i], score[i], res, lg)


class Empirical(Target):
    """The empirical law of a training set ``x`` (see the module docstring).

    Args:
        x: (n, d) data, or (n,) in 1D; n >= 1, finite.
        weights: optional (n,) positive weights summing to 1; default 1/n.
    """

    has_density_at_zero = False

    def __init__(self, x, weights=None):
        x = v.finite_array("x", x)
        if x.ndim == 1:
            x = x.reshape(-1, 1)
        if x.ndim != 2:
            raise ValueError(f"x must have shape (n, d) or (n,), got {x.shape}")
        if x.shape[0] < 1 or x.shape[1] < 1:
            raise ValueError(f"x must hold at least one point (n >= 1, d >= 1), got shape {x.shape}")
        n, d = x.shape
        w = np.full(n, 1.0 / n) if weights is None else probability_weights(weights, n)
        self.x = np.ascontiguousarray(x)
        self.x.flags.writeable = False
        self.weights = w
        self.weights.flags.writeable = False
        self.uniform = weights is None
        self.n, self.dim = n, d
        self._logw = np.full(n, -math.log(n)) if weights is None else np.log(w)

    def _times(self, t, k, process):
        check_process(process)
        a = v.times("t", t, allow_zero=True)
        if np.any(a == 0):
            raise ValueError("t must be > 0 for Empirical: p^_0 is a sum of point masses with no density")
        if a.ndim == 0:
            a = np.full(k, float(a))
        elif a.shape != (k,):
            raise ValueError(f"t must be a scalar or have shape ({k},), got {a.shape}")
        return (np.ascontiguousarray(process.alpha(a), dtype=np.float64),
                np.ascontiguousarray(process.sigma2(a), dtype=np.float64))

    def evaluate(self, z, t, process):
        """``(log p^_t(z), s^_t(z), div s^_t(z))`` in one numba pass over the data."""
        z = np.ascontiguousarray(v.points("z", z, self.dim))
        alpha, sigma2 = self._times(t, z.shape[0], process)
        k = z.shape[0]
        logp, score, div = np.empty(k), np.empty((k, self.dim)), np.empty(k)
        kernel = _empirical_parallel if use_parallel(k, max(2, 20000 // self.n)) else _empirical_serial
        kernel(z, self.x, self._logw, alpha, sigma2, logp, score, div)
        return logp, score, div

    # -- 1D partial moments ------------------------------------------------------
    @cached_property
    def _sorted(self):
        order = np.argsort(self.x[:, 0], kind="stable")
        xs = np.ascontiguousarray(self.x[order, 0])
        ws = np.ascontiguousarray(self.weights[order])
        return (xs, ws, _gauss1d.kahan_prefix(ws), _gauss1d.kahan_prefix(ws * xs),
                _gauss1d.kahan_prefix(ws * xs * xs))

    def _lower_partial_moments(self, z, t, process):
        alpha, sigma = float(process.alpha(t)), math.sqrt(float(process.sigma2(t)))
        return _gauss1d.sorted_sum_pm(np.ascontiguousarray(z), *self._sorted, alpha, sigma,
                                      use_parallel(z.shape[0], 64))

    def partial_moments_absolute(self, z, t, process):
        """Lower partial moments (3, k) at z (k,) to absolute accuracy, in a cost
        independent of n (:mod:`rfdiff.numerics._hermite_pm`); 1D only."""
        if self.dim != 1:
            raise ValueError(f"partial_moments needs a 1D target, this one has dim={self.dim}")
        xs, ws, p0, p1, p2 = self._sorted
        a, s = float(process.alpha(t)), math.sqrt(float(process.sigma2(t)))
        return mixture_partial_moments(z, a * xs, ws, p0, a * p1, a * a * p2, s)

    @cached_property
    def _reflected(self):
        return Empirical(-self.x, None if self.uniform else self.weights)

    def _reflect(self):
        return self._reflected

    # -- expectations, neighbours, sampling --------------------------------------
    def expectation_nodes(self, t, process, order=20, *, qmc_points=64, seed=0):
        """Nodes and weights for ``E_{p^_t} f = sum_i w_i E_eps f(alpha x_i + sigma eps)``.

        t = 0: the data points themselves. d <= 3: tensor Gauss-Hermite with
        ``order`` nodes per direction around every point (exact for polynomials
        of degree <= 2 order - 1). d > 3: the same ``qmc_points`` scrambled-Sobol
        normals (seeded, rounded up to a power of 2) around every point.
        """
        t = scalar_time(t, allow_zero=True)
        check_process(process)
        order = v.positive_int("order", order)
        if t == 0.0:
            return self.x.copy(), self.weights.copy()
        a, s = float(process.alpha(t)), math.sqrt(float(process.sigma2(t)))
        if self.dim <= 3:
            e, we = gh_tensor(order, self.dim)
        else:
            n_q = 1 << int(np.ceil(np.log2(v.positive_int("qmc_points", qmc_points))))
            e, we = sobol_normals(n_q, self.dim, seed), np.full(n_q, 1.0 / n_q)
        nodes = (a * self.x[:, None, :] + s * e[None, :, :]).reshape(-1, self.dim)
        w = (self.weights[:, None] * we[None, :]).ravel()
        return nodes, w / w.sum()

    @cached_property
    def _tree(self):
        from scipy.spatial import cKDTree
        return cKDTree(self.x)

    def nearest(self, z):
        """``(d1, d2, index)``: Euclidean distance to the nearest and second-nearest
        training point and the nearest one's index (``d2 = inf`` when n = 1)."""
        z = v.points("z", z, self.dim)
        if self.n == 1:
            d1, idx = self._tree.query(z, k=1)
            return d1, np.full(len(z), np.inf), idx
        dist, idx = self._tree.query(z, k=2)
        return dist[:, 0], dist[:, 1], idx[:, 0]

    def sample(self, n, seed=0):
        """``n`` draws from ``p^_0``: training points picked by ``weights`` (with replacement)."""
        n = v.positive_int("n", n)
        rng = np.random.default_rng(v.positive_int("seed", seed, minimum=0))
        return self.x[rng.choice(self.n, size=n, p=self.weights)]

    def describe(self):
        h = hashlib.sha256(self.x.tobytes())
        if not self.uniform:
            h.update(self.weights.tobytes())
        return {"name": "Empirical", "n": self.n, "dim": self.dim, "uniform_weights": self.uniform,
                "sha256": h.hexdigest(), "mean": self.x.mean(axis=0).tolist(),
                "std": self.x.std(axis=0).tolist()}

    def __repr__(self):
        return f"Empirical(n={self.n}, dim={self.dim})"
