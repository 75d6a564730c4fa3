"""Figure ``pre-memorization``: generalization and memorization times of the paper's
high-dimensional random-feature model, exact in the noise.

After Bonnaire, Urfin, Biroli, Mezard (2025, arXiv 2505.17638, eq. 7 and sec. 3):
``s_A(x) = A tanh(W x/sqrt(d))/sqrt(p)`` (bias- and time-free features, W frozen
standard normal, ``A(0) = 0``), target ``N(0, sigma_x^2 I_d)``, one OU noise level t,
``Delta = 1 - e^{-2t}``, ``psi_p = p/d``, ``psi_n = n/d``. For each (psi_n, seed):

- the closed-form gradient flow of ``L_train`` (rfdiff's solver on the exact-in-noise
  Gram, :mod:`rfdiff.model.premem`), and along it ``L_train``, ``L_test`` and
  ``E_score = (1/d) E|s(y) - grad log p_t(y)|^2`` against ``tau`` in the paper's units
  (``tau_rfdiff = d^2 tau``), 1e-1 .. 1e7 and tau = inf;
- the spectrum of ``U = (1/n) sum_nu E_xi[phi phi^T]``;
- ``tau_gen``: the first tau at which E_score has fallen halfway from E_score(0) = 1 to
  its minimum on the grid; ``tau_mem``: the first tau at which ``L_gen = L_test - L_train``
  reaches half of ``L_gen(inf)`` (both interpolated linearly in log tau; NaN if never);
- theory (:mod:`rfdiff.model.premem_theory`): ``tau_mem_theory = psi_p/(Delta lambda_min)``,
  ``lambda_min = s_t^2 + v_t^2 (1 - sqrt(psi_p/psi_n))^2``, and the leading-order bulk edges;
  in the reduction (once per psi_n: it does not depend on the seed) the theory's eigenvalue
  density of U from the paper's saddle-point equations on a log grid of ``theory_grid``
  points, its support's edges, and ``tau_mem_density = psi_p/(Delta lambda_lo)`` with
  ``lambda_lo`` the lower edge of the density's memorization bulk (edges known to the grid's
  spacing).

Seeds: ``seed`` draws W (through ``rfdiff``'s model of that seed) and the training set
``X`` (``default_rng([seed, 1])``; nested in n: a smaller n is a prefix of a larger one).

Reduction: slopes of ``log tau_gen`` and ``log tau_mem`` against ``log n`` with
bootstrap intervals (``scipy.stats.bootstrap``, resampling seeds: each seed's whole
curve is one draw, since points of one seed share W and nested X), next to the
asymptotic theory's 0 and 1 and to the slope of ``tau_mem_theory`` over the same n.
"""
from __future__ import annotations

import time

import numpy as np

from rfdiff.model import premem as pm
from rfdiff.model import premem_theory as th
from rfdiff.model.noise_gram import check_inputs
from rfdiff.run import Experiment, Task, point_function

NAME = "pre-memorization"
TITLE = "Generalization and memorization times of high-dimensional random features (exact in the noise)"

_BASE = dict(t=0.1, sigma_x=1.0, tau_lo=-1.0, tau_hi=7.0, per_decade=8, tol=1e-9, theory_grid=160)

PRESETS = {
    "tiny": dict(_BASE, d=8, psi_p=8, psi_n=[1, 2, 4], seeds=[0, 1], per_decade=4, theory_grid=24),
    "quick": dict(_BASE, d=40, psi_p=32, psi_n=[1, 2, 4, 8, 16], seeds=[0, 1]),
    "full": dict(_BASE, d=100, psi_p=64, psi_n=[1, 2, 4, 8, 16, 32], seeds=[0, 1, 2]),
}

_POINT_KEYS = ("d", "psi_p", "t", "sigma_x", "tau_lo", "tau_hi", "per_decade", "tol")


def check_point(d, psi_p, psi_n, t, seed=0):
    """``(d, p, n, t)`` of a point, or one ValueError naming the bad parameter:
    d, psi_p, psi_n, t positive, d an integer, p = psi_p d and n = psi_n d integers,
    seed an integer >= 0."""
    for name, val in (("d", d), ("psi_p", psi_p), ("psi_n", psi_n), ("t", t), ("seed", seed)):
        if isinstance(val, (bool, np.bool_)):
            raise ValueError(f"{name} must be a number, not a bool, got {val!r}")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    return check_inputs(d, psi_p, psi_n, t)


