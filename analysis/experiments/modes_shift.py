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

For the Swish nets the same three parts are judged per net seed and on the
seed-mean KL (``best_epoch_mu*``: the argmin of the seed-mean KL; ``degrades`` and
``collapse``: in every seed that trained; a seed whose training diverged is
recorded as diverged, with NaN values, and left out of the means).

Points: one random-feature flow per mu (:func:`rf_point`) and one Swish net
per (main mu, optimizer, net seed) (:func:`net_point`).
"""
from __future__ import annotations

import time

import numpy as np

import rfdiff as rf
from rfdiff import two_modes
from rfdiff.run import Experiment, Task, point_function

from . import _common as c

NAME = "modes-shift"
TITLE = "Modes shift: two modes at distance 2 mu"

_BASE = dict(q1=0.5, n=1000, seed=0, data_seed=0, t_min=1e-3, T=8.0, weighting="sigma2",
             tau_lo=0.0, tau_hi=14.0, per_decade=2, kl_tol=5e-3,
             mode_threshold=0.1, mode_smoothing=0.5, collapse_mass=0.25, plot_h=0.05, ranges={"3": 10.0, "15": 30.0},
             density_atol=1e-4)
_NET = dict(width=128, batch_size=100, weighting="sigma", optimizers={"adam": 1e-3, "sgd": 0.5},
            kl_tol=1e-3, seeds=[0, 1, 2])
PAPER_EPOCHS = 2000     # seed 000's Swish nets: 2000 epochs

PRESETS = {
    "tiny": dict(_BASE, mus=[3.0, 15.0], main_mus=[3.0, 15.0], m=128, n=200, n_time=16, per_decade=1,
                 tau_hi=12.0, kl_tol=2e-2,
                 net=dict(_NET, seeds=[0], epochs=3, n_checkpoints=3, width=32, optimizers={"adam": 1e-3})),
    "quick": dict(_BASE, mus=[1.5, 3.0, 6.0, 10.0, 15.0], main_mus=[3.0, 15.0], m=512, n_time=128,
                  net=dict(_NET, epochs=200, n_checkpoints=5)),
    "full": dict(_BASE, mus=[1.5, 3.0, 4.5, 6.0, 7.5, 9.0, 12.0, 15.0], main_mus=[3.0, 15.0], m=2048,
                 n_time=256, per_decade=4, kl_tol=1e-3,
                 net=dict(_NET, epochs=2000, n_checkpoints=40)),
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


def _plot_grid(plot_range: float, plot_h: float) -> np.ndarray:
    return np.arange(-plot_range, plot_range + plot_h / 2, plot_h)


def _plot_range(mu: float, p: dict) -> float:
    """The paper's plot range for ``mu`` (``ranges``), else ``max(10, 2 mu)``."""
    return float(p["ranges"].get(f"{mu:g}", max(10.0, 2 * mu)))


def _early_index(kl, best: int) -> int:
    """The first index where log KL is half-way from its start to its minimum ``kl[best]``."""
    level = np.exp(0.5 * (np.log(kl[0]) + np.log(kl[best])))
    return int(np.flatnonzero(kl[:best + 1] <= level)[0])


def _early(taus, kl, es):
    return float(taus[_early_index(kl, es["index"])])


