"""Benchmark (2): closed-form flow vs torch full-batch gradient descent.

The question: how long does each take to give ``A(tau_max)`` of the training
loss to a relative accuracy ``eps``? Both use the same 32 time nodes.

- Closed form (rfdiff's path): the exact 1D ReLU Gram (no z-discretisation),
  one eigendecomposition, one query. Its ``A(tau_max)`` is the reference.
- Gradient descent (a practitioner's path): torch full-batch GD on quadrature
  rows in z (``method="grid"``). The rows must be fine enough: the z-density
  is doubled from 2 until the rows' own flow is within ``eps/2`` of the
  reference; then the largest learning rate meeting ``eps`` at ``tau_max`` is
  found by bisection using the closed-form GD iterate (``flow.gd_params``,
  equal to torch's to ~1e-9 in the tests; checked again below). Torch's time
  per step is measured on ``probe`` steps and multiplied by the
  ``tau_max / lr`` steps needed; building the rows counts too.

``speedup`` is the ratio of the two. ``speedup_same_rows`` is the narrower
comparison on identical rows: the closed form assembled from the GD's rows
against GD converging to that rows-flow's own ``A(tau_max)``.

    python benchmarks/flow_vs_gd.py [--quick] [--json PATH]
"""
import time

import numpy as np

import rfdiff as rf

from _common import parser, report


def _rel(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def _largest_lr(flow, tau_max, target, eps):
    """Largest stable learning rate whose GD iterate at tau_max is within eps of target."""
    err = lambda lr: _rel(flow.gd_params(lr, int(np.ceil(tau_max / lr))), target)
    lo, hi = 0.0, 1.9 / flow.lambda_max
    if err(hi) <= eps:
        return hi, err(hi)
    for _ in range(60):
        mid = 0.5 * (lo + hi) if lo > 0 else hi / 2
        if err(mid) <= eps:
            lo = mid
        else:
            hi = mid
        if lo > 0 and hi / lo < 1.01:
            break
    return lo, err(lo)


def _torch_seconds(rft, sm_rows, rows_flow, lr, steps, probe):
    """Rows + ``steps`` of torch GD (timed on ``probe`` steps); the number of rows;
    the probe's agreement with the closed-form GD iterate of the same rows."""
    t0 = time.perf_counter()
    n_rows = len(sm_rows.training_rows()[0])
    t_rows = time.perf_counter() - t0
    t0 = time.perf_counter()
    hist = rft.gradient_descent(sm_rows, lr=lr, steps=probe, record=[probe])
    per_step = (time.perf_counter() - t0) / probe
    check = _rel(hist.params[-1], rows_flow.gd_params(lr, probe))
    return t_rows + steps * per_step, per_step, n_rows, check


def main(argv=None):
    p = parser(__doc__)
    p.add_argument("--tau-max", type=float, default=1e6)
    p.add_argument("--eps", type=float, default=1e-3, help="relative accuracy of A(tau_max)")
    args = p.parse_args(argv)
    from rfdiff import torch as rft

    m, n, probe = (128, 300, 100) if args.quick else (512, 1000, 200)
    x = rf.two_modes(3.0).sample(n, seed=0)
    model = rf.RandomFeatureScore(m=m, seed=0)
    n_time = 32
    grid_kw = lambda zd: dict(method="grid", n_time=n_time, z_density=zd, z_order=4)
    for kw in (dict(n_time=4), grid_kw(2.0)):                              # warm-up
        rf.ScoreMatching(rf.RandomFeatureScore(m=8, seed=0), x[:20], **kw).flow()

    t0 = time.perf_counter()
    exact = rf.ScoreMatching(model, x, n_time=n_time, backend=args.backend).flow()
    A_ref = exact.params(args.tau_max)
    t_closed = time.perf_counter() - t0

    # rows fine enough that their own flow is within eps/2 of the exact one
    for zd in (2.0, 4.0, 8.0, 16.0, 32.0, 64.0):
        sm_rows = rf.ScoreMatching(model, x, backend=args.backend, **grid_kw(zd))
        t0 = time.perf_counter()
        rows_flow = sm_rows.flow()
        A_rows = rows_flow.params(args.tau_max)
        t_closed_rows = time.perf_counter() - t0
        rows_err = _rel(A_rows, A_ref)
        if rows_err <= args.eps / 2:
            break
    lr, err = _largest_lr(rows_flow, args.tau_max, A_ref, args.eps)
    steps = int(np.ceil(args.tau_max / lr))
    t_torch, per_step, n_rows, check = _torch_seconds(rft, sm_rows, rows_flow, lr, steps, probe)

    # the narrower comparison: identical rows, GD against the rows-flow itself
    lr_same, err_same = _largest_lr(rows_flow, args.tau_max, A_rows, args.eps)
    steps_same = int(np.ceil(args.tau_max / lr_same))
    t_torch_same = t_torch - (steps - steps_same) * per_step

    report({"m": m, "n": n, "n_time": n_time, "tau_max": args.tau_max, "eps": args.eps,
            "closed_form_s": t_closed, "gd_rows": n_rows,
            "gd_z_density": zd, "gd_rows_flow_rel_error": rows_err, "lr": lr,
            "lr_times_lambda_max": lr * rows_flow.lambda_max, "gd_rel_error_at_tau_max": err,
            "steps_needed": steps, "torch_s_per_step": per_step,
            "torch_probe_vs_closed_form_gd": check, "torch_projected_s": t_torch,
            "speedup": t_torch / t_closed,
            "closed_form_same_rows_s": t_closed_rows, "steps_needed_same_rows": steps_same,
            "speedup_same_rows": t_torch_same / t_closed_rows}, args.json)


if __name__ == "__main__":
    main()
