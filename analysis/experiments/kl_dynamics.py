"""Figure ``kl-dynamics``: KL along training, the early-stopping point tau*.

Random-feature flow (closed form) on ``two_modes(mu=3)``, n = 1000:
``KL(p_0 || p_gen)`` of the probability-flow ODE and of the reverse SDE
(Fokker-Planck) with error bands, the Girsanov bound on the SDE's
``KL(p_{t_min} || p_gen)``, train and population loss, all against the
gradient-flow time tau of the normalised loss (rfdiff.scorematching).
``tau*`` is the minimiser of the **ODE** KL on the log grid, refined by a
parabola in log tau (:func:`~analysis.experiments._common.early_stopping`);
``KL(tau*)`` is then evaluated there, with its error. The same is reported
for the SDE KL.

The paper's own setting: a one-hidden-layer Swish network (width 128) trained
by minibatch SGD (lr 0.5) and Adam (lr 1e-3) on the ``"sigma"``-weighted
denoising loss, KL (ODE, Gauss-Hermite nodes) against the epoch for 3 seeds:
mean and min-max band.

Points: the random-feature flow (:func:`rf_point`) and one Swish net per
(optimizer, net seed) (:func:`net_point`).
"""
from __future__ import annotations

import json
import time

import numpy as np

from rfdiff import two_modes

from rfdiff.run import Experiment, Task, point_function

from . import _common as c

NAME = "kl-dynamics"
TITLE = "KL dynamics along training and early stopping"

_BASE = dict(mu=3.0, q1=0.5, n=1000, seed=0, data_seed=0, t_min=1e-3, T=8.0, weighting="sigma2",
             tau_lo=0.0, tau_hi=14.0, per_decade=2, kl_tol=5e-3)
_NET = dict(width=128, batch_size=100, weighting="sigma", sgd_lr=0.5, adam_lr=1e-3, kl_tol=1e-3)
PAPER_EPOCHS = 2000     # seed 000's Swish nets: 2000 epochs

PRESETS = {
    # tiny: n = 100 < m = 256 overfits early and clearly (an interior minimum)
    "tiny": dict(_BASE, n=100, m=256, n_time=32, per_decade=1, tau_hi=12.0, kl_tol=2e-2,
                 net=dict(_NET, seeds=[0], epochs=4, n_checkpoints=2, width=32)),
    # quick: n_time 128 (the late-training KL depends on the time rule through the smallest
    # eigenvalues of H; the README's kl-dynamics section has the convergence check); the nets
    # train for 200 of the paper's 2000 epochs
    "quick": dict(_BASE, m=1024, n_time=128,
                  net=dict(_NET, seeds=[0, 1, 2], epochs=200, n_checkpoints=5)),
    # full: the paper's protocol, exact KL every 50 epochs (its SGD minimum is near epoch 800)
    "full": dict(_BASE, m=2048, n_time=256, per_decade=4, kl_tol=1e-3,
                 net=dict(_NET, seeds=[0, 1, 2], epochs=2000, n_checkpoints=40)),
}


_RF_KEYS = ("mu", "q1", "n", "m", "seed", "data_seed", "n_time", "t_min", "T", "weighting", "tau_lo", "tau_hi",
            "per_decade", "kl_tol")
_TRAJECTORY = ("train_loss", "population_loss", "kl_ode", "kl_ode_error", "kl_ode_tmin", "kl_ode_tmin_error",
               "kl_sde", "kl_sde_error", "kl_sde_tmin", "kl_sde_tmin_error", "girsanov", "girsanov_error")


