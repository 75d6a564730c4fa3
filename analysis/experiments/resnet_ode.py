"""Figure ``resnet-ode``: deep residual networks trained by gradient descent stay close to a neural ODE.

After Marion, Wu, Sander, Biau (ICLR 2024, arXiv 2309.01213). The residual
network of depth ``L`` and width 16,

    h_{k+1} = h_k + (1/L) V_k sigma(W_k h_k),    k = 0..L-1,    sigma = GELU,

is initialised with ``V_k = 0`` and ``W_k`` either

- ``"tied"``: ``W_k = W_a`` for every k (one Gaussian matrix),
- ``"smooth"``: ``W_k = W_a + (k/L) W_b`` (a smooth function of depth k/L),
- ``"iid"``: independent Gaussian ``W_k`` (no continuous-depth limit),

entries of ``W_a, W_b, W_k`` i.i.d. ``N(0, 1/16)``, and trained by gradient
descent whose learning rate on ``W_k, V_k`` is ``lr0 * L`` (each layer's
gradient is O(1/L), so each layer moves O(lr0) per step at every depth).

The theorem (their Thm. 1, finite training time) bounds

    max_increment_W = max_{training steps} max_k ||W_{k+1} - W_k||_F = O(1/L)

(and the same for ``V``) for a tied or smooth initialisation: the slope of
``log max_increment`` against ``log L`` is ``-1``. From an i.i.d.
initialisation the increments are O(1) and do not decay. This is the
quantity we plot (the maximum over k and steps, as the theorem defines it);
the paper's Fig. 1 plots a cumulative quantity that decays like ``L^{-1/2}``,
which we do not reproduce.

Two tasks:

- ``"regression"`` (the paper's synthetic task): ``n = 100`` inputs and
  targets ``x_i, y_i ~ N(0, I_16)`` i.i.d., network ``F(x) = h_L`` with
  ``h_0 = x``, loss ``(1/n) sum_i |F(x_i) - y_i|^2``, full-batch gradient
  descent (deterministic), ``lr = lr0 * L`` on every parameter (all are
  residual weights).
- ``"score"`` (the diffusion case): :class:`rfdiff.torch.ResidualScore`
  (input layer ``[x; e(t)] -> R^16``, the same residual stack with GELU,
  output layer ``R^16 -> R``) on the denoising loss of ``n`` samples of the
  1D two-mode target ``two_modes(mu)``, trained by :func:`rfdiff.torch.train`:
  every data point in every step (full batch in the data; the noise levels
  and noises are fresh draws each step, so the gradient is stochastic in
  the noise), SGD with learning rate ``lr0`` times ``L`` on ``W, V`` (times 1
  on the input and output layers). ``V`` is set to 0 after construction.

Slopes: least squares of the seed-mean of ``log max_increment`` on ``log L``,
95% BCa interval by ``scipy.stats.bootstrap`` resampling whole seeds (a
seed's initialisation and data are shared by its depths); over every depth and over the upper half of the
depth grid (the theorem is a large-L statement; at small L with O(1) training
time the weights move far and the increments are pre-asymptotic). A run with a non-finite loss is recorded as
diverged (NaN increments, excluded from the fit).
"""
from __future__ import annotations

import math
import warnings

import numpy as np

import rfdiff as rf
from rfdiff.run import Experiment, Task, point_function

NAME = "resnet-ode"
INITS = ("tied", "smooth", "iid")
TASKS = ("regression", "score")
WIDTH = 16


def _torch():
    """PyTorch, imported when first needed (rfdiff.torch's import, with its install hint)."""
    from rfdiff.torch import require_torch
    return require_torch()


