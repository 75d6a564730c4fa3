"""Experiment ``reproducibility`` (seed 003): data checks at tiny size.

References: the empirical-optimal pair (memorisation extreme: RP = 1, GL = 0),
the true-score pair (GL = 1 up to the chance rate of the copy criterion), an
identical pair (RP = 1 exactly), the untrained pair (A = 0: the ODE dx/dt = -x
solved in closed form), the library's own training form, and the direct
evaluation of the score error.
"""
import math

import numpy as np
import pytest

import rfdiff as rf
from analysis.experiments import reproducibility as R
from rfdiff.run import run_serial

TINY = R.PRESETS["tiny"]


@pytest.fixture(scope="module")
def tiny():
    return run_serial(R.EXPERIMENT, "tiny")


def test_tiny_reference_pairs(tiny):
    emp = tiny.sel(model="empirical")
    # the same deterministic map twice: every pair coincides, and every sample is a training point
    assert np.all(emp.rp.values == 1.0) and np.all(emp.median_pair_distance.values == 0.0)
    assert np.all(emp.gl.values <= 0.01) and np.all(emp.gl_threshold.values <= 0.01)
    assert np.all(emp.dist_to_empirical.values == 0.0)
    true = tiny.sel(model="true")
    assert np.all(true.rp.values == 1.0)
    # fresh draws: a copy by chance has probability ~ copy_ratio^r (r = 2: 0.11); 3 standard errors
    chance = TINY["copy_ratio"] ** 2
    n = TINY["n_samples"]
    assert np.all(true.gl.values >= 1 - chance - 3 * math.sqrt(chance * (1 - chance) / n))
    assert np.all(true.gl_threshold.values >= 0.9)
    assert np.all(true.score_error.values == 0.0)
    # the empirical score's error against the true one falls with N
    e = emp.score_error.values.squeeze()
    assert e[-1] < e[0]


def test_tiny_model_pairs(tiny):
    for mod in ("rf", "mlp"):
        d = tiny.sel(model=mod)
        assert d.pair_distances.shape[-1] == TINY["n_samples"]
        assert np.all((d.rp.values >= 0) & (d.rp.values <= 1))
        # RP (rfdiff.metrics.reproducibility) is the fraction of the pair distances below the threshold
        # (reduce's own count, in float64 before the per-draw arrays are stored as float32)
        np.testing.assert_array_equal(d.rp_at.sel(rp_threshold=TINY["threshold"]).values, d.rp.values)
    rf_ = tiny.sel(model="rf")
    curve = rf_.score_error_tau.values                  # (r, N, seed, tau)
    assert np.all(np.isfinite(curve))
    # the early-stopping time is the grid minimiser of the pair's error curve
    star = 10.0 ** R.TAU_EXPONENTS[np.argmin(curve, axis=-1)]
    np.testing.assert_allclose(rf_.tau_star_scaled.values, star)
    assert not np.any(tiny.sel(model="mlp").diverged.values)


def _target(d=6, K=2, r=2):
    return R.block_mixture(d, K, r, 0)


def test_block_mixture_is_orthogonal_blocks():
    t = _target(8, 2, 3)
    B = np.concatenate(list(t.bases), axis=1)
    np.testing.assert_allclose(B.T @ B, np.eye(6), atol=1e-12)
    x = t.sample(500, seed=1)
    np.testing.assert_allclose(t.subspace_distance(x), 0.0, atol=1e-12)
    assert abs(np.mean(np.sum(x * x, axis=1)) - 3.0) < 0.3      # E|x|^2 = r


def _rows_problem(parametrization, seed=1, N=5, d=6, m=64):
    t = _target(d)
    x = t.sample(N, seed=0)
    model = rf.RandomFeatureScore(m, dim=d, seed=seed, w_scale=1 / math.sqrt(d))
    sm = rf.ScoreMatching(model, x, rf.OU(), 1e-3, 8.0, "sigma2", n_time=8, n_eps=4, seed=0)
    return t, x, sm, R.RFPairMember(model, sm, parametrization)


def test_rows_form_matches_library_training_form():
    _, _, sm, member = _rows_problem("score")
    lib = sm.train_form
    np.testing.assert_allclose(member.form.gram, lib.gram, rtol=1e-10, atol=1e-12 * np.abs(lib.gram).max())
    np.testing.assert_allclose(member.form.cross, lib.cross, rtol=1e-10, atol=1e-12 * np.abs(lib.cross).max())


@pytest.mark.parametrize("par", R.PARAMETRIZATIONS)
def test_score_error_curve_equals_direct_evaluation(par):
    t, _, _, member = _rows_problem(par)
    nodes = R.ScoreErrorNodes(t, rf.OU(), 1e-3, 8.0, 5, 128)
    taus = np.array([0.0, 3.0 / member.flow.lambda_max, np.inf])
    curve = member.score_error_curve(taus, nodes)

    def by_hand(score):          # E = sum_t w_t sigma_t^2 mean_i |s(z_i, t) - grad log p_t(z_i)|^2
        terms = [w * float(rf.OU().sigma2(tt)) * np.sum((score(z, np.full(len(z), tt)) - y) ** 2, axis=1)
                 for tt, w, z, y in zip(nodes.t, nodes.w, nodes.z, nodes.ref)]
        return sum(e.mean() for e in terms), math.sqrt(sum(e.var(ddof=1) / len(e) for e in terms))

    direct = np.array([by_hand(member.score(tau)) for tau in taus])
    np.testing.assert_allclose(curve, direct[:, 0], rtol=1e-10)
    np.testing.assert_allclose([nodes(member.score(tau)) for tau in taus], direct, rtol=1e-10)
    assert nodes(t.score_fn(rf.OU())) == (0.0, 0.0)


