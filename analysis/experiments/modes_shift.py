"""Figure ``modes-shift``: two modes far apart, mu = 3 vs 15 (and a sweep of mu).

Target ``q1 N(-mu, 1) + q2 N(mu, 1)`` (q1 = q2 = 1/2). For the random-feature
flow (closed form) and for the paper's Swish network:

- the generated density (probability-flow ODE, exact log-density) at an
  early, the best and a late training time, on the paper's plot ranges
  [-10, 10] (mu = 3) and [-30, 30] (mu = 15);
- ``KL(p_0 || p_gen)`` (ODE) along training, for every mu of the sweep, with
  ``tau*`` and ``KL(tau*)``;
- where the learned modes sit: local maxima of ``p_gen`` (smoothed by a
  Gaussian of sd ``mode_smoothing``: ReLU features put kinks and narrow spikes
  into ``p_gen`` that are not modes) at least ``mode_threshold`` times its
  maximum, and the mass ``p_gen`` puts on x < 0.

Snapshots: best = ``tau*`` (grid minimiser of the ODE KL), early = the first
grid time where log KL is half-way from its start to its minimum (learning in
progress), late = the last training time (the flow has converged there). For the nets: the checkpoint epochs (best = lowest KL).

The paper's observation (seed 000): mu = 3 is fitted, then degrades; mu = 15
is best very early and later collapses towards a single mode. Tested here as

- ``best_earlier``: ``tau*(mu=15) < tau*(mu=3)`` beyond the KL errors: the
  run of taus whose KL is within the errors of the minimum
  (``tau_lo``..``tau_hi``, :func:`~analysis.experiments._common.early_stopping`)
  ends for mu = 15 before it starts for mu = 3;
- ``degrades``: KL at the late snapshot exceeds ``KL(tau*)`` by more than the errors;
- ``collapse``: at the late snapshot either fewer than two significant modes
  remain, or the lighter side holds less than ``collapse_mass`` of the mass
  (1/2 in the data).
"""
from __future__ import annotations

import time

import numpy as np

from rfdiff import two_modes
from rfdiff.model.batch import RFBatch

from . import _common as c

NAME = "modes-shift"
TITLE = "Modes shift: two modes at distance 2 mu"

_BASE = dict(q1=0.5, n=1000, seed=0, data_seed=0, t_min=1e-3, T=8.0, weighting="sigma2",
             tau_lo=0.0, tau_hi=14.0, per_decade=2, kl_tol=5e-3,
             mode_threshold=0.1, mode_smoothing=0.5, collapse_mass=0.25, plot_h=0.05, ranges={"3": 10.0, "15": 30.0},
             density_atol=1e-4)
_NET = dict(width=128, batch_size=100, weighting="sigma", optimizers={"adam": 1e-3, "sgd": 0.5},
            kl_tol=1e-3, seed=0)

PRESETS = {
    "tiny": dict(_BASE, mus=[3.0, 15.0], main_mus=[3.0, 15.0], m=128, n=200, n_time=16, per_decade=1,
                 tau_hi=12.0, kl_tol=2e-2,
                 net=dict(_NET, epochs=3, n_checkpoints=3, width=32, optimizers={"adam": 1e-3})),
    "quick": dict(_BASE, mus=[1.5, 3.0, 6.0, 10.0, 15.0], main_mus=[3.0, 15.0], m=512, n_time=128,
                  net=dict(_NET, epochs=200, n_checkpoints=5)),
    "full": dict(_BASE, mus=[1.5, 3.0, 4.5, 6.0, 7.5, 9.0, 12.0, 15.0], main_mus=[3.0, 15.0], m=2048,
                 n_time=256, per_decade=4, kl_tol=1e-3,
                 net=dict(_NET, epochs=2000, n_checkpoints=20)),
}

MAX_MODES = 4


