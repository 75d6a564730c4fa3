"""Building blocks shared by the figure experiments.

- :func:`rf_flow`: a random-feature score-matching problem on ``n`` samples of a
  target and its closed-form gradient flow (the O(m^3) set-up, done once);
- :func:`flow_kl`: ``KL(p_0 || p_gen)`` of the probability-flow ODE of a
  random-feature flow at many taus (:func:`rfdiff.kl_ode_path`);
  :func:`kl_smooth` the same for a smooth score (a Swish net);
  :func:`density_on_grid`: ``p_gen`` on a grid, for plots and modes;
- :func:`early_stopping`: the minimiser ``tau*`` of a KL curve on a log grid,
  refined by a quadratic fit in ``log tau``;
- :func:`first_crossing`: the first tau where a curve falls below a level,
  interpolated in ``log tau``.
"""
from __future__ import annotations

import numpy as np

import rfdiff as rf
from rfdiff import OU, RandomFeatureScore, ScoreMatching


def rf_flow(target, n: int, m: int, *, seed: int = 0, data_seed: int = 0, n_time: int = 64,
            t_min: float = 1e-3, T: float = 8.0, weighting: str = "sigma2", w_scale: float = 1.0,
            u_scale: float = 1.0):
    """``(flow, problem, x)``: RF model (defaults: ReLU, log-sinusoidal embedding,
    features seeded by ``seed``) trained by gradient flow on ``n`` samples of
    ``target`` drawn with ``data_seed``."""
    x = target.sample(n, seed=data_seed)
    model = RandomFeatureScore(m, seed=seed, w_scale=w_scale, u_scale=u_scale)
    problem = ScoreMatching(model, x, OU(), t_min=t_min, T=T, weighting=weighting, n_time=n_time)
    return problem.flow(), problem, x


def flow_kl(flow, taus, target, *, tol: float = 5e-3) -> dict:
    """``KL(p_0 || p_gen)`` of the probability-flow ODE of a random-feature flow at
    many training times: :func:`rfdiff.kl_ode_path` (1D ReLU features:
    exact kink crossings, trapezoid quadrature refined until the error estimate
    is below ``tol``), not strict: an unconverged tau keeps its value, its
    (larger) error estimate and ``converged = False``. Returns (k,) arrays
    ``value``, ``error``, ``kl_tmin``, ``kl_tmin_error``, ``converged`` and the
    solver's ``message``."""
    taus = np.atleast_1d(np.asarray(taus, dtype=float))
    r = rf.kl_ode_path(flow, taus, target, tol=tol, strict=False)
    return {"value": np.asarray(r.value, float), "error": np.asarray(r.error, float),
            "kl_tmin": np.asarray(r.kl_tmin, float), "kl_tmin_error": np.asarray(r.kl_tmin_error, float),
            "converged": np.asarray(r.converged, bool), "message": r.message}


def early_stopping(taus, kl, kl_err=None) -> dict:
    """``tau*``: argmin of ``kl`` on the (log-spaced) grid ``taus``, refined by a
    parabola through the minimum and its two neighbours in ``log tau``.

    ``interior`` says whether the grid minimum has a neighbour on both sides
    that is larger by more than the combined error (a resolved U-shape); at an
    end point ``tau*`` is that end point and ``interior`` is False.
    ``tau_lo``/``tau_hi``: the run of grid points around the minimum whose KL
    is within the combined error of it (``kl_j - err_j <= kl_i + err_i``): where
    tau* may lie, given the KL errors.
    """
    taus = np.asarray(taus, dtype=float)
    kl = np.asarray(kl, dtype=float)
    err = np.zeros_like(kl) if kl_err is None else np.asarray(kl_err, dtype=float)
    ok = np.isfinite(kl)
    i = int(np.nanargmin(np.where(ok, kl, np.inf)))
    res = {"index": i, "tau_grid": float(taus[i]), "kl_grid": float(kl[i]), "kl_grid_error": float(err[i])}
    near = ok & (kl - err <= kl[i] + err[i])
    lo = hi = i
    while lo > 0 and near[lo - 1]:
        lo -= 1
    while hi < len(taus) - 1 and near[hi + 1]:
        hi += 1
    res["tau_lo"], res["tau_hi"] = float(taus[lo]), float(taus[hi])
    if 0 < i < len(taus) - 1:
        x = np.log(taus[i - 1:i + 2])
        y = kl[i - 1:i + 2]
        # vertex of the parabola through the three points (Newton's divided differences)
        d1 = (y[1] - y[0]) / (x[1] - x[0])
        d2 = ((y[2] - y[1]) / (x[2] - x[1]) - d1) / (x[2] - x[0])
        xs = 0.5 * (x[0] + x[1]) - d1 / (2 * d2) if d2 > 0 else x[1]
        xs = float(np.clip(xs, x[0], x[2]))
        res["tau_star"] = float(np.exp(xs))
        left_up = kl[:i].max() - kl[i] > err[:i][np.argmax(kl[:i])] + err[i]
        right_up = kl[i + 1:].max() - kl[i] > err[i + 1:][np.argmax(kl[i + 1:])] + err[i]
        res["interior"] = bool(left_up and right_up)
    else:
        res["tau_star"] = float(taus[i])
        res["interior"] = False
    return res


def first_crossing(taus, y, level) -> float:
    """First tau where ``y <= level``, linearly interpolated in (log tau, y); NaN if never."""
    taus = np.asarray(taus, dtype=float)
    y = np.asarray(y, dtype=float)
    hit = np.flatnonzero(y <= level)
    if hit.size == 0:
        return float("nan")
    j = int(hit[0])
    if j == 0:
        return float(taus[0])
    x0, x1 = np.log(taus[j - 1]), np.log(taus[j])
    y0, y1 = y[j - 1], y[j]
    f = (y0 - level) / (y0 - y1) if y0 != y1 else 1.0
    return float(np.exp(x0 + f * (x1 - x0)))


