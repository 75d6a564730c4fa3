"""Metrics along a whole training trajectory, in one call.

``trajectory(sm, taus, target)`` evaluates the chosen metrics of the
random-feature flow at every training time tau and returns an
``xarray.Dataset`` with dimension ``tau``: one data variable per metric plus
``<metric>_error`` (and, for the solvers, ``<metric>_converged`` and the
companion values). The eigendecomposition is done once (``sm.flow()``), and
every KL or bound is computed for all taus in one batched solve
(:func:`rfdiff.kl.ode.kl_ode_path`, :func:`rfdiff.kl.fokker_planck.kl_sde_path`,
:func:`rfdiff.kl.girsanov.girsanov_bound_path`).

Metrics:

- ``train_loss``, ``population_loss``: closed form along the flow (time
  averages, see :mod:`rfdiff.model.scorematching`); their ``_error`` is 0 (exact for
  the assembled quadrature);
- ``kl_ode``, ``kl_sde``: the KL of :mod:`rfdiff.kl`, with ``<name>_tmin`` and
  errors; ``kl_sde_mass_loss``;
- ``girsanov``: the bound ``KL(p_T || pi) + 1/2 int g2 E|s - grad log p_t|^2 dt``
  (compare with ``kl_sde_tmin``);
- ``score_error``: ``1/2 int g2 E_{p_t}|s - grad log p_t|^2 dt`` (plain integral);
- ``empirical_distance``: ``1/2 int g2 E_{p^_t}|s - s^_t|^2 dt``, the distance to
  the empirical optimal score under the training law.

Unconverged values are kept (``<metric>_converged`` False,
``<metric>_status`` the :class:`rfdiff.Status` code, the solver's message in
``attrs``) unless ``strict=True``, which raises. The dataset's
``attrs["provenance"]`` (JSON) records parameters, seeds, versions and the git
revision; :func:`save` writes it to netCDF atomically.
"""
from __future__ import annotations

import time

import numpy as np

from . import _validate as v
from .kl.fokker_planck import kl_sde_path
from .kl.girsanov import girsanov_bound_path, score_term_path
from .kl.ode import kl_ode_path

__all__ = ["trajectory", "save", "load", "METRICS", "DEFAULT_METRICS"]

METRICS = ("train_loss", "population_loss", "kl_ode", "kl_sde", "girsanov", "score_error",
           "empirical_distance")
DEFAULT_METRICS = ("train_loss", "population_loss", "kl_ode", "kl_sde", "girsanov")
_NEEDS_TARGET = {"population_loss", "kl_ode", "kl_sde", "girsanov", "score_error"}


def _flow_of(sm_or_flow):
    if hasattr(sm_or_flow, "flow") and callable(sm_or_flow.flow):
        return sm_or_flow, sm_or_flow.flow()
    if hasattr(sm_or_flow, "params") and hasattr(sm_or_flow, "model"):
        return getattr(sm_or_flow, "problem", None), sm_or_flow
    raise ValueError("sm_or_flow must be a ScoreMatching problem or its Flow")


