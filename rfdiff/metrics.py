"""Metrics of learned scores and of generated samples.

Score metrics (expectations by the target's quadrature nodes):

- ``score_distance(s1, s2, p, t)``: ``E_{p_t}|s1 - s2|^2`` per t;
- ``l2_score_error(s, target, t)``: the same against ``grad log p_t``;
  ``integrated_score_error``: ``int_{t_min}^{T} lambda(t) E_{p_t}|s - grad log p_t|^2 dt``
  (plain integral, Gauss-Legendre in log t, error by node doubling);
- ``distance_to_empirical(s, empirical, t)``: ``E|s - s^_t|^2`` against the
  empirical optimal score (under ``p^_t`` unless another law is given);
- ``quantile_error``: ``D^delta_p(s, s') = inf{eps : P_{x~p}[|s(x) - s'(x)| > eps] <= delta}``
  (seed 002) from weighted nodes (exact for the discrete law) or samples
  (bootstrap error); ``quantile_error_1d``: exact in 1D from the target's CDF
  on a refined grid.

Sample metrics (seed 003 and the memorisation literature):

- ``memorization_fraction``: fraction of samples whose nearest training point
  is much closer than the second nearest, ``d1/d2 < ratio`` (default 1/3);
- ``reproducibility`` (RP): fraction of same-noise pairs ``(a_i, b_i)`` of two
  models with normalised distance below a threshold;
- ``generalizability`` (GL): fraction of samples that are not copies of a
  training point (normalised distance to the nearest one above a threshold);
- ``mmd``: unbiased MMD^2 with a Gaussian kernel and its standard error.

Density metrics (1D, exact densities): ``tv``: ``TV(p_0, p_gen)`` of the
probability-flow ODE or reverse SDE, adaptive trapezoid rule with an error estimate.

Normalised distance (``metric``): ``"rms"`` (default) ``|a - b| / sqrt(d)``, the
per-coordinate root-mean-square difference; ``"relative"``
``|a - b| / max(|a|, |b|)``. Seed 003 thresholds an image-similarity score;
for vectors the per-coordinate RMS distance is the dimension-free analogue.
Fractions come with the binomial standard error ``sqrt(p (1 - p) / n)``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import _validate as v
from .process import OU
from .numerics.quadrature import LogTimeIntegral
from .numerics.refine import Status, refine
from .score import as_score

__all__ = ["MetricResult", "score_distance", "l2_score_error", "integrated_score_error",
           "distance_to_empirical", "quantile_error", "weighted_quantile_error", "quantile_error_1d",
           "memorization_fraction", "reproducibility", "generalizability", "mmd", "tv"]


@dataclass(frozen=True)
class MetricResult:
    """A metric's ``value``, its ``error`` (standard error or quadrature error)
    and ``info`` on how it was computed."""

    value: float
    error: float
    info: dict = field(default_factory=dict)

    def __float__(self):
        return float(self.value)


def _proc(process):
    return OU() if process is None else process


# -- score metrics -----------------------------------------------------------------
def score_distance(s1, s2, p, t, process=None, order: int = 40) -> np.ndarray:
    """``E_{p_t}|s1(x, t) - s2(x, t)|^2`` for each t (scalar t gives a scalar).

    ``p`` is a target (its ``expectation_nodes`` at ``order`` give the expectation)."""
    process = _proc(process)
    s1, s2 = as_score(s1), as_score(s2)
    ts = np.atleast_1d(v.times("t", t))
    out = np.empty(ts.shape)
    for i, ti in enumerate(ts):
        x, w = p.expectation_nodes(float(ti), process, order=order)
        tt = np.full(len(x), float(ti))
        d = s1(x, tt) - s2(x, tt)
        out[i] = float(w @ np.sum(d * d, axis=1))
    return out[0] if np.ndim(t) == 0 else out


def l2_score_error(score, target, t, process=None, order: int = 40) -> np.ndarray:
    """``E_{p_t}|s - grad log p_t|^2`` per t."""
    process = _proc(process)
    return score_distance(score, target.score_fn(process), target, t, process, order)


def integrated_score_error(score, target, process=None, t_min: float = 1e-3, T: float = 8.0, *,
                           weighting: str = "likelihood", n_time: int = 32, order: int = 40,
                           tol: float = 1e-6, max_n_time: int = 2048) -> MetricResult:
    """``int_{t_min}^{T} lambda(t) E_{p_t}|s - grad log p_t|^2 dt`` (plain integral).

    ``weighting``: ``"likelihood"`` (``lambda = g2/2``: the score term of the
    Girsanov bound), ``"sigma2"`` (``sigma_t^2``) or ``"none"`` (1). Time nodes
    are doubled until n and 2n agree to ``tol / 2`` (at most ``max_n_time``,
    :class:`rfdiff.numerics.quadrature.LogTimeIntegral`); ``error`` is that
    difference plus the change from doubling ``order``; ``info["status"]``
    (a :class:`rfdiff.numerics.refine.Status`) says whether ``error <= tol``.
    """
    process = _proc(process)
    t_min, T = v.window(t_min, T)
    v.choice("weighting", weighting, ("likelihood", "sigma2", "none"))
    lam = {"likelihood": lambda t: 0.5 * process.g2(t), "sigma2": process.sigma2,
           "none": lambda t: np.ones_like(t)}[weighting]
    order = v.positive_int("order", order)
    tol = v.positive("tol", tol)
    prob = LogTimeIntegral(lambda t, o: np.atleast_1d(l2_score_error(score, target, t, process, o)), lam,
                           t_min, T, v.positive_int("n_time", n_time), order, max_n_time, order, tol)
    out = refine(prob, 1, tol)
    info = dict(prob.summary(), weighting=weighting, status=Status(int(out.status[0])),
                converged=bool(out.converged[0]), message=out.messages[0])
    info.pop("n_evals")
    return MetricResult(float(out.value[0]), float(out.error[0]), info)


def distance_to_empirical(score, empirical, t, process=None, p=None, order: int = 16) -> np.ndarray:
    """``E_{q_t}|s - s^_t|^2`` per t, ``s^`` the empirical optimal score of the
    training set ``empirical``; ``q = p`` if given (e.g. the true target), else
    the empirical law ``p^_t`` itself."""
    process = _proc(process)
    law = empirical if p is None else p
    return score_distance(score, empirical.score_fn(process), law, t, process, order)


def weighted_quantile_error(diff, weights, delta: float) -> float:
    """``inf{eps : sum_{|d_i| > eps} w_i <= delta}`` for the discrete law ``(d_i, w_i)``."""
    delta = v.real("delta", delta, lo=0.0, hi=1.0, hi_open=True)
    a = np.abs(np.asarray(diff, dtype=np.float64)).ravel()
    w = np.asarray(weights, dtype=np.float64).ravel()
    if a.size == 0:
        raise ValueError("quantile error needs at least one point (got an empty x / diff)")
    if w.shape != a.shape:
        raise ValueError(f"weights must have one entry per point ({a.size}), got {w.size}")
    if not np.all(np.isfinite(a)):
        raise ValueError("score differences must be finite (got NaN or inf at "
                         f"{int(np.sum(~np.isfinite(a)))} of {a.size} points)")
    if not np.all(np.isfinite(w)) or np.any(w < 0) or not w.sum() > 0:
        raise ValueError("weights must be finite, >= 0 and not all zero")
    w = w / w.sum()
    order = np.argsort(-a, kind="stable")
    a, w = a[order], w[order]
    # the tail mass above eps = a_k is the weight of the strictly larger values
    uniq, start = np.unique(-a, return_index=True)        # descending distinct values
    vals = -uniq
    cum = np.concatenate([[0.0], np.cumsum(w)])
    tail_above = cum[start]                                 # mass strictly above vals[j]
    ok = tail_above <= delta + 1e-15
    # tail_above increases along the descending values; the answer is the smallest ok value
    return float(vals[np.flatnonzero(ok)[-1]])


def quantile_error(s, s_ref, x, delta: float, t=None, weights=None, *, n_boot: int = 200,
                   seed: int = 0) -> MetricResult:
    """``D^delta_p(s, s_ref)`` at points x drawn from (or quadrature nodes of) p.

    ``s``, ``s_ref``: score objects (evaluated at time t) or arrays of values at
    x. With ``weights`` (quadrature nodes) the value is exact for that discrete
    law and ``error`` is 0 (refine the nodes to check); without, x are samples
    and ``error`` is the bootstrap standard error (``n_boot`` resamples, seeded).
    """
    x = np.asarray(x, dtype=np.float64)
    if x.size == 0:
        raise ValueError("quantile error needs at least one point (got an empty x)")
    ev = lambda f: (np.asarray(f, dtype=np.float64) if not callable(f)  # noqa: E731
                    else as_score(f)(x if x.ndim == 2 else x[:, None], np.full(len(x), float(t))))
    d = ev(s) - ev(s_ref)
    d = np.sqrt(np.sum(d * d, axis=1)) if d.ndim == 2 else np.abs(d)
    if weights is not None:
        return MetricResult(weighted_quantile_error(d, weights, delta), 0.0, {"kind": "quadrature",
                                                                             "n": len(d)})
    w = np.full(len(d), 1.0 / len(d))
    value = weighted_quantile_error(d, w, delta)
    if n_boot <= 1:
        return MetricResult(value, np.nan, {"kind": "samples", "n": len(d), "n_boot": n_boot})
    return MetricResult(value, _bootstrap_se(d, lambda r: weighted_quantile_error(r, w, delta), n_boot, seed),
                        {"kind": "samples", "n": len(d), "n_boot": n_boot})


def _bootstrap_se(sample, statistic, n_boot: int, seed: int) -> float:
    """Bootstrap standard error of ``statistic(sample)`` (:func:`scipy.stats.bootstrap`,
    ``n_boot`` resamples from ``numpy.random.default_rng(seed)``, at most ~1e7 resampled
    values in memory at once)."""
    import inspect
    import warnings

    from scipy.stats import DegenerateDataWarning, bootstrap

    rng = np.random.default_rng(seed)
    key = "rng" if "rng" in inspect.signature(bootstrap).parameters else "random_state"
    with warnings.catch_warnings():       # a constant statistic (all resamples equal) is fine: SE 0
        warnings.simplefilter("ignore", DegenerateDataWarning)
        res = bootstrap((sample,), statistic, n_resamples=n_boot, vectorized=False, method="percentile",
                        batch=max(1, min(n_boot, 10_000_000 // len(sample))), **{key: rng})
    return float(res.standard_error)


def quantile_error_1d(s, s_ref, target, t: float, process=None, delta: float = 0.01, *,
                      n_cells: int = 4096, lo=None, hi=None, tol: float = 0.0) -> MetricResult:
    """``D^delta_{p_t}(s, s_ref)`` in 1D from cell masses of p_t (its CDF via
    ``partial_moments``): ``|s - s_ref|`` is taken at the cell midpoints.
    Computed with ``n_cells`` and ``2 n_cells``; ``error`` is the difference.
    The range defaults to the target's quadrature nodes at t, padded."""
    process = _proc(process)
    s, s_ref = as_score(s), as_score(s_ref)
    if lo is None or hi is None:
        x, _ = target.expectation_nodes(t, process, order=64)
        pad = 0.1 * (x.max() - x.min())
        lo = float(x.min() - pad) if lo is None else lo
        hi = float(x.max() + pad) if hi is None else hi

    def at(n):
        edges = np.linspace(lo, hi, n + 1)
        cdf = target.partial_moments(edges, t, process)[0]
        upper = target.partial_moments(edges, t, process, upper=True)[0]
        mass = np.where(edges[1:] <= 0, np.diff(cdf), -np.diff(upper))
        mass = np.concatenate([[cdf[0]], np.maximum(mass, 0.0), [upper[-1]]])
        mid = 0.5 * (edges[:-1] + edges[1:])[:, None]
        tt = np.full(len(mid), float(t))
        d = np.abs((s(mid, tt) - s_ref(mid, tt))[:, 0])
        # the two tails beyond the range get the difference at the range's ends
        d = np.concatenate([[d[0]], d, [d[-1]]])
        return weighted_quantile_error(d, mass, delta)

    a, b = at(n_cells), at(2 * n_cells)
    return MetricResult(b, abs(b - a), {"kind": "cells", "n_cells": 2 * n_cells, "lo": lo, "hi": hi})


