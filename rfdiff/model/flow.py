"""Gradient flow of a quadratic score-matching loss, in closed form.

The loss of the random-feature model is the quadratic form

    L(A) = 1/2 [ tr(A G A^T)/m^2 - 2 tr(A C^T)/m + c0 ],

so the gradient flow ``dA/dtau = -grad L(A) = -(A H - C/m)``, ``H = G/m^2``,
is linear and solved exactly by

    A(tau) = A0 exp(-H tau) + (C/m) H^{-1} (I - exp(-H tau)).

With ``H = V diag(lambda) V^T`` computed once, and ``b = A V``, ``c = (C/m) V``
the coordinates in the eigenbasis,

    b(tau) = b0 exp(-lambda tau) + c f_tau(lambda),   f_tau(l) = -expm1(-l tau)/l,

so any number of training times costs ``O(d m r)`` each. Gradient descent with
learning rate ``lr`` is the same with ``(1 - lr lambda)^k`` in place of
``exp(-lambda tau)`` (``tau = lr k``); it is stable for ``lr < 2/lambda_max``.

Null space: eigenvalues ``<= rcond * lambda_max`` (default ``rcond = m * eps``)
are round-off; they are clipped to 0 together with their ``c`` components, so
the flow does not move in those directions (exactly what it does on the true
null space, where ``C`` has no component). ``n_clipped`` reports how many.
In the sample-space form (fewer quadrature rows than features) ``V`` has only
``r`` columns and the component of ``A0`` outside their span stays put.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .. import _validate as v
from ..backend import Backend, get_backend


@dataclass(frozen=True)
class QuadraticForm:
    """``L(A) = 1/2 [tr(A G A^T)/m^2 - 2 tr(A C^T)/m + c0]``.

    ``gram`` is G (m x m, PSD), ``cross`` is C (d x m), ``c0`` the target's
    weighted second moment; ``info`` says how they were computed (objective:
    ``"dsm"`` or ``"esm"`` for the training loss, ``"population"`` for the
    population loss; quadrature sizes).
    """

    gram: np.ndarray
    cross: np.ndarray
    c0: float
    info: dict = field(default_factory=dict)

    @property
    def m(self) -> int:
        return self.gram.shape[0]

    def loss(self, A) -> np.ndarray:
        """L(A) for A of shape (d, m) or a stack (k, d, m)."""
        A = np.asarray(A, dtype=np.float64)
        m = self.m
        quad = np.einsum("...im,mn,...in->...", A, self.gram, A) / m**2
        lin = np.einsum("...im,im->...", A, self.cross) / m
        return 0.5 * (quad - 2.0 * lin + self.c0)

    def grad(self, A) -> np.ndarray:
        """``grad L(A) = A G/m^2 - C/m``."""
        m = self.m
        return np.asarray(A) @ self.gram / m**2 - self.cross / m


def _decay_gain(xp, lam, tau):
    """``exp(-lam tau)`` and ``f_tau(lam) = -expm1(-lam tau)/lam`` for a (k,) tau
    against (r,) lam; ``lam == 0`` (null space, where c = 0) gets decay 1, gain 0."""
    null = lam[None, :] == 0
    with np.errstate(invalid="ignore", over="ignore"):
        lt = tau[:, None] * lam[None, :]          # inf * 0 = nan on the null space, masked below
        decay = xp.where(null, 1.0, xp.exp(-lt))
        gain = xp.where(null, 0.0, -xp.expm1(-lt) / xp.where(null, 1.0, lam[None, :]))
    # tau = inf: exp(-inf) = 0, gain = 1/lam (the least-squares limit)
    return decay, gain


def _gd_decay_gain(xp, lam, lr, steps):
    """Gradient-descent analogues: ``(1 - lr lam)^k`` and ``(1 - (1-lr lam)^k)/lam``."""
    base = 1.0 - lr * lam[None, :]
    k = steps[:, None].astype(np.float64)
    null = lam[None, :] == 0
    stable = base > 0
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        logb = xp.log1p(-lr * xp.where(stable, lam[None, :], 0.0))
        decay = xp.where(stable, xp.exp(k * logb), base ** k)
        one_minus = xp.where(stable, -xp.expm1(k * logb), 1.0 - decay)
        gain = xp.where(null, 0.0, one_minus / xp.where(null, 1.0, lam[None, :]))
    return xp.where(null, 1.0, decay), gain


class Flow:
    """Closed-form gradient flow (and gradient descent) of a :class:`QuadraticForm`.

    Set-up (``O(m^3)``, one eigendecomposition) happens here; every query
    below is vectorised over training times ``tau`` and costs ``O(d m r)`` per tau.
    Build it with :meth:`from_gram` or :meth:`from_rows`, or through
    ``ScoreMatching(...).flow()``.
    """

    def __init__(self, eigvals, eigvecs, cross, c0, A0, backend: Backend,
                 rcond: float | None = None, problem=None, model=None):
        xp = backend.xp
        self.backend = backend
        self.dtype = eigvecs.dtype
        self.m = eigvecs.shape[0]
        lam = xp.asarray(eigvals, dtype=self.dtype)
        self.lambda_max = float(lam.max()) if lam.size else 0.0
        self.lambda_min_raw = float(lam.min()) if lam.size else 0.0
        if rcond is None:
            rcond = self.m * np.finfo(self.dtype).eps
        cut = rcond * max(self.lambda_max, 0.0)
        keep = lam > cut
        self.n_clipped = int(lam.size - int(keep.sum()))
        self.eigvals = xp.where(keep, lam, 0.0)
        self.eigvecs = eigvecs
        self.cross = backend.asarray(cross, dtype=self.dtype)
        self.c0 = float(c0)
        self.A0 = backend.asarray(A0, dtype=self.dtype)
        self.b0 = self.A0 @ eigvecs                                      # (d, r)
        self.c = xp.where(keep[None, :], (self.cross / self.m) @ eigvecs, 0.0)
        self.A_null = self.A0 - self.b0 @ eigvecs.T                      # outside span(V)
        self.problem = problem
        self.model = model
        self._population = {}

    # -- construction ----------------------------------------------------
    @classmethod
    def from_gram(cls, form: QuadraticForm, A0=None, backend="numpy", rcond=None,
                  dtype=np.float64, **kw):
        """Eigendecompose ``H = G/m^2`` (m x m).

        ``dtype=np.float32`` halves memory and is faster on GPUs, but it is
        accurate (~1e-4) only while ``tau * lambda_max <~ 10``: eigenvalues below
        ``m * 1.2e-7 * lambda_max`` are round-off in float32 and get clipped, so
        late-training A(tau) is wrong (tested; measured in benchmarks/kernels.py).
        """
        be = get_backend(backend)
        m = form.m
        d = form.cross.shape[0]
        A0 = _initial(A0, d, m)
        H = be.asarray(form.gram, dtype=dtype) / m**2
        lam, V = be.eigh(0.5 * (H + H.T))
        return cls(lam, V, form.cross, form.c0, A0, be, rcond=rcond, **kw)

    @classmethod
    def from_rows(cls, phi, row_weights, cross, c0, A0=None, backend="numpy", rcond=None, **kw):
        """Sample-space form for ``G = Phi^T diag(w) Phi`` with fewer rows R than m.

        The R x R kernel ``K = B B^T/m^2``, ``B = diag(sqrt w) Phi``, shares the
        nonzero eigenvalues of H; its eigenvectors u map to ``v = B^T u/(m sqrt(mu))``.
        """
        be = get_backend(backend)
        xp = be.xp
        R, m = phi.shape
        d = np.shape(cross)[0]
        A0 = _initial(A0, d, m)
        B = be.asarray(phi) * xp.sqrt(be.asarray(row_weights))[:, None]
        K = B @ B.T / m**2
        mu, u = be.eigh(0.5 * (K + K.T))
        cut = (rcond if rcond is not None else m * np.finfo(np.float64).eps) * float(mu.max())
        keep = mu > cut
        mu, u = mu[keep], u[:, keep]
        V = (B.T @ u) / (m * xp.sqrt(mu))[None, :]
        return cls(mu, V, cross, c0, A0, be, rcond=rcond, **kw)

    # -- diagnostics -----------------------------------------------------
    @property
    def condition_number(self) -> float:
        lam = self.backend.to_numpy(self.eigvals)
        pos = lam[lam > 0]
        return float(pos.max() / pos.min()) if pos.size else np.inf

    def spectrum(self) -> np.ndarray:
        """Eigenvalues of H after clipping (ascending), on the host."""
        return self.backend.to_numpy(self.eigvals)

    # -- queries ---------------------------------------------------------
    def _coords(self, tau):
        tau_arr = np.atleast_1d(np.asarray(tau, dtype=np.float64))
        if tau_arr.ndim != 1 or np.any(np.isnan(tau_arr)) or np.any(tau_arr < 0):
            raise ValueError("tau must be >= 0 (a scalar or a 1D array; inf allowed)")
        xp = self.backend.xp
        decay, gain = _decay_gain(xp, self.eigvals, self.backend.asarray(tau_arr, dtype=self.dtype))
        return self._b(decay, gain)

    def _b(self, decay, gain):
        return self.b0[None] * decay[:, None, :] + self.c[None] * gain[:, None, :]

    def _A(self, b):
        """``A = A_null + b V^T`` (k, d, m), on the backend."""
        return self.A_null[None] + b @ self.eigvecs.T

    def _params_from_b(self, b, scalar):
        A = self.backend.to_numpy(self._A(b)).astype(np.float64, copy=False)
        return A[0] if scalar else A

    def params(self, tau) -> np.ndarray:
        """``A(tau)``: shape (d, m) for a scalar tau, (k, d, m) for k taus."""
        return self._params_from_b(self._coords(tau), np.ndim(tau) == 0)

    def gd_params(self, lr, steps) -> np.ndarray:
        """Gradient descent ``A_{k+1} = A_k - lr grad L(A_k)`` after ``steps`` steps.

        Stable only for ``lr < 2/lambda_max`` (each mode is multiplied by
        ``1 - lr lambda`` per step); a larger ``lr`` raises ValueError naming
        ``lr`` and the limit instead of returning overflowing (NaN) parameters.
        """
        lr = v.positive("lr", lr)
        if self.lambda_max > 0 and lr >= 2.0 / self.lambda_max:
            raise ValueError(f"lr must be < 2/lambda_max = {2.0 / self.lambda_max:.6g} for gradient "
                             f"descent to be stable (lambda_max = {self.lambda_max:.6g}), got {lr:g}")
        k = np.atleast_1d(np.asarray(steps))
        if np.any(k < 0) or np.any(k != np.round(k)):
            raise ValueError("steps must be integers >= 0")
        xp = self.backend.xp
        decay, gain = _gd_decay_gain(xp, self.eigvals, lr, self.backend.asarray(k, dtype=self.dtype))
        return self._params_from_b(self._b(decay, gain), np.ndim(steps) == 0)

    def train_loss(self, tau) -> np.ndarray:
        """Training loss ``L(A(tau))``: ``1/2 [sum lambda b^2 - 2 sum b c + c0]``."""
        b = self._coords(tau)
        out = 0.5 * ((self.eigvals * b * b).sum(axis=(1, 2)) - 2.0 * (b * self.c).sum(axis=(1, 2)) + self.c0)
        out = self.backend.to_numpy(out)
        return out[0] if np.ndim(tau) == 0 else out

    def population_loss(self, tau, target) -> np.ndarray:
        """Population loss ``1/2 time-avg lambda(t) E_{p_t}|s_A - grad log p_t|^2``
        at ``A(tau)`` for the given target: ``1/2 [A Hp A^T - 2 A Cp^T/m + c0p]``
        with the target's form (assembled once per target), ``O(k d m^2)`` for k taus."""
        Hp, Cm, c0 = self._population_form(target)
        A = self._A(self._coords(tau))                                    # (k, d, m)
        xp = self.backend.xp
        quad = xp.einsum("kdm,kdm->k", A @ Hp, A) - 2.0 * xp.einsum("kdm,dm->k", A, Cm)
        out = self.backend.to_numpy(0.5 * (quad + c0))
        return out[0] if np.ndim(tau) == 0 else out

    def _population_form(self, target):
        key = id(target)
        if key not in self._population:
            if self.problem is None:
                raise ValueError("population_loss needs the flow's ScoreMatching problem")
            form = self.problem.quadratic_form(target)
            be, m = self.backend, self.m
            Hp = be.asarray(form.gram, dtype=self.dtype) / m**2
            Cm = be.asarray(form.cross, dtype=self.dtype) / m
            self._population[key] = (target, Hp, Cm, form.c0)      # target kept: id stays unique
        return self._population[key][1:]

    def score_at(self, tau):
        """The model at ``A(tau)`` as a score object ``s(z, t) -> (k, d)``."""
        if self.model is None:
            raise ValueError("score_at needs the flow's random-feature model")
        tau = v.real("tau", tau, lo=0.0)
        return self.model.score_fn(self.params(tau))


def _initial(A0, d, m):
    if A0 is None:
        return np.zeros((d, m))
    A0 = v.finite_array("A0", A0, ndim=2)
    if A0.shape != (d, m):
        raise ValueError(f"A0 must have shape ({d}, {m}), got {A0.shape}")
    return A0
