"""Benchmark (issue 16): exact-in-noise assembly of the paper's tanh Gram against GEMMs.

The assembly of ``U = sum_k rho^k o (C_k^T C_k)/n`` (rfdiff.model.noise_gram) needs
K + 1 GEMMs of shape (p x n)(n x p) plus the Hermite coefficients (n p tanh
evaluations per Gauss-Hermite node) and O(p^2 K) elementwise work. This script times
the whole assembly at d = 100, p = 6400, n = 3200 (``--quick``: d = 40, p = 1280,
n = 640) and one float64 GEMM of the same shape in the same run, and prints

- ``assembly_s``: the assembly's wall time (one call: at full size it takes minutes);
- ``gemm_s``: one (p x n)(n x p) GEMM, best of 3; ``gemm_gflops`` its rate;
- ``assembly_vs_gemms``: ``assembly_s / ((K + 1) gemm_s)``, the assembly's time in units of the
  GEMMs it cannot avoid (target: < 2, i.e. not dominated by Python);
- ``assembly_gflops``: ``(K + 1) 2 n p^2 / assembly_s``;
- ``coefficient_bytes``: the (n, p, K + 1) coefficient array held during the assembly.

    python benchmarks/pre_memorization.py [--quick] [--json PATH]
"""
import numpy as np

from rfdiff.model import premem as pm
from rfdiff.model.noise_gram import noise_gram

from _common import best_of, parser, report, timer


def main(argv=None):
    args = parser(__doc__).parse_args(argv)
    if args.backend != "numpy":
        raise SystemExit("the exact noise Gram runs on numpy only (--backend numpy)")
    d, p, n = (40, 1280, 640) if args.quick else (100, 6400, 3200)
    t = 0.1
    W = pm.paper_weights(pm.paper_model(d, p, seed=0))
    X = np.random.default_rng([0, 1]).standard_normal((n, d))
    out = {"d": d, "p": p, "n": n, "t": t}
    Ck = np.random.default_rng(2).standard_normal((n, p))
    gemm = lambda: Ck.T @ Ck                                           # noqa: E731
    gemm()
    out["gemm_s"] = best_of(gemm, 3)
    del Ck
    with timer(out, "assembly_s"):
        g = noise_gram(W, X, t)
    Ck = np.random.default_rng(2).standard_normal((n, p))
    out["gemm_s_after"] = best_of(gemm, 2)                           # the host's rate may drift
    t_gemm = min(out["gemm_s"], out["gemm_s_after"])
    K = g.K
    out["hermite_K"] = K
    out["gh_nodes"] = g.nodes
    out["truncation_error"] = g.error
    out["gemm_gflops"] = 2 * n * p * p / t_gemm / 1e9
    out["assembly_gflops"] = (K + 1) * 2 * n * p * p / out["assembly_s"] / 1e9
    out["assembly_vs_gemms"] = out["assembly_s"] / ((K + 1) * t_gemm)
    out["coefficient_bytes"] = n * p * (K + 1) * 8
    report(out, args.json)


if __name__ == "__main__":
    main()