@point_function
def rf_point(*, mu: float, q1: float, n: int, m: int, seed: int, data_seed: int, n_time: int, t_min: float,
             T: float, weighting: str, tau_lo: float, tau_hi: float, per_decade: float, kl_tol: float) -> dict:
    """The random-feature flow: every metric along the log tau grid (one batched
    :func:`rfdiff.trajectory`, one tolerance), ``tau*`` and ``KL(tau*)`` of the ODE
    and SDE KL (outputs ``star_<ode|sde>_*``), and the solver/model description
    (outputs ``info_*``). ``seed`` draws the features, ``data_seed`` the training set."""
    from rfdiff import kl_sde_path, trajectory

    t0 = time.perf_counter()
    target = two_modes(mu, q1)
    flow, problem, _ = c.rf_flow(target, n, m, seed=seed, data_seed=data_seed, n_time=n_time, t_min=t_min, T=T,
                                 weighting=weighting)
    taus = c.tau_grid(tau_lo, tau_hi, per_decade)
    tr = trajectory(flow, taus, target, tol=kl_tol, strict=False,
                    metrics=("train_loss", "population_loss", "kl_ode", "kl_sde", "girsanov"))
    out = {k: np.asarray(tr[k].values, float) for k in _TRAJECTORY}
    out["kl_ode_converged"] = tr["kl_ode_converged"].values.astype(bool)
    out["kl_sde_converged"] = tr["kl_sde_converged"].values.astype(bool)
    stars = {}
    for kind in ("ode", "sde"):
        es = c.early_stopping(taus, out[f"kl_{kind}"], out[f"kl_{kind}_error"])
        ts = es["tau_star"]
        if kind == "ode":
            r = c.flow_kl(flow, [ts], target, tol=kl_tol)
            val, err = float(r["value"][0]), float(r["error"][0])
        else:
            r = kl_sde_path(flow, [ts], target, tol=kl_tol, strict=False)
            val, err = float(np.asarray(r.value)[0]), float(np.asarray(r.error)[0])
        if val > es["kl_grid"]:          # the parabola can miss on a rough curve: keep the grid point
            ts, val, err = es["tau_grid"], es["kl_grid"], es["kl_grid_error"]
        stars[kind] = dict(tau_star=ts, kl_star=val, kl_star_error=err, interior=es["interior"],
                           tau_lo=es["tau_lo"], tau_hi=es["tau_hi"], kl_final=float(out[f"kl_{kind}"][-1]))
    info = {"flow_n_clipped": flow.n_clipped, "flow_lambda_max": flow.lambda_max,
            "flow_condition_number": flow.condition_number,
            "kl_ode_message": tr.attrs.get("kl_ode_message", "")[:500],
            "kl_sde_message": tr.attrs.get("kl_sde_message", "")[:500],
            "girsanov_message": tr.attrs.get("girsanov_message", "")[:500],
            "girsanov_kl_prior": float(tr.attrs.get("girsanov_kl_prior", np.nan)),
            "kl_solvers": f"rfdiff.trajectory (kl_ode_path, kl_sde_path, girsanov_bound_path), "
                          f"tol={kl_tol}",
            "quadrature_error": c.quadrature_check(problem),
            "model": problem.model.describe(), "score_matching": problem.describe()}
    out.update(c.scalar_outputs(stars, "star_"))
    out.update(c.scalar_outputs(info, "info_"))
    out["coords"] = {"tau": taus}
    out["dims"] = {k: ["tau"] for k in (*_TRAJECTORY, "kl_ode_converged", "kl_sde_converged")}
    out["seconds"] = time.perf_counter() - t0
    return out


def _checkpoints(epochs: int, n_checkpoints: int) -> np.ndarray:
    return np.unique(np.round(np.linspace(0, epochs, n_checkpoints + 1)).astype(int))


@point_function
def net_point(*, optimizer: str, lr: float, seed: int, mu: float, q1: float, n: int, data_seed: int,
              width: int, epochs: int, batch_size: int, weighting: str, n_checkpoints: int, kl_tol: float,
              t_min: float, T: float) -> dict:
    """One Swish net (``optimizer`` at ``lr``, net seed ``seed``) on the training set
    of ``data_seed``: the ODE KL at ``n_checkpoints + 1`` epochs and the loss per epoch."""
    t0 = time.perf_counter()
    target = two_modes(mu, q1)
    x = target.sample(n, seed=data_seed)
    ck = _checkpoints(int(epochs), int(n_checkpoints))
    h = c.train_swish(x, optimizer=optimizer, lr=lr, seed=seed, width=width, epochs=int(epochs),
                      batch_size=batch_size, weighting=weighting, checkpoint_epochs=ck, t_min=t_min, T=T)
    kl = np.full(ck.size, np.nan)
    err = np.full_like(kl, np.nan)
    conv = np.zeros(ck.size, dtype=bool)
    for k, step in enumerate(h.steps):
        kl[k], err[k], conv[k] = c.kl_smooth(h.score_at(int(step)), target, tol=kl_tol, t_min=t_min, T=T)
    loss = np.array([b.mean() for b in np.array_split(h.losses, int(epochs))])
    return {"net_kl": kl, "net_kl_error": err, "net_kl_converged": conv, "net_loss": loss,
            "steps_per_epoch": int(h.steps_per_epoch), "seconds": time.perf_counter() - t0,
            "coords": {"epoch": ck, "epoch_all": np.arange(1, int(epochs) + 1)},
            "dims": {"net_kl": ["epoch"], "net_kl_error": ["epoch"], "net_kl_converged": ["epoch"],
                     "net_loss": ["epoch_all"]}}