def trajectory(sm_or_flow, taus, target=None, metrics=DEFAULT_METRICS, *, tol: float = 1e-3,
               strict: bool = False, ode: dict | None = None, sde: dict | None = None,
               girsanov: dict | None = None, empirical_order: int = 8, seeds: dict | None = None):
    """Evaluate ``metrics`` at every tau; returns an ``xarray.Dataset`` (dim ``tau``).

    ``tol``: tolerance of every KL (the convention of :mod:`rfdiff.kl`) and
    bound (absolute); ``ode``, ``sde``, ``girsanov``: extra keyword arguments of the
    path solvers; ``seeds``: extra seeds to record (the model's and the
    problem's are recorded anyway).
    """
    import xarray as xr

    metrics = tuple(metrics)
    for m in metrics:
        v.choice("metric", m, METRICS)
    if _NEEDS_TARGET & set(metrics) and target is None:
        raise ValueError(f"metrics {sorted(_NEEDS_TARGET & set(metrics))} need a target")
    taus = v.finite_array("taus", np.atleast_1d(taus), ndim=1)
    if np.any(taus < 0):
        raise ValueError("taus must be >= 0")
    sm, flow = _flow_of(sm_or_flow)
    tol = v.positive("tol", tol)
    data, attrs, cache = {}, {}, {}

    def put(name, val, err, conv=None, status=None, **extra):
        data[name] = ("tau", np.asarray(val, dtype=np.float64))
        data[f"{name}_error"] = ("tau", np.broadcast_to(np.asarray(err, dtype=np.float64), taus.shape).copy())
        if conv is not None:
            data[f"{name}_converged"] = ("tau", np.broadcast_to(np.asarray(conv, dtype=bool), taus.shape).copy())
        if status is not None:
            data[f"{name}_status"] = ("tau", np.broadcast_to(np.asarray(status, dtype=np.int64), taus.shape).copy())
        for k, val_k in extra.items():
            data[k] = ("tau", np.broadcast_to(np.asarray(val_k, dtype=np.float64), taus.shape).copy())

    for m in metrics:
        t0 = time.perf_counter()
        if m == "train_loss":
            put(m, flow.train_loss(taus), 0.0)
        elif m == "population_loss":
            put(m, flow.population_loss(taus, target), 0.0)
        elif m == "kl_ode":
            r = kl_ode_path(flow, taus, target, tol=tol, strict=strict, **(ode or {}))
            put(m, r.value, r.error, r.converged, r.status, kl_ode_tmin=r.kl_tmin,
                kl_ode_tmin_error=r.kl_tmin_error)
            attrs["kl_ode_message"] = r.message
            attrs["kl_ode_work"] = _flat(r.work)
        elif m == "kl_sde":
            r = kl_sde_path(flow, taus, target, tol=tol, strict=strict, **(sde or {}))
            put(m, r.value, r.error, r.converged, r.status, kl_sde_tmin=r.kl_tmin,
                kl_sde_tmin_error=r.kl_tmin_error, kl_sde_mass_loss=r.mass_loss)
            attrs["kl_sde_message"] = r.message
            attrs["kl_sde_work"] = _flat(r.work)
        elif m in ("girsanov", "score_error"):
            if "girsanov" not in cache:       # one solve serves both metrics
                cache["girsanov"] = girsanov_bound_path(flow, taus, target, tol=tol, strict=strict,
                                                        **(girsanov or {}))
            r = cache["girsanov"]
            if m == "girsanov":
                put(m, r.value, r.error, r.converged, r.status)
                attrs["girsanov_kl_prior"] = float(r.kl_prior)
                attrs["girsanov_message"] = r.message
            else:
                put(m, r.score_term, r.score_term_error, r.converged, r.status)
        elif m == "empirical_distance":
            if sm is None:
                raise ValueError("empirical_distance needs the ScoreMatching problem (its training set)")
            r = _empirical_distance(flow, taus, sm, tol, strict, empirical_order, girsanov or {})
            put(m, r.score_term, r.score_term_error, r.converged, r.status)
        attrs[f"seconds_{m}"] = time.perf_counter() - t0
    ds = xr.Dataset(data, coords={"tau": taus}, attrs=attrs)
    return _with_provenance(ds, sm, flow, target, metrics, tol, ode, sde, girsanov, seeds)


def _empirical_distance(flow, taus, sm, tol, strict, order, kw):
    """``1/2 int g2 E_{p^_t}|s - s^_t|^2 dt`` (the Girsanov score term against the
    training set, without its KL(p^_T || pi))."""
    kw = dict(kw)
    kw.setdefault("order", order)
    return score_term_path(flow, taus, sm.data, sm.process, sm.t_min, sm.T, tol, strict=strict, **kw)


def _flat(work: dict) -> str:
    import json

    from .io import to_jsonable
    return json.dumps(to_jsonable(work, strict=False), sort_keys=True)


def _with_provenance(ds, sm, flow, target, metrics, tol, ode, sde, girsanov, seeds):
    from .io import attach_provenance
    from .provenance import provenance

    params = {"metrics": list(metrics), "tol": tol, "ode": ode or {}, "sde": sde or {},
              "girsanov": girsanov or {}, "model": flow.model.describe(),
              "score_matching": sm.describe() if sm is not None and hasattr(sm, "describe") else None,
              "target": target.describe() if target is not None and hasattr(target, "describe") else None,
              "flow": {"m": flow.m, "n_clipped": flow.n_clipped, "lambda_max": flow.lambda_max,
                       "backend": flow.backend.name, "dtype": str(np.dtype(flow.dtype))}}
    all_seeds = {"model": flow.model.seed}
    if sm is not None and hasattr(sm, "seed"):
        all_seeds["score_matching"] = sm.seed
    all_seeds.update(seeds or {})
    return attach_provenance(ds, provenance(params, all_seeds))


def save(ds, path):
    """Write a trajectory dataset to netCDF (atomically; see :func:`rfdiff.io.save_dataset`)."""
    from .io import save_dataset
    return save_dataset(ds, path)


def load(path):
    """Read a dataset written by :func:`save`."""
    from .io import load_dataset
    return load_dataset(path)
