"""Experiment ``quantile-vs-l2`` (seed 002): Fig. 1 and Fig. 2 point functions against their
analytic values, D^delta on sets of small mass, and the tiny preset's data."""
import math

import mpmath
import numpy as np
import pytest
from scipy.special import expit
from scipy.stats import norm

import rfdiff as rf
from analysis.experiments import quantile_vs_l2 as Q

FIG1 = dict(eta=1e-3, R=1e4, delta=0.01, trials=2000, t=0.1, confidence=0.99)


@pytest.mark.parametrize("m", [10, 1000])
def test_failure_matches_half_one_minus_eta_to_the_m(m):
    with np.errstate(over="raise", invalid="raise"):
        r = Q.failure(m=m, seed=m, **FIG1)
    theory = 0.5 * (1 - FIG1["eta"]) ** m
    assert r["p_fail_l2_lo"] <= theory <= r["p_fail_l2_hi"]
    assert r["p_fail_l2_hi"] - r["p_fail_l2_lo"] < 0.08          # the interval is informative
    # D^delta error of the minimiser is 0 at the tolerance: delta > eta
    assert r["p_fail_quantile"] == 0.0 and r["p_fail_quantile_hi"] < 0.005
    # ties are exactly the draws without a far-mode sample
    assert r["tie_fraction"] == r["p_no_far_sample"]
    # the wrong score's L2 error: ~ eta R_t^2 (far mode: |s1 - s2| ~ R_t)
    Rt = FIG1["R"] * math.exp(-FIG1["t"])
    assert abs(r["log10_l2_s2"] - math.log10(FIG1["eta"] * Rt ** 2)) < 0.01


@pytest.mark.parametrize("kw, name", [
    ({"delta": 0.0}, "delta"), ({"delta": 1.0}, "delta"), ({"eta": 0.0}, "eta"), ({"eta": 1.5}, "eta"),
    ({"R": 0.0}, "R"), ({"R": -3.0}, "R"), ({"m": 0}, "m"), ({"m": 2.5}, "m")])
def test_failure_bad_input(kw, name):
    p = dict(m=10, eta=1e-3, R=1e4, delta=0.01, trials=10, seed=0)
    p.update(kw)
    with pytest.raises(ValueError, match=rf"^{name} must"):
        Q.failure(**p)


def test_quantile_error_zero_when_scores_differ_on_small_mass():
    """|s - s_ref| = 5 on {x > 2.5}, of N(0,1)-mass 0.0062: D^0.01 = 0, D^0.005 = 5."""
    g = rf.GaussianMixture([1.0], [[0.0]], [1.0])
    ref = rf.as_score(lambda z, t: -z)
    s = rf.as_score(lambda z, t: -z + 5.0 * (z > 2.5))
    mass = norm.sf(2.5)
    assert mass < 0.01
    r = rf.metrics.quantile_error_1d(s, ref, g, 1e-12, delta=0.01)
    assert r.value == 0.0 and r.error == 0.0
    assert rf.metrics.quantile_error_1d(s, ref, g, 1e-12, delta=0.5 * mass).value == pytest.approx(5.0)


def test_quantile_gap_against_direct_computation():
    """At moderate R (no underflow) the log-space D^delta(s2, s1) and L2 gap agree with
    rfdiff.metrics on the mixtures' exact scores."""
    eta, R, t, delta = 1e-3, 4.0, 0.1, 0.01
    p1, p2 = rf.quantile_mixture(eta, R, sign=-1), rf.quantile_mixture(eta, R)
    s1, s2 = p1.score_fn(rf.OU()), p2.score_fn(rf.OU())
    q = Q.quantile_gap(eta, R, t, delta, 1e-8)
    direct = rf.metrics.quantile_error_1d(s2, s1, p1, t, delta=delta, n_cells=1 << 15)
    assert q["log10_dq_lo"] - 1e-3 <= math.log10(direct.value) <= q["log10_dq"] + 1e-3
    l2, err = Q.l2_gap(eta, R, t)
    assert abs(10 ** l2 - rf.metrics.l2_score_error(s2, p1, t, order=200)) < 1e-6 * 10 ** l2 + 10 ** l2 * err
    # here |s1 - s2| > 1e-8 on most of the mass: the criterion of Fig. 1 flips
    assert q["mass_above_eps"] > delta


