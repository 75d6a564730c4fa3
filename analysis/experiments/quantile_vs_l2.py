"""Figure ``quantile-vs-l2``: the quantile error D^delta against the L2 score error (seed 002).

Seed 002 (Gupta, Parulekar, Price, Xun 2024) measures score accuracy by
``D^delta_p(f, g) = inf{eps : P_{x~p}[|f(x) - g(x)| > eps] <= delta}`` instead of
``E_p|f - g|^2``. Three panels:

(a) **Fig. 1 of the paper** (:func:`failure`). ``p1 = (1 - eta) N(0, 1) + eta N(-R, 1)``
    (the truth), ``p2 = (1 - eta) N(0, 1) + eta N(R, 1)``. Under the OU process at noise
    level t (``a = e^-t``, ``sigma^2 = 1 - e^-2t``) both stay unit-variance mixtures with the
    far mode at ``-+ R_t``, ``R_t = a R``; the class is their scores ``{s1, s2}`` at t,

        s1(x) = -x - R_t w1(x),   s2(x) = -x + R_t w2(x),   s1 - s2 = -R_t (w1 + w2),

    ``w_k`` the posterior weight of the far component of ``p_{k,t}`` (log space:
    ``log w = log eta - (x -+ R_t)^2/2 - logaddexp(...)``, so R = 1e4 never overflows).
    On m samples ``x_i = a x0_i + sigma z_i``, ``x0_i ~ p1``, the denoising score-matching
    risk is ``L(s) = (1/m) sum_i (s(x_i) + z_i/sigma)^2``; the empirical risk minimiser
    picks the smaller one. ``L(s1) - L(s2) = (1/m) sum_i (s1 - s2)(s1 + s2 + 2 z_i/sigma)``
    is summed in log space (signed logsumexp). A *tie* is ``|L(s1) - L(s2)| <=
    tie_rtol max(L(s1), L(s2))`` (default 1e-10, far above the float64 rounding of the
    sums), broken by a fair coin, as in the paper. Without a far-mode sample the exact
    difference is ``~exp(-R_t^2/2 + R_t max|x_i|)`` (``e^-4e7`` here): a tie; with one,
    s1 wins by ``~R_t^2``. Hence ``P(ERM = s2) = (1/2)(1 - eta)^m``, and that is the
    probability that the minimiser's L2 error ``E_{p1,t}|s - s1|^2`` is > 0 (for s2 it is
    ``~eta R_t^2``). Its D^delta error is 0 *at the tolerance* ``quantile_tol`` (default
    1e-8): ``D^delta(s2, s1) <= eps`` iff ``P_{p1,t}[|s1 - s2| > eps] <= delta``, and that
    set is the far mode (mass ``~eta < delta``). In exact arithmetic ``D^delta(s2, s1)`` is
    positive but ``~exp(-R_t^2/2 + 2.6 R_t)``; its log10 is reported (``log10_dq_s2``).
    Monte Carlo failure rates come with Clopper-Pearson intervals
    (``scipy.stats.binomtest``).
(b) **Fig. 2 of the paper** (:func:`objective_gap`). m samples from ``N(0, 1)`` (true score
    ``-x``); ``s^`` the score of ``eta N(0, 1) + (1 - eta) N(R, 1)``,
    ``s^(x) = -x + R expit(l(x))``, ``l(x) = R (x - x0) + logit(x0/R)``, eta chosen so that
    ``s^(x0) = 0``. The paper puts the zero at ``x0 = 10 sqrt(log m)``: then
    ``E|s^ - s|^2 ~ R^2 P[x > x0] ~ R^2 m^-50``, invisible (reported as
    ``log10_l2_paper_zero``). Here ``x0`` is the ``1 - c/m`` quantile of N(0, 1), so the
    squared L2 error is ``~ c R^2/m = Omega(R^2/m)``, while the empirical score-matching
    objective ``(1/m) sum |s^(x_i) - s(x_i)|^2`` (and the implicit one,
    ``(1/m) sum [s^2 + 2 s'] - same for s``) is ~0 whenever no sample exceeds ``x0``:
    probability ``(1 - c/m)^m ~ e^-c``.
(c) **The simulator's question** (:func:`trajectory`). The random-feature flow (closed
    form) trained on n samples of ``(1 - eta) N(0, 1) + eta N(R, 1)`` with ``n eta < 1``
    (the far mode mostly unseen). Along tau: the L2 score error ``E_{p_t}|s - grad log p_t|^2``
    and ``D^delta_{p_t}`` (delta = 0.01) at diffusion times ``t_eval``, the exact
    ``TV(p_0, p_gen)`` (:func:`rfdiff.metrics.tv`, probability-flow ODE, and reverse SDE
    unless ``sde=False``) and
    ``KL(p_0 || p_gen)`` (:func:`rfdiff.kl_ode_path`), all from exact 1D densities; the
    reduction reports Spearman's rank correlation of TV with each error over tau, the
    late-phase slope ``d log TV / d log error`` (taus from TV's minimiser tau* on), and the
    far component's share ``eta E_{N(R_t, 1)}|s - grad log p_t|^2`` of the L2 error. Runs
    over R (8, 10, 12) with the same seed share the main-mode training points (no far
    sample is drawn), so (d) compares the errors at tau* against R with all else fixed.
"""
from __future__ import annotations

