"""``rfdiff trajectory``: one closed-form training trajectory from flags or a TOML file.

Builds the target, samples the training set, assembles the score-matching
problem, solves the flow once and evaluates the chosen metrics at every tau
(:func:`rfdiff.trajectory.trajectory`); writes the labelled result (netCDF
with provenance) and, optionally, a plot.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from .. import _validate as v

DEFAULTS = {"target": "two_modes", "mu": 3.0, "q1": 0.5, "n": 1000, "data_seed": 0, "m": 256,
            "activation": "relu", "seed": 0, "t_min": 1e-3, "T": 8.0, "weighting": "sigma2",
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


def run(args) -> int:
    import rfdiff as rf
    from ..backend import get_backend
    from ..run.cache import check_writable_file
    from ..trajectory import save, trajectory

    p = _params(args)
    check_writable_file(p["out"], "--out")        # before any work: one line, exit 2
    if p["plot"]:
        check_writable_file(p["plot"], "--plot")
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
    try:
        save(ds, p["out"])
    except OSError as exc:                            # the path went bad while computing
        import tempfile

        rescue = Path(tempfile.mkdtemp(prefix="rfdiff-trajectory-")) / Path(p["out"]).name
        save(ds, rescue)
        raise ValueError(f"--out {p['out']}: cannot write ({exc.strerror or exc}); "
                         f"the result is saved in {rescue}") from None
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
