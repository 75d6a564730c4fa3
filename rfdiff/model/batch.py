"""The score-batch protocol: many scores evaluated together at one diffusion time.

The likelihood solvers integrate every (score, point) pair as one system with a
common time step, so at every stage all points share the time ``t``. A
*score batch* exploits that: ``batch(x, t)`` evaluates score ``b`` at its own
points ``x[b]`` (shape ``(B, k, d)``) or at points shared by all
(shape ``(k, d)``), returning ``s`` of shape ``(B, k, d)`` and, on request, the
divergence ``(B, k)``.

For a random-feature model at a stack of parameters ``A[b]`` (the same
features, one ``A`` per training time tau) the features are computed once per
stage. For 1D ReLU features it is cheaper still: at fixed t the score is
piecewise linear in z with kinks at ``z_j = -b_j(t)/W_j``,

    s_b(z) = (1/m) [ z sum_{j active} A_bj W_j + sum_{j active} A_bj b_j(t) ],

feature j being active for ``z >= z_j`` when ``W_j > 0`` and for ``z <= z_j``
when ``W_j < 0`` (the ``act'(0) = 1`` convention of
:func:`rfdiff.model.features.activation_derivative`). Sorting the kinks once per
stage and taking prefix sums per score (``O(B m + m log m)``) leaves
``O(log m)`` per point, instead of ``O(m)``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from .._numba import twins
from .features import RandomFeatureScore
from ..score import as_score


#: feature values held at once by the dense random-feature evaluation: 512 KB,
#: which stays in a core's L2 cache (3x faster for ReLU features than 32 MB chunks)
DENSE_CHUNK = 1 << 16


class ScoreBatch:
    """``n`` scores in ``dim`` dimensions evaluated at a common time: what the KL
    solvers, the Girsanov bound, the samplers and the metrics need of scores.

    - ``batch(x, t, dz=True)``: ``s`` of shape ``(n, k, dim)`` at points ``x`` of
      shape ``(n, k, dim)`` (score b at its own points) or ``(k, dim)`` (shared),
      and on request the divergence ``ds/dx`` summed over dimensions, ``(n, k)``;
    - ``subset(idx)``: the batch of scores ``idx``;
    - ``piecewise_linear``: the scores are piecewise linear in x (1D) with kinks
      at ``kinks(t)``, which the solvers treat exactly; ``kinks(t)`` is ``None``
      for smooth scores;
    - ``pieces(t)``: for piecewise-linear scores, the :class:`Pieces` that say
      where each linear piece switches on and how much it adds to ``ds/dx``
      (``None`` for smooth scores).
    """

    n: int
    dim: int
    piecewise_linear: bool = False

    def __call__(self, x, t: float, dz: bool = True):
        raise NotImplementedError

    def subset(self, idx) -> "ScoreBatch":
        raise NotImplementedError

    def kinks(self, t: float):
        """Kink positions at time t (1D piecewise-linear scores), else ``None``."""
        return None

    def pieces(self, t: float):
        """The :class:`Pieces` of a 1D piecewise-linear batch at time t, else ``None``."""
        return None


@dataclass(frozen=True)
class Pieces:
    """A 1D piecewise-linear score batch at one time:
    ``ds_b/dx = sum_j jump[b, j] 1[w_j x + bias_j >= 0]``; piece j switches at
    ``x = -bias_j / w_j`` (on to the right for ``w_j > 0``, to the left for
    ``w_j < 0``; for ``w_j = 0`` everywhere or nowhere). ``jump`` does not
    depend on t."""

    w: np.ndarray          # (K,)
    bias: np.ndarray       # (K,)
    jump: np.ndarray       # (n, K)


class ListBatch(ScoreBatch):
    """Arbitrary score objects, one call each."""

    def __init__(self, scores):
        self.scores = [as_score(s) for s in scores]
        self.n = len(self.scores)
        self.dim = int(getattr(self.scores[0], "dim", 1))

    def __call__(self, x, t, dz=True):
        shared = x.ndim == 2
        k = x.shape[-2]
        s = np.empty((self.n, k, self.dim))
        div = np.empty((self.n, k)) if dz else None
        tt = np.full(k, float(t))
        for b, sc in enumerate(self.scores):
            xb = x if shared else x[b]
            s[b] = np.asarray(sc(xb, tt), dtype=np.float64).reshape(k, self.dim)
            if dz:
                div[b] = np.asarray(sc.dz(xb, tt), dtype=np.float64).reshape(k)
        return s, div

    def subset(self, idx):
        return self if len(idx) == self.n else ListBatch([self.scores[i] for i in idx])


class RFBatch(ScoreBatch):
    """A random-feature model at a stack of parameters ``A`` of shape ``(B, d, m)``."""

    def __init__(self, model: RandomFeatureScore, A):
        A = np.asarray(A, dtype=np.float64)
        if A.ndim == 2:
            A = A[None]
        if A.shape[1:] != (model.dim, model.m):
            raise ValueError(f"A must have shape (B, {model.dim}, {model.m}), got {A.shape}")
        self.model, self.A = model, A
        self.n, self.dim, self.m = A.shape[0], model.dim, model.m
        self.piecewise_linear = model.dim == 1 and model.act.piecewise_linear
        W = model.W
        # a_bj = sum_i A_bij W_ji: the divergence weights
        self._aw = np.einsum("bij,ji->bj", A, W)
        if self.piecewise_linear:
            w = W[:, 0]
            self._pos, self._neg, self._flat = np.flatnonzero(w > 0), np.flatnonzero(w < 0), np.flatnonzero(w == 0)
            self._orders = KinkOrder()

    def __call__(self, x, t, dz=True):
        if self.piecewise_linear:
            return self._relu_1d(x, float(t), dz)
        return self._dense(x, float(t), dz)

    def subset(self, idx):
        return self if len(idx) == self.n else RFBatch(self.model, self.A[idx])

    def kinks(self, t):
        if not self.piecewise_linear:
            return None
        w = self.model.W[:, 0]
        nz = w != 0
        return -self.model.bias(float(t))[nz] / w[nz]

    def pieces(self, t):
        if not self.piecewise_linear:
            return None
        if not hasattr(self, "_jump"):
            w = np.ascontiguousarray(self.model.W[:, 0])
            self._w, self._jump = w, np.ascontiguousarray(self.A[:, 0, :] * w[None, :] / self.m)
        return Pieces(self._w, np.ascontiguousarray(self.model.bias(float(t))), self._jump)

    def _dense(self, x, t, dz):
        """Features once per point, then one GEMM with all the A's; in chunks of
        points (shared points) or of scores, so that about ``DENSE_CHUNK``
        feature values are held at a time (shared points: at least 4 rows per
        column of the A's, so that they are not re-read for every few rows)."""
        m, d = self.m, self.dim
        b = self.model.bias(t)
        shared = x.ndim == 2
        k = x.shape[-2]
        s = np.empty((self.n, k, d))
        div = np.empty((self.n, k)) if dz else None
        if shared:
            A2 = self.A.transpose(2, 0, 1).reshape(m, self.n * d)          # (m, B d)
            step = max(1, DENSE_CHUNK // m, 4 * self.n * d)
            for i in range(0, k, step):
                pre = x[i:i + step] @ self.model.W.T + b
                phi = self.model.act(pre)
                s[:, i:i + step] = (phi @ A2 / m).reshape(-1, self.n, d).transpose(1, 0, 2)
                if dz:
                    dphi = self.model.act.derivative(pre)
                    div[:, i:i + step] = (dphi @ self._aw.T).T / m
            return s, div
        step = max(1, DENSE_CHUNK // (m * k))
        for j in range(0, self.n, step):
            pre = np.einsum("bkd,md->bkm", x[j:j + step], self.model.W) + b
            phi = self.model.act(pre)
            s[j:j + step] = np.einsum("bkm,bdm->bkd", phi, self.A[j:j + step]) / m
            if dz:
                dphi = self.model.act.derivative(pre)
                div[j:j + step] = np.einsum("bkm,bm->bk", dphi, self._aw[j:j + step]) / m
        return s, div

    def _relu_1d(self, x, t, dz):
        model = self.model
        w = model.W[:, 0]
        bias = model.bias(t)
        z = np.ascontiguousarray(x[..., 0].reshape(-1, x.shape[-2]))
        jp, jn = self._pos, self._neg
        kp = -bias[jp] / w[jp]
        op = self._orders.argsort("pos", kp)
        kn = -bias[jn] / w[jn]
        on = self._orders.argsort("neg", kn)
        flat = self._flat[bias[self._flat] >= 0]
        const = self.A[:, 0, flat] @ bias[flat] if flat.size else np.zeros(self.n)
        s = np.empty((self.n, z.shape[1]))
        div = np.empty((self.n, z.shape[1]))
        _relu_kernel(kp[op], jp[op], kn[on], jn[on], self.A[:, 0, :], w, bias, z, const,
                     1.0 / self.m, s, div)
        return s[..., None], (div if dz else None)


@numba.njit(inline="always", cache=True)
def _count_le(a, x):
    """Number of entries of ascending ``a`` that are <= x (searchsorted right)."""
    lo, hi = 0, a.shape[0]
    while lo < hi:
        mid = (lo + hi) >> 1
        if a[mid] <= x:
            lo = mid + 1
        else:
            hi = mid
    return lo


@numba.njit(inline="always", cache=True)
def count_lt(a, x):
    """Number of entries of ascending ``a`` that are < x (searchsorted left; numba)."""
    lo, hi = 0, a.shape[0]
    while lo < hi:
        mid = (lo + hi) >> 1
        if a[mid] < x:
            lo = mid + 1
        else:
            hi = mid
    return lo


@numba.njit(inline="always", cache=True)
def _advance_le(a, x, lo):
    """``_count_le(a, x)`` given a guess ``lo``: walks forward from it when x has
    moved right (points visited in ascending order), else binary search."""
    n = a.shape[0]
    if lo > 0 and a[lo - 1] > x:
        return _count_le(a, x)
    while lo < n and a[lo] <= x:
        lo += 1
    return lo


@numba.njit(inline="always", cache=True)
def _advance_lt(a, x, lo):
    n = a.shape[0]
    if lo > 0 and a[lo - 1] >= x:
        return count_lt(a, x)
    while lo < n and a[lo] < x:
        lo += 1
    return lo


@numba.njit(cache=True, nogil=True)
def _resort(order, keys, max_moves):
    """Insertion-sort the permutation ``order`` by ``keys`` in place; returns False
    (leaving ``order`` a permutation, not sorted) after ``max_moves`` shifts.
    Kinks move little between nearby times, so the previous order is almost
    sorted and this is O(m) where argsort is O(m log m)."""
    moves = 0
    for i in range(1, order.shape[0]):
        o = order[i]
        kv = keys[o]
        j = i - 1
        while j >= 0 and keys[order[j]] > kv:
            order[j + 1] = order[j]
            j -= 1
            moves += 1
        order[j + 1] = o
        if moves > max_moves:
            return False
    return True


class KinkOrder:
    """Sorting permutations of kink positions, re-used from call to call."""

    def __init__(self):
        self._last = {}

    def argsort(self, name, keys):
        keys = np.ascontiguousarray(keys)
        order = self._last.get(name)
        if order is None or order.shape[0] != keys.shape[0] or not _resort(order, keys, 16 * keys.shape[0]):
            order = np.argsort(keys, kind="stable")
        self._last[name] = order
        return order


@numba.njit(cache=True, nogil=True)
def _relu_row(b, kp, jp, kn, jn, A, w, bias, z, const, inv_m, s, div):
    """Row ``b`` of :func:`_relu_kernel_impl`: its prefix sums (thread-local: one
    shared (B, m) block per call costs fresh pages every call), then the walk.
    A function of its own, compiled as serial code: 10-20% faster than the same
    body inlined into the parallel loop (two interleaved runs, B = 64, m = 4096,
    k = 8192)."""
    k = s.shape[1]
    npos, nneg = kp.shape[0], kn.shape[0]
    c1p = np.empty(npos + 1)
    c0p = np.empty(npos + 1)
    c1n = np.empty(nneg + 1)
    c0n = np.empty(nneg + 1)
    a1 = 0.0
    a0 = 0.0
    c1p[0] = 0.0
    c0p[0] = 0.0
    for r in range(npos):
        j = jp[r]
        a1 += A[b, j] * w[j]
        a0 += A[b, j] * bias[j]
        c1p[r + 1] = a1
        c0p[r + 1] = a0
    a1 = 0.0
    a0 = 0.0
    c1n[nneg] = 0.0
    c0n[nneg] = 0.0
    for r in range(nneg - 1, -1, -1):      # suffix sums: active for z <= kink
        j = jn[r]
        a1 += A[b, j] * w[j]
        a0 += A[b, j] * bias[j]
        c1n[r] = a1
        c0n[r] = a0
    zrow = b if z.shape[0] > 1 else 0
    p = 0
    q = 0
    for i in range(k):
        zi = z[zrow, i]
        p = _advance_le(kp, zi, p)
        q = _advance_lt(kn, zi, q)
        s1 = c1p[p] + c1n[q]
        s[b, i] = (zi * s1 + c0p[p] + c0n[q] + const[b]) * inv_m
        div[b, i] = s1 * inv_m


def _relu_kernel_impl(kp, jp, kn, jn, A, w, bias, z, const, inv_m, s, div):
    """Piecewise-linear ReLU score: prefix sums over sorted kinks, then one merge
    walk through the (mostly ascending) points per score.

    ``kp``/``jp``: ascending kinks and feature indices with ``W > 0`` (active right
    of the kink); ``kn``/``jn`` those with ``W < 0`` (active left of it).
    ``z`` is (B, k) per-score points or (1, k) shared ones.
    """
    for b in numba.prange(s.shape[0]):
        _relu_row(np.int64(b), kp, jp, kn, jn, A, w, bias, z, const, inv_m, s, div)


_relu_serial, _relu_parallel = twins(_relu_kernel_impl)
#: below this much work (scores x (features + points)) the kernel runs serially
PARALLEL_MIN_WORK = 1 << 16


def _relu_kernel(kp, jp, kn, jn, A, w, bias, z, const, inv_m, s, div):
    B, k = s.shape
    par = B > 1 and B * (A.shape[1] + k) >= PARALLEL_MIN_WORK
    (_relu_parallel if par else _relu_serial)(kp, jp, kn, jn, A, w, bias, z, const, inv_m, s, div)


def make_batch(scores=None, model=None, A=None) -> ScoreBatch:
    """A :class:`ScoreBatch` from score objects or from a model and a stack of ``A``."""
    if model is not None:
        return RFBatch(model, A)
    if not isinstance(scores, (list, tuple)):
        scores = [scores]
    from .features import RFScore
    if all(isinstance(s, RFScore) for s in scores) and all(s.model is scores[0].model for s in scores):
        return RFBatch(scores[0].model, np.stack([s.A for s in scores]))
    return ListBatch(scores)
