"""Particle samplers for any dimension: reverse SDE and probability-flow ODE.

Every sampler has the signature ``(score, x_T, ts, process, ...)`` and returns
the particles at ``ts[-1]``: ``x_T`` (n, d) is the initial noise (so two models
can be compared from the same noise), ``ts`` the *decreasing* times from T to
t_min (data, not code: make them with :func:`time_schedule`). For a forward
process ``dx = f x dt + g dW`` and a score s:

- reverse SDE ``dx = [f x - g2 s] dt + g dW`` (dt < 0), Euler-Maruyama:
  ``x <- x + h (f x - g2 s) + sqrt(g2 |h|) xi``, ``h = t_{i+1} - t_i``;
- probability-flow ODE ``dx/dt = f x - (g2/2) s``: Heun's method (second
  order, two score calls a step; the last step too, t_min > 0), or
  :func:`probability_flow`, an adaptive Dormand-Prince 5(4) solver in
  ``u = log t`` with a per-particle error control.

The step uses the coefficients at the step's start time (Euler-Maruyama) or
both ends (Heun); nothing else is hidden in the samplers.

``backend`` (every sampler): ``"numpy"`` (default), ``"cupy"``, ``"auto"`` or a
:class:`~rfdiff.backend.Backend`: where the particles live. A random-feature
score is evaluated there by two GEMMs, ``act(x W^T + b(t)) (A/m)^T``; any other
score is called on host (NumPy) arrays, one transfer each way per call.
Noise is drawn on the host, so a seed gives the same samples on every
backend up to rounding. The samples come back as a NumPy array.
"""
from __future__ import annotations

import numpy as np

from . import _validate as v
from .model.batch import make_batch
from .numerics.rk import integrate
from .kl.results import ConvergenceError
from .backend import get_backend
from .model.features import RFScore, activation
from .process import OU, Process
from .score import as_score

__all__ = ["time_schedule", "prior_noise", "euler_maruyama", "heun", "probability_flow"]

#: pre-activations held at once by a random-feature score on a device backend
#: (128 MB in float64: large GEMMs, few kernel launches)
DEVICE_CHUNK = 1 << 24


def _process(process) -> Process:
    return OU() if process is None else process


def time_schedule(T: float = 8.0, t_min: float = 1e-3, n_steps: int = 256, kind: str = "log") -> np.ndarray:
    """Decreasing times ``T = ts[0] > ... > ts[n_steps] = t_min``.

    ``kind="log"``: uniform in log t (the default; the score changes on a log
    scale near t_min); ``"linear"``: uniform in t.
    """
    t_min, T = v.window(t_min, T)
    n = v.positive_int("n_steps", n_steps)
    v.choice("kind", kind, ("log", "linear"))
    ts = np.geomspace(T, t_min, n + 1) if kind == "log" else np.linspace(T, t_min, n + 1)
    ts[0], ts[-1] = T, t_min
    return ts


def prior_noise(n: int, dim: int = 1, seed: int = 0, process=None) -> np.ndarray:
    """``n`` draws from the prior ``N(0, prior_var I)`` (seeded)."""
    process = _process(process)
    rng = np.random.default_rng(v.positive_int("seed", seed, minimum=0))
    return np.sqrt(process.prior_var) * rng.standard_normal((v.positive_int("n", n), v.positive_int("dim", dim)))


def _prepare(score, x_T, backend):
    """``(s, x, backend)``: the score as an evaluator and a copy of the particles, on the backend."""
    be = get_backend(backend)
    x = v.finite_array("x_T", x_T)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2:
        raise ValueError(f"x_T must have shape (n, d), got {x.shape}")
    if x.shape[0] == 0:
        raise ValueError("x_T has no particles: it must have shape (n, d) with n >= 1")
    score = as_score(score)
    dim = getattr(score, "dim", None)
    if dim is not None and x.shape[1] != int(dim):
        raise ValueError(f"x_T has dimension {x.shape[1]} but the score has dimension {int(dim)}")
    return _evaluator(score, be), be.asarray(x.copy()), be


def _finite(name, be, x, i, t):
    """Raise when a step left non-finite particles (a score returned NaN or inf)."""
    if not bool(be.xp.all(be.xp.isfinite(x))):
        raise ConvergenceError(f"{name}: particles are not finite after step {i} (t = {t:.6g}); "
                               "the score returned NaN or inf")


def _check(score, x_T, ts, backend):
    score, x, be = _prepare(score, x_T, backend)
    ts = v.finite_array("ts", ts, ndim=1)
    if ts.size < 2 or np.any(np.diff(ts) >= 0) or ts[-1] <= 0:
        raise ValueError("ts must be a strictly decreasing array of >= 2 positive times")
    return score, x, ts, be


