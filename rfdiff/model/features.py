"""The random-feature score model.

    s_A(x, t) = (1/m) A phi(x, t),      phi(x, t) = act(W x + U e(t))  in R^m,

with ``A`` (d x m) trained and ``W`` (m x d), ``U`` (m x d_e) frozen random
matrices drawn from a seeded generator: ``W_ij ~ N(0, w_scale^2)``,
``U_ij ~ N(0, u_scale^2 / d_e)``. ``e(t)`` is a bounded time embedding.
The pre-activation of feature j is ``W_j . x + b_j(t)`` with bias
``b_j(t) = U_j . e(t)``; in 1D a ReLU feature has its kink at
``z_j(t) = -b_j(t) / W_j``.

``u_scale = 0`` gives the bias-free, time-free model ``phi(x) = act(W x)``
(``U = 0`` exactly, so ``b(t) = 0`` and the features ignore t), e.g. the
single-noise-level tanh model of Bonnaire et al. (2025) with
``w_scale = 1/sqrt(d)``: ``tanh(W' x/sqrt(d))``, ``W'`` standard normal.

Time embeddings (all bounded, so the theorem's assumption holds):

- ``"log-sinusoidal"`` (default): with ``u = log(t / t_lo) / log(t_hi / t_lo)``,
  ``e(t) = [1, cos(pi k u), sin(pi k u)]_{k=1..n_freq}`` (d_e = 1 + 2 n_freq);
- ``"ou"``: ``e(t) = [sigma_t, alpha_t, 1]`` of the OU process.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numba
import numpy as np
from scipy import special

from .. import _validate as v
from .._numba import twins
from ..score import Score

ACTIVATIONS = ("relu", "softplus", "tanh", "gelu", "swish")
#: the one piecewise-linear (hinge) activation, ``max(x, 0)``: kink at 0
RELU = ACTIVATIONS[0]
EMBEDDINGS = ("log-sinusoidal", "ou")


def _relu_impl(x, out):
    """``out = max(x, 0)`` elementwise (NaN stays NaN), flat C-contiguous float64."""
    for i in numba.prange(x.shape[0]):
        v = x[i]
        out[i] = 0.0 if v < 0.0 else v


_relu_serial, _relu_parallel = twins(_relu_impl)


@numba.njit(cache=True, nogil=True)
def _relu_features(z, WT, b, out):
    """``out[i] = max(sum_c z[i, c] WT[c] + b[i or 0], 0)``: ReLU features in one
    pass over ``out`` (k, m); ``b`` is (1, m) (one time) or (k, m). Each row is
    built in place (it stays in L1 while the d terms are added).

    Serial on purpose: it is memory-bound, and its callers go on to a BLAS call
    (the Gram's rank-k update), which ran 30-70% slower right after a parallel
    numba region (the two thread pools' spin-waits collide on 2 cores)."""
    k, d = z.shape
    m = WT.shape[1]
    per_row = b.shape[0] > 1
    for i in range(k):
        o = out[i]
        zi = z[i]
        for j in range(m):
            o[j] = zi[0] * WT[0, j]
        for c in range(1, d):
            zc = zi[c]
            for j in range(m):
                o[j] += zc * WT[c, j]
        bi = b[i] if per_row else b[0]
        for j in range(m):
            v = o[j] + bi[j]
            o[j] = 0.0 if v < 0.0 else v


#: largest data dimension for which :func:`_relu_features` replaces the
#: GEMM ``z W^T`` (a k x d x m product is memory-bound for small d)
_FUSED_MAX_DIM = 8


def _relu(x, out=None):
    """ReLU of a float64 NumPy array by a numba loop (faster than ``np.maximum``:
    benchmarks/kernels.py)."""
    if out is None:
        out = np.empty_like(x)
    if not (x.dtype == out.dtype == np.float64 and x.flags.c_contiguous and out.flags.c_contiguous
            and x.shape == out.shape):
        return np.maximum(x, 0.0, out=out)
    (_relu_parallel if x.size >= (1 << 18) else _relu_serial)(x.reshape(-1), out.reshape(-1))
    return out


@dataclass(frozen=True)
class Activation:
    """An activation and the properties the solvers ask of it.

    ``piecewise_linear``: ``act(x) = max(x, 0)`` (a hinge, derivative 0 left and
    1 right of its kink at 0; the right derivative 1 at 0 is the convention),
    so a 1D score is piecewise linear in x with one kink per feature, which the
    KL solvers and the Gram treat exactly; ``kinks``: the kink positions of
    ``act`` (empty for a smooth activation); ``in_place``: ``__call__`` may
    write into ``out``.
    """

    name: str

    def __post_init__(self):
        v.choice("activation", self.name, ACTIVATIONS)

    @property
    def piecewise_linear(self) -> bool:
        return self.name == RELU

    @property
    def kinks(self) -> tuple:
        return (0.0,) if self.piecewise_linear else ()

    @property
    def in_place(self) -> bool:
        return self.piecewise_linear

    def __call__(self, x, out=None, backend=None):
        return activation(self.name, x, out=out if self.in_place else None, backend=backend)

    def derivative(self, x):
        return activation_derivative(self.name, x)

    def torch(self):
        """The torch function of this activation (torch imported lazily by the caller)."""
        import torch
        return {RELU: torch.relu,
                "softplus": lambda x: torch.logaddexp(torch.zeros((), dtype=x.dtype, device=x.device), x),
                "tanh": torch.tanh,
                "gelu": lambda x: torch.nn.functional.gelu(x, approximate="none"),
                "swish": lambda x: x * torch.sigmoid(x)}[self.name]


def get_activation(name) -> Activation:
    """The :class:`Activation` named ``name`` (one of :data:`ACTIVATIONS`)."""
    return name if isinstance(name, Activation) else Activation(name)


def activation(name: str, x, out=None, backend=None):
    """``act(x)`` for the named activation (numerically stable forms); ``out``
    (ReLU only) receives the result in place (``out=x`` is allowed).
    ``backend``: a :class:`~rfdiff.backend.Backend` whose arrays ``x`` are
    (default NumPy)."""
    xp, sp = (np, special) if backend is None else (backend.xp, backend.special)
    if name == RELU:
        return _relu(x, out) if backend is None else xp.maximum(x, 0.0, out=out)
    if name == "softplus":
        return xp.logaddexp(0.0, x)
    if name == "tanh":
        return xp.tanh(x)
    if name == "gelu":
        return x * sp.ndtr(x)
    if name == "swish":
        return x * sp.expit(x)
    raise ValueError(f"activation must be one of {ACTIVATIONS}, got {name!r}")


def activation_derivative(name: str, x: np.ndarray) -> np.ndarray:
    """``act'(x)``; for ReLU the right derivative (1 at 0)."""
    if name == RELU:
        return (x >= 0.0).astype(np.float64)
    if name == "softplus":
        return special.expit(x)
    if name == "tanh":
        return 1.0 - np.tanh(x) ** 2
    if name == "gelu":
        return special.ndtr(x) + x * np.exp(-0.5 * x * x) / np.sqrt(2 * np.pi)
    if name == "swish":
        s = special.expit(x)
        return s * (1.0 + x * (1.0 - s))
    raise ValueError(f"activation must be one of {ACTIVATIONS}, got {name!r}")


@dataclass(frozen=True)
class TimeEmbedding:
    """A bounded embedding ``e(t)`` of the diffusion time (see module docstring)."""

    kind: str = "log-sinusoidal"
    n_freq: int = 3
    t_lo: float = 1e-3
    t_hi: float = 8.0

    def __post_init__(self):
        v.choice("time_embedding", self.kind, EMBEDDINGS)
        v.positive_int("n_freq", self.n_freq)
        v.window(self.t_lo, self.t_hi)

    @property
    def dim(self) -> int:
        return 1 + 2 * self.n_freq if self.kind == "log-sinusoidal" else 3

    def __call__(self, t) -> np.ndarray:
        """``e(t)`` for scalar or (k,) times: shape (d_e,) or (k, d_e)."""
        t = np.asarray(t, dtype=np.float64)
        if self.kind == "ou":
            return np.stack([np.sqrt(-np.expm1(-2 * t)), np.exp(-t), np.ones_like(t)], axis=-1)
        u = np.log(t / self.t_lo) / np.log(self.t_hi / self.t_lo)
        k = np.arange(1, self.n_freq + 1)
        ang = np.pi * u[..., None] * k
        return np.concatenate([np.ones(t.shape + (1,)), np.cos(ang), np.sin(ang)], axis=-1)


@dataclass(frozen=True)
class RandomFeatureScore:
    """Random-feature score model ``s_A(x, t) = (1/m) A act(W x + U e(t))``.

    Parameters: ``m`` features (>= 1), data dimension ``dim``, ``activation`` in
    ``ACTIVATIONS``, ``time_embedding`` (a name or a :class:`TimeEmbedding`),
    ``seed`` of the frozen weights, ``w_scale`` (> 0) and ``u_scale`` (>= 0) their
    scales; ``u_scale = 0`` is the bias-free, time-free model ``act(W x)``.
    """

    m: int
    dim: int = 1
    activation: str = RELU
    time_embedding: TimeEmbedding | str = "log-sinusoidal"
    seed: int = 0
    w_scale: float = 1.0
    u_scale: float = 1.0
    W: np.ndarray = field(init=False, repr=False, compare=False)
    U: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        set_ = object.__setattr__
        if isinstance(self.m, (bool, np.bool_)):
            raise ValueError(f"m must be a positive integer (not a bool), got {self.m!r}")
        set_(self, "m", v.positive_int("m", self.m))
        set_(self, "dim", v.positive_int("dim", self.dim))
        v.choice("activation", self.activation, ACTIVATIONS)
        emb = self.time_embedding
        if isinstance(emb, str):
            emb = TimeEmbedding(v.choice("time_embedding", emb, EMBEDDINGS))
        elif not isinstance(emb, TimeEmbedding):
            raise ValueError("time_embedding must be a name in "
                             f"{EMBEDDINGS} or a TimeEmbedding, got {emb!r}")
        set_(self, "time_embedding", emb)
        set_(self, "seed", v.positive_int("seed", self.seed, minimum=0))
        set_(self, "w_scale", v.positive("w_scale", self.w_scale))
        set_(self, "u_scale", v.real("u_scale", self.u_scale, lo=0.0))   # 0: bias- and time-free
        rng = np.random.default_rng(self.seed)
        W = self.w_scale * rng.standard_normal((self.m, self.dim))
        U = self.u_scale * rng.standard_normal((self.m, emb.dim)) / np.sqrt(emb.dim)
        W.flags.writeable = False
        U.flags.writeable = False
        set_(self, "W", W)
        set_(self, "U", U)

    @property
    def time_free(self) -> bool:
        """``u_scale == 0``: no bias and no time input, ``phi(x, t) = act(W x)``."""
        return self.u_scale == 0.0

    @property
    def act(self) -> Activation:
        """The :class:`Activation` object of ``activation``."""
        return Activation(self.activation)

    def bias(self, t) -> np.ndarray:
        """``b(t) = U e(t)``: shape (m,) for scalar t, (k, m) for (k,) times."""
        return self.time_embedding(t) @ self.U.T

    def _bias_rows(self, k: int, t) -> np.ndarray:
        """``b(t)`` as (1, m) for one time or (k, m) for a time per point; (1, m) also when
        every point has the same time (a sampler's step), so that ``b`` is computed once."""
        tt = np.asarray(t)
        if tt.ndim == 1 and tt.size == k > 1 and np.all(tt == tt[0]):
            t = tt[:1]
        b = np.atleast_2d(self.bias(t))
        if b.shape[0] not in (1, k):
            raise ValueError(f"t must be a scalar or have one time per point ({k}), got {b.shape[0]}")
        return b

    def preactivation(self, z, t) -> np.ndarray:
        z = v.points("z", z, self.dim)
        pre = z @ self.W.T
        pre += self._bias_rows(len(z), t)
        return pre

    def features(self, z, t) -> np.ndarray:
        """``phi(z, t)``: shape (k, m)."""
        if self.act.piecewise_linear and self.dim <= _FUSED_MAX_DIM:
            z = np.ascontiguousarray(v.points("z", z, self.dim))
            b = np.ascontiguousarray(self._bias_rows(len(z), t))
            out = np.empty((len(z), self.m))
            _relu_features(z, np.ascontiguousarray(self.W.T), b, out)
            return out
        pre = self.preactivation(z, t)
        return self.act(pre, out=pre)

    def features_dz(self, z, t) -> np.ndarray:
        """``act'(W z + b(t))``, shape (k, m); ``d phi_j / d z_i = act'_j W_ji``."""
        return activation_derivative(self.activation, self.preactivation(z, t))

    def score(self, A, z, t) -> np.ndarray:
        """``s_A(z, t) = phi(z, t) A^T / m``: shape (k, d)."""
        return self.features(z, t) @ np.asarray(A).T / self.m

    def score_dz(self, A, z, t) -> np.ndarray:
        """Divergence ``sum_i d s_i/d z_i = (1/m) sum_j act'_j (sum_i A_ij W_ji)``."""
        a = np.einsum("ij,ji->j", np.asarray(A), self.W)
        return self.features_dz(z, t) @ a / self.m

    def score_fn(self, A) -> "RFScore":
        """The model at parameters ``A`` as a :class:`~rfdiff.score.Score`."""
        A = v.finite_array("A", A, ndim=2)
        if A.shape != (self.dim, self.m):
            raise ValueError(f"A must have shape ({self.dim}, {self.m}), got {A.shape}")
        return RFScore(self, A)

    def describe(self) -> dict:
        e = self.time_embedding
        return {"m": self.m, "dim": self.dim, "activation": self.activation, "seed": self.seed,
                "w_scale": self.w_scale, "u_scale": self.u_scale,
                "time_embedding": {"kind": e.kind, "n_freq": e.n_freq, "t_lo": e.t_lo, "t_hi": e.t_hi}}


@dataclass(frozen=True)
class RFScore(Score):
    """A random-feature model at fixed parameters ``A``, as a score object."""

    model: RandomFeatureScore
    A: np.ndarray

    @property
    def dim(self) -> int:
        return self.model.dim

    def __call__(self, z, t):
        return self.model.score(self.A, z, t)

    def dz(self, z, t):
        return self.model.score_dz(self.A, z, t)
