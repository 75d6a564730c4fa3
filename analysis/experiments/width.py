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

from rfdiff.run import Experiment, Task, point_function

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


@point_function
def point(*, m: int, seed: int, mu: float, q1: float, n: int, n_time: int, t_min: float, T: float,
          weighting: str, tau_lo: float, tau_hi: float, per_decade: float, kl_tol: float,
          kl_level: float, fixed_taus: list, quadrature: bool = False) -> dict:
    """One width ``m`` and seed: the ODE KL on the log tau grid and what is read off it.

    Seed ``seed`` draws both the training set (n points of ``two_modes(mu, q1)``)
    and the frozen features. ``quadrature``: also record the time rule's error.
    """
    t1 = time.perf_counter()
    target = two_modes(mu, q1)
    taus = c.tau_grid(tau_lo, tau_hi, per_decade)
    fixed = np.asarray(fixed_taus, dtype=float)
    flow, problem, _ = c.rf_flow(target, n, m, seed=seed, data_seed=seed, n_time=n_time, t_min=t_min, T=T,
                                 weighting=weighting)
    r = c.flow_kl(flow, taus, target, tol=kl_tol)
    es = c.early_stopping(taus, r["value"], r["error"])
    out = {"kl_ode": r["value"], "kl_ode_error": r["error"],
           "kl_at_fixed_tau": np.array([_interp_log(taus, r["value"], t) for t in fixed]),
           "first_tau_below_level": c.first_crossing(taus, r["value"], kl_level),
           "tau_star": es["tau_grid"], "kl_star": es["kl_grid"],
           "coords": {"tau": taus, "fixed_tau": fixed}, "dims": {"kl_ode": ["tau"], "kl_ode_error": ["tau"],
                                                                 "kl_at_fixed_tau": ["fixed_tau"]}}
    if quadrature:
        out.update({f"quadrature_{k}": v for k, v in c.quadrature_check(problem).items()})
    out["seconds"] = time.perf_counter() - t1
    return out


_POINT_KEYS = ("mu", "q1", "n", "n_time", "t_min", "T", "weighting", "tau_lo", "tau_hi", "per_decade",
               "kl_tol", "kl_level", "fixed_taus")


def tasks(p: dict) -> list:
    """One point per (m, seed); the widest m's first seed also records the quadrature error."""
    common = {k: p[k] for k in _POINT_KEYS}
    ms, seeds = list(p["m_values"]), list(p["seeds"])
    return [Task(point, dict(common, m=int(m), seed=int(s), quadrature=(a == len(ms) - 1 and b == 0)))
            for a, m in enumerate(ms) for b, s in enumerate(seeds)]


def reduce(p: dict, results: list):
    """Stack the points over (m, seed); attrs: the widths that never reach ``kl_level``."""
    import xarray as xr

    ms, seeds = list(p["m_values"]), list(p["seeds"])
    quad = next(r for r in results if "quadrature_m" in r)
    quad = {k[len("quadrature_"):]: (int(quad[k]) if k in ("quadrature_n_time", "quadrature_m")
                                     else float(quad[k])) for k in quad.data_vars if k.startswith("quadrature_")}
    keep = ("kl_ode", "kl_ode_error", "kl_at_fixed_tau", "first_tau_below_level", "tau_star", "kl_star",
            "seconds")
    grid = [[results[a * len(seeds) + b][list(keep)] for b in range(len(seeds))] for a in range(len(ms))]
    ds = xr.combine_nested(grid, concat_dim=["m", "seed"], combine_attrs="drop")
    ds = ds.assign_coords(m=ms, seed=seeds).transpose("m", "seed", ...)
    ds["first_kernel_time_below_level"] = ds.first_tau_below_level / ds.m.astype(float)
    ds["kl_final"] = ds.kl_ode.isel(tau=-1, drop=True)
    ds = ds.transpose("m", "seed", ...)
    first = ds.first_tau_below_level.values
    never = [int(m) for m, f in zip(ms, np.all(np.isnan(first), axis=1)) if f]
    attrs = {"target": f"two_modes(mu={p['mu']}, q1={p['q1']})", "n": p["n"],
             "kl_level": p["kl_level"], "widths_never_below_level": never if never else "none",
             "seconds_total": float(ds.seconds.sum()), "quadrature_error": quad,
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


EXPERIMENT = Experiment(name=NAME, title=TITLE, presets=PRESETS, tasks=tasks, reduce=reduce, plot=plot,
                        summary=summary,
                        regime="1D: two_modes(mu=3), full-time random-feature flow (ReLU features with "
                               "bias and time embedding), n = 1000, m = 2..2048")