# -- sample metrics -----------------------------------------------------------------
def _fraction(hits) -> MetricResult:
    hits = np.asarray(hits, dtype=bool)
    n = hits.size
    p = float(hits.mean()) if n else np.nan
    return MetricResult(p, float(np.sqrt(p * (1 - p) / n)) if n else np.nan, {"n": n})


def _pts(name, x, d=None):
    a = v.finite_array(name, x)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2 or (d is not None and a.shape[1] != d):
        raise ValueError(f"{name} must have shape (n, {d if d is not None else 'd'}), got {a.shape}")
    if len(a) == 0:
        raise ValueError(f"{name} must hold at least one point (n >= 1), got 0")
    return a


def _normalised(dist, a, b, metric):
    if metric == "rms":
        return dist / np.sqrt(a.shape[1])
    if metric == "relative":
        scale = np.maximum(np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1))
        return dist / np.where(scale > 0, scale, 1.0)
    raise ValueError(f"metric must be 'rms' or 'relative', got {metric!r}")


def memorization_fraction(samples, training, ratio: float = 1.0 / 3.0) -> MetricResult:
    """Fraction of samples with ``d1/d2 < ratio`` (nearest / second-nearest
    training-point distance); ``info["ratios"]`` holds every ratio."""
    from scipy.spatial import cKDTree
    ratio = v.positive("ratio", ratio)
    x = _pts("samples", samples)
    tr = _pts("training", getattr(training, "x", training), x.shape[1])
    if len(tr) < 2:
        raise ValueError("memorization_fraction needs at least 2 training points")
    dist, _ = cKDTree(tr).query(x, k=2)
    r = dist[:, 0] / np.where(dist[:, 1] > 0, dist[:, 1], np.inf)
    res = _fraction(r < ratio)
    return MetricResult(res.value, res.error, dict(res.info, ratio=ratio, ratios=r))


