"""Figure ``reproducibility`` (seed 003): do two models trained on the same data map
the same noise to the same sample?

Target: a mixture of K low-rank Gaussians on *disjoint* orthonormal blocks,
``x = U_k a``, ``a ~ N(0, I_r)``, ``[U_1 .. U_K]`` the Q factor of a seeded
Gaussian d x (K r) matrix (so ``K r <= d``), equal weights, OU process.
The data scale is ``sqrt(E|x|^2) = sqrt(r)``; every distance below is in
that unit.

For each training-set size N, seed and family (``model``):

- ``"rf"``: two random-feature models (ReLU, m features, ``W ~ N(0, 1/d)``),
  identical except for the seed of their frozen ``W, U``, trained by the
  closed-form gradient flow (:class:`rfdiff.ScoreMatching`, rows method) on the
  same N points; read at convergence (``tau = inf``, the minimum-norm
  least-squares limit) and at the early-stopping time ``tau*`` (the grid
  minimiser of the pair's mean population score error);
- ``"mlp"``: two one-hidden-layer Swish MLPs (:class:`rfdiff.torch.MLPScore`)
  with different init seeds, trained by Adam on the Monte-Carlo denoising loss
  of the same N points (same batch/noise draws); a run with a non-finite loss
  is recorded as diverged (NaN metrics);
- ``"empirical"``: the empirical optimal score of the N points (memorisation
  extreme), ``"true"``: the score of the mixture (generalisation extreme);
  the "pair" is the score with itself, sampled twice.

Sampling: the same ``n_samples`` prior draws for every model of a point, Heun's
method on the probability-flow ODE (log-spaced times from T to t_min), then one
Tweedie denoising step ``x_0 = (x + sigma^2 s(x, t_min)) / alpha`` at t_min.

Metrics (``rfdiff.metrics``):

- pair distance ``D_i = |a_i - b_i| / sqrt(r)``; **RP** = fraction with
  ``D_i < threshold`` (default 0.1), binomial standard error;
- **GL** = 1 - fraction of samples of model a that copy a training point,
  *copy* meaning nearest / second-nearest training distance ``< copy_ratio``
  (1/3; :func:`rfdiff.metrics.memorization_fraction`; for N = 1, a distance
  below the threshold). ``gl_threshold``: the alternative, copy = nearest
  training point within the threshold. For fresh draws of an r-dimensional
  Gaussian the ratio criterion flags a fraction ~ ``copy_ratio^r`` by chance;
- distance of model a's samples to the empirical-optimal and to the true-score
  samples from the same noise (median, and the fraction within threshold);
- **score error** ``E = avg_t sigma_t^2 E_{p_t}|s - grad log p_t|^2``, the time
  average over ``[t_min, T]`` (Gauss-Legendre in log t, ``n_score_time``
  nodes, ``n_score_mc`` fixed draws of p_t per node; standard error from the
  draws); mean of the two models of the pair. For ``"rf"`` also along training:
  twice :meth:`rfdiff.Flow.population_loss`, the same quantity by the flow's
  own population rows, on a grid of ``tau lambda_max``.
"""
from __future__ import annotations

import math
import time

import numpy as np

import rfdiff as rf
from rfdiff.metrics import generalizability, memorization_fraction, reproducibility
from rfdiff.numerics.quadrature import log_time_grid
from rfdiff.run import Experiment, Task, point_function

from . import _common as c
from ._threads import threads

NAME = "reproducibility"
TITLE = "Reproducibility and generalizability of model pairs vs the training-set size"
MODELS = ("rf", "mlp", "empirical", "true")
#: the training-time grid of the RF flow, in units of 1/lambda_max (log10 exponents)
TAU_EXPONENTS = np.arange(-1.0, 12.01, 0.5)


def _n_grid(lo, hi, k):
    return sorted({int(round(x)) for x in np.geomspace(lo, hi, k)})


_BASE = dict(K=2, m=512, n_eps=16, n_time=32, t_min=1e-3, T=8.0, n_steps=96,
             n_samples=1000, threshold=0.1, copy_ratio=1.0 / 3.0, rf_parametrization="score", mlp_width=128, mlp_steps=1500,
             mlp_lr=2e-3, mlp_batch=256, n_score_time=12, n_score_mc=1024, n_keep=200)