def tau_grid(tau_lo: float, tau_hi: float, per_decade: float) -> np.ndarray:
    """``10^tau_lo .. 10^tau_hi``, ``per_decade`` points a decade (paper units)."""
    return np.logspace(tau_lo, tau_hi, int(round((tau_hi - tau_lo) * per_decade)) + 1)


def first_crossing(tau, y, level, rising: bool) -> float:
    """First tau at which ``y`` reaches ``level`` (from below if ``rising``), linear
    in ``log tau`` between grid points; NaN if it never does on the grid."""
    y = np.asarray(y, dtype=float)
    hit = y >= level if rising else y <= level
    if not hit.any():
        return float("nan")
    i = int(np.argmax(hit))
    if i == 0:
        return float(tau[0])
    lt = np.log(tau[i - 1:i + 1])
    f = (level - y[i - 1]) / (y[i] - y[i - 1])
    return float(np.exp(lt[0] + f * (lt[1] - lt[0])))


@point_function
def point(*, d: int, psi_p: float, psi_n: float, t: float, seed: int, sigma_x: float = 1.0,
          tau_lo: float = -1.0, tau_hi: float = 7.0, per_decade: float = 8, tol: float = 1e-9) -> dict:
    """One (d, psi_p, psi_n, t, seed): loss curves against the paper's tau, the spectrum
    of U, tau_gen, tau_mem and the theory's tau_mem (module docstring)."""
    t0 = time.perf_counter()
    d, p, n, t = check_point(d, psi_p, psi_n, t, seed)
    if not (np.isfinite(sigma_x) and sigma_x > 0):
        raise ValueError(f"sigma_x must be a positive finite number, got {sigma_x!r}")
    if not (np.isfinite(tau_lo) and np.isfinite(tau_hi) and tau_hi > tau_lo and per_decade > 0):
        raise ValueError(f"tau_lo < tau_hi must be finite and per_decade > 0, got "
                         f"{tau_lo!r}, {tau_hi!r}, {per_decade!r}")
    W = pm.paper_weights(pm.paper_model(d, p, seed))
    X = sigma_x * np.random.default_rng([seed, 1]).standard_normal((n, d))
    forms = pm.paper_forms(W, X, t, sigma_x=sigma_x, tol=tol)
    flow = pm.paper_flow(forms)
    taus = tau_grid(tau_lo, tau_hi, per_decade)
    tr = pm.tau_rfdiff(np.r_[taus, np.inf], d)
    train = flow.train_loss(tr)
    test = pm.form_curve(flow, forms.test, tr)
    escore = pm.form_curve(flow, forms.escore, tr)
    gen = test - train
    e_min_i = int(np.argmin(escore[:-1]))
    e_min = float(escore[e_min_i])
    tau_gen = first_crossing(taus, escore[:-1], 0.5 * (1.0 + e_min), rising=False)
    tau_mem = first_crossing(taus, gen[:-1], 0.5 * gen[-1], rising=True) if gen[-1] > 0 else float("nan")
    c = th.theory_constants(t, sigma_x)
    edges = th.bulk_edges(c, psi_p, psi_n)
    spectrum = pm.spectrum_of_U(flow, forms)
    return {
        "train_loss": train[:-1], "test_loss": test[:-1], "escore": escore[:-1], "gen_loss": gen[:-1],
        "spectrum": spectrum,
        "tau_gen": tau_gen, "tau_mem": tau_mem, "tau_mem_theory": th.tau_mem_theory(c, psi_p, psi_n),
        "escore_min": e_min, "tau_escore_min": float(taus[e_min_i]),
        "train_loss_inf": float(train[-1]), "test_loss_inf": float(test[-1]), "escore_inf": float(escore[-1]),
        "gen_loss_inf": float(gen[-1]),
        "lambda_min_theory": th.lambda_min(c, psi_p, psi_n),
        "edge_memorization_lo": edges["memorization"][0], "edge_memorization_hi": edges["memorization"][1],
        "edge_population_lo": edges["population"][0], "edge_population_hi": edges["population"][1],
        "s2": c.s2, "v2": c.v2, "a_t": c.a, "b_t": c.b, "delta": c.delta,
        "p_features": p, "n_train": n, "gram_error": forms.error, "hermite_K": int(forms.info["K_train"]),
        "n_clipped": int(flow.n_clipped), "seconds": time.perf_counter() - t0,
        "coords": {"tau": taus, "mode": np.arange(p)},
        "dims": {"train_loss": ["tau"], "test_loss": ["tau"], "escore": ["tau"], "gen_loss": ["tau"],
                 "spectrum": ["mode"]},
    }