def smooth(z, dens, width):
    """``dens`` convolved with a Gaussian of standard deviation ``width`` (on the
    uniform grid ``z``), so that the kinks and spikes ReLU features put into
    ``p_gen`` do not count as modes."""
    if width <= 0:
        return np.asarray(dens)
    h = z[1] - z[0]
    k = np.arange(-int(np.ceil(4 * width / h)), int(np.ceil(4 * width / h)) + 1) * h
    ker = np.exp(-0.5 * (k / width) ** 2)
    return np.convolve(np.asarray(dens), ker / ker.sum(), mode="same")


def modes(z, dens, threshold, width=0.0):
    """Positions of the local maxima of ``dens`` (on the grid ``z``, smoothed at
    scale ``width``) that reach ``threshold`` times the global maximum, left to right."""
    d = smooth(z, dens, width)
    peak = (d[1:-1] > d[:-2]) & (d[1:-1] >= d[2:]) & (d[1:-1] >= threshold * d.max())
    return z[1:-1][peak]


def mode_stats(z, dens, threshold, width=0.5):
    """``(positions padded to MAX_MODES, count, mass on x < 0)`` of one density."""
    pos = modes(z, dens, threshold, width)
    out = np.full(MAX_MODES, np.nan)
    out[:min(len(pos), MAX_MODES)] = pos[:MAX_MODES]
    h = z[1] - z[0]
    total = dens.sum() * h
    left = dens[z < 0].sum() * h + 0.5 * dens[z == 0].sum() * h
    return out, len(pos), left / total if total > 0 else np.nan


def _plot_grid(mu, p):
    r = p["ranges"].get(f"{mu:g}", max(10.0, 2 * mu))
    return np.arange(-r, r + p["plot_h"] / 2, p["plot_h"])


def _early_index(kl, best: int) -> int:
    """The first index where log KL is half-way from its start to its minimum ``kl[best]``."""
    level = np.exp(0.5 * (np.log(kl[0]) + np.log(kl[best])))
    return int(np.flatnonzero(kl[:best + 1] <= level)[0])


def _early(taus, kl, es):
    return float(taus[_early_index(kl, es["index"])])


def _rf_mu(mu, p):
    """KL curve, tau*, modes along training and the snapshot densities for one mu."""
    target = two_modes(mu, p["q1"])
    flow, problem, _ = c.rf_flow(target, p["n"], p["m"], seed=p["seed"], data_seed=p["data_seed"],
                                 n_time=p["n_time"], t_min=p["t_min"], T=p["T"], weighting=p["weighting"])
    taus = c.tau_grid(p["tau_lo"], p["tau_hi"], p["per_decade"])
    kl = c.flow_kl(flow, taus, target, tol=p["kl_tol"])
    es = c.early_stopping(taus, kl["value"], kl["error"])
    # modes along the whole trajectory: p_gen on a grid over the means +- 8 sd
    z = np.arange(-(mu + 8.0), mu + 8.0 + p["plot_h"] / 2, p["plot_h"])
    dens = c.density_on_grid(RFBatch(flow.model, flow.params(taus)), z, atol=p["density_atol"],
                             t_min=p["t_min"], T=p["T"])
    st = [mode_stats(z, d, p["mode_threshold"], p["mode_smoothing"]) for d in dens]
    mass = dens.sum(axis=1) * (z[1] - z[0])
    snaps = np.array([_early(taus, kl["value"], es), es["tau_grid"], taus[-1]])
    return dict(kl=kl["value"], kl_error=kl["error"], taus=taus, problem=problem, mass=mass, tau_star=es["tau_star"],
                tau_best=es["tau_grid"], kl_star=es["kl_grid"], kl_star_error=es["kl_grid_error"],
                tau_lo=es["tau_lo"], tau_hi=es["tau_hi"], interior=es["interior"], mode_pos=np.array([s[0] for s in st]),
                n_modes=np.array([s[1] for s in st]), mass_left=np.array([s[2] for s in st]),
                snap_taus=snaps, flow=flow, target=target)


