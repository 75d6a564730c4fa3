"""Gaussian mixtures in any dimension, closed under the forward process.

    p_0 = sum_k w_k N(mu_k, S_k)   =>   p_t = sum_k w_k N(alpha_t mu_k, C_k(t)),
    C_k(t) = alpha_t^2 S_k + sigma_t^2 I = Q_k diag(alpha_t^2 lam_k + sigma_t^2) Q_k^T,

with ``S_k = Q_k diag(lam_k) Q_k^T`` diagonalised once. In the eigenbasis a
component's log-density is a sum of 1D terms ``l(y_j) = log N(y_j; alpha m_j,
alpha^2 lam_j + sigma2)`` (``y = Q_k^T z``, ``m = Q_k^T mu_k``), whose value and
first two derivatives come from the SymPy derivation in :mod:`rfdiff.symbolic`.
The mixture is assembled in log space, so nothing underflows far from the modes:

    log p_t = logsumexp_k (log w_k + l_k),   r_k = softmax_k (log w_k + l_k),
    grad log p_t = sum_k r_k g_k,            g_k = Q_k l'_k,
    Laplacian log p_t = sum_k r_k tr H_k + sum_k r_k |g_k - grad log p_t|^2,

the last form (a weighted variance of the component scores) instead of
``sum r_k (tr H_k + |g_k|^2) - |grad|^2``, which cancels catastrophically in the
tails. The eigendecomposition (rather than a Cholesky factor per t) gives
``C_k(t)`` for every t at once and allows singular ``S_k`` (low-rank
components); ``log p_0`` then does not exist and t = 0 raises.
"""
from __future__ import annotations

import numpy as np

from .. import _validate as v
from .. import symbolic
from . import _gauss1d
from .base import (Target, check_process, gh_tensor, probability_weights, scalar_time,
                   sobol_normals, time_arrays)