def tasks(p: dict) -> list:
    common = {k: p[k] for k in _POINT_KEYS}
    return [Task(point, dict(common, psi_n=x, seed=s)) for x in p["psi_n"] for s in p["seeds"]]


def seed_bootstrap_slope(n, y, *, n_resamples: int = 9999, level: float = 0.95, seed: int = 0) -> dict:
    """Slope of ``mean_seeds log y`` against ``log n`` (least squares), and its percentile
    bootstrap interval resampling seeds (rows of ``y``, shape (seeds, len(n))) with
    ``scipy.stats.bootstrap``; NaN interval with one seed or non-finite y."""
    from scipy import stats

    ln = np.log(np.asarray(n, dtype=float))
    ly = np.log(np.asarray(y, dtype=float))
    xc = ln - ln.mean()

    def slope(rows):                                     # rows: (seeds drawn, len(n)) of log y
        m = rows.mean(axis=0)
        return float((m - m.mean()) @ xc / (xc @ xc))

    finite = bool(np.all(np.isfinite(ly)))
    out = {"slope": slope(ly) if finite else float("nan"), "ci_low": float("nan"), "ci_high": float("nan"),
           "level": level, "per_seed": [slope(r[None]) for r in ly]}
    if ly.shape[0] > 1 and finite:
        # resample seed indices (vectorized=False: the statistic sees one resample at a time)
        res = stats.bootstrap((np.arange(ly.shape[0]),), lambda i: slope(ly[i.astype(int)]),
                              vectorized=False, n_resamples=n_resamples, confidence_level=level,
                              method="percentile", random_state=seed)
        out["ci_low"], out["ci_high"] = float(res.confidence_interval.low), float(res.confidence_interval.high)
    return out


def reduce(p: dict, results: list):
    """Stack the points over (psi_n, seed); attrs: the slopes (JSON strings in the
    netCDF attributes) next to theory."""
    import json

    import xarray as xr

    psi_n, seeds = list(p["psi_n"]), list(p["seeds"])
    S = len(seeds)
    rows = [xr.concat(results[i * S:(i + 1) * S], dim="seed") for i in range(len(psi_n))]
    ds = xr.concat(rows, dim="psi_n").assign_coords(psi_n=np.asarray(psi_n, dtype=float),
                                                    seed=np.asarray(seeds))
    n = np.asarray(psi_n, dtype=float) * p["d"]
    ds = ds.assign_coords(n=("psi_n", n))
    fits = {}
    for name in ("tau_gen", "tau_mem"):
        fits[name] = seed_bootstrap_slope(n, ds[name].values.T)
    theo = ds["tau_mem_theory"].values.T
    fits["tau_mem_theory"] = seed_bootstrap_slope(n, theo[:1])        # deterministic in psi_n
    ds = _theory_density(ds, p)
    fits["tau_mem_density"] = seed_bootstrap_slope(n, ds["tau_mem_density"].values[None])
    ds.attrs.update({
        "tau_units": "paper: modes of U decay as exp(-2 Delta lambda tau/psi_p); tau_rfdiff = d^2 tau",
        "fits": json.dumps(fits),
        "slope_tau_gen": fits["tau_gen"]["slope"], "slope_tau_gen_ci": [fits["tau_gen"]["ci_low"],
                                                                        fits["tau_gen"]["ci_high"]],
        "slope_tau_mem": fits["tau_mem"]["slope"], "slope_tau_mem_ci": [fits["tau_mem"]["ci_low"],
                                                                        fits["tau_mem"]["ci_high"]],
        "slope_tau_mem_theory": fits["tau_mem_theory"]["slope"],
        "slope_tau_mem_density": fits["tau_mem_density"]["slope"],
        "theory_slope_tau_gen": 0.0, "theory_slope_tau_mem": 1.0,
        "d": int(p["d"]), "psi_p": float(p["psi_p"]), "t": float(p["t"]),
    })
    return ds


