"""Benchmark (3): Gram assembly and eigendecomposition against the machine's own rates.

Prints the Gram assembly (GEMM over quadrature rows) FLOP rate as a fraction of
the float64 GEMM rate measured in the same run, the exact 1D ReLU assembly
time, rfdiff's eigendecomposition time relative to a bare
``numpy.linalg.eigh`` on the same matrix, and the time of a particle sampler
(on a GPU backend: its speed-up over NumPy).

    python benchmarks/kernels.py [--quick] [--json PATH]
"""
import numpy as np

import rfdiff as rf

from _common import best_of, best_times, parser, report


def main(argv=None):
    args = parser(__doc__).parse_args(argv)
    be = rf.get_backend(args.backend)
    m = 1024 if args.quick else 4096
    n, n_time, n_eps = (200, 8, 8) if args.quick else (1000, 16, 4)
    out = {"m": m, "backend": be.name}

    # Gram assembly over rows (d = 2: the GEMM path). FLOPs counted as performed:
    # the symmetric rank-k update Phi^T Phi does R m (m + 1), the C product 2 R d m.
    # ``gram_time_vs_dense_gemm``: the same job as one dense GEMM Phi^T (w Phi) / rfdiff's time
    x = np.random.default_rng(0).standard_normal((n, 2))
    model = rf.RandomFeatureScore(m=m, dim=2, seed=0)
    sm = rf.ScoreMatching(model, x, n_time=n_time, n_eps=n_eps)
    rows = list(rf.model.gram.qmc_rows(sm.data, sm.process, sm.t_nodes, sm.omega, n_eps, 0))
    R = sum(len(r[0]) for r in rows)
    # the machine's GEMM rate: a float64 2048^3 product on the same backend, timed
    # interleaved with the assembly
    g = np.random.default_rng(1).standard_normal((2, 2048, 2048))
    ga, gb = be.asarray(g[0]), be.asarray(g[1])
    gemm = lambda: (ga @ gb, be.synchronize())
    gemm()
    gram = lambda: (rf.model.gram.accumulate_rows(model, rows, be), be.synchronize())  # noqa: E731
    t_gemm, t_gram = best_times([gemm, gram], 5)
    out["gemm_gflops"] = 2 * 2048**3 / t_gemm / 1e9
    out["rows"] = R
    out["gram_gflops"] = R * (m * (m + 1) + 2 * 2 * m) / t_gram / 1e9
    out["gram_fraction_of_gemm"] = out["gram_gflops"] / out["gemm_gflops"]
    out["gram_time_vs_dense_gemm"] = 2 * R * m * m / (out["gemm_gflops"] * 1e9) / t_gram

    # exact 1D ReLU assembly (no rows: O(m^2) per time node)
    x1 = rf.two_modes(3.0).sample(1000, seed=0)
    sm1 = rf.ScoreMatching(rf.RandomFeatureScore(m=m, seed=0), x1, backend=be)
    sm1.train_form                                        # compile the numba kernel
    out["relu_exact_gram_s"] = best_of(
        lambda: rf.ScoreMatching(rf.RandomFeatureScore(m=m, seed=0), x1, backend=be).train_form, 2)

    # eigendecomposition: rfdiff's backend vs bare numpy on the same H (on a GPU
    # backend this is the GPU-vs-CPU ratio)
    H = sm1.train_form.gram / m**2
    t_np = best_of(lambda: np.linalg.eigh(H), 2)
    Hb = be.asarray(H)
    t_rf = best_of(lambda: (be.eigh(Hb), be.synchronize()), 2)
    out["eigh_numpy_s"] = t_np
    out["eigh_rfdiff_s"] = t_rf
    out["eigh_ratio_vs_numpy"] = t_rf / t_np

    # float32: time of the set-up and accuracy of A(tau) at tau * lambda_max = 10 and 1e6
    f64 = sm1.flow(backend=be)
    t32 = best_of(lambda: sm1.flow(dtype=np.float32, backend=be), 2)
    f32 = sm1.flow(dtype=np.float32, backend=be)
    out["flow_setup_float32_over_float64"] = t32 / best_of(lambda: sm1.flow(backend=be), 2)
    for scale in (10.0, 1e6):
        tau = scale / f64.lambda_max
        A64 = f64.params(tau)
        out[f"float32_rel_error_at_tau*lmax={scale:g}"] = float(
            np.linalg.norm(f32.params(tau) - A64) / np.linalg.norm(A64))

    # particle sampler (d = 2, Heun, 32 steps: 64 score calls) with the particles on
    # the backend; on a GPU backend also its speed-up over the NumPy path
    n_p, m_s = (10_000, 256) if args.quick else (50_000, 1024)
    score = rf.RandomFeatureScore(m=m_s, dim=2, seed=0).score_fn(np.random.default_rng(2).standard_normal((2, m_s)))
    x_T = rf.samplers.prior_noise(n_p, dim=2, seed=3)
    ts = rf.samplers.time_schedule(8.0, 1e-3, 32)
    heun = lambda name, x=x_T: rf.samplers.heun(score, x, ts, backend=name)
    heun(be, x_T[:100])
    out["sampler_particles"] = n_p
    out["sampler_m"] = m_s
    out["sampler_heun_32_steps_s"] = best_of(lambda: heun(be), 2)
    if be.name != "numpy":
        out["sampler_speedup_vs_numpy"] = best_of(lambda: heun("numpy"), 2) / out["sampler_heun_32_steps_s"]
    report(out, args.json)


if __name__ == "__main__":
    main()