def reproducibility(samples_a, samples_b, threshold: float = 0.1, metric: str = "rms") -> MetricResult:
    """RP: fraction of pairs ``(a_i, b_i)`` (same initial noise, two models)
    whose normalised distance is below ``threshold``."""
    a = _pts("samples_a", samples_a)
    b = _pts("samples_b", samples_b, a.shape[1])
    if len(a) != len(b):
        raise ValueError("samples_a and samples_b must pair up (same length)")
    d = _normalised(np.linalg.norm(a - b, axis=1), a, b, metric)
    res = _fraction(d < v.positive("threshold", threshold))
    return MetricResult(res.value, res.error, dict(res.info, threshold=threshold, metric=metric, distances=d))


def generalizability(samples, training, threshold: float = 0.1, metric: str = "rms") -> MetricResult:
    """GL: fraction of samples whose normalised distance to the nearest training
    point is at least ``threshold`` (novel samples, not copies)."""
    from scipy.spatial import cKDTree
    x = _pts("samples", samples)
    tr = _pts("training", getattr(training, "x", training), x.shape[1])
    dist, idx = cKDTree(tr).query(x, k=1)
    d = _normalised(dist, x, tr[idx], metric)
    res = _fraction(d >= v.positive("threshold", threshold))
    return MetricResult(res.value, res.error, dict(res.info, threshold=threshold, metric=metric, distances=d))