@point_function
def rf_point(*, mu: float, q1: float, n: int, m: int, seed: int, data_seed: int, n_time: int, t_min: float,
             T: float, weighting: str, tau_lo: float, tau_hi: float, per_decade: float, kl_tol: float,
             mode_threshold: float, mode_smoothing: float, plot_h: float, density_atol: float,
             plot_range: float = 0.0, quadrature: bool = False) -> dict:
    """One mu, random-feature flow: the KL curve, tau* (``tau_star_lo``..``tau_star_hi``:
    where it may lie given the KL errors), the modes and the mass on x < 0 along training;
    with ``plot_range > 0`` also ``p_0`` and ``p_gen`` at the three snapshots on
    ``[-plot_range, plot_range]``. ``seed`` draws the features, ``data_seed`` the data;
    ``quadrature``: also record the time rule's error."""
    from rfdiff import OU

    t0 = time.perf_counter()
    target = two_modes(mu, q1)
    flow, problem, _ = c.rf_flow(target, n, m, seed=seed, data_seed=data_seed, n_time=n_time, t_min=t_min, T=T,
                                 weighting=weighting)
    taus = c.tau_grid(tau_lo, tau_hi, per_decade)
    kl = c.flow_kl(flow, taus, target, tol=kl_tol)
    es = c.early_stopping(taus, kl["value"], kl["error"])
    # modes along the whole trajectory: p_gen on a grid over the means +- 8 sd
    z = np.arange(-(mu + 8.0), mu + 8.0 + plot_h / 2, plot_h)
    dens = c.density_on_grid(rf.model.make_batch(model=flow.model, A=flow.params(taus)), z, atol=density_atol,
                             t_min=t_min, T=T)
    st = [mode_stats(z, d, mode_threshold, mode_smoothing) for d in dens]
    snaps = np.array([_early(taus, kl["value"], es), es["tau_grid"], taus[-1]])
    out = {"kl_ode": kl["value"], "kl_ode_error": kl["error"], "pgen_mass": dens.sum(axis=1) * (z[1] - z[0]),
           "tau_star": es["tau_star"], "tau_best": es["tau_grid"], "kl_star": es["kl_grid"],
           "kl_star_error": es["kl_grid_error"], "tau_star_lo": es["tau_lo"], "tau_star_hi": es["tau_hi"],
           "interior": bool(es["interior"]), "mode_position": np.array([s[0] for s in st]),
           "n_modes": np.array([s[1] for s in st]), "mass_left": np.array([s[2] for s in st]),
           "snapshot_tau": snaps, **c.scalar_outputs(problem.model.describe(), "model_")}
    dims = {"kl_ode": ["tau"], "kl_ode_error": ["tau"], "pgen_mass": ["tau"], "mode_position": ["tau", "mode"],
            "n_modes": ["tau"], "mass_left": ["tau"], "snapshot_tau": ["snapshot"]}
    if plot_range > 0:
        zp = _plot_grid(plot_range, plot_h)
        out["z"] = zp
        out["density_rf"] = c.density_on_grid(rf.model.make_batch(model=flow.model, A=flow.params(snaps)), zp,
                                              atol=density_atol, t_min=t_min, T=T)
        out["p0"] = np.exp(target.log_pt(zp[:, None], 0.0, OU()))
        dims.update(z=["zi"], density_rf=["snapshot", "zi"], p0=["zi"])
    if quadrature:
        out.update(c.scalar_outputs(c.quadrature_check(problem), "quadrature_"))
    out["seconds"] = time.perf_counter() - t0
    out["coords"] = {"tau": taus, "mode": np.arange(MAX_MODES), "snapshot": SNAPSHOTS}
    out["dims"] = dims
    return out


SNAPSHOTS = ["early", "best", "late"]