def _optimizers(q: dict) -> list:
    return [("sgd", q["sgd_lr"]), ("adam", q["adam_lr"])]


def tasks(p: dict) -> list:
    """The random-feature flow (one point), then one Swish net per (optimizer, net seed)."""
    q = p["net"]
    net = dict(mu=p["mu"], q1=p["q1"], n=p["n"], data_seed=p["data_seed"], width=q["width"], epochs=q["epochs"],
               batch_size=q["batch_size"], weighting=q["weighting"], n_checkpoints=q["n_checkpoints"],
               kl_tol=q["kl_tol"], t_min=p["t_min"], T=p["T"])
    return ([Task(rf_point, {k: p[k] for k in _RF_KEYS})]
            + [Task(net_point, dict(net, optimizer=opt, lr=lr, seed=int(s)))
               for opt, lr in _optimizers(q) for s in q["seeds"]])


def reduce(p: dict, results: list):
    """The flow's curves over tau, the nets' over (optimizer, net seed, epoch); attrs:
    tau* of both KLs, the nets' best epochs (of the seed-mean KL, and per seed), the nets'
    training length ``net_epochs``, solver and model descriptions."""
    import xarray as xr

    rf, nets = results[0], results[1:]
    q = p["net"]
    opts, seeds = _optimizers(q), list(q["seeds"])
    data = {k: ("tau", rf[k].values) for k in _TRAJECTORY}
    for k in ("kl_ode_converged", "kl_sde_converged"):
        data[k] = ("tau", rf[k].values.astype(np.int8))
    grid = lambda name: np.array([[nets[i * len(seeds) + j][name].values for j in range(len(seeds))]  # noqa: E731
                                  for i in range(len(opts))])
    dims = ("optimizer", "net_seed", "epoch")
    net_kl = grid("net_kl")
    data["net_kl"] = (dims, net_kl)
    data["net_kl_error"] = (dims, grid("net_kl_error"))
    data["net_kl_converged"] = (dims, grid("net_kl_converged").astype(np.int8))
    data["net_loss"] = (("optimizer", "net_seed", "epoch_all"), grid("net_loss"))
    ck = nets[0]["epoch"].values
    coords = {"tau": rf["tau"].values, "optimizer": [o for o, _ in opts], "net_seed": seeds,
              "epoch": ck, "epoch_all": nets[0]["epoch_all"].values}
    ds = xr.Dataset(data, coords=coords)
    ds["tau"].attrs["long_name"] = "gradient-flow time of the normalised loss"
    ds["epoch"].attrs["long_name"] = "epoch (Swish net checkpoints)"
    attrs = {"target": f"two_modes(mu={p['mu']}, q1={p['q1']})",
             "early_stopping_criterion": "argmin of KL_ODE(p_0||p_gen) on the log tau grid, "
                                         "refined by a parabola in log tau",
             "seconds_rf": float(rf["seconds"]), "seconds_net": float(sum(float(r["seconds"]) for r in nets)),
             "net_lrs": [lr for _, lr in opts], "net_steps_per_epoch": int(nets[-1]["steps_per_epoch"]),
             "net_epochs": int(q["epochs"]), "net_paper_epochs": PAPER_EPOCHS,
             "net_description": "one-hidden-layer Swish MLP (rfdiff.torch.MLPScore, standard "
                                "parametrisation), minibatch training on the 'sigma'-weighted DSM loss; "
                                "tau = lr * steps for SGD",
             **c.outputs_as_attrs(rf, "info_"), **c.outputs_as_attrs(rf, "star_")}
    mean = np.nanmean(net_kl, axis=1)
    for i, (opt, _) in enumerate(opts):
        k = int(np.nanargmin(mean[i]))
        attrs[f"net_best_epoch_{opt}"] = int(ck[k])
        attrs[f"net_best_kl_{opt}"] = float(mean[i, k])
        attrs[f"net_final_kl_{opt}"] = float(mean[i, -1])
        attrs[f"net_best_epoch_{opt}_per_seed"] = [int(ck[np.nanargmin(kl)]) for kl in net_kl[i]]
        attrs[f"net_best_kl_{opt}_per_seed"] = [float(np.nanmin(kl)) for kl in net_kl[i]]
    ds.attrs.update(c.netcdf_attrs(attrs))
    return ds