def euler_maruyama(score, x_T, ts, process=None, *, rng=None, noise=None, backend="numpy") -> np.ndarray:
    """Reverse-SDE samples by Euler-Maruyama on the schedule ``ts``.

    Noise: ``noise`` (len(ts) - 1, n, d) standard normals if given (bit-for-bit
    reproducible comparisons), else drawn from ``rng`` (a Generator or a seed;
    default seed 0). Every step adds noise, the last one included.
    """
    score, x, ts, be = _check(score, x_T, ts, backend)
    process = _process(process)
    n_steps = ts.size - 1
    if noise is not None:
        noise = v.finite_array("noise", noise)
        if noise.shape != (n_steps,) + x.shape:
            raise ValueError(f"noise must have shape {(n_steps,) + x.shape}, got {noise.shape}")
    else:
        rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(0 if rng is None else rng)
    for i in range(n_steps):
        t, h = float(ts[i]), float(ts[i + 1] - ts[i])
        f, g2 = float(process.f(t)), float(process.g2(t))
        xi = noise[i] if noise is not None else rng.standard_normal(x.shape)
        x = x + h * (f * x - g2 * score(x, t)) + np.sqrt(g2 * -h) * be.asarray(xi)
        _finite("euler_maruyama", be, x, i, float(ts[i + 1]))
    return be.to_numpy(x)


class _Eval:
    """``s(x, t)`` at one scalar time through a score batch (random features
    evaluate their features once; 1D ReLU features by sorted kinks)."""

    def __init__(self, batch):
        self.batch = batch

    def __call__(self, x, t):
        return self.batch(x, float(t), dz=False)[0][0]


class _DeviceRF:
    """A random-feature score on an array backend: ``s = act(x W^T + b(t)) (A/m)^T``,
    two GEMMs per chunk of at most ``DEVICE_CHUNK`` pre-activations."""

    def __init__(self, score: RFScore, backend):
        self.model, self.be = score.model, backend
        self.WT = backend.asarray(score.model.W.T)
        self.AT = backend.asarray(score.A.T / score.model.m)

    def __call__(self, x, t):
        model, be = self.model, self.be
        b = be.asarray(model.bias(float(t)))
        out = be.xp.empty((x.shape[0], self.AT.shape[1]))
        step = max(1, DEVICE_CHUNK // model.m)
        for i in range(0, x.shape[0], step):
            pre = x[i:i + step] @ self.WT
            pre += b
            phi = model.act(pre, out=pre, backend=be)
            out[i:i + step] = phi @ self.AT
        return out


class _HostScore:
    """Any other score on a non-NumPy backend: called on host arrays."""

    def __init__(self, score, backend):
        self.score, self.be = _Eval(make_batch(score)), backend

    def __call__(self, x, t):
        return self.be.asarray(self.score(self.be.to_numpy(x), t))


def _evaluator(score, backend):
    """``s(x, t)`` at one scalar time, for particles on ``backend``."""
    if backend.name == "numpy":
        return _Eval(make_batch(score))
    return (_DeviceRF if isinstance(score, RFScore) else _HostScore)(score, backend)


def _velocity(score, process, x, t):
    f, g2 = float(process.f(t)), float(process.g2(t))
    return f * x - 0.5 * g2 * score(x, t)


def heun(score, x_T, ts, process=None, *, backend="numpy") -> np.ndarray:
    """Probability-flow samples by Heun's method (2nd order) on the schedule ``ts``."""
    score, x, ts, be = _check(score, x_T, ts, backend)
    process = _process(process)
    for i in range(ts.size - 1):
        t0, t1 = float(ts[i]), float(ts[i + 1])
        h = t1 - t0
        d0 = _velocity(score, process, x, t0)
        x_e = x + h * d0
        x = x + 0.5 * h * (d0 + _velocity(score, process, x_e, t1))
        _finite("heun", be, x, i, t1)
    return be.to_numpy(x)


def probability_flow(score, x_T, process=None, t_min: float = 1e-3, T: float = 8.0, *, rtol: float = 1e-7,
                     atol: float = 1e-9, max_steps: int = 100_000, return_stats: bool = False,
                     backend="numpy"):
    """Probability-flow samples by an adaptive Dormand-Prince 5(4) solver.

    All particles share the steps (one score call per stage); a step is
    accepted when every particle's local error is below ``atol + rtol |x|``.
    Integrates in ``u = log t`` from T down to t_min. Raises ConvergenceError
    when the step size underflows or ``max_steps`` is exceeded. The stats
    (``return_stats``) name the backend used in ``extra["backend"]``.
    """
    score, x, be = _prepare(score, x_T, backend)
    process = _process(process)
    t_min, T = v.window(t_min, T)
    xp = be.xp

    def rhs(w, y):          # w = -u, increasing from -log T to -log t_min
        t = float(np.exp(-w))
        return -t * _velocity(score, process, y, t)

    def norm(y, y_new, err):
        scale = atol + rtol * xp.maximum(xp.abs(y), xp.abs(y_new))
        return float(xp.max(xp.abs(err) / scale))

    y, st = integrate(rhs, x, -float(np.log(T)), -float(np.log(t_min)), norm, max_steps=max_steps, xp=xp)
    if st.status != 0:
        raise ConvergenceError(f"probability_flow: {st.message}")
    st.extra["backend"] = be.name
    y = be.to_numpy(y)
    return (y, st) if return_stats else y