PRESETS = {
    "tiny": dict(_BASE, models=list(MODELS), d=6, r_values=[2], N_values=[2, 12], seeds=[0], m=128, n_samples=200,
                 n_steps=48, mlp_width=32, mlp_steps=150, n_score_time=6, n_score_mc=256,
                 n_keep=50),
    "quick": dict(_BASE, models=list(MODELS), d=16, r_values=[2, 4, 7], N_values=_n_grid(2, 320, 7), seeds=[0, 1],
                  m=256, n_eps=8, n_steps=64, mlp_width=64, mlp_steps=800, mlp_batch=128, n_score_time=10,
                  n_score_mc=512),
    "full": dict(_BASE, models=list(MODELS), d=48, r_values=[2, 4, 7], N_values=_n_grid(2, 960, 12), seeds=[0, 1, 2], m=4096,
                 n_eps=8, n_time=32, n_samples=2000, mlp_width=256, mlp_steps=6000, n_score_mc=4096),
}


# -- set-up ----------------------------------------------------------------------------
def check_params(N, d, K, r, threshold, model="rf"):
    """One ValueError naming the first bad parameter and its allowed range."""
    for name, val in (("N", N), ("d", d), ("K", K), ("r", r)):
        if isinstance(val, bool) or not isinstance(val, (int, np.integer)) or val < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {val!r}")
    if r > d:
        raise ValueError(f"r must be <= d (the rank of a component), got r={r}, d={d}")
    if K * r > d:
        raise ValueError(f"K*r must be <= d (K disjoint r-dimensional blocks), got K={K}, r={r}, d={d}")
    if not (isinstance(threshold, (int, float)) and math.isfinite(threshold) and threshold > 0):
        raise ValueError(f"threshold must be a finite number > 0, got {threshold!r}")
    if model not in MODELS:
        raise ValueError(f"model must be one of {MODELS}, got {model!r}")


def block_mixture(d: int, K: int, r: int, seed: int = 0) -> rf.LowRankMixture:
    """``sum_k N(0, U_k U_k^T)/K`` with ``[U_1 .. U_K]`` = Q factor (sign-fixed) of a seeded
    Gaussian d x (K r) matrix: K mutually orthogonal r-dimensional subspaces."""
    check_params(1, d, K, r, 1.0)
    q, rr = np.linalg.qr(np.random.default_rng(seed).standard_normal((d, K * r)))
    q = q * np.sign(np.diag(rr))
    return rf.LowRankMixture(np.ascontiguousarray(q.reshape(d, K, r).transpose(1, 0, 2)))


# -- sampling and metrics ---------------------------------------------------------------
def sample(score, noise, ts, process):
    """Probability-flow samples (Heun on ``ts``) and a Tweedie step at ``ts[-1]``."""
    x = rf.samplers.heun(score, noise, ts, process)
    t = float(ts[-1])
    s = np.asarray(score(x, np.full(len(x), t)))
    return (x + float(process.sigma2(t)) * s) / float(process.alpha(t))


def pair_distances(a, b, scale):
    return np.linalg.norm(a - b, axis=1) / scale


def sample_metrics(a, b, x, scale, threshold, copy_ratio):
    """RP of the pair (a, b), GL of a's samples w.r.t. the training set x (module docstring)."""
    d = a.shape[1]
    rms = threshold * scale / math.sqrt(d)      # the library's "rms" metric divides by sqrt(d)
    rp = reproducibility(a, b, threshold=rms, metric="rms")
    dist = np.asarray(rp.info["distances"]) * math.sqrt(d) / scale
    glt = generalizability(a, x, threshold=rms, metric="rms")
    if len(x) >= 2:
        mem = memorization_fraction(a, x, ratio=copy_ratio)
        gl, gl_err = 1.0 - mem.value, mem.error
    else:
        gl, gl_err = glt.value, glt.error
    return {"rp": rp.value, "rp_error": rp.error, "gl": gl, "gl_error": gl_err, "gl_threshold": glt.value,
            "median_pair_distance": float(np.median(dist)), "pair_distances": dist}