class GaussianMixture(Target):
    """``p_0 = sum_k w_k N(mu_k, S_k)`` in R^d (see the module docstring).

    Args:
        weights: (K,) positive, summing to 1 (within 1e-12).
        means: (K, d), or (K,) in 1D.
        covs: (K, d, d) symmetric positive semidefinite; or (K,) variances
            (isotropic ``S_k = covs[k] I`` when d > 1).
    """

    def __init__(self, weights, means, covs):
        w = probability_weights(weights)
        K = w.shape[0]
        mu = v.finite_array("means", means)
        if mu.ndim == 1:
            mu = mu.reshape(-1, 1)
        if mu.ndim != 2 or mu.shape[0] != K:
            raise ValueError(f"means must have shape (K, d) with K = {K}, got {np.shape(means)}")
        d = mu.shape[1]
        S = v.finite_array("covs", covs)
        if S.ndim == 1 or (S.ndim == 2 and d == 1 and S.shape == (K, 1)):
            if S.shape[0] != K:
                raise ValueError(f"covs must have shape ({K},) or ({K}, {d}, {d}), got {S.shape}")
            S = S.reshape(K, 1, 1) * np.eye(d)
        if S.shape != (K, d, d):
            raise ValueError(f"covs must have shape ({K}, {d}, {d}), got {np.shape(covs)}")
        scale = np.max(np.abs(S), axis=(1, 2), keepdims=True)
        scale = np.where(scale > 0, scale, 1.0)
        if np.any(np.abs(S - np.swapaxes(S, 1, 2)) > 1e-12 * scale):
            raise ValueError("covs must be symmetric")
        S = 0.5 * (S + np.swapaxes(S, 1, 2))
        lam, Q = np.linalg.eigh(S)
        if np.any(lam < -1e-12 * scale[:, :, 0]):
            bad = int(np.argmin(lam.min(axis=1) / scale[:, 0, 0]))
            raise ValueError(f"covs must be positive semidefinite; covs[{bad}] has eigenvalue {lam[bad].min()}")
        lam = np.maximum(lam, 0.0)   # round-off negatives of a singular S_k
        self.weights, self.means, self.covs = _frozen(w), _frozen(mu), _frozen(S)
        self.dim, self.n_components = d, K
        self._log_w = np.log(w)
        self._lam, self._Q = _frozen(lam), _frozen(Q)
        self._mu_rot = np.einsum("cd,cdj->cj", mu, Q)
        self.has_density_at_zero = bool(np.all(lam > 0))

    # -- p_t -----------------------------------------------------------------
    def _variances(self, t, alpha, sigma2):
        var = alpha[:, None, None] ** 2 * self._lam[None] + sigma2[:, None, None]
        if np.any(var <= 0):
            raise ValueError("log_pt, score and partial moments at t = 0 need positive definite covs "
                             "(a singular component has no density); use t > 0")
        return var

    def evaluate(self, z, t, process):
        """``(log p_t(z), grad log p_t(z), Laplacian log p_t(z))`` by log-sum-exp."""
        z = v.points("z", z, self.dim)
        t, alpha, sigma2 = time_arrays(t, z.shape[0], process, allow_zero=True)
        self._variances(t, alpha, sigma2)
        if self.dim == 1:
            y = z[:, None, :] * self._Q[None, :, 0, :]           # Q is +-1 in 1D
        else:
            y = np.einsum("kd,cdj->kcj", z, self._Q)
        with np.errstate(under="ignore"):
            l0, l1, l2 = symbolic.gaussian_component(
                y, self._mu_rot[None], self._lam[None], alpha[:, None, None], sigma2[:, None, None])
            logits = self._log_w[None, :] + l0.sum(axis=2)        # (k, K)
            top = logits.max(axis=1, keepdims=True)
            e = np.exp(logits - top)
            tot = e.sum(axis=1, keepdims=True)
            logp = top[:, 0] + np.log(tot[:, 0])
            r = e / tot
            g = np.einsum("cdj,kcj->kcd", self._Q, l1)            # component scores (k, K, d)
            score = np.einsum("kc,kcd->kd", r, g)
            dev = g - score[:, None, :]
            div = np.einsum("kc,kc->k", r, l2.sum(axis=2)) + np.einsum("kc,kcd,kcd->k", r, dev, dev)
        return logp, score, div

    def _lower_partial_moments(self, z, t, process):
        alpha, sigma2 = float(process.alpha(t)), float(process.sigma2(t))
        var = self._variances(np.array([t]), np.array([alpha]), np.array([sigma2]))[0, :, 0]
        return _gauss1d.mixture_pm(np.ascontiguousarray(z), alpha * self.means[:, 0], np.sqrt(var),
                                   np.asarray(self.weights))

    def _reflect(self):
        return GaussianMixture(self.weights, -self.means, self.covs)

    # -- expectations ------------------------------------------------------------
    def mean_cov(self, t, process):
        """Mean ``alpha sum w_k mu_k`` and covariance of ``p_t`` in closed form."""
        t = scalar_time(t, allow_zero=True)
        check_process(process)
        a, s2 = float(process.alpha(t)), float(process.sigma2(t))
        mbar = self.weights @ self.means
        dm = self.means - mbar
        cov = a * a * (np.einsum("c,cij->ij", self.weights, self.covs)
                       + np.einsum("c,ci,cj->ij", self.weights, dm, dm)) + s2 * np.eye(self.dim)
        return a * mbar, cov

    def expectation_nodes(self, t, process, order=20, *, qmc_points=4096, seed=0):
        """Nodes and weights with ``sum w f(nodes) ~= E_{p_t} f``.

        d <= 3: per component, tensor Gauss-Hermite (``order`` nodes per
        eigen-direction, one node along zero-variance directions): exact for
        polynomials of degree <= 2 order - 1. d > 3: a tensor rule is too big;
        per component the same ``qmc_points`` scrambled-Sobol normals (seeded,
        rounded up to a power of 2) — an unbiased QMC estimate, not exact.
        """
        t = scalar_time(t, allow_zero=True)
        check_process(process)
        order = v.positive_int("order", order)
        a, s2 = float(process.alpha(t)), float(process.sigma2(t))
        var = a * a * self._lam + s2                              # (K, d)
        nodes, weights = [], []
        if self.dim > 3:
            n_q = 1 << int(np.ceil(np.log2(v.positive_int("qmc_points", qmc_points))))
            e_all = sobol_normals(n_q, self.dim, seed)
        for c in range(self.n_components):
            if self.dim <= 3:
                e, we = gh_tensor(order, self.dim, active=var[c] > 0)
            else:
                e, we = e_all, np.full(n_q, 1.0 / n_q)
            nodes.append(a * self.means[c] + (e * np.sqrt(var[c])) @ self._Q[c].T)
            weights.append(self.weights[c] * we)
        w = np.concatenate(weights)
        return np.concatenate(nodes), w / w.sum()

    # -- sampling and provenance -------------------------------------------------
    def sample(self, n, seed=0):
        """``n`` draws: a component index by ``weights``, then ``mu_k + Q_k sqrt(lam_k) eps``."""
        n = v.positive_int("n", n)
        rng = np.random.default_rng(v.positive_int("seed", seed, minimum=0))
        comp = rng.choice(self.n_components, size=n, p=self.weights)
        eps = rng.standard_normal((n, self.dim))
        L = self._Q * np.sqrt(self._lam)[:, None, :]
        return self.means[comp] + np.einsum("nij,nj->ni", L[comp], eps)

    def describe(self):
        return {"name": type(self).__name__, "dim": self.dim, "weights": self.weights.tolist(),
                "means": self.means.tolist(), "covs": self.covs.tolist()}

    def __repr__(self):
        return f"{type(self).__name__}(K={self.n_components}, dim={self.dim})"


def _frozen(a):
    a = np.array(a, dtype=np.float64)
    a.flags.writeable = False
    return a


def two_modes(mu, q1=0.5) -> GaussianMixture:
    """``q1 N(-mu, 1) + (1 - q1) N(mu, 1)`` (seed 000), ``mu > 0``, ``0 < q1 < 1``."""
    mu = v.positive("mu", mu)
    q1 = v.real("q1", q1, lo=0.0, hi=1.0, lo_open=True, hi_open=True)
    return GaussianMixture([q1, 1.0 - q1], [[-mu], [mu]], [1.0, 1.0])


def quantile_mixture(eta, R, sign=1) -> GaussianMixture:
    """``(1 - eta) N(0, 1) + eta N(sign R, 1)`` (seed 002), ``0 < eta < 1``, ``R > 0``."""
    eta = v.real("eta", eta, lo=0.0, hi=1.0, lo_open=True, hi_open=True)
    R = v.positive("R", R)
    if sign not in (1, -1):
        raise ValueError(f"sign must be +1 or -1, got {sign!r}")
    return GaussianMixture([1.0 - eta, eta], [[0.0], [sign * R]], [1.0, 1.0])
