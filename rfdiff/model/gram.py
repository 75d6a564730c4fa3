"""Assembly of the Gram matrix ``G`` and cross term ``C`` of the loss.

For a weighting ``lambda(t)``, time-average weights ``omega_q`` at nodes ``t_q``
and a distribution ``p_t`` with target score ``y_t`` (the empirical optimal
score for the training loss, the true score for the population loss):

    G = sum_q omega_q lambda(t_q) E_{p_{t_q}}[phi phi^T]        (m x m)
    C = sum_q omega_q lambda(t_q) E_{p_{t_q}}[y phi^T]          (d x m)

Three ways to take ``E_{p_t}``:

``relu_exact`` (1D, ReLU): exact. A ReLU feature is linear on a half-line
(``phi_j = w_j z + b_j`` for ``z > z_j`` if ``w_j > 0``, ``z < z_j`` if ``w_j < 0``),
so ``E[phi_j phi_k]`` over the intersection ``[lo, hi]`` of two half-lines is
``w_j w_k M2 + (w_j b_k + w_k b_j) M1 + b_j b_k M0`` with ``M_r`` the partial
moments ``int_lo^hi z^r p_t``. Since ``y p_t = d p_t/dz``, integration by parts
(Stein's identity) gives ``E[y phi_j] = -E[phi_j'] = -w_j P(phi_j active)``.
Only the target's partial moments at the m kinks are needed: no z-grid and no
discretisation error; the time quadrature is the only approximation.

``grid`` (1D, any activation): composite Gauss-Legendre panels of width
``sigma_t / z_density`` over the mass of ``p_t``, weights ``p_t(z)``; the
integrand is smooth at scale ``sigma_t`` except at ReLU kinks.

``rows`` (any d): ``G = Phi^T diag(w) Phi`` over quasi-Monte-Carlo rows
``z = alpha_t x_i + sigma_t eps`` (scrambled Sobol normals), one GEMM per
time node — the GPU path.
"""
from __future__ import annotations

import numba
import numpy as np

from .._numba import twins
from ..backend import NUMPY, Backend
from ..numerics.quadrature import composite_gauss_legendre


#: j-rows per tile of the exact ReLU kernel: the tile's rows stay in cache while
#: the k-rows stream past (the size is timed in benchmarks/kernels.py)
_TILE = 16


def _relu_gram_kernel(npos, w, b, z, P, Q, G):
    """Add the kink-dependent part of the exact ReLU Gram to ``G`` (upper triangle).

    Features are ordered ``[w >= 0 | w < 0]`` (``npos`` of the first class); all
    arrays are (m, nq), contiguous in the time node q. Each feature is active on
    one side of its kink ``z[j, q]``: ``[z, inf)`` for the first class (``z = -inf``
    when always active, ``+inf`` when never), ``(-inf, z]`` for the second.
    ``P = omega (w F2 + b F1)`` and ``Q = omega (w F1 + b F0)`` with ``F_r`` the
    partial moment ``int_{-inf}^{z} x^r p_t`` at that kink, so the end of an
    active interval at feature j's kink contributes ``w_k P_j + b_k Q_j`` to
    ``E[phi_j phi_k]``. Per pair and node this is one comparison and one
    selection (branchless; LLVM vectorises the q loop, hence ``reassoc``):

    - both ``w >= 0``: minus the value at the later kink (the constant upper
      part ``int^inf`` is added by a GEMM in :func:`relu_exact_1d`);
    - ``w_j >= 0 > w_k``: the interval ``[z_j, z_k]``, if not empty;
    - both ``w < 0``: the value at the earlier kink.
    """
    m, nq = b.shape
    ntile = (m + _TILE - 1) // _TILE
    for i in numba.prange(ntile):
        # pair the longest tile rows with the shortest: balanced static schedule
        tile = i // 2 if i % 2 == 0 else ntile - 1 - i // 2
        j0 = tile * _TILE
        for k in range(j0, m):
            wk, bk, zk, Pk, Qk = w[k], b[k], z[k], P[k], Q[k]
            for j in range(j0, min(j0 + _TILE, k + 1)):
                wj, bj, zj, Pj, Qj = w[j], b[j], z[j], P[j], Q[j]
                acc = 0.0
                if k < npos:
                    for q in range(nq):
                        at_j = wk * Pj[q] + bk[q] * Qj[q]
                        at_k = wj * Pk[q] + bj[q] * Qk[q]
                        acc -= at_j if zj[q] >= zk[q] else at_k
                elif j < npos:
                    for q in range(nq):
                        val = wj * Pk[q] + bj[q] * Qk[q] - wk * Pj[q] - bk[q] * Qj[q]
                        acc += val if zj[q] < zk[q] else 0.0
                else:
                    for q in range(nq):
                        at_j = wk * Pj[q] + bk[q] * Qj[q]
                        at_k = wj * Pk[q] + bj[q] * Qk[q]
                        acc += at_j if zj[q] <= zk[q] else at_k
                G[j, k] += acc