def _gauss_kernel_sums(a, b, bw, same, chunk=2048):
    """Row sums of ``exp(-|a_i - b_j|^2 / (2 bw^2))`` (diagonal excluded when same)."""
    out = np.zeros(len(a))
    bb = np.sum(b * b, axis=1)
    for i in range(0, len(a), chunk):
        ai = a[i:i + chunk]
        d2 = np.sum(ai * ai, axis=1)[:, None] + bb[None, :] - 2.0 * ai @ b.T
        K = np.exp(-np.maximum(d2, 0.0) / (2.0 * bw * bw))
        if same:
            K[np.arange(len(ai)), i + np.arange(len(ai))] = 0.0
        out[i:i + chunk] = K.sum(axis=1)
    return out


def mmd(x, y, bandwidth=None, *, max_median_points: int = 2000, seed: int = 0) -> MetricResult:
    """Unbiased ``MMD^2`` between samples x (n, d) and y (m, d), Gaussian kernel
    ``exp(-|a - b|^2 / (2 bw^2))``; ``bandwidth`` defaults to the median pairwise
    distance of the pooled sample (on at most ``max_median_points``, seeded).
    ``error``: standard error from the first-order (influence-function)
    variance of the U-statistic, ``Var(psi_x)/n + Var(psi_y)/m``."""
    x = _pts("x", x)
    y = _pts("y", y, x.shape[1])
    n, m = len(x), len(y)
    if n < 2 or m < 2:
        raise ValueError("mmd needs at least 2 samples on each side")
    if bandwidth is None:
        from scipy.spatial.distance import pdist
        z = np.concatenate([x, y])
        if len(z) > max_median_points:
            z = z[np.random.default_rng(seed).choice(len(z), max_median_points, replace=False)]
        bandwidth = float(np.median(pdist(z)))
        if bandwidth <= 0:
            bandwidth = 1.0
    bw = v.positive("bandwidth", bandwidth)
    kxx = _gauss_kernel_sums(x, x, bw, True)
    kyy = _gauss_kernel_sums(y, y, bw, True)
    kxy = _gauss_kernel_sums(x, y, bw, False)
    kyx = _gauss_kernel_sums(y, x, bw, False)
    value = kxx.sum() / (n * (n - 1)) + kyy.sum() / (m * (m - 1)) - 2.0 * kxy.sum() / (n * m)
    psi_x = 2.0 * (kxx / (n - 1) - kxy / m)
    psi_y = 2.0 * (kyy / (m - 1) - kyx / n)
    se = float(np.sqrt(np.var(psi_x, ddof=1) / n + np.var(psi_y, ddof=1) / m))
    return MetricResult(float(value), se, {"bandwidth": bw, "n_x": n, "n_y": m})


