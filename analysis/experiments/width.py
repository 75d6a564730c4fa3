"""Figure ``width``: KL against the number of random features m = 2^1 .. 2^11.

Random-feature flow on ``two_modes(mu=3)``, n = 1000 (the paper's setting),
for each width m and seed: the ODE KL along training on a log grid of tau;
from it

- the KL at fixed training times ``fixed_taus`` (the paper's "KL at a fixed
  epoch"), interpolated in log tau;
- the first training time at which ``KL <= kl_level`` (0.1), interpolated in
  log tau (NaN: never on the grid);
- ``tau*`` and ``KL(tau*)`` (grid minimum) and the KL at the end of training.

Time scale: the kernel ``H = G/m^2`` has eigenvalues O(1/m), so at a fixed
tau a wide model has moved less; ``tau/m`` is the m-free kernel time (also
stored for the first-crossing time).
"""
from __future__ import annotations

import time

import numpy as np

from rfdiff import two_modes

from . import _common as c

NAME = "width"
TITLE = "KL against the width m"

_BASE = dict(mu=3.0, q1=0.5, n=1000, t_min=1e-3, T=8.0, weighting="sigma2", tau_lo=0.0, tau_hi=14.0,
             per_decade=2, kl_tol=5e-3, kl_level=0.1, fixed_taus=[1e6, 1e8, 1e10])

PRESETS = {
    "tiny": dict(_BASE, m_values=[2, 8, 32, 128], seeds=[0], n=200, n_time=16, per_decade=1, tau_hi=12.0,
                 kl_tol=2e-2),
    "quick": dict(_BASE, m_values=[2 ** k for k in range(1, 12)], seeds=[0], n_time=128, per_decade=1),
    "full": dict(_BASE, m_values=[2 ** k for k in range(1, 12)], seeds=[0, 1, 2], n_time=256,
                 per_decade=4, kl_tol=1e-3),
}


def _interp_log(taus, y, at):
    return float(np.interp(np.log(at), np.log(taus), y))


def compute(p: dict):
    import xarray as xr

    t0 = time.perf_counter()
    target = two_modes(p["mu"], p["q1"])
    ms, seeds = list(p["m_values"]), list(p["seeds"])
    taus = c.tau_grid(p["tau_lo"], p["tau_hi"], p["per_decade"])
    fixed = np.asarray(p["fixed_taus"], dtype=float)
    shape = (len(ms), len(seeds))
    kl = np.full(shape + (taus.size,), np.nan)
    kl_err = np.full_like(kl, np.nan)
    kl_fixed = np.full(shape + (fixed.size,), np.nan)
    first = np.full(shape, np.nan)
    tau_star = np.full(shape, np.nan)
    kl_star = np.full(shape, np.nan)
    seconds = np.zeros(shape)
    for a, m in enumerate(ms):
        for b, s in enumerate(seeds):
            t1 = time.perf_counter()
            flow, problem, _ = c.rf_flow(target, p["n"], m, seed=s, data_seed=s, n_time=p["n_time"],
                                         t_min=p["t_min"], T=p["T"], weighting=p["weighting"])
            if a == len(ms) - 1 and b == 0:
                quad = c.quadrature_check(problem)
            r = c.flow_kl(flow, taus, target, tol=p["kl_tol"])
            kl[a, b], kl_err[a, b] = r["value"], r["error"]
            kl_fixed[a, b] = [_interp_log(taus, r["value"], t) for t in fixed]
            first[a, b] = c.first_crossing(taus, r["value"], p["kl_level"])
            es = c.early_stopping(taus, r["value"], r["error"])
            tau_star[a, b], kl_star[a, b] = es["tau_grid"], es["kl_grid"]
            seconds[a, b] = time.perf_counter() - t1
    mm = np.asarray(ms, dtype=float)[:, None]
    data = {
        "kl_ode": (("m", "seed", "tau"), kl), "kl_ode_error": (("m", "seed", "tau"), kl_err),
        "kl_at_fixed_tau": (("m", "seed", "fixed_tau"), kl_fixed),
        "first_tau_below_level": (("m", "seed"), first),
        "first_kernel_time_below_level": (("m", "seed"), first / mm),
        "tau_star": (("m", "seed"), tau_star), "kl_star": (("m", "seed"), kl_star),
        "kl_final": (("m", "seed"), kl[:, :, -1]), "seconds": (("m", "seed"), seconds),
    }
    ds = xr.Dataset(data, coords={"m": ms, "seed": seeds, "tau": taus, "fixed_tau": fixed})
    never = [int(m) for m, f in zip(ms, np.all(np.isnan(first), axis=1)) if f]
    attrs = {"figure": NAME, "target": f"two_modes(mu={p['mu']}, q1={p['q1']})", "n": p["n"],
             "kl_level": p["kl_level"], "widths_never_below_level": never if never else "none",
             "seconds_total": time.perf_counter() - t0, "quadrature_error": quad,
             "kl_ode_method": f"rfdiff.kl_ode_path, tol={p['kl_tol']}"}
    ds.attrs.update(c.netcdf_attrs(attrs))
    return ds


