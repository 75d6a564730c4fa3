"""Benchmark: the SGD steps and the d > 1 Hessian-vector products of the large-lr experiment
against the same computations in torch autograd.

``analysis.experiments.large_lr.sgd`` (mean-field two-layer ReLU net, m = 1000 units,
batches of B = 50, all layers trained; ``--quick``: m = 200) computes the batch loss's
gradient by hand: fused in numba for d = 1, NumPy (:func:`batch_loss_gradient`) for d > 1.
The baseline, timed interleaved with it in the same run, is the same step through torch
autograd (float64, one thread), as the experiment ran it before. Prints per d in (1, 10):

- ``sgd_step_us`` (the experiment's ``sgd``, its draws included) and ``torch_step_us``:
  wall time per step, best of 5 runs of ``steps``;
- ``speedup``: their ratio;
- ``max_grad_difference``: the largest relative difference of the two gradients at the
  initial parameters (both are the same function; ~1e-15 expected);
- at d = 10 only, the Hessian-vector product of the Monte Carlo risk (``mc_draws`` = 20000;
  ``--quick``: 2000), 50 products as in one Lanczos sharpness: ``hvp_ms`` (the closed form,
  :func:`hessian_product`, which ``sharpness`` uses) against ``torch_hvp_ms``
  (:func:`hessian_operator`, autograd double backward), ``hvp_speedup`` and
  ``max_hvp_difference`` (relative, ~1e-15 expected).

    python benchmarks/large_lr.py [--quick] [--json PATH]
"""
import numpy as np
import torch

from analysis.experiments import large_lr as L
from threadpoolctl import threadpool_limits

from _common import best_times, parser, report


def torch_step(P, y, eps, sigma, lr, m):
    loss = torch.mean(torch.sum((L.net(P, y) + eps / sigma) ** 2, dim=1))
    g = torch.autograd.grad(loss, [P["a"], P["w"], P["b"]])
    with torch.no_grad():
        for k, gk in zip(("a", "w", "b"), g):
            P[k] -= lr * m * gk


def main(argv=None):
    args = parser(__doc__).parse_args(argv)
    if args.backend != "numpy":
        raise SystemExit("the SGD step runs on numpy only (--backend numpy)")
    m, B, steps, t, lr = (200, 50, 200, 0.2, 0.01) if args.quick else (1000, 50, 500, 0.2, 0.01)
    sigma = float(np.sqrt(-np.expm1(-2 * t)))
    out = {"m": m, "batch": B, "steps": steps}
    torch.set_num_threads(1)
    with threadpool_limits(1):
        for d in (1, 10):
            x, p = L.training_set(20, d, 0), L.init_params(m, d, 0)
            rng = np.random.default_rng(0)
            eps = rng.standard_normal((steps, B, d))
            ys = np.exp(-t) * x[rng.integers(0, 20, (steps, B))] + sigma * eps
            P = {k: torch.tensor(v, requires_grad=True) for k, v in p.items()}
            te, ty = torch.tensor(eps), torch.tensor(ys)
            L.sgd(p, x, t, lr, 2)                                  # numba compile (or cache load)

            def run_sgd():
                L.sgd(p, x, t, lr, steps)

            def run_torch():
                for k in range(steps):
                    torch_step(P, ty[k], te[k], sigma, lr, m)

            t_sgd, t_torch = best_times([run_sgd, run_torch], repeat=5)
            _, g = L.batch_loss_gradient(p, ys[0], eps[0], sigma)
            P0 = {k: torch.tensor(v, requires_grad=True) for k, v in p.items()}
            torch.mean(torch.sum((L.net(P0, ty[0]) + te[0] / sigma) ** 2, dim=1)).backward()
            diff = max(float(np.abs(g[k] - P0[k].grad.numpy()).max() / np.abs(g[k]).max()) for k in g)
            out[f"d{d}_sgd_step_us"] = 1e6 * t_sgd / steps
            out[f"d{d}_torch_step_us"] = 1e6 * t_torch / steps
            out[f"d{d}_speedup"] = t_torch / t_sgd
            out[f"d{d}_max_grad_difference"] = diff
        # the Hessian-vector products of one Lanczos sharpness at d = 10, after a short training
        n_mc, n_prod = 2000 if args.quick else 20000, 50
        x, p = L.training_set(20, 10, 0), L.init_params(m, 10, 0)
        p = L.sgd(p, x, t, 0.1, 200)[0]
        vs = np.random.default_rng(1).standard_normal((n_prod, 2 * m * 10 + m))
        cf = L.hessian_product(p, x, t, mc_draws=n_mc)[0]
        ad = L.hessian_operator(p, x, t, mc_draws=n_mc)[0]
        t_cf, t_ad = best_times([lambda: [cf(v) for v in vs], lambda: [ad(v) for v in vs]], repeat=1)
        ref = ad(vs[0])
        out.update(hvp_mc_draws=n_mc, hvp_ms=1e3 * t_cf / n_prod, torch_hvp_ms=1e3 * t_ad / n_prod,
                   hvp_speedup=t_ad / t_cf, max_hvp_difference=float(np.abs(cf(vs[0]) - ref).max()
                                                                    / np.abs(ref).max()))
    report(out, args.json)


if __name__ == "__main__":
    main()