def _check(depth, init, seed, task, steps, lr0, n):
    for name, val, lo in (("depth", depth, 1), ("seed", seed, 0), ("steps", steps, 1), ("n", n, 1)):
        if not isinstance(val, (int, np.integer)) or isinstance(val, bool) or val < lo:
            raise ValueError(f"{name} must be an integer >= {lo}, got {val!r}")
    if init not in INITS:
        raise ValueError(f"init must be one of {INITS}, got {init!r}")
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    if not (isinstance(lr0, (int, float)) and not isinstance(lr0, bool) and math.isfinite(lr0) and lr0 > 0):
        raise ValueError(f"lr0 must be a finite number > 0, got {lr0!r}")


def init_stack(depth: int, init: str, seed: int, width: int = WIDTH) -> np.ndarray:
    """``W_k``, shape (L, width, width), for the regression net (module docstring)."""
    rng = np.random.default_rng([seed, 11])
    scale = width ** -0.5
    if init == "iid":
        return scale * rng.standard_normal((depth, width, width))
    Wa = scale * rng.standard_normal((width, width))
    Wb = scale * rng.standard_normal((width, width)) if init == "smooth" else np.zeros((width, width))
    return Wa[None] + (np.arange(depth) / depth)[:, None, None] * Wb[None]


def increments(W) -> np.ndarray:
    """``||W_{k+1} - W_k||_F`` for k = 0..L-2 (empty for L = 1); W (L, p, q), numpy or torch."""
    W = np.asarray(W.detach().cpu().numpy() if hasattr(W, "detach") else W, dtype=float)
    return np.sqrt(np.sum((W[1:] - W[:-1]) ** 2, axis=(1, 2)))


def _max_inc(W) -> float:
    d = increments(W)
    return float(d.max()) if d.size else 0.0


def regression_data(n: int, seed: int, width: int = WIDTH):
    """``x_i, y_i ~ N(0, I_width)`` i.i.d., each (n, width)."""
    rng = np.random.default_rng([seed, 12])
    return rng.standard_normal((n, width)), rng.standard_normal((n, width))


def residual_forward(W, V, h):
    """``h_L`` of ``h_{k+1} = h_k + (1/L) V_k GELU(W_k h_k)`` (torch; h (n, width), row vectors)."""
    torch = _torch()
    L = W.shape[0]
    for k in range(L):
        h = h + torch.nn.functional.gelu(h @ W[k].T) @ V[k].T / L
    return h


def train_regression(depth, init, seed, *, n=100, steps=300, lr0=0.05, progress=False):
    """Full-batch GD on the regression task: ``(trace, diverged)`` where ``trace`` has, per
    step 0..steps (0 = initialisation), the loss and ``max_k`` increments of W and V."""
    torch = _torch()
    from tqdm.auto import tqdm

    x, y = (torch.tensor(a) for a in regression_data(n, seed))
    W = torch.tensor(init_stack(depth, init, seed), requires_grad=True)
    V = torch.zeros_like(W, requires_grad=True)
    lr = lr0 * depth
    rows, diverged = [], False
    for k in tqdm(range(steps + 1), disable=not progress, desc=f"resnet L={depth} {init}", leave=False):
        loss = torch.mean(torch.sum((residual_forward(W, V, x) - y) ** 2, dim=1))
        if not torch.isfinite(loss):
            diverged = True
            break
        rows.append((float(loss.detach()), _max_inc(W), _max_inc(V)))
        if k == steps:
            break
        gW, gV = torch.autograd.grad(loss, [W, V])
        with torch.no_grad():
            W -= lr * gW
            V -= lr * gV
        if not (torch.isfinite(W).all() and torch.isfinite(V).all()):
            diverged = True
            break
    return np.asarray(rows, dtype=float).reshape(-1, 3), diverged


def score_net(depth, init, seed):
    """:class:`rfdiff.torch.ResidualScore` (1D, width 16, GELU) with ``V = 0``."""
    torch = _torch()
    from rfdiff.torch import ResidualScore

    net = ResidualScore(dim=1, width=WIDTH, depth=depth, activation="gelu", init=init, seed=seed)
    with torch.no_grad():
        net.V.zero_()
    return net


