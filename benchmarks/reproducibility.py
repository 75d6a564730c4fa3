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

Then the score-error curve of the figure's point, ``RFPairMember.score_error_curve``
on the figure's 27 training times and 12 x ``n_mc`` nodes (each node's features
times the stack of all ``A(tau)``), against the way it was computed before, by the
quadratic form of the nodes, ``tr(A Gp A^T)`` with ``Gp = sum_t c_t Phi_t^T Phi_t``
(m x m); the two are timed interleaved in the same run.

    python benchmarks/reproducibility.py [--quick] [--json PATH] [--backend B]
"""
import math
import time

import numpy as np

import rfdiff as rf
from analysis.experiments import reproducibility as R

from _common import best_of, best_times, parser, report


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
    out.update(_score_error_curve(target, model, x, d, m, n_mc=1024 if args.quick else 4096))
    report(out, args.json)


def _score_error_curve(target, model, x, d, m, n_mc):
    """The curve against the quadratic form (module docstring): times, ratio, largest difference."""
    process = rf.OU()
    sm = rf.ScoreMatching(model, x[:8], process, 1e-3, 8.0, "sigma2", n_time=32, n_eps=1, seed=0)
    member = R.RFPairMember(model, sm, "score")
    nodes = R.ScoreErrorNodes(target, process, 1e-3, 8.0, 12, n_mc)
    taus = 10.0 ** R.TAU_EXPONENTS / member.flow.lambda_max

    def quadratic_form():
        Gp, Cp, c0 = np.zeros((m, m)), np.zeros((d, m)), 0.0
        for tt, w, zz, y in zip(nodes.t, nodes.w, nodes.z, nodes.ref):
            cw = w * float(process.sigma2(tt)) / len(zz)
            psi = model.features(zz, tt)
            Gp += cw * psi.T @ psi
            Cp += cw * y.T @ psi
            c0 += cw * float(np.sum(y * y))
        P = member.flow.params(taus)
        return np.einsum("kdm,kdm->k", P @ Gp, P) / m**2 - 2.0 * np.einsum("kdm,dm->k", P, Cp) / m + c0

    curve, reference = member.score_error_curve(taus, nodes), quadratic_form()
    t_curve, t_form = best_times([lambda: member.score_error_curve(taus, nodes), quadratic_form], repeat=2)
    return {"score_error_curve_s": t_curve, "quadratic_form_curve_s": t_form,
            "score_error_curve_speedup": t_form / t_curve,
            "score_error_curve_max_rel_difference": float(np.max(np.abs(curve - reference) / np.abs(reference)))}


if __name__ == "__main__":
    main()