def _net_mu(mu, p, x_seed):
    """Swish nets on one mu: KL per checkpoint; densities and modes at the early, best
    and last checkpoints (chosen as for the flow)."""
    q = p["net"]
    target = two_modes(mu, p["q1"])
    x = target.sample(p["n"], seed=x_seed)
    epochs = int(q["epochs"])
    ck = np.unique(np.round(np.linspace(0, epochs, q["n_checkpoints"] + 1)).astype(int))
    zp = _plot_grid(mu, p)
    res = {}
    for opt, lr in q["optimizers"].items():
        kl = np.full(ck.size, np.nan)
        err = np.full(ck.size, np.nan)
        dens = np.full((3, zp.size), np.nan)
        snap = np.zeros(3, dtype=np.int64)
        note = "ok"
        try:
            h = c.train_swish(x, optimizer=opt, lr=lr, seed=q["seed"], width=q["width"], epochs=epochs,
                              batch_size=q["batch_size"], weighting=q["weighting"], checkpoint_epochs=ck,
                              t_min=p["t_min"], T=p["T"])
            scores = [h.score_at(int(s)) for s in h.steps]
            for k, sc in enumerate(scores):
                kl[k], err[k], _ = c.kl_smooth(sc, target, tol=q["kl_tol"], t_min=p["t_min"], T=p["T"])
            best = int(np.argmin(kl))
            snap[:] = [_early_index(kl, best), best, ck.size - 1]
            dens = c.density_on_grid([scores[k] for k in snap], zp, atol=p["density_atol"],
                                     t_min=p["t_min"], T=p["T"])
        except (FloatingPointError, RuntimeError) as exc:    # SGD at lr 0.5 may diverge for large mu
            note = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
        st = [mode_stats(zp, d, p["mode_threshold"], p["mode_smoothing"]) if np.all(np.isfinite(d)) else
              (np.full(MAX_MODES, np.nan), -1, np.nan) for d in dens]
        res[opt] = dict(kl=kl, kl_error=err, dens=dens, mode_pos=np.array([s[0] for s in st]),
                        n_modes=np.array([s[1] for s in st]), mass_left=np.array([s[2] for s in st]),
                        snapshot_epoch=ck[snap], note=note)
    return ck, zp, res


def _verdict(rf3, rf15, p):
    """The paper's observation, tested on the random-feature flow (see module docstring)."""
    out = {"best_earlier": bool(rf15["tau_hi"] < rf3["tau_lo"]),
           "tau_star_ratio_15_over_3": rf15["tau_star"] / rf3["tau_star"]}
    for tag, r in (("3", rf3), ("15", rf15)):
        i_best = int(np.argmin(np.abs(r["taus"] - r["tau_best"])))
        late_kl, late_err = r["kl"][-1], r["kl_error"][-1]
        out[f"degrades_mu{tag}"] = bool(late_kl - r["kl_star"] > late_err + r["kl_star_error"])
        lighter = min(r["mass_left"][-1], 1 - r["mass_left"][-1])
        out[f"late_n_modes_mu{tag}"] = int(r["n_modes"][-1])
        out[f"best_n_modes_mu{tag}"] = int(r["n_modes"][i_best])
        out[f"late_lighter_mass_mu{tag}"] = float(lighter)
        out[f"collapse_mu{tag}"] = bool(r["n_modes"][-1] < 2 or lighter < p["collapse_mass"])
    out["paper_observation_holds"] = bool(out["best_earlier"] and out["degrades_mu15"] and out["collapse_mu15"])
    return out