def train_score(depth, init, seed, *, n=100, steps=300, lr0=0.05, mu=3.0, progress=False):
    """The score task by :func:`rfdiff.torch.train` (module docstring): ``(trace, diverged)`` as
    :func:`train_regression` (loss column: the step's minibatch loss, NaN at the last row)."""
    torch = _torch()
    from rfdiff.torch import train

    net = score_net(depth, init, seed)
    data = rf.two_modes(mu).sample(n, seed=seed)

    def monitor(net_):
        return {"W": _max_inc(net_.W), "V": _max_inc(net_.V)}

    try:
        hist = train(net, data, optimizer="sgd", lr=lr0, steps=steps, seed=seed, monitor=monitor,
                     monitor_every=1, lr_multipliers={"W": depth, "V": depth}, progress=progress)
    except FloatingPointError:
        return np.zeros((0, 3)), True
    if not (torch.isfinite(net.W).all() and torch.isfinite(net.V).all()):
        return np.zeros((0, 3)), True
    loss = np.append(hist.losses, np.nan)
    return np.stack([loss, hist.metrics["W"], hist.metrics["V"]], axis=1), False


@point_function
def point(*, depth: int, init: str, seed: int, task: str = "regression", steps: int = 300, lr0: float = 0.05,
          n: int = 100, mu: float = 3.0, progress: bool = False) -> dict:
    """One training run at depth ``L = depth`` (module docstring): increments over training."""
    _check(depth, init, seed, task, steps, lr0, n)
    torch = _torch()
    torch.set_num_threads(1)  # small nets: threads only add synchronisation (rfdiff.torch.train)
    if task == "regression":
        trace, diverged = train_regression(depth, init, seed, n=n, steps=steps, lr0=lr0, progress=progress)
    else:
        trace, diverged = train_score(depth, init, seed, n=n, steps=steps, lr0=lr0, mu=mu, progress=progress)
    nan = float("nan")
    if diverged:
        return {"max_increment": nan, "max_increment_V": nan, "init_increment": nan, "final_increment": nan,
                "loss_initial": nan, "loss_final": nan, "diverged": True, "steps": steps}
    return {"max_increment": float(trace[:, 1].max()), "max_increment_V": float(trace[:, 2].max()),
            "init_increment": float(trace[0, 1]), "final_increment": float(trace[-1, 1]),
            "loss_initial": float(trace[0, 0]),
            "loss_final": float(np.mean(trace[-11:-1, 0]) if task == "score" else trace[-1, 0]),
            "diverged": False, "steps": steps}


_BASE = dict(inits=list(INITS), tasks=list(TASKS), n=100, mu=3.0, lr0=0.05)
PRESETS = {
    "tiny": dict(_BASE, depths=[2, 4, 8], seeds=[0, 1], steps=20),
    # quick: 100 steps (full: 1000) to fit minutes on 2 shared cores
    "quick": dict(_BASE, depths=[2 ** k for k in range(1, 9)], seeds=[0, 1, 2], steps=100),
    "full": dict(_BASE, depths=[2 ** k for k in range(1, 9)], seeds=list(range(10)), steps=1000),
}


def tasks(p: dict) -> list:
    return [Task(point, dict(depth=L, init=i, seed=s, task=tk, steps=p["steps"], lr0=p["lr0"], n=p["n"],
                             mu=p["mu"]))
            for tk in p["tasks"] for i in p["inits"] for L in p["depths"] for s in p["seeds"]]


_VARS = ("max_increment", "max_increment_V", "init_increment", "final_increment", "loss_initial", "loss_final",
         "diverged")


