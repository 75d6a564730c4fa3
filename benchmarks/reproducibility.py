"""Benchmark: the d-dimensional random-feature path of the reproducibility figure.

At d = 48, m = 4096, N = 1000 (``--quick``: d = 16, m = 1024, N = 200), on a
block low-rank mixture (K = 2, r = 4): times

- assembly of the training form by the rows method (``ScoreMatching(...).train_form``:
  ``R = N n_eps n_time`` quasi-Monte-Carlo rows, features then a rank-R update
  ``G += Phi^T Phi``, ~ R m^2 flops),
- the eigendecomposition of ``H = G/m^2`` (``Flow.from_gram``, ~ 9 m^3 flops for eigh),
- probability-flow sampling of 1000 particles (Heun, ``n_steps`` steps, two score
  calls a step, each two GEMMs of 1000 x d x m),

against an m x m x m float64 GEMM timed in the same run (its GFLOP/s is the
machine's yardstick; each part is also given as GEMM-equivalents, time / GEMM time).

    python benchmarks/reproducibility.py [--quick] [--json PATH] [--backend B]
"""
import math
import time

import numpy as np

import rfdiff as rf

from _common import best_of, parser, report


def _block_mixture(d, K, r, seed=0):
    q, rr = np.linalg.qr(np.random.default_rng(seed).standard_normal((d, K * r)))
    q = q * np.sign(np.diag(rr))
    return rf.LowRankMixture(np.ascontiguousarray(q.reshape(d, K, r).transpose(1, 0, 2)))


def main(argv=None):
    p = parser(__doc__)
    p.add_argument("--n-eps", type=int, default=1, help="Sobol noises per data point and time node")
    p.add_argument("--n-time", type=int, default=32, help="time nodes of the training loss")
    p.add_argument("--n-steps", type=int, default=64, help="Heun steps of the sampler")
    args = p.parse_args(argv)
    d, m, N = (16, 1024, 200) if args.quick else (48, 4096, 1000)
    target = _block_mixture(d, 2, 4)
    x = target.sample(N, seed=0)
    model = rf.RandomFeatureScore(m, dim=d, seed=1, w_scale=1 / math.sqrt(d))
    # warm-up (imports, numba kernels loaded from the cache, BLAS threads): not timed
    warm = rf.ScoreMatching(rf.RandomFeatureScore(16, dim=d, seed=0), x[:4], n_time=2, n_eps=1)
    rf.samplers.heun(rf.Flow.from_gram(warm.train_form, model=warm.model).score_at(1.0),
                     rf.samplers.prior_noise(8, d), rf.samplers.time_schedule(8.0, 1e-3, 2))
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((m, m)), rng.standard_normal((m, m))
    a @ b                                                         # warm BLAS up
    t_gemm = best_of(lambda: a @ b, repeat=3)
    rows = N * args.n_eps * args.n_time
    sm = rf.ScoreMatching(model, x, n_time=args.n_time, n_eps=args.n_eps, backend=args.backend)
    t0 = time.perf_counter()
    form = sm.train_form
    t1 = time.perf_counter()
    flow = rf.Flow.from_gram(form, backend=args.backend, model=model)
    t2 = time.perf_counter()
    score = flow.score_at(10.0 / flow.lambda_max)
    noise = rf.samplers.prior_noise(1000, d, seed=1)
    ts = rf.samplers.time_schedule(8.0, 1e-3, args.n_steps)
    t3 = time.perf_counter()
    samples = rf.samplers.heun(score, noise, ts, backend=args.backend)
    t4 = time.perf_counter()
    assert np.all(np.isfinite(samples))
    gemm_flops = 2.0 * m**3
    parts = {"assembly": (t1 - t0, rows * m * m + 2.0 * rows * d * m),
             "eigh": (t2 - t1, 9.0 * m**3),
             "sampling_1000": (t4 - t3, 2 * args.n_steps * 2 * (2.0 * 1000 * d * m))}
    out = {"d": d, "m": m, "N": N, "rows": rows, "n_eps": args.n_eps, "n_time": args.n_time,
           "n_steps": args.n_steps, "backend": args.backend,
           f"gemm_{m}_s": t_gemm, "gemm_gflops": gemm_flops / t_gemm / 1e9}
    for k, (t, flops) in parts.items():
        out[f"{k}_s"] = t
        out[f"{k}_gemm_equivalents"] = t / t_gemm
        out[f"{k}_gflops"] = flops / t / 1e9
    report(out, args.json)


if __name__ == "__main__":
    main()