def tau_grid(lo_exp: float, hi_exp: float, per_decade: int) -> np.ndarray:
    """Log-spaced training times ``10^lo .. 10^hi``, ``per_decade`` points a decade."""
    k = int(round((hi_exp - lo_exp) * per_decade)) + 1
    return np.logspace(lo_exp, hi_exp, k)


def train_swish(x, *, optimizer: str, lr: float, seed: int, width: int = 128, epochs: int = 100,
                batch_size: int = 100, weighting: str = "sigma", checkpoint_epochs=(0,),
                t_min: float = 1e-3, T: float = 8.0):
    """The paper's network: a one-hidden-layer Swish MLP (standard
    parametrisation, rfdiff.torch.MLPScore), trained by minibatch SGD or Adam
    on the denoising loss (weighting ``"sigma"``, seed 000's form). Returns the
    :class:`rfdiff.torch.TrainHistory` (checkpoints at ``checkpoint_epochs``)."""
    from rfdiff import torch as rft

    net = rft.MLPScore(dim=1, width=width, activation="swish", seed=seed)
    return rft.train(net, x, t_min=t_min, T=T, weighting=weighting, optimizer=optimizer, lr=lr,
                     epochs=epochs, batch_size=batch_size, seed=seed,
                     checkpoint_epochs=list(checkpoint_epochs), progress=False)


def kl_smooth(score, target, *, tol: float = 1e-3, t_min: float = 1e-3, T: float = 8.0) -> tuple:
    """``(KL(p_0 || p_gen), error)`` of the probability-flow ODE for a smooth score
    (a Swish network): :func:`rfdiff.kl_ode` on the target's
    Gauss-Hermite nodes (spectral for smooth integrands), not strict: an
    unconverged value is returned with its (larger) error estimate."""
    r = rf.kl_ode(score, target, t_min=t_min, T=T, tol=tol, quadrature="nodes", strict=False)
    return float(r.value), float(r.error), bool(np.all(r.converged))


def density_on_grid(score_batch, z, *, atol: float = 1e-4, t_min: float = 1e-3, T: float = 8.0):
    """``p_gen`` of the probability-flow ODE at the grid points ``z`` for every score
    of a batch: shape (B, len(z)). The ODE error control is the weighted one of
    :func:`rfdiff.kl.ode_log_density` with uniform weights: mean
    log-density error ``<= atol``, worst point ``<= sqrt(atol)`` (for plots)."""
    if not hasattr(score_batch, "n"):
        score_batch = rf.model.make_batch(score_batch)
    z = np.asarray(z, dtype=float).reshape(-1, 1)
    w = np.full(len(z), 1.0 / len(z))
    lg, st = rf.kl.ode_log_density(score_batch, z, OU(), t_min, T, atol=atol, weights=w)
    if st.status != 0:
        raise RuntimeError(f"probability-flow ODE failed: {st.message}")
    with np.errstate(under="ignore"):
        return np.exp(lg)


def netcdf_attrs(attrs: dict, prefix: str = "") -> dict:
    """Flatten ``attrs`` into what netCDF attributes can hold: nested dicts become
    ``outer_inner`` keys, bools 0/1, None ``"none"``, lists of numbers arrays,
    other lists JSON strings."""
    import json

    out = {}
    for k, v in attrs.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(netcdf_attrs(v, prefix=f"{key}_"))
        elif isinstance(v, (bool, np.bool_)):
            out[key] = int(v)
        elif v is None:
            out[key] = "none"
        elif isinstance(v, (list, tuple, np.ndarray)):
            arr = np.asarray(v)
            if arr.dtype.kind in "iuf" and arr.ndim == 1 and arr.size:
                out[key] = arr.astype(float) if arr.dtype.kind == "f" else arr.astype(np.int64)
            else:
                out[key] = json.dumps(np.asarray(v).tolist() if isinstance(v, np.ndarray) else list(v),
                                      default=str)
        elif isinstance(v, (np.integer,)):
            out[key] = int(v)
        elif isinstance(v, (np.floating,)):
            out[key] = float(v)
        else:
            out[key] = v
    return out


def scalar_outputs(info: dict, prefix: str) -> dict:
    """``info`` (nested dict of attributes) as point-function outputs named
    ``<prefix><key>``: flattened by :func:`netcdf_attrs` (numbers, strings and 1D
    numeric arrays only); :func:`outputs_as_attrs` reads them back."""
    return netcdf_attrs(info, prefix=prefix)


def outputs_as_attrs(result, prefix: str) -> dict:
    """The outputs of a point result (an ``xarray.Dataset``) named ``<prefix>...``,
    prefix removed, as attribute values (0-d arrays become Python scalars)."""
    out = {}
    for k in result.data_vars:
        if k.startswith(prefix):
            v = result[k].values
            out[k[len(prefix):]] = v.item() if v.ndim == 0 else v
    return out


def quadrature_check(problem) -> dict:
    """:meth:`rfdiff.ScoreMatching.quadrature_error` of a problem (relative change of
    G, C and c0 when the time rule is refined 2x), with its ``n_time``: recorded
    by every figure whose preset uses a coarser time rule than the default."""
    err = problem.quadrature_error()
    return {"n_time": problem.n_time, "m": problem.model.m, **{k: float(v) for k, v in err.items()}}