def _net_verdict(ck, nets, p):
    out = {}
    for opt in nets[0][2]:
        r3, r15 = nets[0][2][opt], nets[1][2][opt]
        if not (np.any(np.isfinite(r3["kl"])) and np.any(np.isfinite(r15["kl"]))):
            out[f"{opt}_note"] = f"mu=3: {r3['note']}; mu=15: {r15['note']}"
            continue
        b3, b15 = int(np.nanargmin(r3["kl"])), int(np.nanargmin(r15["kl"]))
        lighter = min(r15["mass_left"][2], 1 - r15["mass_left"][2])
        out[f"{opt}_best_epoch_mu3"] = int(ck[b3])
        out[f"{opt}_best_epoch_mu15"] = int(ck[b15])
        out[f"{opt}_best_earlier"] = bool(ck[b15] < ck[b3])
        out[f"{opt}_degrades_mu15"] = bool(r15["kl"][-1] - r15["kl"][b15] > r15["kl_error"][-1] + r15["kl_error"][b15])
        out[f"{opt}_late_n_modes_mu15"] = int(r15["n_modes"][2])
        out[f"{opt}_late_lighter_mass_mu15"] = float(lighter)
        out[f"{opt}_collapse_mu15"] = bool(r15["n_modes"][2] < 2 or lighter < p["collapse_mass"])
        out[f"{opt}_paper_observation_holds"] = bool(out[f"{opt}_best_earlier"] and out[f"{opt}_degrades_mu15"]
                                                     and out[f"{opt}_collapse_mu15"])
    return out


