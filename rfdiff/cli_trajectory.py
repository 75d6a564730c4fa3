"""``rfdiff trajectory``: one closed-form training trajectory from flags or a TOML file.

Builds the target, samples the training set, assembles the score-matching
problem, solves the flow once and evaluates the chosen metrics at every tau
(:func:`rfdiff.trajectory.trajectory`); writes the labelled result (netCDF
with provenance) and, optionally, a plot.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from . import _validate as v

DEFAULTS = {"target": "two_modes", "mu": 3.0, "q1": 0.5, "n": 1000, "data_seed": 0, "m": 256,
            "activation": "relu", "seed": 0, "t_min": 1e-3, "T": 8.0, "weighting": "sigma2",
            "n_time": None, "taus": "1e0:1e12:25",
            "metrics": ["train_loss", "population_loss", "kl_ode", "kl_sde", "girsanov"],
            "tol": 1e-4, "backend": "numpy", "out": "trajectory.nc", "plot": None}
_TYPES = {"target": str, "mu": float, "q1": float, "n": int, "data_seed": int, "m": int,
          "activation": str, "seed": int, "t_min": float, "T": float, "weighting": str,
          "n_time": int, "taus": str, "metrics": list, "tol": float, "backend": str, "out": str,
          "plot": str}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="TOML", help="read the parameters from a [trajectory] table")
    for key, default in DEFAULTS.items():
        if key == "metrics":
            p.add_argument("--metrics", help=f"comma-separated (default: {','.join(default)})")
            continue
        p.add_argument(f"--{key.replace('_', '-')}", dest=key, type=_TYPES[key],
                       help=f"default: {default}")


def parse_taus(spec: str) -> np.ndarray:
    """``"start:stop:count"`` -> log-spaced taus (start, stop > 0; count >= 1)."""
    parts = str(spec).split(":")
    if len(parts) != 3:
        raise ValueError(f"taus must be 'start:stop:count', got {spec!r}")
    lo = v.positive("taus start", float(parts[0]))
    hi = v.positive("taus stop", float(parts[1]))
    count = v.positive_int("taus count", int(parts[2]))
    return np.logspace(np.log10(lo), np.log10(hi), count)


def _params(args) -> dict:
    params = dict(DEFAULTS)
    if args.config:
        from .sweep.config import tomllib     # tomllib, or tomli on Python 3.10

        try:
            table = tomllib.loads(Path(args.config).read_text()).get("trajectory")
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ValueError(f"{args.config}: cannot read config: {exc}") from None
        if not isinstance(table, dict):
            raise ValueError(f"{args.config}: needs a [trajectory] table")
        for key, val in table.items():
            if key not in DEFAULTS:
                raise ValueError(f"{args.config}: [trajectory].{key}: unknown key "
                                 f"(allowed: {', '.join(DEFAULTS)})")
            typ = _TYPES[key]
            if typ is float and isinstance(val, int) and not isinstance(val, bool):
                val = float(val)
            if not isinstance(val, typ) or isinstance(val, bool):
                raise ValueError(f"{args.config}: [trajectory].{key}: expected {typ.__name__}, "
                                 f"got {val!r}")
            params[key] = val
    for key in DEFAULTS:
        val = getattr(args, key, None)
        if val is not None:
            params[key] = val.split(",") if key == "metrics" else val
    return params


def run(args) -> int:
    import rfdiff as rf
    from .backend import get_backend
    from .trajectory import save, trajectory

    p = _params(args)
    if p["target"] != "two_modes":
        raise ValueError(f"target must be 'two_modes', got {p['target']!r}")
    target = rf.two_modes(p["mu"], p["q1"])
    n = v.positive_int("n", p["n"])
    x = target.sample(n, seed=p["data_seed"])
    model = rf.RandomFeatureScore(m=p["m"], activation=p["activation"], seed=p["seed"])
    try:
        backend = get_backend(p["backend"])
    except (ImportError, RuntimeError) as exc:      # no CuPy, or no usable GPU: a usage error here
        raise ValueError(f"backend: {exc}") from None
    sm = rf.ScoreMatching(model, x, t_min=p["t_min"], T=p["T"], weighting=p["weighting"],
                          n_time=p["n_time"], backend=backend)
    taus = parse_taus(p["taus"])
    ds = trajectory(sm, taus, target, metrics=p["metrics"], tol=v.positive("tol", p["tol"]),
                    seeds={"data_seed": p["data_seed"]})
    save(ds, p["out"])
    print(f"wrote {p['out']}: {len(taus)} taus x {len(p['metrics'])} metrics")
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
