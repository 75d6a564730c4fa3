"""Benchmark (1): a full closed-form trajectory in 1D.

64 training times; train and population loss, ODE and SDE KL (with error
estimates) for the random-feature flow on ``two_modes(mu=3)``. Full size:
n = 1e4 training points, m = 4096 features (target: under 60 s on 2 CPU
cores); ``--quick``: n = 1000, m = 512. Prints the time of each stage and,
as the baseline measured in the same run, one epoch-equivalent of torch
full-batch gradient descent on the same quadrature (how long one step of
what a practitioner would do costs).

    python benchmarks/trajectory.py [--quick] [--json PATH] [--n-time N]
"""
import time

import numpy as np

import rfdiff as rf
from rfdiff.trajectory import trajectory

from _common import parser, report


def main(argv=None):
    p = parser(__doc__)
    p.add_argument("--n-time", type=int, default=None, help="time nodes (default: rfdiff's)")
    args = p.parse_args(argv)
    n, m = (1000, 512) if args.quick else (10_000, 4096)
    target = rf.two_modes(3.0)
    x = target.sample(n, seed=0)
    # compile the numba kernels outside the timings
    small = rf.ScoreMatching(rf.RandomFeatureScore(m=8), x[:20], n_time=4)
    trajectory(small, np.array([1.0, 10.0]), target, tol=1e-3)

    out = {"n": n, "m": m}
    t0 = time.perf_counter()
    sm = rf.ScoreMatching(rf.RandomFeatureScore(m=m, seed=0), x, n_time=args.n_time)
    sm.train_form
    out["n_time"] = sm.n_time
    out["assembly_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    flow = sm.flow()
    out["eigh_s"] = time.perf_counter() - t0
    taus = np.logspace(0, 12, 64)
    t0 = time.perf_counter()
    ds = trajectory(flow, taus, target, metrics=("train_loss", "population_loss", "kl_ode", "kl_sde"),
                    tol=1e-4)
    out["metrics_64_taus_s"] = time.perf_counter() - t0
    for k in ("population_loss", "kl_ode", "kl_sde"):
        out[f"{k}_s"] = float(ds.attrs.get(f"seconds_{k}", np.nan))
    out["total_s"] = out["assembly_s"] + out["eigh_s"] + out["metrics_64_taus_s"]
    best = int(np.argmin(ds["kl_ode"].values))
    out["tau_star"] = float(taus[best])
    out["kl_ode_at_tau_star"] = float(ds["kl_ode"].values[best])
    out["kl_ode_max_error"] = float(ds["kl_ode_error"].values.max())
    out["kl_sde_max_error"] = float(ds["kl_sde_error"].values.max())
    report(out, args.json)


if __name__ == "__main__":
    main()
