"""Benchmark (1): a full closed-form trajectory in 1D.

64 training times; train and population loss, ODE and SDE KL (with error
estimates) for the random-feature flow on ``two_modes(mu=3)``. Full size:
n = 1e4 training points, m = 4096 features (target: under 60 s on 2 CPU
cores); ``--quick``: n = 1000, m = 512; ``--m``/``--n``/``--metrics`` override
(the GPU target: ``--backend cupy --m 32768 --metrics train_loss,population_loss``,
under 30 s on one H100). Prints the time of each stage and,
as the baseline measured in the same run, the time of one step of torch
full-batch gradient descent on quadrature rows of the same loss: the whole
exact trajectory is reported in units of such steps.

    python benchmarks/trajectory.py [--quick] [--json PATH] [--backend B] [--n-time N] [--tol TOL]
                                    [--m M] [--n N] [--metrics a,b,...]
"""
import time

import numpy as np

import rfdiff as rf

from _common import parser, report


def main(argv=None):
    p = parser(__doc__)
    p.add_argument("--n-time", type=int, default=None, help="time nodes (default: rfdiff's)")
    p.add_argument("--tol", type=float, default=1e-4,
                   help="absolute tolerance of the KLs (default 1e-4; rf.trajectory()'s own default is 1e-3)")
    p.add_argument("--m", type=int, default=None, help="features (default 4096; --quick 512)")
    p.add_argument("--n", type=int, default=None, help="training points (default 1e4; --quick 1000)")
    p.add_argument("--metrics", default="train_loss,population_loss,kl_ode,kl_sde",
                   help="comma-separated trajectory metrics")
    args = p.parse_args(argv)
    n, m = (1000, 512) if args.quick else (10_000, 4096)
    n, m = args.n or n, args.m or m
    metrics = tuple(args.metrics.split(","))
    target = rf.two_modes(3.0)
    x = target.sample(n, seed=0)
    # compile the numba kernels (of the metrics asked for) outside the timings
    small = rf.ScoreMatching(rf.RandomFeatureScore(m=8), x[:20], n_time=4)
    rf.trajectory(small, np.array([1.0, 10.0]), target, metrics=metrics, tol=1e-3)

    out = {"n": n, "m": m, "tol": args.tol}
    t0 = time.perf_counter()
    sm = rf.ScoreMatching(rf.RandomFeatureScore(m=m, seed=0), x, n_time=args.n_time, backend=args.backend)
    sm.train_form
    out["n_time"] = sm.n_time
    out["assembly_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    flow = sm.flow()
    out["backend"] = flow.backend.name
    out["eigh_s"] = time.perf_counter() - t0
    taus = np.logspace(0, 12, 64)
    t0 = time.perf_counter()
    ds = rf.trajectory(flow, taus, target, metrics=metrics, tol=args.tol)
    out["metrics_64_taus_s"] = time.perf_counter() - t0
    for k in ("population_loss", "kl_ode", "kl_sde"):
        if k in metrics:
            out[f"{k}_s"] = float(ds.attrs.get(f"seconds_{k}", np.nan))
    out["total_s"] = out["assembly_s"] + out["eigh_s"] + out["metrics_64_taus_s"]
    if "kl_ode" in metrics:
        best = int(np.argmin(ds["kl_ode"].values))
        out["tau_star"] = float(taus[best])
        out["kl_ode_at_tau_star"] = float(ds["kl_ode"].values[best])
    for k in ("kl_ode", "kl_sde"):        # taus whose KL missed tol (reported, with the reason, in ds)
        if k in metrics:
            out[f"{k}_max_error"] = float(ds[f"{k}_error"].values.max())
            out[f"{k}_unconverged_taus"] = int((~ds[f"{k}_converged"].values).sum())
    # baseline in the same run: one step of full-batch torch gradient descent on
    # quadrature rows of the same loss (a coarse grid; a practitioner's epoch)
    try:
        from rfdiff import torch as rft
    except ImportError:
        rft = None
    if rft is not None and m <= 8192:            # (its rows x m matrix must fit in memory)
        grid = rf.ScoreMatching(sm.model, x, method="grid", n_time=32, z_density=2.0, z_order=4)
        grid.training_rows()
        t0 = time.perf_counter()
        rft.gradient_descent(grid, lr=1.0 / flow.lambda_max, steps=10, record=[10])
        out["torch_gd_step_s"] = (time.perf_counter() - t0) / 10
        out["trajectory_cost_in_gd_steps"] = out["total_s"] / out["torch_gd_step_s"]
    report(out, args.json)


if __name__ == "__main__":
    main()
