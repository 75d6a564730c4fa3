"""Benchmark (4): how the cost of a closed-form trajectory scales with m and n.

Times the Gram assembly (exact 1D ReLU), the eigendecomposition and a 64-tau
loss curve, for a range of widths m at fixed n and of sample sizes n at fixed
m, and fits log-log exponents (theory: assembly O(n m n_time + m^2 n_time),
eigendecomposition O(m^3), queries O(m^2) per tau).

    python benchmarks/scaling.py [--quick] [--json PATH] [--backend B]
"""
import time

import numpy as np

import rfdiff as rf
from analysis.fits import fit_power_law

from _common import parser, report


def _run(n, m, target, n_time, backend):
    x = target.sample(n, seed=0)
    sm = rf.ScoreMatching(rf.RandomFeatureScore(m=m, seed=0), x, n_time=n_time, backend=backend)
    t0 = time.perf_counter()
    sm.train_form
    t1 = time.perf_counter()
    flow = sm.flow()
    t2 = time.perf_counter()
    flow.train_loss(np.logspace(0, 12, 64))
    flow.params(np.logspace(0, 12, 64))
    t3 = time.perf_counter()
    return t1 - t0, t2 - t1, t3 - t2


def main(argv=None):
    args = parser(__doc__).parse_args(argv)
    target = rf.two_modes(3.0)
    n_time = 64 if args.quick else 256
    ms = [128, 256, 512, 1024] if args.quick else [256, 512, 1024, 2048, 4096]
    ns = [250, 1000, 4000] if args.quick else [1000, 3000, 10000, 30000]
    _run(50, 16, target, 4, args.backend)                  # compile the numba kernels
    out = {"n_time": n_time}
    # best of three per point: one-off timings on a shared machine are too noisy to fit
    best = lambda n, m: np.min([_run(n, m, target, n_time, args.backend) for _ in range(3)], axis=0)
    by_m = np.array([best(1000, m) for m in ms])
    by_n = np.array([best(n, 256) for n in ns])
    for j, part in enumerate(("assembly", "eigh", "queries_64_taus")):
        for name, xs, ts in (("m", ms, by_m[:, j]), ("n", ns, by_n[:, j])):
            fit = fit_power_law(xs, ts, n_boot=500)
            out[f"{part}_exponent_in_{name}"] = f"{fit.slope:.2f} [{fit.ci_low:.2f}, {fit.ci_high:.2f}]"
        out[f"{part}_s_at_m={ms[-1]}"] = float(by_m[-1, j])
    report(out, args.json)


if __name__ == "__main__":
    main()