def summary(ds) -> dict:
    out = {}
    for a, m in enumerate(ds.m.values):
        fa = ds.first_tau_below_level.values[a]
        f = float(np.nan if np.all(np.isnan(fa)) else np.nanmean(fa))
        out[f"m={m}: KL(tau*), first tau with KL<={ds.attrs['kl_level']:g}, KL@fixed taus"] = (
            float(np.nanmean(ds.kl_star.values[a])), f,
            [round(float(v), 4) for v in np.nanmean(ds.kl_at_fixed_tau.values[a], axis=0)])
    out["widths never reaching the level"] = _never(ds) or "none"
    return out


def _never(ds) -> str:
    v = ds.attrs["widths_never_below_level"]
    return "" if isinstance(v, str) else ", ".join(str(int(x)) for x in np.atleast_1d(v))


def plot(ds, stem):
    from .. import plotting as P

    with P.style():
        fig, axes = P.subplots(3, 1, height=6.4)
        m = ds.m.values
        ax = axes[0, 0]
        cmap = __import__("matplotlib").colormaps["viridis"]
        for a, mm in enumerate(m):
            ax.plot(ds.tau.values, P.positive(np.nanmean(ds.kl_ode.values[a], axis=0)),
                    color=cmap(a / max(1, len(m) - 1)), label=f"m={mm}")
        ax.axhline(ds.attrs["kl_level"], color="k", lw=0.6, ls=":")
        ax.set(xscale="log", yscale="log", xlabel=r"training time $\tau$", ylabel="KL ODE")
        ax.set_title("(a) KL along training for each width", loc="left", fontsize=8)
        ax.legend(ncol=3, fontsize=5.5)
        ax = axes[1, 0]
        for k, t in enumerate(ds.fixed_tau.values):
            y = ds.kl_at_fixed_tau.values[:, :, k]
            P.band(ax, m, P.positive(np.nanmean(y, axis=1)), P.positive(np.nanmin(y, axis=1)),
                   P.positive(np.nanmax(y, axis=1)), label=rf"$\tau$ = {t:.0e}", marker="o")
        ks = ds.kl_star.values
        ax.plot(m, np.nanmean(ks, axis=1), "k*-", label=r"KL($\tau^*$)", markersize=4)
        ax.set(xscale="log", yscale="log", xlabel="width m", ylabel="KL ODE")
        ax.set_title("(b) KL at fixed training times", loc="left", fontsize=8)
        ax.legend()
        ax.set_xscale("log", base=2)
        ax = axes[2, 0]
        f = ds.first_tau_below_level.values
        with np.errstate(all="ignore"):
            f_mean = np.array([np.nan if np.all(np.isnan(r)) else np.nanmean(r) for r in f])
        ax.plot(m, f_mean, "o-", label=r"first $\tau$ with KL $\leq$ " + f"{ds.attrs['kl_level']:g}")
        ax.plot(m, np.nanmean(ds.tau_star.values, axis=1), "s--", label=r"$\tau^*$")
        ax.set(xscale="log", yscale="log", xlabel="width m", ylabel=r"training time $\tau$")
        ax.set_xscale("log", base=2)
        never = _never(ds)
        ax.set_title(f"(c) first time KL $\\leq$ {ds.attrs['kl_level']:g}, and $\\tau^*$", loc="left", fontsize=8)
        if never:
            ax.text(0.02, 0.02, f"never reaches it: m = {never}", transform=ax.transAxes, fontsize=6)
        ax.legend()
        return P.save_figure(fig, ds, stem)