import math
import time

import numpy as np

from rfdiff import OU, GaussianMixture, kl_ode_path, metrics, quantile_mixture
from rfdiff.run import Experiment, Task, point_function

from . import _common as c

NAME = "quantile-vs-l2"
TITLE = "Quantile error D^delta against the L2 score error (seed 002)"


# -- validation ------------------------------------------------------------------------
def _open_unit(name, x):
    x = float(x)
    if not (math.isfinite(x) and 0.0 < x < 1.0):
        raise ValueError(f"{name} must lie in (0, 1), got {x}")
    return x


def _positive(name, x):
    x = float(x)
    if not (math.isfinite(x) and x > 0.0):
        raise ValueError(f"{name} must be a finite number > 0, got {x}")
    return x


def _count(name, k, minimum=1):
    if isinstance(k, bool) or not float(k).is_integer() or int(k) < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {k!r}")
    return int(k)


def _interval(k, n, confidence):
    """Clopper-Pearson interval of a binomial proportion k/n."""
    from scipy.stats import binomtest

    ci = binomtest(int(k), int(n)).proportion_ci(confidence_level=confidence, method="exact")
    return float(ci.low), float(ci.high)


# -- Fig. 1: the two-candidate class --------------------------------------------------
def _log_far_weights(x, eta, Rt):
    """``log w1, log w2``: posterior log-weights of the far components of ``p_{1,t}``
    (far mode at -R_t) and ``p_{2,t}`` (at +R_t)."""
    from numpy import logaddexp

    main = math.log1p(-eta) - 0.5 * x * x
    f1 = math.log(eta) - 0.5 * (x + Rt) ** 2
    f2 = math.log(eta) - 0.5 * (x - Rt) ** 2
    return f1 - logaddexp(main, f1), f2 - logaddexp(main, f2)


def two_scores(x, eta, R, t):
    """``(s1, s2, log|s1 - s2|)`` at points x (see the module docstring, panel a)."""
    Rt = R * math.exp(-t)
    lw1, lw2 = _log_far_weights(np.asarray(x, dtype=float), eta, Rt)
    s1 = -x - Rt * np.exp(lw1)
    s2 = -x + Rt * np.exp(lw2)
    return s1, s2, math.log(Rt) + np.logaddexp(lw1, lw2)


def _p1_cells(eta, R, t, n_cells, half_width=40.0):
    """Cells covering ``p_{1,t}`` (windows of +-half_width around each mode) with their exact
    masses, and the mass outside both windows."""
    from scipy.stats import norm

    Rt = R * math.exp(-t)
    edges, mass = [], []
    for centre, w in ((0.0, 1.0 - eta), (-Rt, eta)):
        e = np.linspace(centre - half_width, centre + half_width, n_cells + 1)
        cdf = norm.cdf(e[:, None], loc=[0.0, -Rt])            # both components on this window
        mw = np.diff(cdf, axis=0) @ np.array([1.0 - eta, eta])
        edges.append(e)
        mass.append(np.maximum(mw, 0.0))
    inside = sum(float(m.sum()) for m in mass)
    return edges, mass, max(0.0, 1.0 - inside)


def quantile_gap(eta, R, t, delta, eps, n_cells=20000):
    """``D^delta_{p1,t}(s2, s1)`` in log space, and ``P_{p1,t}[|s1 - s2| > eps]``.

    Cells of exact mass (two windows, ``n_cells`` each); ``|s1 - s2|`` is taken at both cell
    ends: the larger gives an upper, the smaller a lower bound of each (monotone within a
    cell). Returns ``dict(log10_dq, log10_dq_lo, mass_above_eps, mass_above_eps_hi)``; the mass
    outside the windows (``<= Phi(-40)``) is added to the upper bounds."""

    edges, mass, outside = _p1_cells(eta, R, t, n_cells)
    hi_ld, lo_ld, w = [], [], []
    for e, m in zip(edges, mass):
        _, _, ld = two_scores(e, eta, R, t)
        hi_ld.append(np.maximum(ld[:-1], ld[1:]))
        lo_ld.append(np.minimum(ld[:-1], ld[1:]))
        w.append(m)
    hi_ld, lo_ld, w = np.concatenate(hi_ld), np.concatenate(lo_ld), np.concatenate(w)
    le = math.log(eps)
    above_lo = float(w[lo_ld > le].sum())
    above_hi = float(w[hi_ld > le].sum()) + outside

    def log_quantile(ld):
        base = float(ld.min())
        shifted = ld - base                                  # >= 0: the quantile of a monotone map
        return metrics.weighted_quantile_error(shifted, w, delta) + base

    return {"log10_dq": log_quantile(hi_ld) / math.log(10), "log10_dq_lo": log_quantile(lo_ld) / math.log(10),
            "mass_above_eps": above_lo, "mass_above_eps_hi": above_hi}


def l2_gap(eta, R, t, order=64):
    """``log10 E_{p1,t}|s1 - s2|^2`` (log space on the target's Gauss-Hermite nodes) and the
    change when the order is doubled."""
    from scipy.special import logsumexp

    tgt = quantile_mixture(eta, R, sign=-1)

    def at(o):
        x, w = tgt.expectation_nodes(t, OU(), order=o)
        _, _, ld = two_scores(x[:, 0], eta, R, t)
        on = w > 0
        return float(logsumexp(2 * ld[on], b=w[on])) / math.log(10)

    a, b = at(order), at(2 * order)
    return b, abs(b - a)