def test_quantile_gap_fig1_mass_is_the_far_mode():
    q = Q.quantile_gap(1e-3, 1e4, 0.1, 0.01, 1e-8)
    assert 1e-3 * (1 - 1e-9) <= q["mass_above_eps"] <= q["mass_above_eps_hi"] <= 1e-3 + 1e-12
    assert q["log10_dq"] < -1e6


def test_objective_gap_l2_against_mpmath():
    R, m, c = 20.0, 50, 0.1
    r = Q.objective_gap(m=m, R=R, c=c, trials=10, seed=0)
    x0 = norm.isf(c / m)
    b = math.log(x0 / R) - math.log1p(-x0 / R)
    mpmath.mp.dps = 30
    f = lambda x: R ** 2 / (1 + mpmath.e ** (-(R * (x - x0) + b))) ** 2 * mpmath.npdf(x)  # noqa: E731
    ref = float(mpmath.quad(f, [-mpmath.inf, x0 - 1, x0, x0 + 1, mpmath.inf]))
    assert r["l2"] == pytest.approx(ref, rel=1e-9)
    # s^(x0) = 0 by construction
    assert -x0 + R * expit(b) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("m", [20, 500])
def test_objective_small_with_probability_one_minus_c_over_m_to_the_m(m):
    r = Q.objective_gap(m=m, R=1e4, c=0.5, trials=3000, seed=7, confidence=0.99)
    assert r["p_objective_small_lo"] <= r["p_theory_small"] <= r["p_objective_small_hi"]
    assert r["objective_median"] < 1e-6 * r["l2"]
    assert r["l2"] == pytest.approx(r["l2_theory"], rel=0.05)        # Omega(R^2/m): ~ c R^2 / m


def test_tiny_preset_data():
    from rfdiff.run import run_serial

    ds = run_serial(Q.EXPERIMENT, "tiny")
    for i, m in enumerate(ds.m1.values):
        assert ds.fig1_p_fail_l2_lo[i] <= 0.5 * (1 - 1e-3) ** m <= ds.fig1_p_fail_l2_hi[i]
        assert ds.fig1_p_fail_quantile[i] == 0.0
    tv, tv_e = ds.traj_tv.values, ds.traj_tv_error.values
    kl, kl_e = ds.traj_kl.values, ds.traj_kl_error.values
    assert np.all((tv >= 0) & (tv <= 1))
    assert np.all(tv - tv_e <= np.sqrt(np.maximum(kl + kl_e, 0) / 2))      # Pinsker
    tv_sde = ds.traj_tv_sde.values
    assert np.all(np.isfinite(tv_sde) & (tv_sde >= 0) & (tv_sde <= 1))
    # the same score at tau = 1 (still at the prior): both samplers spread it far beyond p_0
    assert tv[0, 0] > 0.9 and tv_sde[0, 0] > 0.9
    assert np.all(np.abs(ds.rank_corr_tv_l2.values) <= 1)
    assert np.all(ds.traj_dq.values >= 0)
    s = Q.EXPERIMENT.summary(ds)
    assert any(k.startswith("fig1 m=10:") for k in s)


@pytest.mark.parametrize("kw, name", [({"c": 0.0}, "c"), ({"c": 30.0}, "c"), ({"R": 1.0}, "R"),
                                      ({"m": 0}, "m"), ({"trials": 0}, "trials")])
def test_objective_gap_bad_input(kw, name):
    p = dict(m=50, R=1e4, c=0.1, trials=10, seed=0)
    p.update(kw)
    with pytest.raises(ValueError, match=rf"^{name} must"):
        Q.objective_gap(**p)


def test_failure_reproducible():
    a = Q.failure(m=50, eta=1e-2, R=1e4, delta=0.05, trials=300, seed=3)
    b = Q.failure(m=50, eta=1e-2, R=1e4, delta=0.05, trials=300, seed=3)
    c = Q.failure(m=50, eta=1e-2, R=1e4, delta=0.05, trials=300, seed=4)
    assert a["k_fail_l2"] == b["k_fail_l2"] and a["p_no_far_sample"] == b["p_no_far_sample"]
    assert (a["k_fail_l2"], a["p_no_far_sample"]) != (c["k_fail_l2"], c["p_no_far_sample"])