class ScoreErrorNodes:
    """Fixed nodes of ``E = avg_t sigma_t^2 E_{p_t}|s - grad log p_t|^2`` (module docstring)."""

    def __init__(self, target, process, t_min, T, n_time, n_mc, seed=12345):
        g = log_time_grid(t_min, T, n_time)
        rng = np.random.default_rng(seed)
        self.t, self.w = g.t, g.mean_weights
        self.process = process
        self.z = [float(process.alpha(t)) * target.sample(n_mc, seed=seed + q)
                  + math.sqrt(float(process.sigma2(t))) * rng.standard_normal((n_mc, target.dim))
                  for q, t in enumerate(self.t)]
        self.ref = [target.score(z, t, process) for z, t in zip(self.z, self.t)]

    def __call__(self, score):
        """``(E, standard error)``."""
        val, se = self.stacked(lambda z, t: np.asarray(score(z, np.full(len(z), t)))[:, None, :])
        return float(val[0]), float(se[0])

    def stacked(self, predict):
        """``(E, standard error)``, each of shape (k,), for k models at once:
        ``predict(z, t)`` returns their scores at the node's points, shape (n, k, d)."""
        val, var = 0.0, 0.0
        for t, w, z, y in zip(self.t, self.w, self.z, self.ref):
            e = np.sum((predict(z, t) - y[:, None, :]) ** 2, axis=2)
            c2 = w * float(self.process.sigma2(t))
            val = val + c2 * e.mean(axis=0)
            var = var + c2 * c2 * e.var(axis=0, ddof=1) / len(e)
        return np.asarray(val, dtype=float), np.sqrt(var)


# -- the model pairs -----------------------------------------------------------------------
PARAMETRIZATIONS = ("score", "eps")


def _gain(process, parametrization, t):
    """``c(t)`` of ``s = c(t) (1/m) A phi``: 1 (the model outputs the score) or
    ``-1/sigma_t`` (it outputs the noise, ``eps_hat = (1/m) A phi``)."""
    t = np.asarray(t, dtype=np.float64)
    return np.ones_like(t) if parametrization == "score" else -1.0 / np.sqrt(process.sigma2(t))


class RFPairMember:
    """One random-feature model trained by the closed-form flow on the rows of a
    :class:`rfdiff.ScoreMatching` (``training_rows``: ``z = alpha_t x_i + sigma_t eps``, Sobol
    noises, target the empirical optimal score ``y``, weights ``w`` = time weights x sigma_t^2).

    With ``psi = c(t) phi`` the loss ``1/2 sum w |c A phi/m - y|^2`` is the quadratic form
    ``G = sum w psi psi^T``, ``C = sum w y psi^T``, ``c0 = sum w |y|^2`` (for c = 1 exactly the
    library's training form, tested), handed to :meth:`rfdiff.Flow.from_gram`.
    """

    def __init__(self, model, problem, parametrization, chunk=16384):
        self.model, self.process, self.parametrization = model, problem.process, parametrization
        z, t, w, y = problem.training_rows()
        m = model.m
        G, C = np.zeros((m, m)), np.zeros((model.dim, m))
        for i in range(0, len(z), chunk):
            sl = slice(i, i + chunk)
            psi = model.features(z[sl], t[sl]) * (_gain(self.process, parametrization, t[sl]) * np.sqrt(w[sl]))[:, None]
            G += psi.T @ psi
            C += (y[sl] * np.sqrt(w[sl])[:, None]).T @ psi
        self.form = rf.QuadraticForm(0.5 * (G + G.T), C, float(np.sum(w * np.sum(y * y, axis=1))))
        self.flow = rf.Flow.from_gram(self.form, model=model)

    def score(self, tau):
        """The model at ``A(tau)`` (tau = inf: the minimum-norm least-squares limit) as a score."""
        A = self.flow.params(tau)
        model, process, par = self.model, self.process, self.parametrization
        return rf.as_score(lambda z, t: _gain(process, par, t).reshape(-1, 1) * model.score(A, z, t)
                           if np.ndim(t) else float(_gain(process, par, t)) * model.score(A, z, t),
                           dim=model.dim)

    def score_error_curve(self, taus, nodes):
        """``E(A(tau))`` (the nodes' estimator, :class:`ScoreErrorNodes`) for many taus: each
        node's features once, times the stack of all ``A(tau)`` (an (n x m) by (m x k d) GEMM)."""
        A = self.flow.params(np.asarray(taus, dtype=float))          # (k, d, m)
        k, d, m = A.shape
        AT = A.reshape(k * d, m).T / m

        def predict(z, t):
            psi = self.model.features(z, t) * float(_gain(self.process, self.parametrization, t))
            return (psi @ AT).reshape(len(z), k, d)

        return nodes.stacked(predict)[0]