def _theory_density(ds, p: dict):
    """Add the theory's density of U (continuous part) on a common log grid ``theory_lam``
    for each psi_n, the edges of its memorization and population bulks and
    ``tau_mem_density`` (module docstring)."""
    import json

    c = th.theory_constants(p["t"], p["sigma_x"])
    psi_p = float(p["psi_p"])
    top = max(th.bulk_edges(c, psi_p, x)["population"][1] for x in p["psi_n"])
    lam = np.geomspace(c.s2 / 4.0, 4.0 * top, int(p["theory_grid"]))
    rho, edges, pieces = [], {k: [] for k in ("mem_lo", "mem_hi", "pop_lo", "pop_hi")}, {}
    for x in p["psi_n"]:
        r = th.spectral_density(c, psi_p, float(x), lam)
        on = r > 1e-4
        iv = []
        for i in np.flatnonzero(on):
            if iv and iv[-1][1] == lam[i - 1]:
                iv[-1][1] = lam[i]
            else:
                iv.append([lam[i], lam[i]])
        pieces[f"{float(x):g}"] = iv
        rho.append(r)
        pop = iv[-1] if iv else [np.nan, np.nan]
        mem = [iv[0][0], iv[-2][1]] if len(iv) > 1 else [np.nan, np.nan]
        for k, v in zip(("mem_lo", "mem_hi", "pop_lo", "pop_hi"), (*mem, *pop)):
            edges[k].append(v)
    ds = ds.assign_coords(theory_lam=lam)
    ds["theory_rho"] = (("psi_n", "theory_lam"), np.asarray(rho))
    for k, v in edges.items():
        ds[f"edge_density_{k}"] = ("psi_n", np.asarray(v, dtype=float))
    ds["tau_mem_density"] = ("psi_n", psi_p / (c.delta * ds["edge_density_mem_lo"].values))
    ds.attrs["density_support"] = json.dumps(pieces)
    ds.attrs["density_grid_ratio"] = float(lam[1] / lam[0])
    return ds


def summary(ds) -> dict:
    import json

    a = ds.attrs
    return {"slope_tau_gen": a["slope_tau_gen"], "slope_tau_gen_ci": list(np.atleast_1d(a["slope_tau_gen_ci"])),
            "slope_tau_mem": a["slope_tau_mem"], "slope_tau_mem_ci": list(np.atleast_1d(a["slope_tau_mem_ci"])),
            "slope_tau_mem_theory_finite_ratio": a["slope_tau_mem_theory"],
            "slope_tau_mem_density": json.loads(a["fits"])["tau_mem_density"]["slope"],
            "theory_asymptotic": {"tau_gen": 0.0, "tau_mem": 1.0},
            "tau_mem_over_theory": {f"{float(x):g}": float(np.nanmean(ds.tau_mem.sel(psi_n=x) /
                                                                      ds.tau_mem_theory.sel(psi_n=x)))
                                    for x in ds.psi_n.values}}


