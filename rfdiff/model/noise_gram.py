"""Exact-in-the-noise Gram of bias-free tanh random features at one noise level.

Model (Bonnaire, Urfin, Biroli, Mezard 2025, eq. 7): ``s_A(x) = A phi(x)/sqrt(p)``,
``phi_i(x) = tanh(w_i . x / sqrt(d))``, ``W`` (p x d) frozen, no bias, no time input.
At the OU time t, ``x_t = e^{-t} x + sqrt(Delta) xi``, ``Delta = 1 - e^{-2t}``.

For a training point x the pre-activations are ``h_i = mu_i + sigma_i g_i`` with
``mu_i = e^{-t} w_i.x/sqrt(d)``, ``sigma_i = sqrt(Delta)|w_i|/sqrt(d)`` and
``g_i = w_i.xi/|w_i|`` standard normals of correlation ``rho_ij = w_i.w_j/(|w_i||w_j|)``.
Mehler's formula gives, with normalized Hermite ``h_k = He_k/sqrt(k!)`` and
``c_ik = E_g[tanh(mu_i + sigma_i g) h_k(g)]`` (Gauss-Hermite in g),

    E_xi[phi_i phi_j] = sum_k rho_ij^k c_ik c_jk,

so ``U = (1/n) sum_nu E_xi[phi phi^T] = sum_k rho^k * (C_k^T C_k)/n`` (K GEMMs,
``C_k`` n x p). The diagonal (rho = 1) is ``E[tanh^2]`` by direct quadrature. The
truncation after K terms is bounded by Parseval: ``|R_ij| <= rho_max^{K+1}
sqrt(T_i T_j)``, ``T_i = E[tanh^2] - sum_{k<=K} c_ik^2``; K is refined until the
bound (maximised over i, j, averaged over points) is below ``tol`` or it raises.
Cross term by Stein: ``E_xi[phi_i xi] = sqrt(Delta) (w_i/sqrt(d)) E[tanh'(h_i)]``,
``E[tanh'(h_i)] = c_i1/sigma_i``.

Population forms (fresh x ~ N(0, sigma_x^2 I)): ``x_t ~ N(0, Gamma^2 I)``,
``Gamma^2 = e^{-2t} sigma_x^2 + Delta``: the same machinery with mu = 0 and
``sigma_i = Gamma |w_i|/sqrt(d)``; the cross term with xi by Stein again
(``E[phi_i xi] = sqrt(Delta) w_i/sqrt(d) E[tanh'(h_i)]``) and with y = x_t
(``E[phi_i y] = Gamma^2 w_i/sqrt(d) E[tanh'(h_i)]``).

All in float64.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["NoiseGram", "noise_gram", "population_gram", "hermite_coefficients", "check_inputs"]


@dataclass(frozen=True)
class NoiseGram:
    """``U`` (p x p), ``V`` (d x p, ``= E[xi phi^T]`` averaged), extra cross
    ``Y = E[y phi^T]`` for the population (else None), truncation ``error`` bound,
    number of Hermite terms ``K`` and quadrature nodes."""

    U: np.ndarray
    V: np.ndarray
    error: float
    K: int
    nodes: int
    Y: np.ndarray | None = None
    info: dict = field(default_factory=dict)


def _gh(nodes):
    from scipy.special import roots_hermitenorm

    z, w = roots_hermitenorm(nodes)
    keep = np.isfinite(w) & (w > 0)         # drop underflowed tail nodes
    return z[keep], w[keep] / np.sqrt(2.0 * np.pi)


def _hermite_table(z, K):
    """(K+1, N) normalized probabilists' Hermite ``h_k(z) = He_k(z)/sqrt(k!)``."""
    H = np.empty((K + 1, z.size))
    H[0] = 1.0
    if K >= 1:
        H[1] = z
    for k in range(1, K):
        H[k + 1] = (z * H[k] - np.sqrt(k) * H[k - 1]) / np.sqrt(k + 1)
    return H