def compute(p: dict):
    import xarray as xr

    t0 = time.perf_counter()
    mus = [float(m) for m in p["mus"]]
    main = [float(m) for m in p["main_mus"]]
    rf = {mu: _rf_mu(mu, p) for mu in sorted(set(mus) | set(main))}
    t_rf = time.perf_counter() - t0
    taus = rf[mus[0]]["taus"]
    # snapshot densities of the RF flow on the paper's plot ranges
    zmax = max(_plot_grid(mu, p).size for mu in main)
    z_main = np.full((len(main), zmax), np.nan)
    dens_rf = np.full((len(main), 3, zmax), np.nan)
    p0 = np.full((len(main), zmax), np.nan)
    snap_taus = np.zeros((len(main), 3))
    from rfdiff import OU
    for a, mu in enumerate(main):
        r = rf[mu]
        zp = _plot_grid(mu, p)
        z_main[a, :zp.size] = zp
        snap_taus[a] = r["snap_taus"]
        dens_rf[a, :, :zp.size] = c.density_on_grid(RFBatch(r["flow"].model, r["flow"].params(r["snap_taus"])),
                                                     zp, atol=p["density_atol"], t_min=p["t_min"], T=p["T"])
        p0[a, :zp.size] = np.exp(r["target"].log_pt(zp[:, None], 0.0, OU()))
    nets = [_net_mu(mu, p, p["data_seed"]) for mu in main]
    t_net = time.perf_counter() - t0 - t_rf
    ck = nets[0][0]
    opts = list(p["net"]["optimizers"])
    net_kl = np.array([[nets[a][2][o]["kl"] for o in opts] for a in range(len(main))])
    net_kl_err = np.array([[nets[a][2][o]["kl_error"] for o in opts] for a in range(len(main))])
    net_dens = np.full((len(main), len(opts), 3, zmax), np.nan)
    for a in range(len(main)):
        for b, o in enumerate(opts):
            d = nets[a][2][o]["dens"]
            net_dens[a, b, :, :d.shape[1]] = d
    net_modes = np.array([[nets[a][2][o]["mode_pos"] for o in opts] for a in range(len(main))])
    net_mass = np.array([[nets[a][2][o]["mass_left"] for o in opts] for a in range(len(main))])
    net_nmodes = np.array([[nets[a][2][o]["n_modes"] for o in opts] for a in range(len(main))])
    net_snap = np.array([[nets[a][2][o]["snapshot_epoch"] for o in opts] for a in range(len(main))])

    data = {
        "kl_ode": (("mu", "tau"), np.array([rf[m]["kl"] for m in mus])),
        "kl_ode_error": (("mu", "tau"), np.array([rf[m]["kl_error"] for m in mus])),
        "pgen_mass": (("mu", "tau"), np.array([rf[m]["mass"] for m in mus])),
        "tau_star": ("mu", np.array([rf[m]["tau_star"] for m in mus])),
        "tau_lo": ("mu", np.array([rf[m]["tau_lo"] for m in mus])),
        "tau_hi": ("mu", np.array([rf[m]["tau_hi"] for m in mus])),
        "kl_star": ("mu", np.array([rf[m]["kl_star"] for m in mus])),
        "kl_star_error": ("mu", np.array([rf[m]["kl_star_error"] for m in mus])),
        "interior": ("mu", np.array([rf[m]["interior"] for m in mus], dtype=np.int8)),
        "mode_position": (("mu", "tau", "mode"), np.array([rf[m]["mode_pos"] for m in mus])),
        "n_modes": (("mu", "tau"), np.array([rf[m]["n_modes"] for m in mus])),
        "mass_left": (("mu", "tau"), np.array([rf[m]["mass_left"] for m in mus])),
        "z": (("main_mu", "zi"), z_main),
        "p0": (("main_mu", "zi"), p0),
        "density_rf": (("main_mu", "snapshot", "zi"), dens_rf),
        "snapshot_tau": (("main_mu", "snapshot"), snap_taus),
        "net_kl": (("main_mu", "optimizer", "epoch"), net_kl),
        "net_kl_error": (("main_mu", "optimizer", "epoch"), net_kl_err),
        "net_density": (("main_mu", "optimizer", "snapshot", "zi"), net_dens),
        "net_snapshot_epoch": (("main_mu", "optimizer", "snapshot"), net_snap),
        "net_mode_position": (("main_mu", "optimizer", "snapshot", "mode"), net_modes),
        "net_n_modes": (("main_mu", "optimizer", "snapshot"), net_nmodes),
        "net_mass_left": (("main_mu", "optimizer", "snapshot"), net_mass),
    }
    ds = xr.Dataset(data, coords={"mu": mus, "tau": taus, "mode": np.arange(MAX_MODES), "main_mu": main,
                                  "snapshot": ["early", "best", "late"], "optimizer": opts, "epoch": ck})
    attrs = {"figure": NAME, "seconds_rf": t_rf, "seconds_net": t_net,
             "model": rf[mus[0]]["flow"].model.describe(),
             "quadrature_error": c.quadrature_check(rf[max(rf)]["problem"]),
             "modes_definition": f"local maxima of p_gen smoothed by a Gaussian of sd {p['mode_smoothing']}, "
                                 f">= {p['mode_threshold']} x its maximum",
             "snapshots": "early = first tau with log KL half-way to its minimum, best = tau* (grid), "
                          "late = last tau",
             "kinks_note": "ReLU kinks sit at -b_j(t)/W_j, Cauchy-distributed around 0: few features "
                           "have kinks near +-15; defaults (w_scale = u_scale = 1) kept",
             "net_notes": {f"mu{mu:g}_{o}": nets[a][2][o]["note"] for a, mu in enumerate(main) for o in opts}}
    if 3.0 in rf and 15.0 in rf:
        attrs["rf_verdict"] = _verdict(rf[3.0], rf[15.0], p)
    if main == [3.0, 15.0]:
        attrs["net_verdict"] = _net_verdict(ck, nets, p)
    ds.attrs.update(c.netcdf_attrs(attrs))
    return ds


def summary(ds) -> dict:
    a = ds.attrs
    out = {}
    for mu in ds.mu.values:
        d = ds.sel(mu=mu)
        out[f"mu={mu:g}: tau*, KL(tau*), KL(late)"] = (float(d.tau_star), float(d.kl_star),
                                                       float(d.kl_ode[-1]))
    for k in ("best_earlier", "degrades_mu15", "collapse_mu15", "late_n_modes_mu15",
              "late_lighter_mass_mu15", "paper_observation_holds"):
        if f"rf_verdict_{k}" in a:
            out[f"RF: {k}"] = a[f"rf_verdict_{k}"]
    for k, v in a.items():
        if k.startswith("net_verdict_") and ("holds" in k or "best_epoch" in k or "collapse" in k or "note" in k):
            out[f"Swish: {k[len('net_verdict_'):]}"] = v
    return out