def slope_fit(depths, y, *, seed=0) -> dict:
    """Slope of ``log y`` on ``log L``: least squares through the seed-means of ``log y``;
    95% BCa interval by ``scipy.stats.bootstrap`` resampling whole seeds (columns: one seed is
    one initialisation and data set, shared by every depth, so the depths of a seed are paired).
    ``y`` (depths, seeds); non-finite or non-positive values are dropped (NaN-means), depths
    with no value left are dropped."""
    from scipy.stats import bootstrap

    y = np.asarray(y, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        ly = np.where(np.isfinite(y) & (y > 0), np.log(np.where(y > 0, y, 1.0)), np.nan)
    keep = np.any(np.isfinite(ly), axis=1)
    ly, lx = ly[keep], np.log(np.asarray(depths, dtype=float)[keep])
    nan = float("nan")
    out = {"slope": nan, "ci_low": nan, "ci_high": nan, "depths_fitted": int(keep.sum())}
    if lx.size < 2:
        return out
    xc = lx - lx.mean()

    def slope(Y, axis=-1):
        means = np.moveaxis(np.nanmean(Y, axis=axis), 0, -1)   # (..., depths)
        return np.sum(xc * (means - means.mean(axis=-1, keepdims=True)), axis=-1) / np.sum(xc ** 2)

    out["slope"] = float(slope(ly))
    n_seeds = ly.shape[1]
    if n_seeds < 2 or np.all(np.nanstd(ly, axis=1) == 0):
        out["ci_low"] = out["ci_high"] = out["slope"] if n_seeds >= 2 else nan
        return out
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # BCa's jackknife on tied resamples
        res = bootstrap((ly,), slope, axis=-1, vectorized=True, n_resamples=2000, confidence_level=0.95,
                        method="BCa", random_state=np.random.default_rng(seed))
    out["ci_low"], out["ci_high"] = float(res.confidence_interval.low), float(res.confidence_interval.high)
    return out


def add_fits(ds):
    """Slope fits (:func:`slope_fit`) of ``max_increment`` and ``max_increment_V`` against L, per
    (task, init), into ``ds`` (in place): ``{var}_slope``, ``{var}_ci_low``, ``{var}_ci_high`` over
    every depth, and ``{var}_slope_upper`` etc. over the upper half of the depth grid
    (``L >= depths[len // 2]``), where the large-L asymptotics should hold."""
    depths = [int(v) for v in ds.depth.values]
    upper = [L for L in depths if L >= depths[len(depths) // 2]]
    for var in ("max_increment", "max_increment_V"):
        for suffix, Ls in (("", depths), ("_upper", upper)):
            fits = [[slope_fit(Ls, ds[var].sel(task=tk, init=i, depth=Ls).transpose("depth", "seed").values)
                     for i in ds.init.values] for tk in ds.task.values]
            for key in ("slope", "ci_low", "ci_high"):
                ds[f"{var}_{key}{suffix}"] = (("task", "init"), np.array([[f[key] for f in row] for row in fits]))
    ds.attrs["upper_fit_depths"] = upper
    return ds


def reduce(p: dict, results: list):
    import xarray as xr

    dims = ("task", "init", "depth", "seed")
    shape = tuple(len(p[k]) for k in ("tasks", "inits", "depths", "seeds"))
    data = {v: np.full(shape, np.nan) for v in _VARS}
    it = iter(results)
    for idx in np.ndindex(*shape):
        r = next(it)
        for v in _VARS:
            data[v][idx] = float(r[v].values)
    ds = xr.Dataset({v: (dims, data[v]) for v in _VARS},
                    coords={"task": list(p["tasks"]), "init": list(p["inits"]), "depth": list(p["depths"]),
                            "seed": list(p["seeds"])})
    add_fits(ds)
    ds.attrs.update({"width": WIDTH, "activation": "gelu", "n": p["n"], "steps": p["steps"],
                     "lr": "lr0 * L on W_k, V_k (lr0 on the score net's input/output layers)", "lr0": p["lr0"],
                     "quantity": "max over training steps and k of ||W_{k+1}-W_k||_F (theorem's maximum; "
                                 "not the paper's Fig. 1 cumulative quantity)",
                     "slope_method": "OLS of the seed-mean of log max_increment on log L; "
                                     "scipy.stats.bootstrap BCa 95%, whole seeds resampled",
                     "theory_slope": "-1 for tied/smooth init; no decay (0) for iid",
                     "diverged_runs": int(np.nansum(data["diverged"]))})
    return ds


def summary(ds) -> dict:
    out = {}
    for tk in ds.task.values:
        for i in ds.init.values:
            for var, lab in (("max_increment", "W"), ("max_increment_V", "V")):
                s = ds[f"{var}_slope"].sel(task=tk, init=i)
                lo = ds[f"{var}_ci_low"].sel(task=tk, init=i)
                hi = ds[f"{var}_ci_high"].sel(task=tk, init=i)
                out[f"{tk}, {i}: slope of max increment of {lab} vs L [95% CI]"] = (
                    round(float(s), 3), round(float(lo), 3), round(float(hi), 3))
                if f"{var}_slope_upper" in ds:
                    out[f"{tk}, {i}: the same for {lab}, L >= {min(ds.attrs['upper_fit_depths'])}"] = tuple(
                        round(float(ds[f"{var}_{k}_upper"].sel(task=tk, init=i)), 3)
                        for k in ("slope", "ci_low", "ci_high"))
    out["diverged runs"] = int(np.nansum(ds.diverged.values))
    return out


def plot(ds, stem):
    from .. import plotting as P

    with P.style():
        fig, axes = P.subplots(2, 2, width=P.TEXT_WIDTH, height=6.4)
        L = ds.depth.values.astype(float)
        for a, tk in enumerate(ds.task.values):
            for b, (var, lab) in enumerate((("max_increment", "W"), ("max_increment_V", "V"))):
                ax = axes[a, b]
                for i in ds.init.values:
                    y = ds[var].sel(task=tk, init=i).values
                    med = np.nanmedian(y, axis=1)
                    s = float(ds[f"{var}_slope"].sel(task=tk, init=i))
                    lo = float(ds[f"{var}_ci_low"].sel(task=tk, init=i))
                    hi = float(ds[f"{var}_ci_high"].sel(task=tk, init=i))
                    lab_ = f"{i}: slope {s:.2f} [{lo:.2f}, {hi:.2f}]"
                    if f"{var}_slope_upper" in ds:
                        lab_ += ", L>={}: {:.2f} [{:.2f}, {:.2f}]".format(
                            min(ds.attrs["upper_fit_depths"]),
                            *(float(ds[f"{var}_{k}_upper"].sel(task=tk, init=i))
                              for k in ("slope", "ci_low", "ci_high")))
                    P.band(ax, L, P.positive(med), P.positive(np.nanmin(y, axis=1)),
                           P.positive(np.nanmax(y, axis=1)), marker="o", label=lab_)
                ax.plot(L, 1.0 / L, "k:", lw=0.8, label=r"$L^{-1}$ (theory, tied/smooth)")
                ax.set(xscale="log", yscale="log", xlabel="depth L",
                       ylabel=rf"$\max_{{k,\,step}}\|{lab}_{{k+1}}-{lab}_k\|_F$")
                ax.set_xscale("log", base=2)
                ax.set_title(f"{tk}: {lab} (median, min-max over {ds.seed.size} seeds; {ds.attrs['steps']} steps, "
                             f"lr = {ds.attrs['lr0']:g} L)", loc="left", fontsize=7)
                ax.legend(fontsize=5, loc="upper center", bbox_to_anchor=(0.5, -0.2))
        return P.save_figure(fig, ds, stem)


EXPERIMENT = Experiment(name=NAME, title="Deep residual nets stay close to a neural ODE (Marion et al. 2024)",
                        presets=PRESETS, tasks=tasks, reduce=reduce, plot=plot, summary=summary,
                        regime="finite training time; width 16, GELU, V_k=0 init, lr = lr0*L on the residual "
                               "weights; depths 2..256")