@point_function
def net_point(*, mu: float, optimizer: str, lr: float, seed: int, q1: float, n: int, data_seed: int,
              width: int, epochs: int, batch_size: int, weighting: str, n_checkpoints: int, kl_tol: float,
              t_min: float, T: float, plot_range: float, plot_h: float, density_atol: float,
              mode_threshold: float, mode_smoothing: float) -> dict:
    """One mu, one Swish net (``optimizer`` at ``lr``, net seed ``seed``, data of
    ``data_seed``): KL per checkpoint; densities and modes at the early, best and last
    checkpoints (chosen as for the flow). A diverging run (SGD at lr 0.5 may, for large
    mu) is recorded in ``note`` with NaN values."""
    t0 = time.perf_counter()
    target = two_modes(mu, q1)
    x = target.sample(n, seed=data_seed)
    epochs = int(epochs)
    ck = np.unique(np.round(np.linspace(0, epochs, n_checkpoints + 1)).astype(int))
    zp = _plot_grid(plot_range, plot_h)
    kl = np.full(ck.size, np.nan)
    err = np.full(ck.size, np.nan)
    dens = np.full((3, zp.size), np.nan)
    snap = np.zeros(3, dtype=np.int64)
    note = "ok"
    try:
        h = c.train_swish(x, optimizer=optimizer, lr=lr, seed=seed, width=width, epochs=epochs,
                          batch_size=batch_size, weighting=weighting, checkpoint_epochs=ck, t_min=t_min, T=T)
        scores = [h.score_at(int(s)) for s in h.steps]
        for k, sc in enumerate(scores):
            kl[k], err[k], _ = c.kl_smooth(sc, target, tol=kl_tol, t_min=t_min, T=T)
        best = int(np.argmin(kl))
        snap[:] = [_early_index(kl, best), best, ck.size - 1]
        dens = c.density_on_grid([scores[k] for k in snap], zp, atol=density_atol, t_min=t_min, T=T)
    except (FloatingPointError, RuntimeError) as exc:    # SGD at lr 0.5 may diverge for large mu
        note = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
    st = [mode_stats(zp, d, mode_threshold, mode_smoothing) if np.all(np.isfinite(d)) else
          (np.full(MAX_MODES, np.nan), -1, np.nan) for d in dens]
    return {"kl": kl, "kl_error": err, "density": dens, "mode_position": np.array([s[0] for s in st]),
            "n_modes": np.array([s[1] for s in st]), "mass_left": np.array([s[2] for s in st]),
            "snapshot_epoch": ck[snap], "note": note, "seconds": time.perf_counter() - t0,
            "coords": {"epoch": ck, "snapshot": SNAPSHOTS, "mode": np.arange(MAX_MODES)},
            "dims": {"kl": ["epoch"], "kl_error": ["epoch"], "density": ["snapshot", "zi"],
                     "mode_position": ["snapshot", "mode"], "n_modes": ["snapshot"], "mass_left": ["snapshot"],
                     "snapshot_epoch": ["snapshot"]}}


_RF_KEYS = ("q1", "n", "m", "seed", "data_seed", "n_time", "t_min", "T", "weighting", "tau_lo", "tau_hi",
            "per_decade", "kl_tol", "mode_threshold", "mode_smoothing", "plot_h", "density_atol")


def _mus(p: dict) -> tuple:
    """``(sweep mus, main mus, every mu in increasing order)``."""
    mus = [float(m) for m in p["mus"]]
    main = [float(m) for m in p["main_mus"]]
    return mus, main, sorted(set(mus) | set(main))


def tasks(p: dict) -> list:
    """One flow point per mu (the main mus with snapshot densities, the largest mu with
    the quadrature check), then one Swish net per (main mu, optimizer, net seed)."""
    mus, main, every = _mus(p)
    q = p["net"]
    rf_common = {k: p[k] for k in _RF_KEYS}
    out = [Task(rf_point, dict(rf_common, mu=mu, plot_range=_plot_range(mu, p) if mu in main else 0.0,
                               quadrature=mu == max(every))) for mu in every]
    net = dict(q1=p["q1"], n=p["n"], data_seed=p["data_seed"], width=q["width"],
               epochs=q["epochs"], batch_size=q["batch_size"], weighting=q["weighting"],
               n_checkpoints=q["n_checkpoints"], kl_tol=q["kl_tol"], t_min=p["t_min"], T=p["T"],
               plot_h=p["plot_h"], density_atol=p["density_atol"], mode_threshold=p["mode_threshold"],
               mode_smoothing=p["mode_smoothing"])
    out += [Task(net_point, dict(net, mu=mu, optimizer=opt, lr=lr, seed=int(s), plot_range=_plot_range(mu, p)))
            for mu in main for opt, lr in q["optimizers"].items() for s in q["seeds"]]
    return out


