"""Figure ``scaling``: tau*(n), KL(tau*)(n) and KL(tau*)(m) with fitted exponents.

For each (n, m, seed) the random-feature flow on ``two_modes(mu=3)`` is
solved in closed form and its ODE KL is evaluated on a coarse log grid of
training times (1 per decade, tolerance ``coarse_kl_tol``: it only locates
the minimum), then on a fine grid (``fine_per_decade``, tolerance ``kl_tol``)
over the decade either side of the coarse minimum; ``tau*`` is the fine
grid's minimiser refined by a parabola in log tau and ``KL(tau*)`` the fine
grid's minimum KL (an exact KL at a tau within half a grid step of tau*).
Seed s draws both the training set and the frozen features.

Regimes (as in :mod:`analysis.bounds`):

- n-sweep: width proportional to the data, ``m = m_ratio * n`` (the regime in
  which the theorem's ``tau_es ~ n^{2/5}``, ``KL ~ n^{-2/5}`` hold);
- m-sweep: a large fixed n (the exact ReLU Gram costs nothing extra in n), so
  that the m-limited term dominates.

Log-log slopes come with bootstrap intervals over seeds
(:func:`analysis.fits.fit_power_law`) and are reported next to the exponents
derived symbolically from the bound (:func:`analysis.bounds.theory_exponents`);
the slide's claim ``KL <~ n^{-2/5} + m^{-4/5}`` is reported as well (its m
exponent is not what minimising the stated bound gives: -1/2).

Time scale: tau is the gradient-flow time of the normalised loss for
``s = (1/m) A phi``, whose kernel ``H = G/m^2`` has eigenvalues O(1/m); the
function therefore moves on the time scale ``tau/m``, the time of the
m-independent kernel ``m H``. Both ``tau*`` and ``tau*/m`` are fitted (the
theorem's time is not pinned down by the slide; with ``m = c n`` their n
exponents differ by exactly 1).
"""
from __future__ import annotations


import numpy as np

from rfdiff import two_modes

from rfdiff.run import Experiment, Task, point_function

from . import _common as c

NAME = "scaling"
TITLE = "Scaling of the early-stopping time and KL with n and m"

#: the exponents the slide states (typed from seed 000; the bound's are derived in analysis.bounds)
SLIDE_EXPONENTS = {"tau_star_vs_n": "2/5", "kl_star_vs_n": "-2/5", "kl_star_vs_m": "-4/5"}

_BASE = dict(mu=3.0, q1=0.5, t_min=1e-3, T=8.0, weighting="sigma2", coarse_lo=2.0, coarse_hi=14.0,
             fine_per_decade=4, kl_tol=5e-3, coarse_kl_tol=2e-2, m_ratio=0.5, n_boot=2000)

PRESETS = {
    "tiny": dict(_BASE, n_values=[16, 64, 256], m_values=[8, 32, 128], n_for_m=2000, seeds=[0, 1],
                 n_time=16, kl_tol=2e-2, fine_per_decade=3, coarse_hi=12.0, n_boot=500, m_ratio=1.0),
    "quick": dict(_BASE, n_values=[32, 64, 128, 256, 512, 1024], m_values=[16, 32, 64, 128, 256, 512],
                  n_for_m=10000, seeds=[0, 1, 2], n_time=128, coarse_hi=13.0),
    "full": dict(_BASE, n_values=[32, 64, 128, 256, 512, 1024, 2048],
                 m_values=[16, 32, 64, 128, 256, 512, 1024, 2048], n_for_m=100000,
                 seeds=[0, 1, 2, 3, 4], n_time=256, kl_tol=1e-3, coarse_kl_tol=5e-3, fine_per_decade=8),
}


