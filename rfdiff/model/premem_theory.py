"""Theory side of the single-level tanh model (Bonnaire, Urfin, Biroli, Mezard 2025, sec. 3).

Gaussian equivalence. With ``x ~ N(0, sigma_x^2 I)``, ``Gamma^2 = e^{-2t} sigma_x^2 + Delta``,
the features ``phi = tanh(W x_t/sqrt(d))`` of a training point behave (for the
spectrum of U, at large d, p, n) as
``a_t e^{-t} W x/sqrt(d) + b_t W xi/sqrt(d) + v_t omega(x) + s_t z(x, xi)``
with independent standard ``omega``, ``z``, and, for ``u, v, w, g`` independent N(0, 1),

    a_t   = E[tanh'(Gamma g)]                                       (Stein: E[tanh(zeta) u]/(e^{-t} sigma_x))
    b_t   = E[v tanh(zeta)] = sqrt(Delta) a_t,                      zeta = e^{-t} sigma_x u + sqrt(Delta) v
    v_t^2 = E_u[(E_v tanh(zeta))^2] - a_t^2 e^{-2t} sigma_x^2
    s_t^2 = E[tanh^2(Gamma g)] - a_t^2 Gamma^2 - v_t^2

(the paper's constants; ``a_t^2 e^{-2t} sigma_x^2 + b_t^2 = a_t^2 Gamma^2``), so that

    U ~ (1/n) G G^T + b_t^2 W W^T/d + s_t^2 I_p,   G = e^{-t} a_t W X/sqrt(d) + v_t Omega  (p x n).

Spectrum (leading order when the bulks separate, psi_p >> psi_n >> 1): p - n - d
eigenvalues at s_t^2; the memorization bulk of n eigenvalues
``s_t^2 + v_t^2 (1 -+ sqrt(psi_p/psi_n))^2`` (Marchenko-Pastur of ``v_t^2 Omega Omega^T/n``);
the population bulk of d eigenvalues ``~ s_t^2 + a_t^2 Gamma^2 (sqrt(psi_p) -+ 1)^2``
(Marchenko-Pastur of ``W W^T/d`` times the linear part, to leading order in 1/psi_n).
Modes decay as ``exp(-2 Delta lambda tau/psi_p)``; the slowest memorization mode gives

    tau_mem_theory = psi_p / (Delta lambda_min),   lambda_min = s_t^2 + v_t^2 (1 - sqrt(psi_p/psi_n))^2,

and the population bulk ``tau_gen ~ 1/Delta``.

The integrals have no closed form for tanh; they are Gauss-Hermite rules (the
inner E_v of v_t^2 nested) refined by doubling until two rules agree to ``tol``
(else RuntimeError). Any activation can be passed (``act``, ``dact``); the tests
check the formulas with a polynomial activation against SymPy's exact moments.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["TheoryConstants", "theory_constants", "bulk_edges", "lambda_min", "tau_mem_theory"]


@dataclass(frozen=True)
class TheoryConstants:
    """``a_t, b_t, v_t^2, s_t^2`` at (t, sigma_x), ``delta`` = Delta, ``gamma2`` = Gamma^2,
    ``error`` the quadrature error estimate (largest of the four), ``nodes`` the rule used."""

    t: float
    sigma_x: float
    a: float
    b: float
    v2: float
    s2: float
    delta: float
    gamma2: float
    error: float
    nodes: int


def _gh(nodes):
    from scipy.special import roots_hermitenorm

    z, w = roots_hermitenorm(nodes)
    return z, w / np.sqrt(2.0 * np.pi)


def _dtanh(x):
    return 1.0 - np.tanh(x) ** 2


def _constants(alpha, beta, gamma, nodes, act, dact):
    z, w = _gh(nodes)
    a = float(w @ dact(gamma * z))
    sq = float(w @ act(gamma * z) ** 2)
    inner = act(alpha * z[:, None] + beta * z[None, :]) @ w       # E_v act(alpha u + beta v), per u
    m2 = float(w @ inner**2)
    return np.array([a, sq, m2])


def theory_constants(t: float, sigma_x: float = 1.0, tol: float = 1e-12, act=np.tanh, dact=_dtanh,
                     nodes: int = 32, max_nodes: int = 2048) -> TheoryConstants:
    """The paper's ``a_t, b_t, v_t^2, s_t^2`` (module docstring), by Gauss-Hermite rules
    refined until ``nodes`` and ``2 nodes`` agree to ``tol`` (else RuntimeError)."""
    for name, val in (("t", t), ("sigma_x", sigma_x)):
        if not (isinstance(val, (int, float, np.integer, np.floating)) and np.isfinite(val) and val > 0):
            raise ValueError(f"{name} must be a positive finite number, got {val!r}")
    delta = float(-np.expm1(-2.0 * t))
    alpha = float(np.exp(-t) * sigma_x)
    gamma2 = alpha**2 + delta
    args = (alpha, np.sqrt(delta), np.sqrt(gamma2))
    prev = _constants(*args, nodes, act, dact)
    while True:
        nxt = _constants(*args, 2 * nodes, act, dact)
        err = float(np.abs(nxt - prev).max())
        nodes *= 2
        if err <= tol:
            break
        if nodes >= max_nodes:
            raise RuntimeError(f"Gauss-Hermite constants not converged: change {err:.2e} > tol {tol:.1e} "
                               f"at {nodes} nodes")
        prev = nxt
    a, sq, m2 = (float(x) for x in nxt)
    v2 = m2 - a * a * alpha**2
    s2 = sq - a * a * gamma2 - v2
    return TheoryConstants(float(t), float(sigma_x), a, float(np.sqrt(delta) * a), v2, s2, delta, gamma2,
                           err, nodes)


def lambda_min(c: TheoryConstants, psi_p: float, psi_n: float) -> float:
    """Lower edge of the memorization bulk, ``s_t^2 + v_t^2 (1 - sqrt(psi_p/psi_n))^2``."""
    return c.s2 + c.v2 * (1.0 - np.sqrt(psi_p / psi_n)) ** 2


def tau_mem_theory(c: TheoryConstants, psi_p: float, psi_n: float) -> float:
    """``psi_p / (Delta lambda_min)`` in the paper's time units."""
    return float(psi_p / (c.delta * lambda_min(c, psi_p, psi_n)))


