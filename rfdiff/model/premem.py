"""The single-noise-level tanh model of Bonnaire, Urfin, Biroli, Mezard (2025) on rfdiff's flow.

Model (their eq. 7): ``s_A(x) = A phi(x)/sqrt(p)``, ``phi(x) = tanh(W x/sqrt(d))``,
``W`` (p x d) i.i.d. N(0, 1) frozen, no bias, no time input (in rfdiff:
``RandomFeatureScore(m=p, dim=d, activation="tanh", w_scale=1/sqrt(d), u_scale=0)``
with ``A_rfdiff = sqrt(p) A``), ``A`` (d x p) trained from ``A(0) = 0``.
One OU time t: ``x_t = e^{-t} x + sqrt(Delta) xi``, ``Delta = 1 - e^{-2t}``.

With ``U = (1/n) sum_nu E_xi[phi phi^T]`` and ``V = (1/n) sum_nu E_xi[xi phi^T]``
(exact in xi: :func:`rfdiff.model.noise_gram.noise_gram`) the paper's training loss is

    L_train(A) = (1/d)(1/n) sum_nu E_xi |sqrt(Delta) s_A(x_t^nu) + xi|^2
               = (1/d) [ (Delta/p) tr(A U A^T) + 2 sqrt(Delta/p) tr(A V^T) + d ],

which is rfdiff's :class:`~rfdiff.model.flow.QuadraticForm`
``1/2 [tr(A G A^T)/m^2 - 2 tr(A C^T)/m + c0]`` with ``m = p`` and

    G = 2 Delta p U / d,     C = -2 sqrt(Delta p) V / d,     c0 = 2.

``L_test`` is the same with the population ``U, V`` (fresh ``x ~ N(0, sigma_x^2 I)``),
and the score error, with ``y = x_t ~ N(0, Gamma^2 I)``, ``Gamma^2 = e^{-2t} sigma_x^2 + Delta``,
``Y = E[y phi^T]``,

    E_score(A) = (1/d) E_y |s_A(y) + y/Gamma^2|^2     (= (1/d) E|s(y) + y|^2 for sigma_x = 1)
               : G = 2 p U_pop / d,   C = -2 sqrt(p) Y / (Gamma^2 d),   c0 = 2/Gamma^2.

Time. rfdiff's flow is ``dA/dtau_rf = -grad L_train``; its kernel ``H = G/p^2 = 2 Delta U/(p d)``
makes the mode of U with eigenvalue lambda decay as ``exp(-2 Delta lambda tau_rf/(p d))``.
The paper's time has ``exp(-2 Delta lambda tau/psi_p)``, ``psi_p = p/d``, so

    tau_rf = d^2 tau_paper.

All curves here are reported against ``tau_paper``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .flow import Flow, QuadraticForm, _decay_gain
from .noise_gram import noise_gram, population_gram

__all__ = ["PaperForms", "paper_model", "paper_weights", "paper_forms", "paper_flow", "tau_rfdiff",
           "form_curve", "spectrum_of_U"]


def paper_model(d: int, p: int, seed: int = 0):
    """The paper's feature map as rfdiff's model: ``RandomFeatureScore(m=p, dim=d,
    activation="tanh", w_scale=1/sqrt(d), u_scale=0, seed)`` (bias- and time-free),
    so that ``model.features(x, t) = tanh(W x/sqrt(d))``."""
    from .features import RandomFeatureScore

    return RandomFeatureScore(m=p, dim=d, activation="tanh", w_scale=1.0 / np.sqrt(d), u_scale=0.0, seed=seed)


def paper_weights(model) -> np.ndarray:
    """The paper's ``W`` of a bias-free tanh model, ``sqrt(d) model.W``, so that
    ``model.features(x, t) = tanh(W x/sqrt(d))`` (standard normal for :func:`paper_model`)."""
    if not getattr(model, "time_free", False) or model.activation != "tanh":
        raise ValueError("paper_weights needs a bias-free, time-free tanh model (paper_model)")
    return np.sqrt(model.dim) * model.W


def tau_rfdiff(tau_paper, d: int):
    """rfdiff's flow time of the paper's ``tau``: ``tau_rf = d^2 tau_paper``."""
    return np.asarray(tau_paper, dtype=np.float64) * float(d) ** 2


@dataclass(frozen=True)
class PaperForms:
    """The three losses of the paper as quadratic forms in the paper's ``A`` (d x p):
    ``train`` (L_train), ``test`` (L_test), ``escore`` (E_score); ``U`` the training
    Gram, ``delta`` = Delta, ``error`` the summed truncation/quadrature bounds of the
    exact Grams, ``info`` their Hermite orders."""

    train: QuadraticForm
    test: QuadraticForm
    escore: QuadraticForm
    U: np.ndarray
    delta: float
    error: float
    info: dict = field(default_factory=dict)

    @property
    def d(self) -> int:
        return self.train.cross.shape[0]

    @property
    def p(self) -> int:
        return self.train.m


def paper_forms(W, X, t: float, sigma_x: float = 1.0, tol: float = 1e-9, progress: bool = False) -> PaperForms:
    """Assemble L_train, L_test and E_score (module docstring) exactly in the noise.

    ``W`` (p x d) standard normal (the paper's, before the ``1/sqrt(d)``), ``X`` (n x d)
    the training set, ``t > 0`` the noise level, ``sigma_x`` the target's scale."""
    W = np.asarray(W, dtype=np.float64)
    p, d = W.shape
    delta = float(-np.expm1(-2.0 * t))
    gamma2 = float(np.exp(-2.0 * t) * sigma_x**2 + delta)
    tr = noise_gram(W, X, t, tol=tol, progress=progress)
    pop = population_gram(W, t, sigma_x=sigma_x, tol=tol)
    train = QuadraticForm(2.0 * delta * p * tr.U / d, -2.0 * np.sqrt(delta * p) * tr.V / d, 2.0,
                          {"objective": "paper L_train", "t": t})
    test = QuadraticForm(2.0 * delta * p * pop.U / d, -2.0 * np.sqrt(delta * p) * pop.V / d, 2.0,
                         {"objective": "paper L_test", "t": t, "sigma_x": sigma_x})
    escore = QuadraticForm(2.0 * p * pop.U / d, -2.0 * np.sqrt(p) * pop.Y / (gamma2 * d), 2.0 / gamma2,
                           {"objective": "paper E_score", "t": t, "sigma_x": sigma_x})
    return PaperForms(train, test, escore, tr.U, delta, tr.error + pop.error,
                      {"K_train": tr.K, "K_population": pop.K, "nodes": tr.nodes, "gamma2": gamma2})


def paper_flow(forms: PaperForms, backend="numpy") -> Flow:
    """The closed-form flow of ``L_train`` from ``A(0) = 0`` (rfdiff's solver, rfdiff time)."""
    return Flow.from_gram(forms.train, backend=backend)


def spectrum_of_U(flow: Flow, forms: PaperForms) -> np.ndarray:
    """Eigenvalues of U (ascending) from the flow's ``H = 2 Delta U/(p d)``."""
    return flow.spectrum() * forms.p * forms.d / (2.0 * forms.delta)


def form_curve(flow: Flow, form: QuadraticForm, tau_rf) -> np.ndarray:
    """``form.loss(A(tau))`` along a flow started at ``A(0) = 0``, exactly, for many taus.

    With ``A(tau) = c diag(g_tau) V^T`` (``H = V diag(lambda) V^T``, ``c = (C/m) V``,
    ``g_tau = f_tau(lambda)``), a form ``(G', C', c0')`` is
    ``1/2 [g^T M g - 2 w.g + c0']`` with ``M = (c^T c) o (V^T G' V/m^2)`` and
    ``w_j = sum_i (C' V/m)_ij c_ij``: ``O(m^3)`` once, ``O(m^2)`` per tau.
    """
    be = flow.backend
    if be.name != "numpy":
        raise ValueError("form_curve runs on the numpy backend")
    if np.any(flow.A0 != 0):
        raise ValueError("form_curve needs a flow started at A(0) = 0")
    if form.m != flow.m or form.cross.shape != flow.cross.shape:
        raise ValueError(f"form must have m = {flow.m} and cross of shape {flow.cross.shape}")
    Vr, c, m = flow.eigvecs, flow.c, flow.m
    M = (c.T @ c) * (Vr.T @ (form.gram / m**2) @ Vr)
    w = np.einsum("ij,ij->j", (form.cross / m) @ Vr, c)
    tau = np.atleast_1d(np.asarray(tau_rf, dtype=np.float64))
    _, g = _decay_gain(np, flow.eigvals, tau)                     # (k, r)
    quad = np.einsum("kj,jl,kl->k", g, M, g)
    out = 0.5 * (quad - 2.0 * g @ w + form.c0)
    return out[0] if np.ndim(tau_rf) == 0 else out