def _flow_summary(r) -> dict:
    """What the verdict reads of one flow point."""
    get = lambda k: r[k].values  # noqa: E731
    return dict(taus=r["tau"].values, kl=get("kl_ode"), kl_error=get("kl_ode_error"),
                tau_star=float(r["tau_star"]), tau_best=float(r["tau_best"]), kl_star=float(r["kl_star"]),
                kl_star_error=float(r["kl_star_error"]), tau_lo=float(r["tau_star_lo"]),
                tau_hi=float(r["tau_star_hi"]), mass_left=get("mass_left"), n_modes=get("n_modes"))


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


def _finite_seeds(runs) -> list:
    """Which seeds' runs trained (any finite KL); the others diverged."""
    return [bool(np.any(np.isfinite(r["kl"]))) for r in runs]


def _net_verdict(ck, nets, seeds, p):
    """The paper's observation on the Swish nets, per optimizer: ``nets[a][opt]`` is the
    list over ``seeds`` of one main mu's (3, then 15) runs. Best epochs on the seed-mean
    KL of the seeds that trained (and per seed, -1 where diverged); ``degrades`` and
    ``collapse`` must hold in every seed that trained; diverged seeds are named in ``note``."""
    out = {}
    tags = ("3", "15")
    for opt in nets[0]:
        runs = {tag: nets[a][opt] for a, tag in enumerate(tags)}
        ok = {tag: _finite_seeds(runs[tag]) for tag in tags}
        bad = [f"mu={tag} seed {s}: {r['note']}" for tag in tags for s, r, o in zip(seeds, runs[tag], ok[tag])
               if not o]
        if bad:
            out[f"{opt}_note"] = "diverged: " + "; ".join(bad)
        for tag in tags:
            out[f"{opt}_n_seeds_trained_mu{tag}"] = int(sum(ok[tag]))
            out[f"{opt}_best_epoch_mu{tag}_per_seed"] = [int(ck[np.nanargmin(r["kl"])]) if o else -1
                                                        for r, o in zip(runs[tag], ok[tag])]
        if not (any(ok["3"]) and any(ok["15"])):
            continue
        mean = {tag: np.mean([r["kl"] for r, o in zip(runs[tag], ok[tag]) if o], axis=0) for tag in tags}
        b3, b15 = int(np.nanargmin(mean["3"])), int(np.nanargmin(mean["15"]))
        out[f"{opt}_best_epoch_mu3"] = int(ck[b3])
        out[f"{opt}_best_epoch_mu15"] = int(ck[b15])
        out[f"{opt}_best_earlier"] = bool(ck[b15] < ck[b3])
        r15 = [r for r, o in zip(runs["15"], ok["15"]) if o]
        deg, col, lighter, n_modes = [], [], [], []
        for r in r15:
            b = int(np.nanargmin(r["kl"]))
            deg.append(bool(r["kl"][-1] - r["kl"][b] > r["kl_error"][-1] + r["kl_error"][b]))
            lighter.append(float(min(r["mass_left"][2], 1 - r["mass_left"][2])))
            n_modes.append(int(r["n_modes"][2]))
            col.append(bool(n_modes[-1] < 2 or lighter[-1] < p["collapse_mass"]))
        out[f"{opt}_degrades_mu15"] = bool(all(deg))
        out[f"{opt}_late_n_modes_mu15"] = n_modes
        out[f"{opt}_late_lighter_mass_mu15"] = lighter
        out[f"{opt}_collapse_mu15"] = bool(all(col))
        out[f"{opt}_paper_observation_holds"] = bool(out[f"{opt}_best_earlier"] and out[f"{opt}_degrades_mu15"]
                                                     and out[f"{opt}_collapse_mu15"])
    return out


_NET_VARS = {"kl": "epoch", "kl_error": "epoch", "snapshot_epoch": "snapshot", "mode_position": ("snapshot", "mode"),
             "n_modes": "snapshot", "mass_left": "snapshot"}