def bulk_edges(c: TheoryConstants, psi_p: float, psi_n: float) -> dict:
    """Leading-order spectrum of U (module docstring): ``null`` (s_t^2, multiplicity
    ``p - n - d`` when positive), ``memorization`` (lo, hi), ``population`` (lo, hi)."""
    r = np.sqrt(psi_p / psi_n)
    lin = c.a**2 * c.gamma2
    return {"null": c.s2,
            "memorization": (c.s2 + c.v2 * (1.0 - r) ** 2, c.s2 + c.v2 * (1.0 + r) ** 2),
            "population": (c.s2 + lin * (np.sqrt(psi_p) - 1.0) ** 2, c.s2 + lin * (np.sqrt(psi_p) + 1.0) ** 2)}



def _saddle_residual(x, z, c, psi_p, psi_n):
    """Residuals of the paper's saddle-point equations for the Stieltjes transform q(z)
    of U (Sigma = sigma_x^2 I), unknowns ``q`` and the auxiliary ``s`` (real, imag parts)."""
    q, s = x[0] + 1j * x[1], x[2] + 1j * x[3]
    lin = c.a**2 * (c.gamma2 - c.delta)                # a_t^2 e^{-2t} sigma_x^2
    den = 1.0 + lin * (psi_p / psi_n) * s + c.v2 * (psi_p / psi_n) * q
    e1 = s - 1.0 / (c.b**2 * psi_p + 1.0 / q + psi_p * lin / den)
    e2 = psi_p * (c.s2 - z) + psi_p * c.v2 / den + (1.0 - psi_p) / q - s / q**2
    return [e1.real, e1.imag, e2.real, e2.imag]


def spectral_density(c: TheoryConstants, psi_p: float, psi_n: float, lam, eps: float = 1e-10) -> np.ndarray:
    """Continuous part of the theory's eigenvalue density of U, ``rho(lambda) = |Im q(lambda - i eps)|/pi``.

    ``q`` solves the saddle-point equations of Bonnaire et al. (sec. 3 and their
    appendix; :func:`_saddle_residual`), followed for each lambda from ``eps = 100``
    (where ``q ~ -1/z``) down to ``eps`` on a geometric ladder of 48 rungs
    (Levenberg-Marquardt, ``scipy.optimize.root``; a solution on the spurious branch
    ``q -> 0`` or with residual > 1e-6 raises). The atom of weight
    ``1 - (n + d)/p`` (when positive) at ``s_t^2`` is subtracted (its Lorentzian of
    width ``eps``), so ``rho`` is the continuous part. Tested against the spectrum of a
    large sampled Gaussian-equivalent U (tests/model/test_premem.py)."""
    from scipy.optimize import root

    lam = np.atleast_1d(np.asarray(lam, dtype=np.float64))
    out = np.empty(lam.size)
    ladder = np.geomspace(100.0, eps, 48)
    atom = max(0.0, 1.0 - (psi_n + 1.0) / psi_p)
    for i, l in enumerate(lam):
        q0 = -1.0 / (l - 1j * ladder[0])              # q(z) ~ -1/z at large |z|
        x = np.array([q0.real, q0.imag, q0.real, q0.imag])
        for e in ladder:
            x = root(_saddle_residual, x, args=(l - 1j * e, c, psi_p, psi_n), method="lm").x
        bad = (not np.all(np.isfinite(x)) or abs(x[0] + 1j * x[1]) * max(l, c.s2) < 1e-3
               or np.max(np.abs(_saddle_residual(x, l - 1j * eps, c, psi_p, psi_n))) > 1e-6)
        if bad:
            raise RuntimeError(f"saddle-point equations not solved at lambda = {l:g}")
        out[i] = abs(x[1]) / np.pi - atom * eps / (np.pi * ((l - c.s2) ** 2 + eps**2))
    return out


def support(c: TheoryConstants, psi_p: float, psi_n: float, n_grid: int = 160, threshold: float = 1e-4):
    """The intervals where :func:`spectral_density` exceeds ``threshold``, on a log grid of
    ``n_grid`` points from ``s_t^2/4`` to ``4 x`` the population bulk's leading-order top
    (edges known to the grid's spacing, ``ratio`` returned): ``(intervals, lam, rho, ratio)``."""
    hi = 4.0 * bulk_edges(c, psi_p, psi_n)["population"][1]
    lam = np.geomspace(c.s2 / 4.0, hi, n_grid)
    rho = spectral_density(c, psi_p, psi_n, lam)
    on = rho > threshold
    intervals, i = [], 0
    while i < lam.size:
        if on[i]:
            j = i
            while j + 1 < lam.size and on[j + 1]:
                j += 1
            intervals.append((float(lam[i]), float(lam[j])))
            i = j + 1
        else:
            i += 1
    return intervals, lam, rho, float(lam[1] / lam[0])