# reassoc: the q-sums may be vectorised (no nnan/ninf: the kinks may be +-inf)
_relu_gram_serial, _relu_gram_parallel = twins(_relu_gram_kernel, fastmath={"reassoc", "contract"})


#: elements (rows x columns x time nodes) of each temporary of the array-module
#: kernel: 2^25 float64 = 256 MiB, four of them live at once
_XP_BLOCK_ELEMENTS = 1 << 25


def _relu_gram_xp(xp, npos, w, b, z, P, Q):
    """:func:`_relu_gram_kernel` (its upper triangle) written with array
    operations of the module ``xp`` (CuPy on a GPU; NumPy in the tests), over
    blocks of rows that never straddle the sign classes."""
    m, nq = b.shape
    G = xp.zeros((m, m))
    for r0, r1 in ((0, npos), (npos, m)):
        rows = max(1, _XP_BLOCK_ELEMENTS // max(1, (m - r0) * nq))
        for j0 in range(r0, r1, rows):
            j1 = min(j0 + rows, r1)
            # columns k >= j0 of the upper triangle, split at the sign classes
            for c0, c1 in ((j0, npos), (max(j0, npos), m)):
                if c1 <= c0:
                    continue
                rows_j, cols_k = slice(j0, j1), slice(c0, c1)
                wj, wk = w[rows_j, None, None], w[None, cols_k, None]
                bj, zj, Pj, Qj = (a[rows_j, None] for a in (b, z, P, Q))      # (rows, 1, nq)
                bk, zk, Pk, Qk = (a[None, cols_k] for a in (b, z, P, Q))      # (1, cols, nq)
                at_j = wk * Pj + bk * Qj              # the active interval ends at j's kink
                at_k = wj * Pk + bj * Qk              # ... at k's kink
                if c1 <= npos:                        # both w >= 0
                    val = -xp.where(zj >= zk, at_j, at_k)
                elif j1 <= npos:                      # w_j >= 0 > w_k: [z_j, z_k]
                    val = xp.where(zj < zk, at_k - at_j, 0.0)
                else:                                 # both w < 0
                    val = xp.where(zj <= zk, at_j, at_k)
                G[j0:j1, c0:c1] = val.sum(axis=-1)
    return G


def total_moments(target, t, process) -> np.ndarray:
    """``[E 1, E z, E z^2]`` under ``p_t`` (exact for mixture-type targets)."""
    z, wts = target.expectation_nodes(t, process, order=4)
    z = z[:, 0]
    return np.array([wts.sum(), wts @ z, wts @ (z * z)])


def relu_exact_1d(model, target, process, t_nodes, omega, backend: Backend = NUMPY):
    """Exact ReLU ``G`` (m x m) and ``C`` (1 x m); ``omega`` already includes lambda(t).

    With ``T_r`` the total moments, the pairs with both ``w >= 0`` share the
    upper part ``sum_q omega (w_j w_k T2 + (w_j b_k + w_k b_j) T1 + b_j b_k T0)``,
    a GEMM; the kink-dependent rest is :func:`_relu_gram_kernel` (numba, CPU) or,
    on any other ``backend``, :func:`_relu_gram_xp` (the O(m^2 n_time) part runs
    on the GPU with CuPy). The partial moments at the kinks (O(m n_time)) are
    computed on the CPU either way.
    ``C_j = -w_j sum_q omega P_t(phi_j active)`` (Stein).
    """
    w_all = np.asarray(model.W[:, 0], dtype=np.float64)
    nonneg = w_all >= 0
    perm = np.concatenate([np.flatnonzero(nonneg), np.flatnonzero(~nonneg)])
    npos = int(nonneg.sum())
    w = np.ascontiguousarray(w_all[perm])
    pos = np.arange(model.m) < npos
    m, nq = model.m, len(t_nodes)
    omega = np.asarray(omega, dtype=np.float64)
    b, z = np.empty((m, nq)), np.empty((m, nq))
    F = np.empty((3, m, nq))
    tot = np.empty((3, nq))
    flat = w == 0
    for q, t in enumerate(t_nodes):
        bq = model.bias(t)[perm]
        b[:, q] = bq
        kink = np.where(w != 0, -bq / np.where(w != 0, w, 1.0), 0.0)
        fk = target.partial_moments_absolute(kink, t, process)            # (3, m)
        tot[:, q] = total_moments(target, t, process)
        # w = 0: active everywhere (b > 0; kink -inf, F = 0) or nowhere (kink +inf, F = T)
        z[:, q] = np.where(flat, np.where(bq > 0, -np.inf, np.inf), kink)
        F[:, :, q] = np.where(flat, np.where(bq > 0, 0.0, tot[:, q:q + 1]), fk)
    P = omega * (w[:, None] * F[2] + b * F[1])
    Q = omega * (w[:, None] * F[1] + b * F[0])
    G = np.zeros((m, m))
    Tw = tot * omega                                                      # (3, nq)
    wp, bp = w[:npos], b[:npos]
    u = bp @ Tw[1]
    G[:npos, :npos] = (np.outer(wp, wp) * Tw[2].sum() + np.outer(wp, u) + np.outer(u, wp)
                       + (bp * Tw[0]) @ bp.T)
    if backend.name == "numpy":
        kernel = _relu_gram_parallel if m >= 256 else _relu_gram_serial
        kernel(npos, w, b, z, np.ascontiguousarray(P), np.ascontiguousarray(Q), G)
    else:
        G += backend.to_numpy(_relu_gram_xp(backend.xp, npos, *map(backend.asarray, (w, b, z, P, Q))))
    G = np.triu(G) + np.triu(G, 1).T
    active = np.where(pos[:, None], Tw[0][None, :] - omega * F[0], omega * F[0])
    C = -w * active.sum(axis=1)
    inv = np.argsort(perm)
    return G[np.ix_(inv, inv)], C[inv][None, :]


def accumulate_rows(model, row_chunks, backend: Backend):
    """``G = sum Phi^T diag(w) Phi``, ``C = sum (w y)^T Phi`` and the target's
    second moment ``c0 = sum w |y|^2``, in one pass over chunks of rows.

    Each chunk is ``(z (R, d), t (scalar or (R,)), w (R,), y (R, d))``.
    """
    xp = backend.xp
    G = xp.zeros((model.m, model.m))
    C = xp.zeros((model.dim, model.m))
    c0 = 0.0
    for z, t, wts, y in row_chunks:
        phi = backend.asarray(model.features(z, t))
        if np.all(wts >= 0):
            # sqrt(w) Phi: Phi^T diag(w) Phi = S^T S, which BLAS does as a symmetric
            # rank-k update (half the FLOPs of a GEMM)
            sw = backend.asarray(np.sqrt(wts))[:, None]
            phi *= sw
            G += phi.T @ phi
            C += (backend.asarray(y) * sw).T @ phi
        else:
            wphi = phi * backend.asarray(wts)[:, None]
            G += phi.T @ wphi
            C += backend.asarray(y).T @ wphi
        c0 += float(np.sum(wts * np.sum(y * y, axis=1)))
    return backend.to_numpy(0.5 * (G + G.T)), backend.to_numpy(C), c0


def mass_panels(target, t, process, sigma, z_density, max_panels=20_000):
    """Panel edges covering the mass of ``p_t`` (to double precision).

    The target's expectation nodes are grouped into clusters separated by empty
    gaps: wider than ``4 sigma`` *and* with ``p_t`` at the gap's midpoint below
    ``e^-40`` of its largest value at the nodes (between training points, or
    between well-separated modes; not between the nodes of one component wider
    than ``sigma``); each cluster, widened by ``2 sigma``, gets panels of width
    ``sigma/z_density``.
    """
    z = np.sort(target.expectation_nodes(t, process, order=30)[0][:, 0])
    gap = np.flatnonzero(np.diff(z) > 4.0 * sigma)
    if gap.size:
        mid = 0.5 * (z[gap] + z[gap + 1])
        ref = np.max(target.log_pt(z[:, None], t, process))
        gap = gap[target.log_pt(mid[:, None], t, process) < ref - 40.0]
    lo = np.concatenate([[z[0]], z[gap + 1]]) - 2.0 * sigma
    hi = np.concatenate([z[gap], [z[-1]]]) + 2.0 * sigma
    counts = np.maximum(1, np.ceil((hi - lo) * z_density / sigma)).astype(int)
    if counts.sum() > max_panels:
        counts = np.maximum(1, (counts * max_panels / counts.sum()).astype(int))
    return [np.linspace(a, b, c + 1) for a, b, c in zip(lo, hi, counts)]


def grid_rows_1d(target, process, t_nodes, omega, z_density=4.0, z_order=8):
    """Composite Gauss-Legendre rows against ``p_t`` in 1D, one chunk per time node.

    Yields ``(z, t, weight, y)`` with ``weight = omega_q * GL weight * p_t(z)``
    and ``y`` the target's score.
    """
    for t, om in zip(t_nodes, omega):
        sigma = float(np.sqrt(process.sigma2(t)))
        parts = [composite_gauss_legendre(e, z_order) for e in mass_panels(target, t, process, sigma, z_density)]
        z = np.concatenate([p[0] for p in parts])[:, None]
        wq = np.concatenate([p[1] for p in parts])
        logp, score, _ = target.evaluate(z, t, process)
        yield z, t, om * wq * np.exp(logp), score


def qmc_normals(n: int, d: int, seed: int) -> np.ndarray:
    """``n`` scrambled-Sobol standard normal vectors in d dimensions:
    :func:`rfdiff.targets.base.sobol_normals`."""
    from ..targets.base import sobol_normals

    return sobol_normals(n, d, seed)


def qmc_rows(empirical, process, t_nodes, omega, n_eps=16, seed=0):
    """Rows ``z = alpha_t x_i + sigma_t eps`` for every data point, ``n_eps``
    Sobol noises each, weight ``omega_q/(n n_eps)``; the target is the empirical
    optimal score at z (the conditional mean of the DSM target ``-eps/sigma``)."""
    x = empirical.x
    n, d = x.shape
    for q, (t, om) in enumerate(zip(t_nodes, omega)):
        eps = qmc_normals(n * n_eps, d, seed + 7919 * q)
        z = (process.alpha(t) * np.repeat(x, n_eps, axis=0) + np.sqrt(process.sigma2(t)) * eps)
        yield z, t, np.full(len(z), om / (n * n_eps)), empirical.score(z, t, process)


def sampled_rows(target, process, t_nodes, omega, n_rows=4096, seed=0):
    """Rows ``z ~ p_t`` (target samples pushed forward with Sobol noise) for the
    population loss in d > 1; weights ``omega_q / n_rows``."""
    for q, (t, om) in enumerate(zip(t_nodes, omega)):
        x0 = target.sample(n_rows, seed=seed + 104729 * (q + 1))
        eps = qmc_normals(n_rows, target.dim, seed + 7919 * q + 1)
        z = process.alpha(t) * x0 + np.sqrt(process.sigma2(t)) * eps
        yield z, t, np.full(n_rows, om / n_rows), target.score(z, t, process)