def plot(ds, stem):
    import json

    from .. import plotting as P

    fits = json.loads(ds.attrs["fits"])
    tau = ds.tau.values
    psi_n = ds.psi_n.values
    with P.style():
        fig, axes = P.subplots(2, 3, width=P.TEXT_WIDTH, height=4.6)
        ax = axes.ravel()
        cols = P.COLORS
        for i, x in enumerate(psi_n):
            sel = ds.sel(psi_n=x)
            col = cols[i % len(cols)]
            ax[0].plot(tau, sel.train_loss.mean("seed"), color=col, ls="--")
            ax[0].plot(tau, sel.test_loss.mean("seed"), color=col, label=f"$\\psi_n$={x:g}")
            ax[1].plot(tau, sel.escore.mean("seed"), color=col, label=f"$\\psi_n$={x:g}")
            g = sel.gen_loss.mean("seed")
            ax[3].plot(tau / float(sel.tau_mem_theory.mean()), P.positive(g / float(sel.gen_loss_inf.mean())),
                       color=col, label=f"$\\psi_n$={x:g}")
        ax[0].set(xscale="log", xlabel=r"$\tau$", ylabel="loss", title=r"$L_{train}$ (dashed), $L_{test}$")
        ax[0].legend(fontsize=5.5)
        ax[1].set(xscale="log", yscale="log", xlabel=r"$\tau$", ylabel=r"$E_{score}$", title="score error")
        n = ds.n.values
        for name, mk, col in (("tau_gen", "o", cols[0]), ("tau_mem", "s", cols[1])):
            v = ds[name].values
            ax[2].plot(np.repeat(n, v.shape[1]), v.ravel(), mk, color=col, alpha=0.6, ms=3)
            f = fits[name]
            ax[2].plot(n, np.exp(np.nanmean(np.log(v), axis=1)), "-", color=col,
                       label=f"{name}: " + P.fit_label(f, theory="0" if name == "tau_gen" else "1"))
        ax[2].plot(n, ds.tau_mem_theory.isel(seed=0), "k:",
                   label=f"theory $\\psi_p/(\\Delta\\lambda_{{min}})$ (slope {fits['tau_mem_theory']['slope']:.2f})")
        ax[2].plot(n, ds.tau_mem_density, "k--", lw=0.8,
                   label=f"same, $\\lambda$ = density edge (slope {fits['tau_mem_density']['slope']:.2f})")
        ax[2].set(xscale="log", yscale="log", xlabel="n", ylabel=r"$\tau$", title="times vs n")
        P.data_ticks(ax[2], n)
        ax[2].legend(fontsize=5)
        ax[3].set(xscale="log", yscale="log", xlabel=r"$\tau/\tau_{mem}^{theory}$",
                  ylabel=r"$L_{gen}/L_{gen}(\infty)$", title="collapse?")
        ax[3].axvline(1.0, color="k", lw=0.5, ls=":")
        for k, x in enumerate((psi_n[0], psi_n[-1])):
            sel = ds.sel(psi_n=x).isel(seed=0)
            a = ax[4 + k]
            ev = np.clip(sel.spectrum.values, 1e-6, None)
            counts, bins, _ = a.hist(np.log10(ev), bins=80, color=cols[2], alpha=0.7, label="exact U")
            lam = ds.theory_lam.values
            rho = ds.theory_rho.sel(psi_n=x).values
            width = bins[1] - bins[0]                    # counts per bin of log10 lambda
            a.plot(np.log10(lam), np.clip(rho, 0, None) * lam * np.log(10) * width * ev.size, color="k",
                   lw=0.8, label="theory density")
            for e in ("mem_lo", "mem_hi", "pop_lo", "pop_hi"):
                a.axvline(np.log10(float(ds[f"edge_density_{e}"].sel(psi_n=x))), color="k", lw=0.6)
            for e in (sel.edge_memorization_lo, sel.edge_memorization_hi,
                      sel.edge_population_lo, sel.edge_population_hi):
                a.axvline(np.log10(float(e)), color=cols[1], lw=0.7, ls="--")
            a.axvline(np.log10(float(sel.s2)), color=cols[3], lw=0.7, ls=":")
            a.set(yscale="log", ylim=(0.8, None), xlabel=r"$\log_{10}\lambda(U)$", ylabel="count",
                  title=f"spectrum of U, $\\psi_n$={x:g} (seed {int(sel.seed)})")
        ax[4].text(0.02, 0.97, "edges: density (black), leading order (dashed);\n"
                   "$s_t^2$ (dotted); atom at $s_t^2$ not drawn", transform=ax[4].transAxes, fontsize=5, va="top")
        ax[5].legend(fontsize=5, loc="upper center")
        P.label_panels(ax)
        fig.suptitle(f"pre-memorization (exact in the noise): d = {ds.attrs['d']}, "
                     f"$\\psi_p$ = {ds.attrs['psi_p']:g}, t = {ds.attrs['t']:g}", fontsize=7)
        return P.save_figure(fig, ds, stem)


EXPERIMENT = Experiment(
    name=NAME, title=TITLE, presets=PRESETS, tasks=tasks, reduce=reduce, plot=plot, summary=summary,
    regime="high-dimensional, one noise level: tanh random features without bias or time input, "
           "d, p = psi_p d and n = psi_n d proportional (quick: d = 40, psi_p = 32, psi_n = 1..16, t = 0.1; "
           "full: d = 100, psi_p = 64, psi_n = 1..32), target N(0, I_d), exact in the noise")