def rf_pair(x, process, *, d, seed, m, n_eps, n_time, t_min, T, parametrization="score"):
    """Two closed-form flows on the same rows, frozen weights seeded ``2 seed + 1``, ``2 seed + 2``."""
    out = []
    for k in (1, 2):
        model = rf.RandomFeatureScore(m, dim=d, seed=2 * seed + k, w_scale=1.0 / math.sqrt(d))
        sm = rf.ScoreMatching(model, x, process, t_min, T, "sigma2", n_time=n_time, n_eps=n_eps, seed=seed)
        out.append(RFPairMember(model, sm, parametrization))
    return out


def mlp_pair(x, process, *, d, seed, width, steps, lr, batch, t_min, T):
    """Two MLPs (init seeds ``2 seed + 1``, ``2 seed + 2``) trained on the same draws; returns
    ``(scores or None, info)``."""
    import torch  # noqa: F401  (rfdiff.torch needs it)
    from rfdiff import torch as rft

    scores, losses = [], []
    for k in (1, 2):
        net = rft.MLPScore(dim=d, width=width, activation="swish", seed=2 * seed + k)
        try:
            h = rft.train(net, x, process, t_min, T, "sigma2", time_sampling="log", optimizer="adam",
                          lr=lr, steps=steps, batch_size=min(len(x), batch), seed=seed,
                          checkpoints=[steps], progress=True)
        except FloatingPointError:
            return None, {"diverged": True, "loss_change": np.nan, "final_loss": np.nan}
        scores.append(h.score_at(steps))
        losses.append(h.losses)
    tail = max(1, steps // 10)
    last = np.mean([lo[-tail:].mean() for lo in losses])
    prev = np.mean([lo[-2 * tail:-tail].mean() for lo in losses])
    return scores, {"diverged": False, "final_loss": float(last), "loss_change": float((prev - last) / abs(last))}


# -- the point ------------------------------------------------------------------------------
_NAN_TAU = np.full(TAU_EXPONENTS.size, np.nan)


@point_function
def point(*, N: int, d: int, K: int, r: int, seed: int, model: str, threshold: float = 0.1,
          copy_ratio: float = 1.0 / 3.0, m: int = 512, n_eps: int = 4, n_time: int = 16,
          rf_parametrization: str = "score", t_min: float = 1e-3, T: float = 8.0, n_steps: int = 96,
          n_samples: int = 1000, mlp_width: int = 128, mlp_steps: int = 1500, mlp_lr: float = 2e-3,
          mlp_batch: int = 256, n_score_time: int = 12, n_score_mc: int = 1024, n_keep: int = 200,
          target_seed: int = 0) -> dict:
    """One (N, d, K, r, seed, model): RP, GL, pair distances, score error (module docstring).

    ``seed`` draws the N training points, the prior noise and the pair's model seeds;
    the target (``block_mixture(d, K, r, target_seed)``) is the same for every seed.
    """
    check_params(N, d, K, r, threshold, model)
    t_start = time.perf_counter()
    process = rf.OU()
    target = block_mixture(d, K, r, target_seed)
    x = target.sample(N, seed=seed)
    scale = math.sqrt(r)
    noise = rf.samplers.prior_noise(n_samples, d, seed=10_000 + seed, process=process)
    ts = rf.samplers.time_schedule(T, t_min, n_steps)
    err_nodes = ScoreErrorNodes(target, process, t_min, T, n_score_time, n_score_mc)
    empirical, true = rf.Empirical(x).score_fn(process), target.score_fn(process)
    out = {"diverged": False, "final_loss": np.nan, "loss_change": np.nan, "tau_star_scaled": np.nan,
           "score_error_tau": _NAN_TAU}
    early = None
    with threads(1):
        ref = {"empirical": sample(empirical, noise, ts, process), "true": sample(true, noise, ts, process)}
        if model == "rf":
            fa, fb = rf_pair(x, process, d=d, seed=seed, m=m, n_eps=n_eps, n_time=n_time, t_min=t_min, T=T,
                             parametrization=rf_parametrization)
            taus = 10.0 ** TAU_EXPONENTS / fa.flow.lambda_max
            curve = 0.5 * (fa.score_error_curve(taus, err_nodes) + fb.score_error_curve(taus, err_nodes))
            j = int(np.argmin(curve))
            out.update(score_error_tau=curve, tau_star_scaled=float(10.0 ** TAU_EXPONENTS[j]))
            pair = [f.score(np.inf) for f in (fa, fb)]
            early = [f.score(taus[j]) for f in (fa, fb)]
        elif model == "mlp":
            pair, info = mlp_pair(x, process, d=d, seed=seed, width=mlp_width, steps=mlp_steps, lr=mlp_lr,
                                  batch=mlp_batch, t_min=t_min, T=T)
            out.update(info)
        else:
            pair = [empirical if model == "empirical" else true] * 2
        if pair is None:
            out.update(_nan_metrics(n_samples, n_keep, d))
        else:
            out.update(_pair_outputs(pair, noise, ts, process, x, ref, scale, threshold, copy_ratio,
                                     err_nodes, target, n_keep))
        if early is not None:
            e = _pair_outputs(early, noise, ts, process, x, ref, scale, threshold, copy_ratio, err_nodes,
                              target, n_keep)
            out.update({f"{k}_early": v for k, v in e.items() if not k.startswith(("samples", "train"))})
        else:
            out.update({f"{k}_early": np.full(np.shape(v), np.nan) for k, v in out.items()
                        if k in _EARLY_KEYS})
    out["seconds"] = time.perf_counter() - t_start
    out["coords"] = {"tau_scaled": 10.0 ** TAU_EXPONENTS}
    out["dims"] = {"score_error_tau": ["tau_scaled"], "pair_distances": ["draw"],
                   "pair_distances_early": ["draw"], "samples_a": ["keep", "plane"],
                   "samples_b": ["keep", "plane"], "train_proj": ["keep", "plane"]}
    return out


_EARLY_KEYS = ("rp", "rp_error", "gl", "gl_error", "gl_threshold", "median_pair_distance", "pair_distances",
               "score_error", "score_error_se", "dist_to_empirical", "dist_to_true", "near_empirical",
               "near_true")


def _plane(target, z, n_keep):
    """Coordinates of points on ``(u_{1,1}, u_{2,1})``, the first direction of the first two
    components (the second is 0 when K = 1), NaN-padded to ``n_keep`` rows."""
    B = target.bases
    P = np.stack([B[0][:, 0], B[1][:, 0] if len(B) > 1 else np.zeros(target.dim)], axis=1)
    out = np.full((n_keep, 2), np.nan)
    k = min(n_keep, len(z))
    out[:k] = z[:k] @ P
    return out


def _pair_outputs(pair, noise, ts, process, x, ref, scale, threshold, copy_ratio, err_nodes, target, n_keep):
    a, b = (sample(s, noise, ts, process) for s in pair)
    out = sample_metrics(a, b, x, scale, threshold, copy_ratio)
    errs = [err_nodes(s) for s in pair]
    out["score_error"] = 0.5 * (errs[0][0] + errs[1][0])
    out["score_error_se"] = 0.5 * math.hypot(errs[0][1], errs[1][1])
    for name, z in ref.items():
        dist = pair_distances(a, z, scale)
        out[f"dist_to_{name}"] = float(np.median(dist))
        out[f"near_{name}"] = float(np.mean(dist < threshold))
    out.update(samples_a=_plane(target, a, n_keep), samples_b=_plane(target, b, n_keep),
               train_proj=_plane(target, x, n_keep))
    return out


def _nan_metrics(n_samples, n_keep, d):
    out = {k: np.nan for k in _EARLY_KEYS}
    out.update(pair_distances=np.full(n_samples, np.nan), samples_a=np.full((n_keep, 2), np.nan),
               samples_b=np.full((n_keep, 2), np.nan), train_proj=np.full((n_keep, 2), np.nan), diverged=True)
    return out


# -- the figure ------------------------------------------------------------------------------
_POINT_KEYS = ("K", "threshold", "copy_ratio", "m", "n_eps", "n_time", "t_min", "T", "n_steps", "n_samples",
               "mlp_width", "mlp_steps", "mlp_lr", "mlp_batch", "n_score_time", "n_score_mc", "n_keep",
               "rf_parametrization")
#: RP thresholds recorded besides the main one (from the stored pair distances)
RP_THRESHOLDS = (0.05, 0.1, 0.2, 0.5)


def tasks(p: dict) -> list:
    """One point per (r, N, seed, model)."""
    common = {k: p[k] for k in _POINT_KEYS if k in p}
    return [Task(point, dict(common, N=int(N), d=int(p["d"]), r=int(r), seed=int(s), model=mod))
            for r in p["r_values"] for N in p["N_values"] for s in p["seeds"] for mod in p["models"]]


def reduce(p: dict, results: list):
    """Stack over (r, N, seed, model); seed means and standard errors; attrs: the read-offs of
    :func:`summary` (dip, regime crossover)."""
    import xarray as xr

    rs, Ns, seeds, models = list(p["r_values"]), list(p["N_values"]), list(p["seeds"]), list(p["models"])
    it = iter(results)
    grid = [[[[next(it) for _ in models] for _ in seeds] for _ in Ns] for _ in rs]
    ds = xr.combine_nested(grid, concat_dim=["r", "N", "seed", "model"], combine_attrs="drop")
    ds = ds.assign_coords(r=rs, N=Ns, seed=seeds, model=models, rp_threshold=list(RP_THRESHOLDS))
    for suffix in ("", "_early"):
        dist = ds[f"pair_distances{suffix}"]
        ds[f"rp_at{suffix}"] = xr.concat([(dist < th).mean("draw").where(dist.notnull().all("draw"))
                                          for th in RP_THRESHOLDS], dim="rp_threshold")
    ds["N_over_r"] = ds.N.astype(float) / ds.r.astype(float)
    for k in ("rp", "gl", "median_pair_distance", "score_error", "dist_to_empirical", "dist_to_true",
              "rp_early", "gl_early", "median_pair_distance_early", "score_error_early", "dist_to_true_early",
              "dist_to_empirical_early"):
        ds[f"{k}_mean"] = ds[k].mean("seed")
        ds[f"{k}_sem"] = ds[k].std("seed", ddof=1) / np.sqrt(len(seeds)) if len(seeds) > 1 else ds[k].mean("seed") * np.nan
    ds = _compact(ds.transpose("r", "N", "seed", "model", ...))
    attrs = {"target": f"block low-rank mixture, d={p['d']}, K={p['K']}, r in {rs}",
             "distance_unit": "sqrt(E|x|^2) = sqrt(r)", "threshold": p["threshold"],
             "gl_criterion": f"copy = nearest/second-nearest training distance < {p['copy_ratio']:.4g}",
             "rf": f"ReLU random features, m={p['m']}, W ~ N(0, 1/d), parametrization "
                   f"{p.get('rf_parametrization', 'score')}, rows n_eps={p['n_eps']}, n_time={p['n_time']}",
             "mlp": f"Swish MLP width {p['mlp_width']}, Adam lr {p['mlp_lr']}, {p['mlp_steps']} steps",
             "sampler": f"Heun, {p['n_steps']} log-spaced steps, T={p['T']}, t_min={p['t_min']}, Tweedie step",
             "seconds_total": float(ds.seconds.sum())}
    ds.attrs.update(c.netcdf_attrs(attrs))
    ds.attrs.update(c.netcdf_attrs(_readoffs(ds), prefix="found_"))
    return ds


def _compact(ds):
    """The per-draw arrays (pair distances, projected samples) in float32: they are for the
    histograms and scatter plots; every fraction and median is computed in float64 first."""
    for k in ("pair_distances", "pair_distances_early", "samples_a", "samples_b", "train_proj"):
        ds[k] = ds[k].astype(np.float32)
    return ds


def _families(ds):
    """``(label, model, suffix)`` of the curves: the model families and the two references."""
    out = []
    models = list(ds.model.values)
    if "rf" in models:
        out += [("RF, converged", "rf", ""), (r"RF, early-stopped $\tau^*$", "rf", "_early")]
    if "mlp" in models:
        out.append(("MLP", "mlp", ""))
    out += [(f"{m} score", m, "") for m in ("empirical", "true") if m in models]
    return out


def _readoffs(ds) -> dict:
    """Per family and r: min RP over N and where, whether it is a dip (RP at both ends above the
    minimum by > 2 standard errors), the N of the largest median pair distance, and the first
    N at which the model's samples are nearer the true-score than the empirical-optimal samples."""
    out = {}
    Ns = ds.N.values.astype(float)
    for label, mod, suf in _families(ds):
        if mod in ("empirical", "true"):
            continue
        key = f"{mod}{suf}"
        for r in ds.r.values:
            sel = dict(r=r, model=mod)
            rp = ds[f"rp{suf}"].sel(sel).values                       # (N, seed)
            mean = np.nanmean(rp, axis=1)
            se = np.sqrt(np.nanmean(rp * (1 - rp), axis=1) / float(ds.sizes["draw"]))
            if not np.any(np.isfinite(mean)):
                continue
            j = int(np.nanargmin(mean))
            dip = bool(0 < j < len(Ns) - 1 and mean[0] - mean[j] > 2 * (se[0] + se[j])
                       and mean[-1] - mean[j] > 2 * (se[-1] + se[j]))
            med = np.nanmean(ds[f"median_pair_distance{suf}"].sel(sel).values, axis=1)
            nearer = (np.nanmean(ds[f"dist_to_true{suf}"].sel(sel).values, axis=1)
                      < np.nanmean(ds[f"dist_to_empirical{suf}"].sel(sel).values, axis=1))
            first = float(Ns[np.argmax(nearer)]) if nearer.any() else np.nan
            err = np.nanmean(ds[f"score_error{suf}"].sel(sel).values, axis=1)
            err_emp = (np.nanmean(ds.score_error.sel(r=r, model="empirical").values, axis=1)
                       if "empirical" in ds.model.values else np.full(len(Ns), np.nan))
            beats = err < err_emp
            out[f"{key}_r{int(r)}"] = {"rp_min": float(mean[j]), "N_at_rp_min": float(Ns[j]),
                                       "rp_range": [float(np.nanmin(mean)), float(np.nanmax(mean))],
                                       "dip": dip, "N_max_pair_distance": float(Ns[int(np.nanargmax(med))]),
                                       "max_median_pair_distance": float(np.nanmax(med)),
                                       "first_N_nearer_true": first,
                                       "first_N_nearer_true_over_r": first / float(r),
                                       "score_error_at_N_max": float(err[-1]),
                                       "N_model_score_beats_empirical":
                                           [float(n) for n in Ns[beats]] if beats.any() else "none"}
    return out


def summary(ds) -> dict:
    out = {}
    for k, v in _readoffs(ds).items():
        out[k] = {kk: (round(vv, 4) if isinstance(vv, float) else vv) for kk, vv in v.items()}
    return out


def plot(ds, stem):
    from .. import plotting as P

    r0 = ds.r.values[0]
    Ns = ds.N.values
    fams = _families(ds)
    colors = {"rf": P.COLORS[0], "mlp": P.COLORS[1], "empirical": P.COLORS[7], "true": P.COLORS[2]}
    style = lambda mod, suf: dict(color=colors[mod], ls="--" if suf else "-",  # noqa: E731
                                  marker={"empirical": "s", "true": "D"}.get(mod, "o"),
                                  markersize=5 if mod == "empirical" else 3,
                                  markerfacecolor="none" if mod == "empirical" else None)
    with P.style() as plt:
        fig = plt.figure(figsize=(P.TEXT_WIDTH, 9.6), constrained_layout=True)
        ax = fig.subplot_mosaic([["A"] * 3 + ["B"] * 3, ["C"] * 3 + ["D"] * 3, ["E"] * 3 + ["F"] * 3,
                                 ["G", "G", "H", "H", "I", "I"]])

        def seeds_band(a, key, mod, suf, label, x=Ns, r=r0):
            y = ds[f"{key}{suf}"].sel(r=r, model=mod).values
            mean = np.nanmean(y, axis=1)
            sem = np.nanstd(y, axis=1, ddof=1) / np.sqrt(y.shape[1]) if y.shape[1] > 1 else 0 * mean
            a.errorbar(x, mean, yerr=sem, label=label, capsize=1.5, **style(mod, suf))

        for key, name, lab in (("rp", "A", f"RP (pair distance < {ds.attrs['threshold']:g})"),
                               ("gl", "B", "GL (1 - copy fraction)")):
            for label, mod, suf in fams:
                seeds_band(ax[name], key, mod, suf, label)
            ax[name].set(xscale="log", xlabel="training-set size N", ylabel=lab, ylim=(-0.05, 1.05))
            ax[name].set_title(f"({name.lower()}) {lab.split(' ')[0]} vs N, r = {r0}", loc="left")
        ax["A"].legend(fontsize=5.5)
        a = ax["C"]
        for label, mod, suf in fams:
            if mod in ("rf", "mlp"):
                for k, r in enumerate(ds.r.values):
                    y = np.nanmean(ds[f"median_pair_distance{suf}"].sel(r=r, model=mod).values, axis=1)
                    a.plot(Ns, P.positive(y), alpha=1.0 - 0.25 * k, label=f"{label}, r={r}", **style(mod, suf))
        a.axhline(ds.attrs["threshold"], color="k", lw=0.6, ls=":")
        a.set(xscale="log", yscale="log", xlabel="N", ylabel="median pair distance / sqrt(r)")
        a.set_title("(c) median same-noise pair distance", loc="left")
        a.legend(fontsize=4.5, ncol=2)
        a = ax["D"]
        for label, mod, suf in fams:
            if mod in ("rf", "mlp"):
                for ref, mk in (("empirical", "v"), ("true", "^")):
                    y = np.nanmean(ds[f"dist_to_{ref}{suf}"].sel(r=r0, model=mod).values, axis=1)
                    a.plot(Ns, P.positive(y), color=colors[mod], ls="--" if suf else "-", marker=mk,
                           label=f"{label} to {ref}")
        a.set(xscale="log", yscale="log", xlabel="N", ylabel="median distance / sqrt(r)")
        a.set_title(f"(d) distance to the references' same-noise samples, r = {r0}", loc="left")
        a.legend(fontsize=4.5)
        a = ax["E"]
        picks = [Ns[0], Ns[len(Ns) // 2], Ns[-1]]
        bins = np.linspace(-3, 2, 41)
        for k, N in enumerate(picks):
            for mod in ("rf", "mlp"):
                if mod not in ds.model.values:
                    continue
                dist = ds.pair_distances.sel(r=r0, N=N, model=mod).values.ravel()
                dist = dist[np.isfinite(dist)]
                if dist.size:
                    a.hist(np.log10(np.maximum(dist, 1e-3)), bins=bins, histtype="step", color=colors[mod],
                           lw=0.6 + 0.5 * k, label=f"{mod.upper()}, N={N}")
        a.axvline(np.log10(ds.attrs["threshold"]), color="k", lw=0.6, ls=":")
        a.set(xlabel="log10 pair distance / sqrt(r)", ylabel="pairs (all seeds)")
        a.set_title(f"(e) pair-distance distributions (converged), r = {r0}", loc="left")
        a.legend(fontsize=5)
        a = ax["F"]
        for label, mod, suf in fams:
            if mod == "true":
                continue
            for k, r in enumerate(ds.r.values):
                y = np.nanmean(ds[f"score_error{suf}"].sel(r=r, model=mod).values, axis=1)
                a.plot(Ns / float(r), P.positive(y), alpha=1.0 - 0.25 * k,
                       label=label if k == 0 else None, **dict(style(mod, suf), marker="osd"[k % 3]))
        a.set(xscale="log", yscale="log", xlabel="N / r",
              ylabel=r"avg$_t\,\sigma_t^2\,E|s - \nabla\log p_t|^2$")
        a.set_title(f"(f) score error vs N/r (markers o, s, d: r = {', '.join(map(str, ds.r.values))})",
                    loc="left")
        a.legend(fontsize=5)
        for name, N in zip("GHI", picks):
            a = ax[name]
            tr = ds.train_proj.sel(r=r0, N=N, model=ds.model.values[0]).isel(seed=0).values
            for mod, mk in (("rf", "o"), ("mlp", "^")):
                if mod not in ds.model.values:
                    continue
                sa = ds.samples_a.sel(r=r0, N=N, model=mod).isel(seed=0).values[:60]
                sb = ds.samples_b.sel(r=r0, N=N, model=mod).isel(seed=0).values[:60]
                a.plot(np.stack([sa[:, 0], sb[:, 0]]), np.stack([sa[:, 1], sb[:, 1]]), color=colors[mod],
                       lw=0.3, alpha=0.6)
                a.scatter(sa[:, 0], sa[:, 1], s=3, color=colors[mod], marker=mk, label=f"{mod.upper()} a, b")
                a.scatter(sb[:, 0], sb[:, 1], s=3, facecolor="none", edgecolor=colors[mod], marker=mk, lw=0.4)
            a.scatter(tr[:, 0], tr[:, 1], s=6, color="k", marker="x", lw=0.6, label="training")
            lim = 3.5
            a.set(xlim=(-lim, lim), ylim=(-lim, lim), xlabel=r"$u_{1,1}\cdot x$", ylabel=r"$u_{2,1}\cdot x$")
            a.set_title(f"({name.lower()}) N = {N}, seed 0", loc="left")
        ax["G"].legend(fontsize=4.5)
        return P.save_figure(fig, ds, stem)


EXPERIMENT = Experiment(name=NAME, title=TITLE, presets=PRESETS, tasks=tasks, reduce=reduce, plot=plot,
                        summary=summary,
                        regime="d-dimensional (d = 6 tiny, 16 quick, 48 full): mixture of K = 2 low-rank "
                               "Gaussians on disjoint blocks, r in {2, 4, 7}; random-feature pairs by the "
                               "closed-form flow (rows method), MLP pairs by Adam; probability-flow ODE "
                               "from shared noise")