def _net_data(p: dict, main: list, net_res: list, zmax: int):
    """The nets' results (in :func:`tasks`' order: main mu, optimizer, net seed) as data
    variables over ``(main_mu, optimizer, net_seed, ...)``, their epochs and the verdict
    (``None`` unless the main mus are 3 and 15)."""
    opts, seeds = list(p["net"]["optimizers"]), [int(s) for s in p["net"]["seeds"]]
    if len(net_res) != len(main) * len(opts) * len(seeds):
        raise ValueError(f"net results: {len(net_res)}, expected one per (main mu, optimizer, seed) = "
                         f"{len(main) * len(opts) * len(seeds)}")
    net = lambda a, b, s: net_res[(a * len(opts) + b) * len(seeds) + s]  # noqa: E731
    idx = [(a, b, s) for a in range(len(main)) for b in range(len(opts)) for s in range(len(seeds))]
    shape = (len(main), len(opts), len(seeds))
    head = ("main_mu", "optimizer", "net_seed")
    data = {}
    for k, tail in _NET_VARS.items():
        tail = (tail,) if isinstance(tail, str) else tail
        data[f"net_{k}"] = (head + tail, np.array([net(*i)[k].values for i in idx]).reshape(
            shape + net(0, 0, 0)[k].shape))
    dens = np.full(shape + (3, zmax), np.nan)
    for i in idx:
        v = net(*i)["density"].values
        dens[i + (Ellipsis, slice(0, v.shape[-1]))] = v
    data["net_density"] = (head + ("snapshot", "zi"), dens)
    kl = data["net_kl"][1]
    ok = np.any(np.isfinite(kl), axis=-1)
    data["net_diverged"] = (head, (~ok).astype(np.int8))
    data["net_best_kl"] = (head, np.where(ok, np.nanmin(np.where(ok[..., None], kl, np.inf), axis=-1), np.nan))
    ck = net_res[0]["epoch"].values
    data["net_best_epoch"] = (head, np.where(ok, ck[np.argmin(np.where(np.isfinite(kl), kl, np.inf), axis=-1)], -1))
    notes = {f"mu{mu:g}_{o}_seed{s}": str(net(a, b, j)["note"].values)
             for a, mu in enumerate(main) for b, o in enumerate(opts) for j, s in enumerate(seeds)}
    verdict = None
    if main == [3.0, 15.0]:
        runs = [{o: [dict(kl=net(a, b, j)["kl"].values, kl_error=net(a, b, j)["kl_error"].values,
                          mass_left=net(a, b, j)["mass_left"].values, n_modes=net(a, b, j)["n_modes"].values,
                          note=str(net(a, b, j)["note"].values)) for j in range(len(seeds))]
                 for b, o in enumerate(opts)} for a in range(len(main))]
        verdict = _net_verdict(ck, runs, seeds, p)
    return data, ck, seeds, notes, verdict