@point_function
def point(*, n: int, m: int, seed: int, mu: float, q1: float, n_time: int, t_min: float, T: float,
          weighting: str, coarse_lo: float, coarse_hi: float, fine_per_decade: float, kl_tol: float,
          coarse_kl_tol: float, quadrature: bool = False) -> dict:
    """One (n, m, seed): tau*, KL(tau*), its error, whether the minimum is interior,
    the final KL and the coarse KL curve (module docstring). Seed ``seed`` draws the
    training set and the frozen features; ``quadrature``: also record the time rule's error."""
    target = two_modes(mu, q1)
    flow, problem, _ = c.rf_flow(target, n, m, seed=seed, data_seed=seed, n_time=n_time, t_min=t_min, T=T,
                                 weighting=weighting)
    coarse = c.tau_grid(coarse_lo, coarse_hi, 1)
    kc = c.flow_kl(flow, coarse, target, tol=coarse_kl_tol)
    i = int(np.argmin(kc["value"]))
    centre = np.log10(coarse[i])
    lo, hi = max(centre - 1, coarse_lo - 1), centre + 1
    fine = c.tau_grid(lo, hi, fine_per_decade)
    kf = c.flow_kl(flow, fine, target, tol=kl_tol)
    # the curve on the union of both grids decides whether the minimum is interior
    taus, first = np.unique(np.concatenate([fine, coarse]), return_index=True)   # shared taus: once
    kl_all = np.concatenate([kf["value"], kc["value"]])[first]
    err_all = np.concatenate([kf["error"], kc["error"]])[first]
    es_all = c.early_stopping(taus, kl_all, err_all)
    es = c.early_stopping(fine, kf["value"], kf["error"])
    j = es["index"]
    out = dict(tau_star=es["tau_star"], kl_star=float(kf["value"][j]), kl_star_error=float(kf["error"][j]),
               interior=bool(es_all["interior"]), kl_final=float(kc["value"][-1]),
               curve=kc["value"], curve_error=kc["error"],
               coords={"tau_coarse": coarse}, dims={"curve": ["tau_coarse"], "curve_error": ["tau_coarse"]})
    if quadrature:
        out.update({f"quadrature_{k}": v for k, v in c.quadrature_check(problem).items()})
    return out


_POINT_KEYS = ("mu", "q1", "n_time", "t_min", "T", "weighting", "coarse_lo", "coarse_hi", "fine_per_decade",
               "kl_tol", "coarse_kl_tol")


def _pairs(p: dict) -> tuple:
    """``(n-sweep pairs (n, m = m_ratio n), m-sweep pairs (n_for_m, m))``."""
    n_values = list(p["n_values"])
    m_of_n = [max(1, int(round(p["m_ratio"] * n))) for n in n_values]
    return list(zip(n_values, m_of_n)), [(int(p["n_for_m"]), int(m)) for m in p["m_values"]]


def tasks(p: dict) -> list:
    """One point per (n, seed) of the n-sweep, then one per (m, seed) of the m-sweep."""
    common = {k: p[k] for k in _POINT_KEYS}
    out = []
    for pairs in _pairs(p):
        for a, (n, m) in enumerate(pairs):
            for b, s in enumerate(p["seeds"]):
                out.append(Task(point, dict(common, n=int(n), m=int(m), seed=int(s),
                                            quadrature=(a == len(pairs) - 1 and b == 0))))
    return out


def _stack(results, pairs, seeds):
    keys = ("tau_star", "kl_star", "kl_star_error", "interior", "kl_final")
    out = {k: np.array([[float(results[a * len(seeds) + b][k]) for b in range(len(seeds))]
                        for a in range(len(pairs))]) for k in keys}
    out["interior"] = out["interior"].astype(np.int8)
    curves = np.array([[results[a * len(seeds) + b]["curve"].values for b in range(len(seeds))]
                       for a in range(len(pairs))])
    q = results[(len(pairs) - 1) * len(seeds)]
    out["quad"] = {k[len("quadrature_"):]: (int(q[k]) if k in ("quadrature_n_time", "quadrature_m")
                                            else float(q[k])) for k in q.data_vars if k.startswith("quadrature_")}
    return out, curves, results[0]["tau_coarse"].values


def _fit(x, y, p, seed=0):
    from analysis.fits import fit_power_law

    return fit_power_law(np.asarray(x, float), np.asarray(y, float), n_boot=p["n_boot"], seed=seed).as_dict()


def _bound_min(n, m):
    """min over tau of the stated bound (tau^4/(mn) + tau^3/m^2 + 1/tau) and its minimiser."""
    from analysis.bounds import bound_curve, optimal_tau

    t = optimal_tau(float(n), float(m))
    return t, float(bound_curve([t], float(n), float(m))[0])


