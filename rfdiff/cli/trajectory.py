"""``rfdiff trajectory``: one closed-form training trajectory from flags or a TOML file.

Builds the target, samples the training set, assembles the score-matching
problem, solves the flow once and evaluates the chosen metrics at every tau
(:func:`rfdiff.trajectory.trajectory`); writes the labelled result (netCDF
with provenance) and, optionally, a plot. The config is read by the one strict
reader (:func:`rfdiff.run.config.read_config`) and the computation is one
point of :mod:`rfdiff.run`'s runner (:func:`trajectory_point`, cached by
parameters and code version).
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from .. import _validate as v
from ..model.features import RandomFeatureScore
from ..run.experiment import point_function

DEFAULTS = {"target": "two_modes", "mu": 3.0, "q1": 0.5, "n": 1000, "data_seed": 0, "m": 256,
            "activation": RandomFeatureScore.activation, "seed": 0, "t_min": 1e-3, "T": 8.0, "weighting": "sigma2",
            "n_time": None, "taus": "1e0:1e12:25",
            "metrics": ["train_loss", "population_loss", "kl_ode", "kl_sde", "girsanov"],
            "tol": 1e-4, "backend": "numpy", "out": "trajectory.nc", "plot": None}
_TYPES = {"target": str, "mu": float, "q1": float, "n": int, "data_seed": int, "m": int,
          "activation": str, "seed": int, "t_min": float, "T": float, "weighting": str,
          "n_time": int, "taus": str, "metrics": list, "tol": float, "backend": str, "out": str,
          "plot": str}


@dataclass(frozen=True)
class TrajectorySection:
    """The ``[trajectory]`` table of ``rfdiff trajectory --config``: the flags' names and types
    (read by :func:`rfdiff.run.config.read_config`; unknown sections and keys are refused)."""

    target: str | None = None
    mu: float | None = None
    q1: float | None = None
    n: int | None = None
    data_seed: int | None = None
    m: int | None = None
    activation: str | None = None
    seed: int | None = None
    t_min: float | None = None
    T: float | None = None
    weighting: str | None = None
    n_time: int | None = None
    taus: str | None = None
    metrics: list[str] | None = None
    tol: float | None = None
    backend: str | None = None
    out: str | None = None
    plot: str | None = None


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="TOML", help="read the parameters from a [trajectory] table")
    for key, default in DEFAULTS.items():
        if key == "metrics":
            p.add_argument("--metrics", help=f"comma-separated (default: {','.join(default)})")
            continue
        p.add_argument(f"--{key.replace('_', '-')}", dest=key, type=_TYPES[key],
                       help=f"default: {default}")
    p.add_argument("--cache-dir", metavar="DIR",
                   help="result cache (default: $RFDIFF_CACHE_DIR or ./.rfdiff_cache); a rerun "
                        "with the same parameters and code reads the trajectory from it")
    p.add_argument("--no-cache", action="store_true", help="recompute and do not store")


def parse_taus(spec: str) -> np.ndarray:
    """``"start:stop:count"`` -> log-spaced taus (start, stop > 0; count >= 1)."""
    parts = str(spec).split(":")
    if len(parts) != 3:
        raise ValueError(f"taus must be 'start:stop:count' (--taus), got {spec!r}")
    nums = []
    for what, text, kind in (("start", parts[0], float), ("stop", parts[1], float),
                             ("count", parts[2], int)):
        try:
            nums.append(kind(text))
        except ValueError:
            noun = "a positive integer" if kind is int else "a number"
            raise ValueError(f"taus {what} (--taus start:stop:count) must be {noun}, "
                             f"got {text!r}") from None
    lo = v.positive("taus start", nums[0])
    hi = v.positive("taus stop", nums[1])
    count = v.positive_int("taus count", nums[2])
    return np.logspace(np.log10(lo), np.log10(hi), count)


def _params(args) -> dict:
    params = dict(DEFAULTS)
    if args.config:
        from ..run.config import read_config

        table = read_config(args.config, {"trajectory": TrajectorySection},
                            required=("trajectory",))[0]["trajectory"]
        params.update({f.name: getattr(table, f.name) for f in fields(table)
                       if getattr(table, f.name) is not None})
    for key in DEFAULTS:
        val = getattr(args, key, None)
        if val is not None:
            params[key] = val.split(",") if key == "metrics" else val
    return params


@point_function
def trajectory_point(*, target: str, mu: float, q1: float, n: int, data_seed: int, m: int,
                     activation: str, seed: int, t_min: float, T: float, weighting: str,
                     n_time: int | None, taus: str, metrics: list, tol: float,
                     backend: str = "numpy"):
    """One closed-form trajectory (:func:`rfdiff.trajectory.trajectory`) as a labelled Dataset:
    what ``rfdiff trajectory`` computes, as one cached point of :mod:`rfdiff.run`'s runner."""
    import rfdiff as rf

    from ..backend import get_backend
    from ..trajectory import trajectory

    if target != "two_modes":
        raise ValueError(f"target must be 'two_modes', got {target!r}")
    tgt = rf.two_modes(mu, q1)
    x = tgt.sample(v.positive_int("n", n), seed=data_seed)
    model = rf.RandomFeatureScore(m=m, activation=activation, seed=seed)
    sm = rf.ScoreMatching(model, x, t_min=t_min, T=T, weighting=weighting, n_time=n_time,
                          backend=get_backend(backend))
    return trajectory(sm, parse_taus(taus), tgt, metrics=metrics, tol=v.positive("tol", tol),
                      seeds={"data_seed": data_seed})