# -- total variation of the generated law (1D, exact densities) -----------------------
def tv(score, target, process=None, t_min: float = 1e-3, T: float = 8.0, *, kind: str = "ode",
       tol: float = 1e-4, lo=None, hi=None, n_grid: int = 256, max_grid: int = 1 << 16,
       density_tol=None) -> MetricResult:
    """Total variation ``TV(p_0, p_gen) = (1/2) int |p_0 - p_gen| dx = 1 - int min(p_0, p_gen) dx``
    between a 1D target's data law ``p_0`` and the exact generated density at ``t_min``.

    ``kind="ode"``: the probability-flow density (:func:`rfdiff.log_density_ode`,
    per-point error ``<= density_tol`` in ``log p_gen``); ``kind="sde"``: the
    reverse-SDE density from the Fokker-Planck solver (:func:`rfdiff.sde_density`,
    converged to ``density_tol`` in ``log q``). ``score``: a score, or a list of
    scores (a random-feature flow at many taus: one batched ODE solve); ``value``
    and ``error`` are then arrays (B,).

    Quadrature: ``1 - int_lo^hi min(p_0, p_gen)`` by the trapezoid rule on nested
    uniform grids of ``n_grid 2^l`` panels over ``[lo, hi]`` (default: the
    target's quadrature nodes at t = 0, padded), doubled until two grids agree
    to ``tol`` (else :class:`ConvergenceError`). ``min(p_0, p_gen) <= p_0``, so
    outside the range the integral is at most p_0's (exact) mass there.
    ``error`` = |grid 2^l - grid 2^(l-1)| + that tail mass + the density term:
    ODE: |value at density_tol - value at density_tol/10| on the coarser grid;
    SDE: the trapezoid integral of the solver's own per-point estimate of
    ``|q - q_exact|`` (``|min(p_0, q) - min(p_0, q')| <= |q - q'|``), the solver
    being asked for ``density_tol`` in ``log q`` or ``density_tol / (hi - lo)``
    in q (so that the term is at most about ``density_tol``).
    ``density_tol`` defaults to ``tol / 10``.
    """
    from .kl.ode import ConvergenceError, ode_log_density
    from .kl.fokker_planck import sde_density
    from .kl.nodes import as_process
    from .model.batch import make_batch

    process = as_process(process)
    t_min, T = v.window(t_min, T)
    v.choice("kind", kind, ("ode", "sde"))
    tol = v.positive("tol", tol)
    dtol = tol / 10 if density_tol is None else v.positive("density_tol", density_tol)
    n = v.positive_int("n_grid", n_grid, minimum=2)
    max_grid = v.positive_int("max_grid", max_grid, minimum=n)
    if getattr(target, "dim", None) != 1:
        raise ValueError("tv is 1D: target must have dim = 1")
    if not getattr(target, "has_density_at_zero", True):
        raise ValueError("tv needs a target whose p_0 has a density (an Empirical law has none)")
    single = not isinstance(score, (list, tuple))
    scores = [score] if single else list(score)
    if not scores:
        raise ValueError("score must be a score or a non-empty list of scores")
    batch = make_batch(scores)
    if batch.dim != 1:
        raise ValueError("tv is 1D: the score must have dim = 1")
    if lo is None or hi is None:
        x, _ = target.expectation_nodes(0.0, process, order=64)
        pad = 0.1 * (x.max() - x.min()) + 1.0
        lo = float(x.min() - pad) if lo is None else lo
        hi = float(x.max() + pad) if hi is None else hi
    lo, hi = float(lo), float(hi)
    if not hi > lo:
        raise ValueError(f"hi must be > lo, got lo={lo}, hi={hi}")
    tail = float(target.partial_moments([lo], 0.0, process)[0, 0]
                 + target.partial_moments([hi], 0.0, process, upper=True)[0, 0])

    def densities(z, atol):
        """p_gen at z and (SDE) the solver's estimate of its error; (ODE) None."""
        if kind == "ode":
            logp, st = ode_log_density(batch, z[:, None], process, t_min, T, atol=atol)
            if st.status != 0 or not np.all(np.isfinite(logp)):
                raise ConvergenceError(f"tv: probability-flow ODE failed: {st.message}")
            with np.errstate(under="ignore"):
                return np.exp(logp), None
        out = [sde_density(s, z, process, t_min, T, tol=atol, atol=atol / (hi - lo), return_error=True)
               for s in scores]
        return np.stack([q for q, _ in out]), np.stack([e for _, e in out])

    p0 = {}

    def integral(f, z, weight_p0=True):
        """Trapezoid rule of min(p_0, f) (or of f alone) over the uniform grid z."""
        if weight_p0:
            key = (z.size, z[0], z[-1])
            if key not in p0:
                with np.errstate(under="ignore"):
                    p0[key] = np.exp(target.log_pt(z[:, None], 0.0, process))
            f = np.minimum(p0[key][None, :], f)
        h = (hi - lo) / (z.size - 1)
        return h * (f.sum(axis=1) - 0.5 * (f[:, 0] + f[:, -1]))

    def interleave(coarse, new):
        out = np.empty((coarse.shape[0], 2 * coarse.shape[1] - 1))
        out[:, ::2], out[:, 1::2] = coarse, new
        return out

    z = np.linspace(lo, hi, n + 1)
    pg, dq = densities(z, dtol)
    coarse = integral(pg, z)
    first = (z, coarse)
    while True:
        z2 = np.linspace(lo, hi, 2 * (z.size - 1) + 1)
        pg_new, dq_new = densities(z2[1::2], dtol)
        pg = interleave(pg, pg_new)
        dq = None if dq is None else interleave(dq, dq_new)
        fine = integral(pg, z2)
        err_q = np.abs(fine - coarse)
        z, coarse = z2, fine
        if np.all(err_q <= tol) or 2 * (z.size - 1) > max_grid:
            break
    if not np.all(err_q <= tol):
        raise ConvergenceError(f"tv: the trapezoid rule did not reach tol={tol:g} within max_grid={max_grid} "
                               f"panels (change {np.max(err_q):.2g})")
    if kind == "ode":      # the density term: on the first grid, tolerance dtol against dtol/10
        zc, base = first
        err_d = np.abs(integral(densities(zc, dtol / 10)[0], zc) - base)
    else:                  # the integral of the solver's own |q - q_exact| estimate
        err_d = integral(dq, z, weight_p0=False)
    value = np.clip(1.0 - fine, 0.0, 1.0)
    error = err_q + err_d + tail
    info = {"kind": kind, "n_grid": int(z.size - 1), "lo": lo, "hi": hi, "tail_mass": tail,
            "quadrature_error": err_q if not single else float(err_q[0]),
            "density_error": err_d if not single else float(err_d[0])}
    if single:
        return MetricResult(float(value[0]), float(error[0]), info)
    return MetricResult(value, error, info)