def _constant(measured, theory):
    """Least-squares constant in log space: exp(mean(log measured - log theory))."""
    return float(np.exp(np.mean(np.log(measured) - np.log(theory))))


def reduce(p: dict, results: list):
    """Fits with bootstrap intervals, the bound with fitted constants, the theory exponents."""
    import xarray as xr

    from analysis.bounds import theory_exponents

    pairs_n, pairs_m = _pairs(p)
    seeds = list(p["seeds"])
    k = len(pairs_n) * len(seeds)
    rn, curves_n, coarse = _stack(results[:k], pairs_n, seeds)
    rm, curves_m, _ = _stack(results[k:], pairs_m, seeds)
    n_values = [n for n, _ in pairs_n]
    m_of_n = [m for _, m in pairs_n]
    m_values = [m for _, m in pairs_m]
    quad = {"n_sweep": rn.pop("quad"), "m_sweep": rm.pop("quad")}

    theory = theory_exponents()
    fits = {
        "tau_star_vs_n": _fit(n_values, rn["tau_star"], p),
        "tau_star_over_m_vs_n": _fit(n_values, rn["tau_star"] / np.asarray(m_of_n)[:, None], p),
        "kl_star_vs_n": _fit(n_values, rn["kl_star"], p),
        "kl_star_vs_m": _fit(m_values, rm["kl_star"], p),
        "tau_star_vs_m": _fit(m_values, rm["tau_star"], p),
    }
    # the bound on the same axes, with one fitted constant each
    bn = np.array([_bound_min(n, m) for n, m in zip(n_values, m_of_n)])
    bm = np.array([_bound_min(p["n_for_m"], m) for m in m_values])
    consts = {
        "tau_star_vs_n": _constant(rn["tau_star"].mean(axis=1), bn[:, 0]),
        "kl_star_vs_n": _constant(rn["kl_star"].mean(axis=1), bn[:, 1]),
        "kl_star_vs_m": _constant(rm["kl_star"].mean(axis=1), bm[:, 1]),
    }
    data = {}
    for k, v in rn.items():
        data[f"{k}_n"] = (("n", "seed"), v)
    for k, v in rm.items():
        data[f"{k}_m"] = (("m", "seed"), v)
    data["kl_curve_n"] = (("n", "seed", "tau_coarse"), curves_n)
    data["kl_curve_m"] = (("m", "seed", "tau_coarse"), curves_m)
    data["width_of_n"] = ("n", np.asarray(m_of_n))
    data["bound_tau_star_n"] = ("n", bn[:, 0] * consts["tau_star_vs_n"])
    data["bound_kl_star_n"] = ("n", bn[:, 1] * consts["kl_star_vs_n"])
    data["bound_kl_star_m"] = ("m", bm[:, 1] * consts["kl_star_vs_m"])
    ds = xr.Dataset(data, coords={"n": n_values, "m": m_values, "seed": list(p["seeds"]),
                                  "tau_coarse": coarse})
    attrs = {"target": f"two_modes(mu={p['mu']}, q1={p['q1']})",
             "n_sweep_width": f"m = {p['m_ratio']:g} n", "m_sweep_n": p["n_for_m"],
             "early_stopping_criterion": "argmin of KL_ODE on a fine log grid around the coarse "
                                         "minimum, parabola in log tau; KL(tau*) = fine-grid minimum",
             "bound": "tau^4/(m n) + tau^3/m^2 + 1/tau (seed 000), minimised over tau; "
                      "drawn times a constant fitted in log space",
             "bound_constants": consts, "quadrature_error": quad}
    for name, f in fits.items():
        for k, v in f.items():
            attrs[f"fit_{name}_{k}"] = v
    for name, v in theory.items():
        attrs[f"theory_{name}"] = v
    attrs["theory_tau_star_over_m_vs_n"] = theory["tau_star_vs_n"]
    for name, v in SLIDE_EXPONENTS.items():
        attrs[f"slide_{name}"] = v
    agree = {name: int(fits[name]["ci_low"] <= theory[name] <= fits[name]["ci_high"]) for name in theory}
    attrs["theory_within_ci"] = agree
    attrs["interior_fraction_n"] = float(np.mean(rn["interior"]))
    attrs["interior_fraction_m"] = float(np.mean(rm["interior"]))
    ds.attrs.update(c.netcdf_attrs(attrs))
    return ds