def reduce(p: dict, results: list):
    """The flow over (mu, tau), the snapshot densities over (main mu, snapshot), the
    nets over (main mu, optimizer, net seed); attrs: the verdicts on the paper's
    observation, ``net_epochs`` (the nets' training length)."""
    import xarray as xr

    mus, main, every = _mus(p)
    opts = list(p["net"]["optimizers"])
    rf_res = dict(zip(every, results[:len(every)]))
    net_res = results[len(every):]
    rf = {mu: _flow_summary(r) for mu, r in rf_res.items()}
    zmax = max(rf_res[mu]["z"].size for mu in main)

    def padded(values, shape):
        out = np.full(shape + (zmax,), np.nan)
        for idx, v in values:
            out[idx + (Ellipsis, slice(0, v.shape[-1]))] = v
        return out

    z_main = padded([((a,), rf_res[mu]["z"].values) for a, mu in enumerate(main)], (len(main),))
    p0 = padded([((a,), rf_res[mu]["p0"].values) for a, mu in enumerate(main)], (len(main),))
    dens_rf = padded([((a,), rf_res[mu]["density_rf"].values) for a, mu in enumerate(main)], (len(main), 3))
    per_mu = lambda k, dtype=None: np.array([rf_res[m][k].values for m in mus], dtype=dtype)  # noqa: E731
    data = {
        "kl_ode": (("mu", "tau"), per_mu("kl_ode")),
        "kl_ode_error": (("mu", "tau"), per_mu("kl_ode_error")),
        "pgen_mass": (("mu", "tau"), per_mu("pgen_mass")),
        "tau_star": ("mu", per_mu("tau_star")),
        "tau_lo": ("mu", per_mu("tau_star_lo")),
        "tau_hi": ("mu", per_mu("tau_star_hi")),
        "kl_star": ("mu", per_mu("kl_star")),
        "kl_star_error": ("mu", per_mu("kl_star_error")),
        "interior": ("mu", per_mu("interior", np.int8)),
        "mode_position": (("mu", "tau", "mode"), per_mu("mode_position")),
        "n_modes": (("mu", "tau"), per_mu("n_modes")),
        "mass_left": (("mu", "tau"), per_mu("mass_left")),
        "z": (("main_mu", "zi"), z_main),
        "p0": (("main_mu", "zi"), p0),
        "density_rf": (("main_mu", "snapshot", "zi"), dens_rf),
        "snapshot_tau": (("main_mu", "snapshot"), np.array([rf_res[mu]["snapshot_tau"].values for mu in main])),
    }
    net_data, ck, seeds, notes, net_verdict = _net_data(p, main, net_res, zmax)
    data.update(net_data)
    ds = xr.Dataset(data, coords={"mu": mus, "tau": rf_res[mus[0]]["tau"].values, "mode": np.arange(MAX_MODES),
                                  "main_mu": main, "snapshot": SNAPSHOTS, "optimizer": opts, "net_seed": seeds,
                                  "epoch": ck})
    attrs = {"seconds_rf": float(sum(float(r["seconds"]) for r in rf_res.values())),
             "seconds_net": float(sum(float(r["seconds"]) for r in net_res)),
             "model": c.outputs_as_attrs(rf_res[mus[0]], "model_"),
             "quadrature_error": c.outputs_as_attrs(rf_res[max(every)], "quadrature_"),
             "modes_definition": f"local maxima of p_gen smoothed by a Gaussian of sd {p['mode_smoothing']}, "
                                 f">= {p['mode_threshold']} x its maximum",
             "snapshots": "early = first tau with log KL half-way to its minimum, best = tau* (grid), "
                          "late = last tau",
             "kinks_note": "ReLU kinks sit at -b_j(t)/W_j, Cauchy-distributed around 0: few features "
                           "have kinks near +-15; defaults (w_scale = u_scale = 1) kept",
             "net_epochs": int(p["net"]["epochs"]), "net_lrs": [float(v) for v in p["net"]["optimizers"].values()], "net_paper_epochs": PAPER_EPOCHS,
             "net_notes": notes}
    if 3.0 in rf and 15.0 in rf:
        attrs["rf_verdict"] = _verdict(rf[3.0], rf[15.0], p)
    if net_verdict is not None:
        attrs["net_verdict"] = net_verdict
    ds.attrs.update(c.netcdf_attrs(attrs))
    return ds


def _mean_spread(x) -> tuple:
    """``(mean, min, max, count)`` of the finite values of ``x`` (NaNs where none)."""
    x = np.asarray(x, dtype=float)
    x = x[np.isfinite(x)]
    if not x.size:
        return (np.nan, np.nan, np.nan, 0)
    return (float(x.mean()), float(x.min()), float(x.max()), int(x.size))


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
    out["Swish: epochs (paper)"] = (int(a["net_epochs"]), int(a["net_paper_epochs"]))
    for mu in ds.main_mu.values:
        for opt in ds.optimizer.values:
            d = ds.sel(main_mu=mu, optimizer=opt)
            ep = np.where(d.net_diverged.values == 1, np.nan, d.net_best_epoch.values)
            out[f"Swish {opt}, mu={mu:g}: best epoch per seed (mean, min, max, seeds trained)"] = _mean_spread(ep)
            out[f"Swish {opt}, mu={mu:g}: best KL per seed (mean, min, max, seeds trained)"] = \
                _mean_spread(d.net_best_kl.values)
            out[f"Swish {opt}, mu={mu:g}: final KL per seed (mean, min, max, seeds trained)"] = \
                _mean_spread(d.net_kl.values[:, -1])
    for k, v in a.items():
        if k.startswith("net_verdict_") and ("holds" in k or "best_epoch" in k or "collapse" in k or "note" in k):
            out[f"Swish: {k[len('net_verdict_'):]}"] = v
    return out


