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
"""
from __future__ import annotations

import json
import time

import numpy as np

from rfdiff import two_modes

from . import _common as c

NAME = "kl-dynamics"
TITLE = "KL dynamics along training and early stopping"

_BASE = dict(mu=3.0, q1=0.5, n=1000, seed=0, data_seed=0, t_min=1e-3, T=8.0, weighting="sigma2",
             tau_lo=0.0, tau_hi=14.0, per_decade=2, kl_tol=5e-3)
_NET = dict(width=128, batch_size=100, weighting="sigma", sgd_lr=0.5, adam_lr=1e-3, kl_tol=1e-3)

PRESETS = {
    # tiny: n = 100 < m = 256 overfits early and clearly (an interior minimum)
    "tiny": dict(_BASE, n=100, m=256, n_time=32, per_decade=1, tau_hi=12.0, kl_tol=2e-2,
                 net=dict(_NET, seeds=[0], epochs=4, n_checkpoints=2, width=32)),
    # quick: n_time 128 (late-training KL is sensitive to the time rule through the smallest
    # eigenvalues of H: 32 nodes change KL(tau=1e14) from 0.29 to 0.05 at m = 1024, while
    # 128, 256 and 512 agree to 1e-3); the nets train for 200 of the paper's 2000 epochs
    "quick": dict(_BASE, m=1024, n_time=128,
                  net=dict(_NET, seeds=[0, 1, 2], epochs=200, n_checkpoints=5)),
    "full": dict(_BASE, m=2048, n_time=256, per_decade=4, kl_tol=1e-3,
                 net=dict(_NET, seeds=[0, 1, 2], epochs=2000, n_checkpoints=20)),
}


def _rf_part(p, target):
    from rfdiff import kl_sde_path, trajectory

    flow, problem, _ = c.rf_flow(target, p["n"], p["m"], seed=p["seed"], data_seed=p["data_seed"],
                                 n_time=p["n_time"], t_min=p["t_min"], T=p["T"], weighting=p["weighting"])
    taus = c.tau_grid(p["tau_lo"], p["tau_hi"], p["per_decade"])
    # every metric for all taus in batched solves (rfdiff.trajectory), one tolerance for all
    tr = trajectory(flow, taus, target, tol=p["kl_tol"], strict=False,
                    metrics=("train_loss", "population_loss", "kl_ode", "kl_sde", "girsanov"))
    keep = ("train_loss", "population_loss", "kl_ode", "kl_ode_error", "kl_ode_tmin", "kl_ode_tmin_error",
            "kl_sde", "kl_sde_error", "kl_sde_tmin", "kl_sde_tmin_error", "girsanov", "girsanov_error")
    out = {k: np.asarray(tr[k].values, float) for k in keep}
    out["taus"] = taus
    out["kl_ode_converged"] = tr["kl_ode_converged"].values.astype(bool)
    out["kl_sde_converged"] = tr["kl_sde_converged"].values.astype(bool)
    stars = {}
    for kind in ("ode", "sde"):
        es = c.early_stopping(taus, out[f"kl_{kind}"], out[f"kl_{kind}_error"])
        ts = es["tau_star"]
        if kind == "ode":
            r = c.flow_kl(flow, [ts], target, tol=p["kl_tol"])
            val, err = float(r["value"][0]), float(r["error"][0])
        else:
            r = kl_sde_path(flow, [ts], target, tol=p["kl_tol"], strict=False)
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
                          f"tol={p['kl_tol']}",
            "quadrature_error": c.quadrature_check(problem),
            "model": problem.model.describe(), "score_matching": problem.describe()}
    return out, stars, info


def _net_part(p, target, x):
    q = p["net"]
    epochs = int(q["epochs"])
    ck = np.unique(np.round(np.linspace(0, epochs, q["n_checkpoints"] + 1)).astype(int))
    opts = [("sgd", q["sgd_lr"]), ("adam", q["adam_lr"])]
    kl = np.full((len(opts), len(q["seeds"]), len(ck)), np.nan)
    err = np.full_like(kl, np.nan)
    conv = np.zeros(kl.shape, dtype=bool)
    loss = np.full((len(opts), len(q["seeds"]), epochs), np.nan)
    for i, (opt, lr) in enumerate(opts):
        for j, s in enumerate(q["seeds"]):
            h = c.train_swish(x, optimizer=opt, lr=lr, seed=s, width=q["width"], epochs=epochs,
                              batch_size=q["batch_size"], weighting=q["weighting"],
                              checkpoint_epochs=ck, t_min=p["t_min"], T=p["T"])
            loss[i, j] = [b.mean() for b in np.array_split(h.losses, epochs)]
            for k, step in enumerate(h.steps):
                kl[i, j, k], err[i, j, k], conv[i, j, k] = c.kl_smooth(h.score_at(int(step)), target,
                                                                      tol=q["kl_tol"], t_min=p["t_min"], T=p["T"])
            steps_per_epoch = h.steps_per_epoch
    return dict(epochs_ck=ck, net_kl=kl, net_kl_error=err, net_kl_converged=conv, net_loss=loss,
                optimizers=[o for o, _ in opts], lrs=[lr for _, lr in opts], steps_per_epoch=steps_per_epoch)


def compute(p: dict):
    """The dataset behind the figure (see the module docstring)."""
    import xarray as xr

    t0 = time.perf_counter()
    target = two_modes(p["mu"], p["q1"])
    rf, stars, info = _rf_part(p, target)
    t_rf = time.perf_counter() - t0
    x = target.sample(p["n"], seed=p["data_seed"])
    net = _net_part(p, target, x)
    t_net = time.perf_counter() - t0 - t_rf
    taus = rf.pop("taus")
    conv = {k: rf.pop(k) for k in ("kl_ode_converged", "kl_sde_converged")}
    data = {k: ("tau", v) for k, v in rf.items()}
    for k, v in conv.items():
        data[k] = ("tau", v.astype(np.int8))
    dims = ("optimizer", "net_seed", "epoch")
    data["net_kl"] = (dims, net["net_kl"])
    data["net_kl_error"] = (dims, net["net_kl_error"])
    data["net_kl_converged"] = (dims, net["net_kl_converged"].astype(np.int8))
    data["net_loss"] = (("optimizer", "net_seed", "epoch_all"), net["net_loss"])
    coords = {"tau": taus, "optimizer": net["optimizers"], "net_seed": list(p["net"]["seeds"]),
              "epoch": net["epochs_ck"], "epoch_all": np.arange(1, p["net"]["epochs"] + 1)}
    ds = xr.Dataset(data, coords=coords)
    ds["tau"].attrs["long_name"] = "gradient-flow time of the normalised loss"
    ds["epoch"].attrs["long_name"] = "epoch (Swish net checkpoints)"
    attrs = {"figure": NAME, "target": f"two_modes(mu={p['mu']}, q1={p['q1']})",
             "early_stopping_criterion": "argmin of KL_ODE(p_0||p_gen) on the log tau grid, "
                                         "refined by a parabola in log tau",
             "seconds_rf": t_rf, "seconds_net": t_net,
             "net_lrs": net["lrs"], "net_steps_per_epoch": net["steps_per_epoch"],
             "net_description": "one-hidden-layer Swish MLP (rfdiff.torch.MLPScore, standard "
                                "parametrisation), minibatch training on the 'sigma'-weighted DSM loss; "
                                "tau = lr * steps for SGD", **info}
    for kind, s in stars.items():
        for k, v in s.items():
            attrs[f"{kind}_{k}"] = v
    mean = np.nanmean(net["net_kl"], axis=1)
    for i, opt in enumerate(net["optimizers"]):
        k = int(np.nanargmin(mean[i]))
        attrs[f"net_best_epoch_{opt}"] = int(net["epochs_ck"][k])
        attrs[f"net_best_kl_{opt}"] = float(mean[i, k])
        attrs[f"net_final_kl_{opt}"] = float(mean[i, -1])
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
        ax.set_title(f"(c) one-hidden-layer Swish net, {ds.net_seed.size} seeds (mean, min-max)",
                     loc="left", fontsize=8)
        ax.legend()
        return P.save_figure(fig, ds, stem)


def _mu(ds):
    return json.loads(ds.attrs["preset_params_json"])["mu"] if "preset_params_json" in ds.attrs else 3


def _n(ds):
    return ds.attrs.get("score_matching_n", "?")