def plot(ds, stem):
    from .. import plotting as P

    with P.style():
        fig, axes = P.subplots(3, 2, height=6.0)
        colors = {"early": P.COLORS[2], "best": P.COLORS[0], "late": P.COLORS[1]}
        for a, mu in enumerate(ds.main_mu.values):
            z = ds.z.values[a]
            ok = np.isfinite(z)
            # (a, b): random features
            ax = axes[0, a]
            ax.plot(z[ok], ds.p0.values[a][ok], color="0.6", lw=2.2, label="$p_0$")
            for s, snap in enumerate(ds.snapshot.values):
                tau = ds.snapshot_tau.values[a, s]
                ax.plot(z[ok], ds.density_rf.values[a, s][ok], color=colors[snap],
                        label=rf"{snap} $\tau$={tau:.0e}")
            ax.set_title(f"({'ab'[a]}) RF flow, $\\mu$={mu:g}", loc="left", fontsize=8)
            ax.set(xlabel="x", ylabel="density" if a == 0 else None, xlim=(z[ok][0], z[ok][-1]))
            ax.legend(loc="upper center", fontsize=5.5)
            # (c, d): Swish net, first optimizer
            ax = axes[1, a]
            ax.plot(z[ok], ds.p0.values[a][ok], color="0.6", lw=2.2, label="$p_0$")
            if np.any(np.isfinite(ds.net_kl.values[a, 0])):
                for s, snap in enumerate(ds.snapshot.values):
                    ax.plot(z[ok], ds.net_density.values[a, 0, s][ok], color=colors[snap],
                            label=f"{snap}: epoch {ds.net_snapshot_epoch.values[a, 0, s]}")
            ax.set_title(f"({'cd'[a]}) Swish ({ds.optimizer.values[0]}), $\\mu$={mu:g}", loc="left",
                         fontsize=8)
            ax.set(xlabel="x", ylabel="density" if a == 0 else None, xlim=(z[ok][0], z[ok][-1]))
            ax.legend(loc="upper center", fontsize=5.5)
        # (e): KL vs tau for the sweep
        ax = axes[2, 0]
        cmap = __import__("matplotlib").colormaps["viridis"]
        mus = ds.mu.values
        for i, mu in enumerate(mus):
            col = cmap(i / max(1, len(mus) - 1))
            ax.plot(ds.tau.values, P.positive(ds.kl_ode.values[i]), color=col, label=f"$\\mu$={mu:g}")
            ax.plot([ds.tau_star.values[i]], [ds.kl_star.values[i]], "*", color=col, markersize=5)
        ax.set(xscale="log", yscale="log", xlabel=r"$\tau$", ylabel="KL ODE")
        ax.set_title(r"(e) RF: KL vs $\tau$", loc="left", fontsize=8)
        ax.legend(fontsize=5, ncol=2)
        # (f): learned mode positions vs tau for the main mus
        ax = axes[2, 1]
        for a, mu in enumerate(ds.main_mu.values):
            pos = ds.mode_position.sel(mu=mu).values
            for k in range(pos.shape[1]):
                ax.plot(ds.tau.values, pos[:, k], "o", color=P.COLORS[a], markersize=2,
                        label=f"$\\mu$={mu:g}" if k == 0 else None)
            ax.axhline(mu, color=P.COLORS[a], lw=0.5, ls=":")
            ax.axhline(-mu, color=P.COLORS[a], lw=0.5, ls=":")
        ax.set(xscale="log", xlabel=r"$\tau$", ylabel="learned mode position")
        ax.set_title("(f) RF: modes of $p_{gen}$", loc="left", fontsize=8)
        ax.legend(fontsize=6)
        return P.save_figure(fig, ds, stem)