def _epochs_label(ds) -> str:
    a = ds.attrs
    return f"{int(a['net_epochs'])} epochs (paper: {int(a['net_paper_epochs'])})"


def _epoch_range(e) -> str:
    e = np.asarray(e)[np.asarray(e) >= 0]
    return f"{e.min()}" if e.min() == e.max() else f"{e.min()}-{e.max()}"


def plot(ds, stem):
    from .. import plotting as P

    n_seeds = ds.net_seed.size
    with P.style():
        fig, axes = P.subplots(4, 2, height=8.0)
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
            # (c, d): Swish net, first optimizer: each seed's snapshot densities, mean and min-max
            ax = axes[1, a]
            ax.plot(z[ok], ds.p0.values[a][ok], color="0.6", lw=2.2, label="$p_0$")
            trained = ds.net_diverged.values[a, 0] == 0
            if np.any(trained):
                for s, snap in enumerate(ds.snapshot.values):
                    dens = ds.net_density.values[a, 0, trained, s][:, ok]
                    ep = ds.net_snapshot_epoch.values[a, 0, trained, s]
                    P.band(ax, z[ok], dens.mean(axis=0), dens.min(axis=0), dens.max(axis=0), color=colors[snap],
                           label=f"{snap}: epoch {_epoch_range(ep)}")
            ax.set_title(f"({'cd'[a]}) Swish ({ds.optimizer.values[0]}), $\\mu$={mu:g}\n{_epochs_label(ds)}",
                         loc="left", fontsize=7)
            ax.set(xlabel="x", ylabel="density" if a == 0 else None, xlim=(z[ok][0], z[ok][-1]))
            ax.legend(loc="upper center", fontsize=5.5)
            # (g, h): Swish nets' KL along training, every optimizer, mean and min-max over seeds
            ax = axes[3, a]
            ep = ds.epoch.values
            for b, opt in enumerate(ds.optimizer.values):
                kl = ds.net_kl.values[a, b]
                tr = ds.net_diverged.values[a, b] == 0
                lr = float(np.atleast_1d(ds.attrs["net_lrs"])[b])
                label = f"{opt.upper() if opt == 'sgd' else 'Adam'} {lr:g}"
                if not np.any(tr):
                    ax.plot([], [], color=P.COLORS[3 + b], label=f"{label}: diverged {n_seeds}/{n_seeds}")
                    continue
                if not np.all(tr):
                    label += f" ({int((~tr).sum())}/{n_seeds} diverged)"
                k = kl[tr]
                P.band(ax, ep, P.positive(k.mean(axis=0)), P.positive(k.min(axis=0)), P.positive(k.max(axis=0)),
                       label=label, marker="o", markersize=2, color=P.COLORS[3 + b])
            ax.set(yscale="log", xlabel="epoch", ylabel="KL over seeds:\nmean, min-max" if a == 0 else None)
            ax.set_title(f"({'gh'[a]}) Swish KL, $\\mu$={mu:g}, {n_seeds} seed{'s' * (n_seeds > 1)}\n"
                         f"{_epochs_label(ds)}", loc="left", fontsize=7)
            ax.legend(loc="upper right", fontsize=5)
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


EXPERIMENT = Experiment(name=NAME, title=TITLE, presets=PRESETS, tasks=tasks, reduce=reduce, plot=plot,
                        summary=summary,
                        regime="1D: q1 N(-mu, 1) + q2 N(mu, 1), mu = 1.5..15, full-time random-feature flow "
                               "(ReLU features, n = 1000, m = 512..2048) and the paper's one-hidden-layer "
                               "Swish net on the same data")
