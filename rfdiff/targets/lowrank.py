"""Mixtures of low-rank Gaussians (seed 003): data on a union of subspaces.

    x = U_k a,   k ~ Categorical(w),   a ~ N(0, I_r),   U_k in R^{d x r}, U_k^T U_k = I_r,

i.e. the Gaussian mixture ``sum_k w_k N(0, U_k U_k^T)``. ``p_0`` has no density
(each component lives on an r-dimensional subspace), so ``log_pt`` needs t > 0;
for t > 0 every quantity is the :class:`GaussianMixture` one.
"""
from __future__ import annotations

import numpy as np

from .. import _validate as v
from .mixture import GaussianMixture


class LowRankMixture(GaussianMixture):
    """``sum_k w_k N(0, U_k U_k^T)`` with orthonormal blocks ``bases[k] = U_k``.

    Args:
        bases: (K, d, r) with ``U_k^T U_k = I_r`` (to 1e-10).
        weights: (K,) positive summing to 1; default uniform.
    """

    def __init__(self, bases, weights=None):
        U = v.finite_array("bases", bases, ndim=3)
        K, d, r = U.shape
        if not (1 <= r <= d) or K < 1:
            raise ValueError(f"bases must have shape (K, d, r) with K >= 1 and 1 <= r <= d, got {U.shape}")
        gram = np.einsum("kdi,kdj->kij", U, U)
        if np.max(np.abs(gram - np.eye(r))) > 1e-10:
            raise ValueError("bases must have orthonormal columns (U_k^T U_k = I_r)")
        w = np.full(K, 1.0 / K) if weights is None else weights
        super().__init__(w, np.zeros((K, d)), np.einsum("kdi,kei->kde", U, U))
        self.bases = U
        self.bases.flags.writeable = False
        self.rank = r

    def sample(self, n, seed=0):
        """``x = U_k a`` exactly in the subspace (no round-off off it)."""
        n = v.positive_int("n", n)
        rng = np.random.default_rng(v.positive_int("seed", seed, minimum=0))
        comp = rng.choice(self.n_components, size=n, p=self.weights)
        a = rng.standard_normal((n, self.rank))
        return np.einsum("ndr,nr->nd", self.bases[comp], a)

    def subspace_distance(self, x) -> np.ndarray:
        """``min_k |x - U_k U_k^T x|`` for points (k, d): 0 on the union of subspaces."""
        x = v.points("x", x, self.dim)
        proj = np.einsum("kdr,nd->nkr", self.bases, x)
        resid = x[:, None, :] - np.einsum("kdr,nkr->nkd", self.bases, proj)
        return np.sqrt(np.min(np.sum(resid * resid, axis=2), axis=1))

    def describe(self):
        out = super().describe()
        out.update(rank=self.rank, bases=self.bases.tolist())
        return out

    def __repr__(self):
        return f"LowRankMixture(K={self.n_components}, dim={self.dim}, rank={self.rank})"


def low_rank_mixture(d, r, K, seed=0, weights=None) -> LowRankMixture:
    """K random r-dimensional subspaces of R^d: ``U_k`` = Q factor of a seeded
    Gaussian d x r matrix (uniform on the Stiefel manifold after sign fixing)."""
    d = v.positive_int("d", d)
    r = v.positive_int("r", r)
    K = v.positive_int("K", K)
    if r > d:
        raise ValueError(f"r must be <= d, got r={r}, d={d}")
    rng = np.random.default_rng(v.positive_int("seed", seed, minimum=0))
    bases = np.empty((K, d, r))
    for k in range(K):
        q, rr = np.linalg.qr(rng.standard_normal((d, r)))
        bases[k] = q * np.sign(np.diag(rr))   # sign fix: Haar-distributed columns
    return LowRankMixture(bases, weights)