def hermite_coefficients(mu, sigma, K, nodes=96, chunk=64):
    """``c[nu, i, k] = E_g[tanh(mu[nu, i] + sigma[i] g) h_k(g)]`` (n, p, K+1) and
    ``E[tanh^2]`` (n, p), by ``nodes``-point Gauss-Hermite; the quadrature error is
    estimated against the ``3 nodes/2`` rule on the first chunk of points and returned."""
    mu = np.atleast_2d(mu)
    n, p = mu.shape
    out = np.empty((n, p, K + 1))
    sq = np.empty((n, p))
    z, w = _gh(nodes)
    z2, w2 = _gh(nodes * 3 // 2)
    Hw = (_hermite_table(z, K) * w).T          # (N, K+1)
    Hw2 = (_hermite_table(z2, K) * w2).T
    qerr = 0.0
    sz = sigma[None, :, None] * z[None, None, :]
    buf = np.empty((min(chunk, n), p, z.size))  # reused: a fresh array per chunk cost more in page
    for s in range(0, n, chunk):                # faults than the tanh itself
        k = min(chunk, n - s)
        F = np.add(mu[s:s + k, :, None], sz, out=buf[:k])
        np.tanh(F, out=F)
        F = F.reshape(k * p, z.size)            # 2D GEMMs: a 3D matmul runs as many small ones
        out[s:s + k] = (F @ Hw).reshape(k, p, K + 1)
        sq[s:s + k] = (np.square(F, out=F) @ w).reshape(k, p)
        if s == 0:                              # quadrature error estimate on the first chunk
            F2 = np.tanh(mu[:chunk, :, None] + sigma[None, :, None] * z2[None, None, :])
            F2 = F2.reshape(-1, z2.size) @ Hw2
            qerr = float(np.abs(F2.reshape(k, p, K + 1) - out[:k]).max())
    return out, sq, qerr


def check_inputs(d, psi_p, psi_n, t):
    """Validate (d, psi_p, psi_n, t): positive, p = psi_p d and n = psi_n d integers.
    Returns (d, p, n, t)."""
    for name, val in (("d", d), ("psi_p", psi_p), ("psi_n", psi_n), ("t", t)):
        if not (isinstance(val, (int, float, np.integer, np.floating)) and np.isfinite(val) and val > 0):
            raise ValueError(f"{name} must be a positive finite number, got {val!r}")
    if int(d) != d:
        raise ValueError(f"d must be a positive integer, got {d!r}")
    d = int(d)
    p, n = psi_p * d, psi_n * d
    if abs(p - round(p)) > 1e-9 or round(p) < 1:
        raise ValueError(f"psi_p must make p = psi_p * d a positive integer, got psi_p={psi_p!r}, d={d}")
    if abs(n - round(n)) > 1e-9 or round(n) < 1:
        raise ValueError(f"psi_n must make n = psi_n * d a positive integer, got psi_n={psi_n!r}, d={d}")
    return d, int(round(p)), int(round(n)), float(t)


def _coefficients(mu, sigma, K, nodes, qtol, max_nodes=384):
    """Hermite coefficients with the node count doubled until the quadrature error
    estimate is below ``qtol`` (else RuntimeError)."""
    while True:
        c, sq, qerr = hermite_coefficients(mu, sigma, K, nodes=nodes)
        if qerr <= qtol:
            return c, sq, qerr, nodes
        if nodes >= max_nodes:
            raise RuntimeError(f"Gauss-Hermite quadrature error {qerr:.2e} > qtol {qtol:.1e} "
                               f"at {nodes} nodes")
        nodes *= 2


def _converged_coefficients(mu, sigma, rho_max, p, tol, K, Kmax, nodes, qtol):
    """Coefficients with K doubled until the Parseval bound (module docstring) is below
    ``tol`` (else RuntimeError): ``(c, E[tanh^2], bound, qerr, K, nodes)``."""
    while True:
        c, sq, qerr, nodes = _coefficients(mu, sigma, K, nodes, qtol)
        tail = np.clip(sq - (c * c).sum(axis=2), 0.0, None)          # (n, p)
        st = np.sqrt(tail)
        # sum_nu sqrt(T_i T_j)/n <= max_i,j ; bound by the largest mean product
        bound = rho_max ** (K + 1) * float(np.sqrt((tail.max(axis=1) ** 2).mean())) if p > 1 else 0.0
        bound = min(bound, rho_max ** (K + 1) * float((st.max(axis=1) ** 2).mean()))
        if bound <= tol:
            return c, sq, bound, qerr, K, nodes
        if K >= Kmax:
            raise RuntimeError(f"Mehler series not converged: bound {bound:.2e} > tol {tol:.1e} at K={K}")
        K = min(2 * K, Kmax)


#: points on which the Hermite order and node count are chosen before the full pass
_PILOT = 64


def _assemble(W, mu, sigma, tol, K0, Kmax, nodes, progress=False, qtol=1e-9):
    p, d = W.shape
    norms = np.linalg.norm(W, axis=1)
    rho = (W @ W.T) / np.outer(norms, norms)
    np.fill_diagonal(rho, 0.0)
    rho_max = float(np.abs(rho).max()) if p > 1 else 0.0
    K = K0
    if mu.shape[0] > 2 * _PILOT:
        # choose K and the nodes on a pilot subset (the tanh evaluations dominate the cost);
        # the full pass below checks the bound on every point again and refines if needed
        *_, K, nodes = _converged_coefficients(mu[:_PILOT], sigma, rho_max, p, tol, K, Kmax, nodes, qtol)
    c, sq, bound, qerr, K, nodes = _converged_coefficients(mu, sigma, rho_max, p, tol, K, Kmax, nodes, qtol)
    n = c.shape[0]
    U = np.zeros((p, p))
    rk = np.ones((p, p))
    it = range(K + 1)
    if progress:
        from tqdm.auto import tqdm
        it = tqdm(it, desc="Mehler GEMMs", leave=False)
    for k in it:
        Ck = np.ascontiguousarray(c[:, :, k])
        CtC = Ck.T @ Ck
        U += np.multiply(rk, CtC, out=CtC)        # in place: p x p temporaries dominate at small n
        rk *= rho
    U /= n
    np.fill_diagonal(U, sq.mean(axis=0))
    dtanh = c[:, :, 1] / sigma[None, :]                          # E[tanh'(h)] (n, p)
    return U, dtanh, bound + qerr, K, nodes


def noise_gram(W, X, t, tol=1e-9, K0=8, Kmax=256, nodes=32, progress=False) -> NoiseGram:
    """Training-set forms: ``U = (1/n) sum_nu E_xi[phi(x_t^nu) phi^T]``,
    ``V = (1/n) sum_nu E_xi[xi phi(x_t^nu)^T]`` (d x p), exactly in xi."""
    W = np.asarray(W, dtype=np.float64)
    X = np.asarray(X, dtype=np.float64)
    p, d = W.shape
    delta = -np.expm1(-2.0 * t)
    mu = np.exp(-t) * (X @ W.T) / np.sqrt(d)
    sigma = np.sqrt(delta) * np.linalg.norm(W, axis=1) / np.sqrt(d)
    U, dtanh, err, K, nodes = _assemble(W, mu, sigma, tol, K0, Kmax, nodes, progress)
    V = np.sqrt(delta) * (W * dtanh.mean(axis=0)[:, None]).T / np.sqrt(d)
    return NoiseGram(U, V, err, K, nodes, info={"t": t, "n": len(X)})


def population_gram(W, t, sigma_x=1.0, tol=1e-9, K0=8, Kmax=256, nodes=32) -> NoiseGram:
    """Population forms over x ~ N(0, sigma_x^2 I) and xi: ``U``, ``V = E[xi phi^T]``,
    ``Y = E[x_t phi^T]``."""
    W = np.asarray(W, dtype=np.float64)
    p, d = W.shape
    delta = -np.expm1(-2.0 * t)
    gamma2 = np.exp(-2.0 * t) * sigma_x**2 + delta
    sigma = np.sqrt(gamma2) * np.linalg.norm(W, axis=1) / np.sqrt(d)
    U, dtanh, err, K, nodes = _assemble(W, np.zeros((1, p)), sigma, tol, K0, Kmax, nodes)
    g = dtanh[0]
    V = np.sqrt(delta) * (W * g[:, None]).T / np.sqrt(d)
    Y = gamma2 * (W * g[:, None]).T / np.sqrt(d)
    return NoiseGram(U, V, err, K, nodes, Y=Y, info={"t": t, "sigma_x": sigma_x, "gamma2": gamma2})
