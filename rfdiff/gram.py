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

import warnings

import numba
import numpy as np

from ._hermite_pm import empirical_partial_moments
from ._numba import twins
from .backend import Backend
from .targets import Empirical
from .quadrature import composite_gauss_legendre


def _relu_gram_kernel(w, b, zlo, zhi, flo, fhi, omega, G, C):
    """Accumulate the exact ReLU Gram over time nodes.

    Per feature j and time node q (arrays shaped (m, nq) so the inner q loop is
    contiguous): ``b[j, q]`` bias, ``zlo/zhi`` the active interval's ends
    (+-inf allowed), ``flo/fhi[r]`` the partial moments M_r at those ends.
    """
    m, nq = b.shape
    for j in numba.prange(m):
        wj = w[j]
        cj = 0.0
        for q in range(nq):
            cj += omega[q] * wj * (fhi[0, j, q] - flo[0, j, q])
        C[j] = -cj
        for k in range(j, m):
            wk = w[k]
            acc = 0.0
            for q in range(nq):
                if zlo[j, q] >= zlo[k, q]:
                    lo, f0l, f1l, f2l = zlo[j, q], flo[0, j, q], flo[1, j, q], flo[2, j, q]
                else:
                    lo, f0l, f1l, f2l = zlo[k, q], flo[0, k, q], flo[1, k, q], flo[2, k, q]
                if zhi[j, q] <= zhi[k, q]:
                    hi, f0h, f1h, f2h = zhi[j, q], fhi[0, j, q], fhi[1, j, q], fhi[2, j, q]
                else:
                    hi, f0h, f1h, f2h = zhi[k, q], fhi[0, k, q], fhi[1, k, q], fhi[2, k, q]
                if lo < hi:
                    bj = b[j, q]
                    bk = b[k, q]
                    acc += omega[q] * (wj * wk * (f2h - f2l) + (wj * bk + wk * bj) * (f1h - f1l)
                                       + bj * bk * (f0h - f0l))
            G[j, k] = acc
    for j in range(m):
        for k in range(j + 1, m):
            G[k, j] = G[j, k]


_relu_gram_serial, _relu_gram_parallel = twins(_relu_gram_kernel)


def total_moments(target, t, process) -> np.ndarray:
    """``[E 1, E z, E z^2]`` under ``p_t`` (exact for mixture-type targets)."""
    z, wts = target.expectation_nodes(t, process, order=4)
    z = z[:, 0]
    return np.array([wts.sum(), wts @ z, wts @ (z * z)])


def partial_moments(target, z, t, process):
    """``int_{-inf}^{z} x^r p_t(x) dx`` at points z (k,); the training set uses the
    fast Hermite-expansion kernel (absolute accuracy, cost independent of n)."""
    if isinstance(target, Empirical):
        return empirical_partial_moments(target, z, t, process)
    return target.partial_moments(z[:, None], t, process)


def relu_exact_1d(model, target, process, t_nodes, omega):
    """Exact ReLU ``G`` (m x m) and ``C`` (1 x m); ``omega`` already includes lambda(t)."""
    w = np.ascontiguousarray(model.W[:, 0])
    m, nq = model.m, len(t_nodes)
    b = np.empty((m, nq))
    zlo, zhi = np.empty((m, nq)), np.empty((m, nq))
    flo, fhi = np.empty((3, m, nq)), np.empty((3, m, nq))
    pos, neg = w > 0, w < 0
    for q, t in enumerate(t_nodes):
        bq = model.bias(t)
        b[:, q] = bq
        kink = np.where(w != 0, -bq / np.where(w != 0, w, 1.0), 0.0)
        fk = partial_moments(target, kink, t, process)                    # (3, m)
        tot = total_moments(target, t, process)[:, None]
        always = (w == 0) & (bq > 0)                                     # constant active feature
        zlo[:, q] = np.where(pos, kink, np.where(always, -np.inf, np.where(neg, -np.inf, np.inf)))
        zhi[:, q] = np.where(neg, kink, np.where(always | pos, np.inf, -np.inf))
        flo[:, :, q] = np.where(pos, fk, np.where(zlo[:, q] == np.inf, tot, 0.0))
        fhi[:, :, q] = np.where(neg, fk, np.where(zhi[:, q] == np.inf, tot, 0.0))
    G = np.empty((m, m))
    C = np.empty(m)
    kernel = _relu_gram_parallel if m >= 256 else _relu_gram_serial
    kernel(w, b, zlo, zhi, flo, fhi, np.ascontiguousarray(omega, dtype=np.float64), G, C)
    return G, C[None, :]


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
        wphi = phi * backend.asarray(wts)[:, None]
        G += phi.T @ wphi
        C += backend.asarray(y).T @ wphi
        c0 += float(np.sum(wts * np.sum(y * y, axis=1)))
    return backend.to_numpy(0.5 * (G + G.T)), backend.to_numpy(C), c0


def mass_panels(target, t, process, sigma, z_density, max_panels=20_000):
    """Panel edges covering the mass of ``p_t`` (to double precision).

    The target's expectation nodes are grouped into clusters separated by gaps
    wider than ``4 sigma`` (empty space between modes or training points);
    each cluster, widened by ``2 sigma``, gets panels of width ``sigma/z_density``.
    """
    z = np.sort(target.expectation_nodes(t, process, order=30)[0][:, 0])
    cut = np.flatnonzero(np.diff(z) > 4.0 * sigma)
    lo = np.concatenate([[z[0]], z[cut + 1]]) - 2.0 * sigma
    hi = np.concatenate([z[cut], [z[-1]]]) + 2.0 * sigma
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
    """``n`` scrambled-Sobol standard normal vectors in d dimensions."""
    from scipy.stats import norm, qmc          # lazy: scipy.stats costs ~1 s to import

    with warnings.catch_warnings():
        # any n is fine: the first n points of a scrambled Sobol sequence are still
        # low-discrepancy; only the exact balance of 2^k points is lost
        warnings.filterwarnings("ignore", message="The balance properties", category=UserWarning)
        u = qmc.Sobol(d, scramble=True, seed=seed).random(n)
    return norm.ppf(np.clip(u, 1e-16, 1 - 1e-16))


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
