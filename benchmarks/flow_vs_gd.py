"""Benchmark (2): closed-form flow vs torch full-batch gradient descent.

Both minimise the same training loss on the same quadrature rows
(``method="grid"``). The question: how long does each take to give A(tau_max)
to a relative accuracy ``eps``? Closed form: assembly + one eigendecomposition
+ one query. Gradient descent: its error at fixed tau shrinks like O(lr), so
the largest learning rate meeting ``eps`` at ``tau_max`` is found by bisection
using the closed-form GD iterate (``flow.gd_params``, equal to torch's to ~1e-9
in the tests); torch's time per step is measured on a run of ``probe_steps``
steps and multiplied by the ``tau_max / lr`` steps needed. The ratio is the
``speedup`` key. (Torch GD also needs the quadrature rows; their time counts.)

    python benchmarks/flow_vs_gd.py [--quick] [--json PATH]
"""
import time

import numpy as np

import rfdiff as rf

from _common import parser, report


def _largest_lr(flow, tau_max, eps):
    target = flow.params(tau_max)
    scale = np.linalg.norm(target)
    err = lambda lr: np.linalg.norm(flow.gd_params(lr, int(np.ceil(tau_max / lr))) - target) / scale
    lo, hi = 0.0, 1.9 / flow.lambda_max
    if err(hi) <= eps:
        return hi, err(hi)
    for _ in range(50):
        mid = 0.5 * (lo + hi) if lo > 0 else hi / 2
        if err(mid) <= eps:
            lo = mid
        else:
            hi = mid
        if lo > 0 and hi / lo < 1.01:
            break
    return lo, err(lo)


def main(argv=None):
    p = parser(__doc__)
    p.add_argument("--tau-max", type=float, default=1e6)
    p.add_argument("--eps", type=float, default=1e-3, help="relative accuracy of A(tau_max)")
    args = p.parse_args(argv)
    from rfdiff import torch as rft

    m, n, probe = (128, 300, 100) if args.quick else (512, 1000, 200)
    x = rf.two_modes(3.0).sample(n, seed=0)
    model = rf.RandomFeatureScore(m=m, seed=0)
    kw = dict(method="grid", n_time=32, z_density=2.0, z_order=4)
    rf.ScoreMatching(rf.RandomFeatureScore(m=8, seed=0), x[:20], **kw).flow()   # warm-up

    t0 = time.perf_counter()
    sm = rf.ScoreMatching(model, x, **kw)
    flow = sm.flow()
    A_closed = flow.params(args.tau_max)
    t_closed = time.perf_counter() - t0

    lr, err = _largest_lr(flow, args.tau_max, args.eps)
    steps_needed = int(np.ceil(args.tau_max / lr))

    t0 = time.perf_counter()
    sm_rows = rf.ScoreMatching(model, x, **kw)
    sm_rows.training_rows()
    t_rows = time.perf_counter() - t0
    t0 = time.perf_counter()
    hist = rft.gradient_descent(sm_rows, lr=lr, steps=probe, record=[probe])
    t_probe = time.perf_counter() - t0
    per_step = t_probe / probe
    # sanity: torch's probe iterate equals the closed-form GD iterate
    gd_check = float(np.linalg.norm(hist.params[-1] - flow.gd_params(lr, probe))
                     / np.linalg.norm(flow.gd_params(lr, probe)))
    t_torch = t_rows + steps_needed * per_step
    report({"m": m, "n": n, "rows": int(len(sm.training_rows()[0])), "tau_max": args.tau_max,
            "eps": args.eps, "lr": lr, "lr_times_lambda_max": lr * flow.lambda_max,
            "gd_rel_error_at_tau_max": err, "steps_needed": steps_needed,
            "torch_s_per_step": per_step, "torch_probe_vs_closed_form_gd": gd_check,
            "closed_form_s": t_closed, "torch_projected_s": t_torch,
            "speedup": t_torch / t_closed}, args.json)


if __name__ == "__main__":
    main()