EXPONENT_ROWS = (
    # (fit name, quantity, theory attr, slide attr)
    ("tau_star_vs_n", "tau* vs n (m = c n)", "theory_tau_star_vs_n", "slide_tau_star_vs_n"),
    ("tau_star_over_m_vs_n", "tau*/m vs n (kernel time)", "theory_tau_star_vs_n", "slide_tau_star_vs_n"),
    ("kl_star_vs_n", "KL(tau*) vs n (m = c n)", "theory_kl_star_vs_n", "slide_kl_star_vs_n"),
    ("kl_star_vs_m", "KL(tau*) vs m (n large)", "theory_kl_star_vs_m", "slide_kl_star_vs_m"),
)


def exponent_table(ds) -> list[dict]:
    """Rows: quantity, measured slope with its interval, derived and slide exponents."""
    a = ds.attrs
    rows = []
    for fit, label, th, sl in EXPONENT_ROWS:
        rows.append({"quantity": label, "slope": a[f"fit_{fit}_slope"], "ci_low": a[f"fit_{fit}_ci_low"],
                     "ci_high": a[f"fit_{fit}_ci_high"], "level": a[f"fit_{fit}_level"],
                     "theory_bound": a[th], "slide": a[sl]})
    return rows


def summary(ds) -> dict:
    out = {}
    for r in exponent_table(ds):
        out[r["quantity"]] = (f"{r['slope']:.3f} [{r['ci_low']:.3f}, {r['ci_high']:.3f}] "
                              f"(bound: {r['theory_bound']:+.3g}, slide: {r['slide']})")
    out["fraction of (n, seed) with an interior KL minimum"] = ds.attrs["interior_fraction_n"]
    out["fraction of (m, seed) with an interior KL minimum"] = ds.attrs["interior_fraction_m"]
    return out


def plot(ds, stem):
    from .. import plotting as P

    a = ds.attrs
    with P.style():
        fig, axes = P.subplots(3, 1, height=6.6)
        panels = [
            (axes[0, 0], "n", ds.tau_star_n, ds.bound_tau_star_n, "tau_star_vs_n", r"$\tau^*$",
             f"(a) early-stopping time, {a['n_sweep_width']}"),
            (axes[1, 0], "n", ds.kl_star_n, ds.bound_kl_star_n, "kl_star_vs_n", r"KL$(\tau^*)$",
             "(b) KL at early stopping"),
            (axes[2, 0], "m", ds.kl_star_m, ds.bound_kl_star_m, "kl_star_vs_m", r"KL$(\tau^*)$",
             f"(c) KL at early stopping vs width, n = {a['m_sweep_n']}"),
        ]
        for ax, dim, y, bound, fit, ylabel, title in panels:
            x = ds[dim].values
            vals = y.values
            for j in range(vals.shape[1]):
                ax.plot(x, vals[:, j], "o", color=P.COLORS[0], alpha=0.45, markersize=2.5,
                        label="seeds" if j == 0 else None)
            f = {k: a[f"fit_{fit}_{k}"] for k in ("slope", "intercept", "ci_low", "ci_high")}
            xx = np.geomspace(x.min(), x.max(), 50)
            th = a[f"theory_{fit}"]
            ax.plot(xx, np.exp(f["intercept"]) * xx ** f["slope"], "-", color=P.COLORS[0],
                    label=P.fit_label(f, theory=f"{th:+.2g}", name="fit"))
            ax.plot(x, bound.values, "--", color=P.COLORS[1], label="bound x fitted const")
            ax.set(xscale="log", yscale="log", xlabel=dim, ylabel=ylabel)
            P.data_ticks(ax, x)
            ax.set_title(title, loc="left", fontsize=8)
            ax.legend(loc="best")
        return P.save_figure(fig, ds, stem)


EXPERIMENT = Experiment(name=NAME, title=TITLE, presets=PRESETS, tasks=tasks, reduce=reduce, plot=plot,
                        summary=summary,
                        regime="1D: two_modes(mu=3), full-time random-feature flow (ReLU features with "
                               "bias and time embedding); n-sweep at m = m_ratio n, m-sweep at large n")