def summary(ds) -> dict:
    a = ds.attrs
    out = {"tau* (ODE)": a["ode_tau_star"], "tau* range (ODE)": (a["ode_tau_lo"], a["ode_tau_hi"]),
           "KL(tau*) ODE": a["ode_kl_star"],
           "KL(tau*) ODE error": a["ode_kl_star_error"], "interior minimum (ODE)": bool(a["ode_interior"]),
           "KL at last tau (ODE)": a["ode_kl_final"],
           "tau* (SDE)": a["sde_tau_star"], "KL(tau*) SDE": a["sde_kl_star"],
           "interior minimum (SDE)": bool(a["sde_interior"]), "KL at last tau (SDE)": a["sde_kl_final"]}
    for opt in ds.optimizer.values:
        out[f"Swish {opt}: best epoch"] = a[f"net_best_epoch_{opt}"]
        out[f"Swish {opt}: KL best / final"] = (a[f"net_best_kl_{opt}"], a[f"net_final_kl_{opt}"])
        for what, cast in (("epoch", int), ("kl", float)):
            out[f"Swish {opt}: best {what} per seed"] = [
                cast(e) for e in np.atleast_1d(a[f"net_best_{what}_{opt}_per_seed"])]
    out["Swish: epochs (paper)"] = (int(a["net_epochs"]), int(a["net_paper_epochs"]))
    return out


def plot(ds, stem):
    from .. import plotting as P

    with P.style():
        fig, axes = P.subplots(3, 1, height=6.2)
        ax = axes[0, 0]
        tau = ds.tau.values
        for name, label, col in (("kl_ode", "KL ODE", P.COLORS[0]), ("kl_sde", "KL SDE", P.COLORS[1])):
            y, e = ds[name].values, ds[f"{name}_error"].values
            P.band(ax, tau, P.positive(y), P.positive(y - e), P.positive(y + e), label=label, color=col,
                   marker="o", markersize=2)
        ax.plot(tau, ds.girsanov.values, "--", color=P.COLORS[2], label="Girsanov bound (SDE, $t_{min}$)")
        a = ds.attrs
        ax.plot([a["ode_tau_star"]], [a["ode_kl_star"]], "*", color="k", markersize=8,
                label=rf"$\tau^*$={a['ode_tau_star']:.2g}, KL={a['ode_kl_star']:.3g}")
        ax.set(xscale="log", yscale="log", xlabel=r"training time $\tau$", ylabel=r"KL$(p_0\,\|\,p_{gen})$")
        ax.set_title(f"(a) random features, m={ds.attrs['model_m']}, n={_n(ds)}, $\\mu$={_mu(ds)}",
                     loc="left", fontsize=8)
        ax.legend(loc="lower left")
        ax = axes[1, 0]
        ax.plot(tau, ds.train_loss.values, label="train loss (DSM)")
        ax.plot(tau, ds.population_loss.values, label="population loss")
        ax.set(xscale="log", yscale="log", xlabel=r"training time $\tau$", ylabel="loss")
        ax.set_title("(b) random features: losses along the flow", loc="left", fontsize=8)
        ax.legend()
        ax = axes[2, 0]
        ep = ds.epoch.values
        for i, opt in enumerate(ds.optimizer.values):
            kl = ds.net_kl.isel(optimizer=i).values
            lr = ds.attrs["net_lrs"][i]
            P.band(ax, ep, np.nanmean(kl, axis=0), np.nanmin(kl, axis=0), np.nanmax(kl, axis=0),
                   label=f"Swish, {opt.upper() if opt == 'sgd' else 'Adam'} lr {lr:g}", marker="o",
                   color=P.COLORS[3 + i])
        ax.set(yscale="log", xlabel="epoch", ylabel=r"KL$(p_0\,\|\,p_{gen})$")
        ax.set_title(f"(c) one-hidden-layer Swish net, {ds.net_seed.size} seeds (mean, min-max)\n"
                     f"{int(a['net_epochs'])} epochs (paper: {int(a['net_paper_epochs'])})", loc="left", fontsize=8)
        ax.legend()
        return P.save_figure(fig, ds, stem)


def _mu(ds):
    return json.loads(ds.attrs["preset_params_json"])["mu"] if "preset_params_json" in ds.attrs else 3


def _n(ds):
    return ds.attrs.get("score_matching_n", "?")


EXPERIMENT = Experiment(name=NAME, title=TITLE, presets=PRESETS, tasks=tasks, reduce=reduce, plot=plot,
                        summary=summary,
                        regime="1D: two_modes(mu=3), full-time random-feature flow (ReLU features with bias "
                               "and time embedding, m > n: it overfits), n = 1000; and the paper's "
                               "one-hidden-layer Swish net (SGD lr 0.5, Adam lr 1e-3) on the same data")