@point_function
def failure(*, m: int, eta: float, R: float, delta: float, trials: int, seed: int, t: float = 0.1,
            quantile_tol: float = 1e-8, tie_rtol: float = 1e-10, confidence: float = 0.95) -> dict:
    """Fig. 1: how often the ERM over ``{s1, s2}`` on m samples of ``p1`` has L2 error > 0 and
    D^delta error > ``quantile_tol`` (see the module docstring), over ``trials`` draws."""
    m = _count("m", m)
    eta = _open_unit("eta", eta)
    R = _positive("R", R)
    delta = _open_unit("delta", delta)
    trials = _count("trials", trials)
    t = _positive("t", t)
    eps = _positive("quantile_tol", quantile_tol)
    tie_rtol = _positive("tie_rtol", tie_rtol)
    confidence = _open_unit("confidence", confidence)
    from scipy.special import logsumexp

    t0 = time.perf_counter()
    a, sig = math.exp(-t), math.sqrt(-math.expm1(-2 * t))
    rng = np.random.default_rng(seed)
    chose_s2 = np.zeros(trials, dtype=bool)
    n_ties = 0
    n_far = np.zeros(trials, dtype=np.int64)
    chunk = max(1, (1 << 20) // m)
    for start in range(0, trials, chunk):
        k = min(chunk, trials - start)
        far = rng.random((k, m)) < eta
        x0 = rng.standard_normal((k, m)) - R * far
        z = rng.standard_normal((k, m))
        x = a * x0 + sig * z
        s1, s2, ld = two_scores(x, eta, R, t)
        y = z / sig
        L1 = np.mean((s1 + y) ** 2, axis=1)
        L2 = np.mean((s2 + y) ** 2, axis=1)
        f = s1 + s2 + 2 * y                               # L1 - L2 = mean((s1 - s2) f), s1 - s2 < 0
        with np.errstate(divide="ignore"):
            log_terms = ld + np.log(np.abs(f))
        logD, sign = logsumexp(log_terms, b=-np.sign(f), axis=1, return_sign=True)
        logD = logD - math.log(m)
        with np.errstate(divide="ignore"):
            tie = logD <= math.log(tie_rtol) + np.log(np.maximum(L1, L2))
        coin = rng.random(k) < 0.5
        chose_s2[start:start + k] = np.where(tie, coin, sign > 0)
        n_ties += int(tie.sum())
        n_far[start:start + k] = far.sum(axis=1)
    q = quantile_gap(eta, R, t, delta, eps)
    l2_log10, l2_err = l2_gap(eta, R, t)
    quantile_positive = q["mass_above_eps"] > delta          # D^delta(s2, s1) > eps
    if q["mass_above_eps"] <= delta < q["mass_above_eps_hi"]:
        raise RuntimeError("D^delta(s2, s1) vs quantile_tol undecided: refine the cells")
    k_l2 = int(chose_s2.sum())                               # s2's L2 error is > 0 (log10 above)
    k_q = k_l2 if quantile_positive else 0
    out = {"p_fail_l2": k_l2 / trials, "p_fail_quantile": k_q / trials,
           "k_fail_l2": k_l2, "k_fail_quantile": k_q, "trials": trials,
           "p_theory_l2": 0.5 * (1 - eta) ** m, "p_theory_quantile": 0.0 if delta > eta else np.nan,
           "tie_fraction": n_ties / trials, "p_no_far_sample": float(np.mean(n_far == 0)),
           "log10_l2_s2": l2_log10, "log10_l2_s2_error": l2_err,
           "log10_dq_s2": q["log10_dq"], "log10_dq_s2_lo": q["log10_dq_lo"],
           "mass_above_tol": q["mass_above_eps"], "mass_above_tol_hi": q["mass_above_eps_hi"]}
    for name, kk in (("l2", k_l2), ("quantile", k_q)):
        out[f"p_fail_{name}_lo"], out[f"p_fail_{name}_hi"] = _interval(kk, trials, confidence)
    out["seconds"] = time.perf_counter() - t0
    return out


# -- Fig. 2: a score with a small objective and a large L2 error --------------------------
def _logit(p):
    return math.log(p) - math.log1p(-p)


def _log_l2(R, x0):
    """``log E_{N(0,1)}|s^ - s|^2 = log R^2 int expit(l(x))^2 phi(x) dx`` (scipy quad, scaled by
    ``phi(x0)``: log space; split at ``x0`` where the integrand steps). Returns (log, rel. error)."""
    from scipy.integrate import quad
    from scipy.special import log_expit

    b = _logit(x0 / R)
    ref = -0.5 * x0 * x0

    def f(x):
        return math.exp(2 * log_expit(R * (x - x0) + b) - 0.5 * x * x - ref)

    w = 60.0 / R
    pieces = [(-np.inf, x0 - w), (x0 - w, x0 + w), (x0 + w, np.inf)]
    val = err = 0.0
    for lo, hi in pieces:
        v_, e_ = quad(f, lo, hi, epsabs=0.0, epsrel=1e-11, limit=200)
        val, err = val + v_, err + e_
    log_val = 2 * math.log(R) + math.log(val) + ref - 0.5 * math.log(2 * math.pi)
    return log_val, err / val


@point_function
def objective_gap(*, m: int, R: float, c: float, trials: int, seed: int, small: float = 1e-3,
                  confidence: float = 0.95) -> dict:
    """Fig. 2: population L2 error of ``s^`` against the empirical score-matching objectives on
    m samples of N(0, 1) (see the module docstring, panel b)."""
    from scipy.special import expit
    from scipy.stats import norm

    m = _count("m", m)
    R = _positive("R", R)
    c_ = _positive("c", c)
    if not c_ / m < 0.5:
        raise ValueError(f"c must lie in (0, m/2) so that the zero x0 > 0, got c={c_} with m={m}")
    trials = _count("trials", trials)
    x0 = float(norm.isf(c_ / m))
    if not x0 < R:
        raise ValueError(f"R must exceed the zero x0 = {x0:.3g} (the 1 - c/m quantile), got R={R}")
    log_l2, rel = _log_l2(R, x0)
    l2 = math.exp(log_l2)
    x0_paper = 10.0 * math.sqrt(math.log(m)) if m > 1 else 0.0
    log10_paper = (_log_l2(R, x0_paper)[0] / math.log(10)) if 0 < x0_paper < R else np.nan
    rng = np.random.default_rng(seed)
    explicit, implicit = np.empty(trials), np.empty(trials)
    chunk = max(1, (1 << 20) // m)
    b = _logit(x0 / R)
    for start in range(0, trials, chunk):
        k = min(chunk, trials - start)
        x = rng.standard_normal((k, m))
        g = expit(R * (x - x0) + b)                          # s^ - s = R g, s^' - s' = R^2 g (1 - g)
        explicit[start:start + k] = np.mean((R * g) ** 2, axis=1)
        implicit[start:start + k] = np.mean(R * g * (R * g - 2 * x) + 2 * R * R * g * (1 - g), axis=1)
    k_small = int(np.sum(explicit <= small * l2))
    lo, hi = _interval(k_small, trials, confidence)
    return {"x0": x0, "l2": l2, "l2_rel_error": rel, "l2_theory": R * R * c_ / m,
            "log10_eta": (-_logit(x0 / R) + R * x0 - 0.5 * R * R) / math.log(10) if R * R < 1e300 else np.nan,
            "objective_median": float(np.median(explicit)), "objective_mean": float(np.mean(explicit)),
            "objective_mean_se": float(np.std(explicit, ddof=1) / math.sqrt(trials)) if trials > 1 else np.nan,
            "implicit_median": float(np.median(implicit)),
            "p_objective_small": k_small / trials, "p_objective_small_lo": lo, "p_objective_small_hi": hi,
            "p_theory_small": (1 - c_ / m) ** m, "log10_l2_paper_zero": log10_paper, "trials": trials}


# -- (c) the random-feature flow on the far-mode mixture -----------------------------------
@point_function
def trajectory(*, n: int, m: int, eta: float, R: float, seed: int, tau_lo: float, tau_hi: float,
               per_decade: float, t_eval: list, delta: float = 0.01, n_time: int = 64, t_min: float = 1e-3,
               T: float = 8.0, weighting: str = "sigma2", tv_tol: float = 2e-3, kl_tol: float = 1e-2,
               l2_order: int = 64, sde: bool = True) -> dict:
    """L2 score error, D^delta, TV and KL along the flow (see the module docstring, panel c)."""
    n = _count("n", n)
    eta = _open_unit("eta", eta)
    R = _positive("R", R)
    delta = _open_unit("delta", delta)
    t1 = time.perf_counter()
    target = quantile_mixture(eta, R)
    flow, problem, x = c.rf_flow(target, n, m, seed=seed, data_seed=seed, n_time=n_time, t_min=t_min, T=T,
                                 weighting=weighting)
    taus = c.tau_grid(tau_lo, tau_hi, per_decade)
    t_eval = np.asarray(t_eval, dtype=float)
    scores = [flow.score_at(float(tau)) for tau in taus]
    true = target.score_fn(OU())
    far = GaussianMixture([1.0], [[R]], [1.0])               # the far component alone
    l2 = np.empty((len(taus), len(t_eval)))
    l2_err, dq, dq_err, l2_far = np.empty_like(l2), np.empty_like(l2), np.empty_like(l2), np.empty_like(l2)
    for i, s in enumerate(scores):
        for j, t in enumerate(t_eval):
            a = metrics.l2_score_error(s, target, float(t), order=l2_order)
            b = metrics.l2_score_error(s, target, float(t), order=2 * l2_order)
            l2[i, j], l2_err[i, j] = b, abs(b - a)
            # the far mode's share eta E_{far_t}|s - grad log p_t|^2 (the true score of the mixture)
            l2_far[i, j] = eta * metrics.score_distance(s, true, far, float(t), order=2 * l2_order)
            q = metrics.quantile_error_1d(s, true, target, float(t), delta=delta)
            dq[i, j], dq_err[i, j] = q.value, q.error
    r_tv = metrics.tv(scores, target, t_min=t_min, T=T, tol=tv_tol)
    r_kl = kl_ode_path(flow, taus, target, tol=kl_tol, strict=False)
    tv_sde = np.full(len(taus), np.nan)
    tv_sde_err = np.full(len(taus), np.nan)
    if sde:                                                  # the reverse SDE's TV, one Fokker-Planck solve per tau
        for i, s in enumerate(scores):
            r = metrics.tv(s, target, t_min=t_min, T=T, kind="sde", tol=tv_tol)
            tv_sde[i], tv_sde_err[i] = r.value, r.error
    return {"l2_error": l2, "l2_error_error": l2_err, "l2_far": l2_far, "dq": dq, "dq_error": dq_err,
            "tv": np.asarray(r_tv.value), "tv_error": np.asarray(r_tv.error), "tv_sde": tv_sde,
            "tv_sde_error": tv_sde_err,
            "kl": np.asarray(r_kl.value, float), "kl_error": np.asarray(r_kl.error, float),
            "kl_converged": np.asarray(r_kl.converged, bool),
            "n_far_training": int(np.sum(x[:, 0] > 0.5 * R)), "seconds": time.perf_counter() - t1,
            "coords": {"tau": taus, "t_eval": t_eval},
            "dims": {"l2_error": ["tau", "t_eval"], "l2_error_error": ["tau", "t_eval"], "l2_far": ["tau", "t_eval"],
                     "dq": ["tau", "t_eval"],
                     "dq_error": ["tau", "t_eval"], "tv": ["tau"], "tv_error": ["tau"], "tv_sde": ["tau"],
                     "tv_sde_error": ["tau"], "kl": ["tau"],
                     "kl_error": ["tau"], "kl_converged": ["tau"]}}


# -- the experiment ------------------------------------------------------------------------
_FIG1 = dict(eta=1e-3, R=1e4, delta=0.01, t=0.1, quantile_tol=1e-8)
_FIG2 = dict(R=1e4, c=0.1)
_TRAJ = dict(n=200, m=256, eta=1e-3, R_values=[10.0, 8.0, 12.0], tau_lo=0.0, tau_hi=12.0, per_decade=1,
             t_eval=[0.01, 0.1, 1.0],
             delta=0.01, n_time=64, tv_tol=2e-3, kl_tol=1e-2)

PRESETS = {
    "tiny": dict(fig1=dict(_FIG1, m=[10, 1000], trials=400), fig2=dict(_FIG2, m=[10, 1000], trials=400),
                 traj=dict(_TRAJ, n=50, m=32, R_values=[10.0], tau_hi=8.0, per_decade=0.5, t_eval=[0.1], n_time=16,
                           tv_tol=5e-3, kl_tol=5e-2), seeds=[0]),
    "quick": dict(fig1=dict(_FIG1, m=[10, 20, 50, 100, 200, 500, 1000, 2000], trials=4000),
                  fig2=dict(_FIG2, m=[10, 20, 50, 100, 200, 500, 1000, 2000], trials=4000),
                  traj=_TRAJ, seeds=[0]),
    "full": dict(fig1=dict(_FIG1, m=[10, 20, 50, 100, 200, 500, 1000, 2000], trials=40000),
                 fig2=dict(_FIG2, m=[10, 20, 50, 100, 200, 500, 1000, 2000], trials=40000),
                 traj=dict(_TRAJ, m=1024, per_decade=2, n_time=128, tv_tol=1e-3, kl_tol=5e-3), seeds=[0, 1, 2]),
}


def tasks(p: dict) -> list:
    """Fig. 1 and Fig. 2: one point per m; the trajectory: one per (R, seed)."""
    f1, f2, tr = p["fig1"], p["fig2"], p["traj"]
    out = [Task(failure, dict({k: v for k, v in f1.items() if k != "m"}, m=int(mm), seed=i))
           for i, mm in enumerate(f1["m"])]
    out += [Task(objective_gap, dict({k: v for k, v in f2.items() if k != "m"}, m=int(mm), seed=100 + i))
            for i, mm in enumerate(f2["m"])]
    common = {k: v for k, v in tr.items() if k != "R_values"}
    out += [Task(trajectory, dict(common, R=float(R), seed=int(s))) for R in tr["R_values"] for s in p["seeds"]]
    return out


def _spearman(a, b):
    from scipy.stats import spearmanr

    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3:
        return np.nan
    return float(spearmanr(a[ok], b[ok]).statistic)


def _late_slope(tv, err):
    """Slope of ``log TV`` against ``log err`` over the taus from TV's minimiser on (1: TV
    proportional to the error there); NaN with fewer than 3 such points."""
    i = int(np.nanargmin(tv))
    a, b = np.log(tv[i:]), np.log(err[i:])
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3 or np.ptp(b[ok]) == 0:
        return np.nan
    return float(np.polyfit(b[ok], a[ok], 1)[0])


def reduce(p: dict, results: list):
    """Stack Fig. 1 over m1, Fig. 2 over m2, the trajectory over run = (R, seed); rank correlations of TV."""
    import xarray as xr

    n1, n2 = len(p["fig1"]["m"]), len(p["fig2"]["m"])
    r1 = xr.concat([r for r in results[:n1]], dim="m1").assign_coords(m1=list(p["fig1"]["m"]))
    r2 = xr.concat([r for r in results[n1:n1 + n2]], dim="m2").assign_coords(m2=list(p["fig2"]["m"]))
    runs = [(float(R), int(sd)) for R in p["traj"]["R_values"] for sd in p["seeds"]]
    r3 = xr.concat([r for r in results[n1 + n2:]], dim="run").assign_coords(
        run=np.arange(len(runs)), run_R=("run", [r for r, _ in runs]), run_seed=("run", [sd for _, sd in runs]))
    ds = xr.merge([r1.rename({k: f"fig1_{k}" for k in r1.data_vars}),
                   r2.rename({k: f"fig2_{k}" for k in r2.data_vars}),
                   r3.rename({k: f"traj_{k}" for k in r3.data_vars})], combine_attrs="drop")
    rho_l2 = np.array([[_spearman(ds.traj_tv.values[s], ds.traj_l2_error.values[s, :, j])
                        for j in range(ds.t_eval.size)] for s in range(ds.run.size)])
    rho_dq = np.array([[_spearman(ds.traj_tv.values[s], ds.traj_dq.values[s, :, j])
                        for j in range(ds.t_eval.size)] for s in range(ds.run.size)])
    ds["rank_corr_tv_l2"] = (("run", "t_eval"), rho_l2)
    main = ds.traj_l2_error.values - ds.traj_l2_far.values
    ds["rank_corr_tv_l2_main"] = (("run", "t_eval"), np.array(
        [[_spearman(ds.traj_tv.values[s], main[s, :, j]) for j in range(ds.t_eval.size)]
         for s in range(ds.run.size)]))
    ds["rank_corr_tv_dq"] = (("run", "t_eval"), rho_dq)
    ds["rank_corr_tv_kl"] = ("run", np.array([_spearman(ds.traj_tv.values[s], ds.traj_kl.values[s])
                                                for s in range(ds.run.size)]))
    # late phase (tau >= the TV minimiser): d log TV / d log error, least squares
    sl_l2 = np.array([[_late_slope(ds.traj_tv.values[s], ds.traj_l2_error.values[s, :, j])
                       for j in range(ds.t_eval.size)] for s in range(ds.run.size)])
    sl_dq = np.array([[_late_slope(ds.traj_tv.values[s], ds.traj_dq.values[s, :, j])
                       for j in range(ds.t_eval.size)] for s in range(ds.run.size)])
    ds["late_slope_tv_l2"] = (("run", "t_eval"), sl_l2)
    ds["late_slope_tv_dq"] = (("run", "t_eval"), sl_dq)
    ds["late_slope_tv_kl"] = ("run", np.array([_late_slope(ds.traj_tv.values[s], ds.traj_kl.values[s])
                                                 for s in range(ds.run.size)]))
    f1 = p["fig1"]
    attrs = {"fig1_eta": f1["eta"], "fig1_R": f1["R"], "fig1_delta": f1["delta"],
             "fig1_t": f1["t"], "fig1_quantile_tol": f1["quantile_tol"], "fig2_R": p["fig2"]["R"],
             "fig2_c": p["fig2"]["c"], "traj_n": p["traj"]["n"], "traj_m": p["traj"]["m"],
             "traj_eta": p["traj"]["eta"], "traj_R_values": list(p["traj"]["R_values"]),
             "traj_delta": p["traj"]["delta"]}
    ds.attrs.update(c.netcdf_attrs(attrs))
    return ds


def summary(ds) -> dict:
    out = {}
    for i, m in enumerate(ds.m1.values):
        out[f"fig1 m={m}: p_fail L2 [CI] vs (1/2)(1-eta)^m; p_fail D^delta [CI]"] = (
            round(float(ds.fig1_p_fail_l2[i]), 4), round(float(ds.fig1_p_fail_l2_lo[i]), 4),
            round(float(ds.fig1_p_fail_l2_hi[i]), 4), round(float(ds.fig1_p_theory_l2[i]), 4),
            round(float(ds.fig1_p_fail_quantile[i]), 4), round(float(ds.fig1_p_fail_quantile_hi[i]), 4))
    out["fig1 log10 E|s2-s1|^2, log10 D^delta(s2,s1), P[|s1-s2|>tol]"] = (
        float(ds.fig1_log10_l2_s2[0]), float(ds.fig1_log10_dq_s2[0]), float(ds.fig1_mass_above_tol[0]))
    for i, m in enumerate(ds.m2.values):
        out[f"fig2 m={m}: L2 m/R^2, median objective, P(objective small) [CI] vs (1-c/m)^m"] = (
            float(ds.fig2_l2[i] * m / ds.attrs["fig2_R"] ** 2), float(ds.fig2_objective_median[i]),
            float(ds.fig2_p_objective_small[i]), float(ds.fig2_p_objective_small_lo[i]),
            float(ds.fig2_p_objective_small_hi[i]), float(ds.fig2_p_theory_small[i]))
    for j, t in enumerate(ds.t_eval.values):
        out[f"traj t={t:g}: Spearman(TV, L2), (TV, L2 without the far mode), (TV, D^delta) per run (R, seed)"] = (
            [round(float(x), 3) for x in ds.rank_corr_tv_l2.values[:, j]],
            [round(float(x), 3) for x in ds.rank_corr_tv_l2_main.values[:, j]],
            [round(float(x), 3) for x in ds.rank_corr_tv_dq.values[:, j]])
    out["traj Spearman(TV, KL) per run (R, seed)"] = [round(float(x), 3) for x in ds.rank_corr_tv_kl.values]
    for j, t in enumerate(ds.t_eval.values):
        out[f"traj t={t:g}: late-phase slope dlogTV/dlog L2, dlogTV/dlog D^delta per run (R, seed)"] = (
            [round(float(x), 3) for x in ds.late_slope_tv_l2.values[:, j]],
            [round(float(x), 3) for x in ds.late_slope_tv_dq.values[:, j]])
        share = []
        for k in range(ds.run.size):
            i = int(np.argmin(ds.traj_tv.values[k]))
            share.append((round(float(ds.traj_l2_far.values[k, -1, j] / ds.traj_l2_error.values[k, -1, j]), 3),
                          round(float(ds.traj_l2_far.values[k, i, j] / ds.traj_l2_error.values[k, i, j]), 3)))
        out[f"traj t={t:g}: far-mode share of L2 at the last tau, at TV's minimiser, per run"] = share
    out["traj late-phase slope dlogTV/dlog KL per run (R, seed)"] = [round(float(x), 3)
                                                                     for x in ds.late_slope_tv_kl.values]
    j = int(np.argmin(np.abs(ds.t_eval.values - 0.1)))
    at_star = []
    for k in range(ds.run.size):
        i = int(np.argmin(ds.traj_tv.values[k]))
        at_star.append((float(ds.run_R.values[k]), float(ds.tau.values[i]), round(float(ds.traj_tv.values[k, i]), 4),
                        round(float(ds.traj_tv_sde.values[k, i]), 4),
                        round(float(ds.traj_dq.values[k, i, j]), 4), round(float(ds.traj_l2_error.values[k, i, j]), 4),
                        round(float(ds.traj_l2_far.values[k, i, j]), 4), round(float(ds.traj_kl.values[k, i]), 4)))
    key = "traj at TV's minimiser per run: (R, tau*, TV ODE, TV SDE, D^delta, L2, L2 far part, KL)"
    out[f"{key}, t={ds.t_eval.values[j]:g}"] = at_star
    out["traj runs (R, seed)"] = [(float(r), int(sd)) for r, sd in zip(ds.run_R.values, ds.run_seed.values)]
    out["traj TV at the end, min over tau, per run"] = [(round(float(ds.traj_tv.values[k, -1]), 4),
                                                         round(float(ds.traj_tv.values[k].min()), 4))
                                                        for k in range(ds.run.size)]
    return out


def plot(ds, stem):
    from .. import plotting as P

    with P.style():
        fig, axes = P.subplots(4, 1, height=9.6)
        ax = axes[0, 0]
        m1 = ds.m1.values
        for name, label, col in (("l2", r"$L^2$ error $>0$", P.COLORS[0]),
                                 ("quantile", rf"$D^\delta$ error $>$ {ds.attrs['fig1_quantile_tol']:g}",
                                  P.COLORS[1])):
            y = ds[f"fig1_p_fail_{name}"].values
            ax.errorbar(m1, y, yerr=[y - ds[f"fig1_p_fail_{name}_lo"].values,
                                     ds[f"fig1_p_fail_{name}_hi"].values - y],
                        fmt="o", color=col, label=f"{label} (MC, 95% CI)", capsize=1.5)
        mm = np.geomspace(m1.min(), m1.max(), 200)
        ax.plot(mm, 0.5 * (1 - ds.attrs["fig1_eta"]) ** mm, "-", color=P.COLORS[0], lw=0.8,
                label=r"$\frac{1}{2}(1-\eta)^m$")
        ax.axhline(0.0, color=P.COLORS[1], lw=0.8, label=r"0 ($\delta > \eta$)")
        ax.set(xscale="log", xlabel="samples m", ylabel="P(ERM error > 0)", ylim=(-0.03, 0.55))
        ax.set_title(rf"(a) Fig. 1: $\eta$={ds.attrs['fig1_eta']:g}, R={ds.attrs['fig1_R']:g}, "
                     rf"$\delta$={ds.attrs['fig1_delta']:g}, t={ds.attrs['fig1_t']:g}", loc="left", fontsize=8)
        ax.legend(fontsize=5.5)
        ax = axes[1, 0]
        m2 = ds.m2.values
        R2 = ds.attrs["fig2_R"] ** 2
        ax.plot(m2, ds.fig2_l2.values / R2, "o-", label=r"$E|\hat s - s|^2 / R^2$ (population)")
        ax.plot(m2, ds.fig2_l2_theory.values / R2, ":", color="k", lw=0.8, label=r"$c/m$")
        ax.plot(m2, ds.fig2_objective_mean.values / R2, "^:", label=r"mean empirical objective $/R^2$")
        med = ds.fig2_objective_median.values
        ax.set(xscale="log", yscale="log", xlabel="samples m", ylabel=r"squared error $/R^2$")
        ax.set_title(rf"(b) Fig. 2: zero of $\hat s$ at the $1-c/m$ quantile, c={ds.attrs['fig2_c']:g}",
                     loc="left", fontsize=8)
        ax.legend(fontsize=5.5, loc="lower left", title_fontsize=5.5,
                  title="median empirical objective: " + ("0 (float64) at every m" if np.all(med == 0)
                                                           else f"max {med.max() / R2:.2g} R$^2$"))
        ax2 = ax.twinx()
        y = ds.fig2_p_objective_small.values
        ax2.errorbar(m2, y, yerr=[y - ds.fig2_p_objective_small_lo.values, ds.fig2_p_objective_small_hi.values - y],
                     fmt="s", color=P.COLORS[1], capsize=1.5, markersize=2.5,
                     label=r"P(objective $\leq 10^{-3}\,E|\hat s - s|^2$)")
        ax2.plot(m2, ds.fig2_p_theory_small.values, "-", color=P.COLORS[1], lw=0.8, label=r"$(1-c/m)^m$")
        ax2.set_ylim(0, 1.05)
        ax2.set_ylabel("probability", color=P.COLORS[1])
        ax2.legend(fontsize=5.5, loc="upper right", bbox_to_anchor=(1.0, 0.8))
        ax = axes[2, 0]
        tau = ds.tau.values
        j = int(np.argmin(np.abs(ds.t_eval.values - 0.1)))
        tv = ds.traj_tv.values[0]
        ax.plot(tau, tv, "o-", color="k", label=r"TV$(p_0, p_{gen})$, ODE")
        if np.any(np.isfinite(ds.traj_tv_sde.values[0])):
            ax.plot(tau, ds.traj_tv_sde.values[0], "o:", color="k", markerfacecolor="none", label="TV, SDE")
        ax.plot(tau, P.positive(ds.traj_kl.values[0]), "x--", color="0.5", label="KL ODE")
        t_j = ds.t_eval.values[j]
        ax.plot(tau, ds.traj_l2_error.values[0, :, j], "s-", color=P.COLORS[0],
                label=rf"$L^2$ score error, t={t_j:g} (Spearman with TV {ds.rank_corr_tv_l2.values[0, j]:.2f})")
        ax.plot(tau, ds.traj_l2_far.values[0, :, j], ":", color=P.COLORS[0],
                label=r"its far-mode share $\eta\,E_{far}|s - \nabla\log p_t|^2$")
        ax.plot(tau, P.positive(ds.traj_dq.values[0, :, j], 1e-6), "^-", color=P.COLORS[1],
                label=rf"$D^{{0.01}}$, t={t_j:g} (Spearman {ds.rank_corr_tv_dq.values[0, j]:.2f})")
        ax.set(xscale="log", yscale="log", xlabel=r"training time $\tau$", ylabel="error")
        ax.set_title(rf"(c) RF flow, n={ds.attrs['traj_n']}, m={ds.attrs['traj_m']}, "
                     rf"$\eta$={ds.attrs['traj_eta']:g}, R={float(ds.run_R.values[0]):g}", loc="left", fontsize=8)
        ax.legend(fontsize=5)
        ax = axes[3, 0]
        Rs = ds.run_R.values.astype(float)
        order = np.argsort(Rs, kind="stable")
        star = np.array([int(np.argmin(ds.traj_tv.values[k])) for k in range(ds.run.size)])
        pick = lambda a: np.array([a[k, star[k]] for k in range(ds.run.size)])[order]  # noqa: E731
        for y, e, label, fmt, col in (
                (pick(ds.traj_tv.values), pick(ds.traj_tv_error.values), r"TV$(p_0, p_{gen})$, ODE", "o-", "k"),
                (pick(ds.traj_tv_sde.values), pick(ds.traj_tv_sde_error.values), "TV, SDE", "o:", "0.3"),
                (pick(ds.traj_dq.values[:, :, j]), pick(ds.traj_dq_error.values[:, :, j]),
                 rf"$D^{{0.01}}$, t={t_j:g}", "^-", P.COLORS[1]),
                (pick(ds.traj_l2_error.values[:, :, j]), pick(ds.traj_l2_error_error.values[:, :, j]),
                 rf"$L^2$ score error, t={t_j:g}", "s-", P.COLORS[0]),
                (pick(ds.traj_l2_far.values[:, :, j]), None, r"its far-mode share", "s:", P.COLORS[0]),
                (pick(ds.traj_kl.values), pick(ds.traj_kl_error.values), "KL ODE", "x--", "0.5")):
            ax.errorbar(Rs[order], y, yerr=e, fmt=fmt, color=col, label=label, capsize=1.5)
        ax.set(yscale="log", xlabel="far-mode distance R", ylabel=r"error at TV's minimiser $\tau^*$")
        ax.set_title(rf"(d) at $\tau^*$ against R (the far mode, mass $\eta$, unseen)", loc="left", fontsize=8)
        ax.legend(fontsize=5, ncol=2, loc="upper left", bbox_to_anchor=(0.0, 0.92))
        return P.save_figure(fig, ds, stem)


EXPERIMENT = Experiment(name=NAME, title=TITLE, presets=PRESETS, tasks=tasks, reduce=reduce, plot=plot,
                        summary=summary,
                        regime="1D: (a) eta = 1e-3, R = 1e4, delta = 0.01, OU noise level t = 0.1, m = 10..2000; "
                               "(b) R = 1e4, zero at the 1 - c/m quantile; (c) random-feature flow (ReLU) on "
                               "(1 - eta) N(0,1) + eta N(R,1), eta = 1e-3, R = 8, 10, 12, n = 200 (n eta = 0.2), "
                               "m = 256")