def run(args) -> int:
    import sys
    import tempfile

    from ..backend import get_backend
    from ..run import Cache, cache_key, spec_of
    from ..run.cache import check_writable_file
    from ..run.runner import PointJob, run_points
    from ..trajectory import save

    p = _params(args)
    check_writable_file(p["out"], "--out")        # before any work: one line, exit 2
    if p["plot"]:
        check_writable_file(p["plot"], "--plot")
    if p["target"] != "two_modes":
        raise ValueError(f"target must be 'two_modes', got {p['target']!r}")
    taus = parse_taus(p["taus"])
    v.positive("tol", p["tol"])
    try:
        get_backend(p["backend"])
    except (ImportError, RuntimeError) as exc:      # no CuPy, or no usable GPU: a usage error here
        raise ValueError(f"backend: {exc}") from None
    params = {k: p[k] for k in DEFAULTS if k not in ("out", "plot")}
    spec = spec_of(trajectory_point)
    tmp = tempfile.mkdtemp(prefix="rfdiff-nocache-") if getattr(args, "no_cache", False) else None
    cache = Cache(tmp or getattr(args, "cache_dir", None))
    job = PointJob(spec, params, cache_key(spec, params), {"trajectory": p["out"]})
    report = run_points([job], cache, name="trajectory", serial=True, progress=False)
    if report.failed:
        f = report.failed[0]
        cache.clear_failure(job.key)
        kind, _, message = f.error.partition(": ")
        if kind in ("ValueError", "ConfigError", "TypeError"):   # bad input: one line, exit 2
            raise ValueError(message or f.error)
        print(f"rfdiff trajectory: {f.error}\n{f.traceback}", file=sys.stderr)
        return 1
    store = Cache(report.rescued[0]) if report.rescued else cache
    ds = store.get(job.key)
    if tmp:
        ds = ds.load()
        import shutil
        shutil.rmtree(tmp, ignore_errors=True)
    try:
        save(ds, p["out"])
    except OSError as exc:                            # the path went bad while computing
        raise ValueError(f"--out {p['out']}: cannot write ({exc.strerror or exc}); "
                         f"the result is in the cache {store.root}: rerun with a writable "
                         f"--out") from None
    src = "from the cache, " if report.cached else ""
    print(f"wrote {p['out']}: {len(taus)} taus x {len(p['metrics'])} metrics ({src}key "
          f"{job.key[:12]})")
    if p["plot"]:
        _plot(ds, p["metrics"], p["plot"])
        print(f"wrote {p['plot']}")
    return 0


def _plot(ds, metrics, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 3.2), constrained_layout=True)
    for name in metrics:
        y, err = ds[name].values, ds[f"{name}_error"].values
        ax.plot(ds.tau.values, y, label=name.replace("_", " "))
        ax.fill_between(ds.tau.values, y - err, y + err, alpha=0.25)
    ax.set(xscale="log", yscale="log", xlabel=r"training time $\tau$", ylabel="value")
    ax.legend(fontsize=7)
    fig.savefig(path, dpi=150)
    plt.close(fig)