def test_identical_pair_has_rp_exactly_one():
    t, x, _, member = _rows_problem("score")
    process = rf.OU()
    noise = rf.samplers.prior_noise(300, 6, seed=3)
    ts = rf.samplers.time_schedule(8.0, 1e-3, 32)
    a = R.sample(member.score(np.inf), noise, ts, process)
    b = R.sample(_rows_problem("score")[3].score(np.inf), noise, ts, process)   # rebuilt from scratch
    out = R.sample_metrics(a, b, x, math.sqrt(2), 0.1, 1 / 3)
    assert out["rp"] == 1.0 and np.all(out["pair_distances"] == 0.0)


def test_untrained_pair_maps_noise_to_the_same_point():
    """tau = 0, A = 0: s = 0 for both (different W, U), so dx/dt = -x for both and the
    samples coincide: RP = 1 although the features differ (not the identity map:
    x_T e^{T - t_min}, then the Tweedie step divides by alpha = e^{-t_min})."""
    process = rf.OU()
    scores = [_rows_problem("score", seed=s)[3].score(0.0) for s in (1, 2)]
    noise = rf.samplers.prior_noise(200, 6, seed=4)
    ts = rf.samplers.time_schedule(8.0, 1e-3, 256)
    a, b = (R.sample(s, noise, ts, process) for s in scores)
    np.testing.assert_array_equal(a, b)
    # Heun on dx/dt = -x multiplies by 1 - h + h^2/2 per step (h < 0); e^{8} up to its error
    gain = np.prod(1 - np.diff(ts) + np.diff(ts) ** 2 / 2) * math.exp(1e-3)
    np.testing.assert_allclose(a, noise * gain, rtol=1e-12)
    assert abs(gain / math.exp(8.0) - 1) < 0.05
    x = _target().sample(5, seed=0)
    assert R.sample_metrics(a, b, x, math.sqrt(2), 0.1, 1 / 3)["rp"] == 1.0


def test_gl_criteria():
    x = _target().sample(20, seed=0)
    copies = x[np.arange(50) % 20] + 1e-6
    out = R.sample_metrics(copies, copies, x, math.sqrt(2), 0.1, 1 / 3)
    assert out["gl"] == 0.0 and out["gl_threshold"] == 0.0
    far = x[:10] + 10.0
    out = R.sample_metrics(far, far, x, math.sqrt(2), 0.1, 1 / 3)
    assert out["gl_threshold"] == 1.0


def test_mlp_divergence_is_recorded():
    kw = dict(TINY, mlp_lr=1e200, mlp_steps=3)
    kw = {k: kw[k] for k in R._POINT_KEYS if k in kw and k != "K"}
    out = R.point(N=4, d=6, K=2, r=2, seed=0, model="mlp", **kw)
    assert out["diverged"] and math.isnan(out["rp"]) and math.isnan(out["score_error"])


@pytest.mark.parametrize("kw, name", [(dict(r=7, d=6), "r"), (dict(K=3, r=3, d=8), r"K\*r"), (dict(N=0), "N"),
                                      (dict(N=2.5), "N"), (dict(threshold=0.0), "threshold"),
                                      (dict(threshold=-1.0), "threshold"), (dict(model="gan"), "model")])
def test_bad_inputs(kw, name):
    args = dict(N=4, d=6, K=2, r=2, seed=0, model="true")
    args.update(kw)
    with pytest.raises(ValueError, match=rf"^{name} must"):
        R.point(**args)


def test_presets_cover_the_issue_grid():
    for name in ("quick", "full"):
        p = R.PRESETS[name]
        assert p["n_samples"] >= 1000 and p["N_values"][0] == 2 and p["N_values"][-1] >= 20 * p["d"]
        assert set(p["r_values"]) == {2, 4, 7} and all(p["K"] * r <= p["d"] for r in p["r_values"])
        assert sorted(p["models"]) == sorted(R.MODELS)
    assert 8 <= R.PRESETS["quick"]["d"] <= 16 and R.PRESETS["full"]["d"] == 48


def test_plot_writes_the_numbers_behind_it(tiny, tmp_path):
    import xarray as xr
    paths = R.plot(tiny, tmp_path / "reproducibility")
    back = xr.load_dataset([p for p in paths if str(p).endswith(".nc")][0])
    np.testing.assert_array_equal(back.rp.values, tiny.rp.values)
    assert set(R.summary(tiny)) == {"rf_r2", "rf_early_r2", "mlp_r2"}
