"""Experiment pre-memorization (analysis/experiments/pre_memorization.py) at tiny size:
the data against independent references and invariants; bad inputs."""
import numpy as np
import pytest

from analysis.experiments import pre_memorization as pmx
from rfdiff.model import premem as pm
from rfdiff.model import premem_theory as th
from rfdiff.model.noise_gram import noise_gram, population_gram
from rfdiff.run import registered, run_serial


@pytest.fixture(scope="module")
def tiny():
    return run_serial(pmx.EXPERIMENT, "tiny")


def test_tiny_run_invariants(tiny):
    ds = tiny
    p = pmx.PRESETS["tiny"]
    assert ds.train_loss.dims == ("psi_n", "seed", "tau")
    assert ds.spectrum.shape[-1] == p["psi_p"] * p["d"]
    # L(0) = E_score(0) = 1; at tau = 0.1 barely moved
    np.testing.assert_allclose(ds.train_loss.isel(tau=0), 1.0, atol=0.02)
    np.testing.assert_allclose(ds.escore.isel(tau=0), 1.0, atol=0.05)
    # the flow decreases the training loss monotonically; it ends at its inf value
    assert np.all(np.diff(ds.train_loss.values, axis=-1) <= 1e-13)
    assert np.all(ds.train_loss_inf.values <= ds.train_loss.isel(tau=-1).values + 1e-12)
    # generalization before memorization; E_score has a minimum below 1 and then rises
    assert np.all(ds.tau_gen.values < ds.tau_mem.values)
    assert np.all(ds.escore_min.values < 0.5)
    assert np.all(ds.escore_inf.values > ds.escore_min.values)
    assert np.all(ds.gen_loss_inf.values > 0)
    assert np.all(ds.spectrum.values > 0) and np.all(ds.n_clipped.values == 0)
    assert np.all(ds.gram_error.values < 1e-8)
    # tau_mem is where L_gen crosses half its limit (check on the stored curve)
    for i in range(ds.sizes["psi_n"]):
        for s in range(ds.sizes["seed"]):
            sel = ds.isel(psi_n=i, seed=s)
            tm = float(sel.tau_mem)
            g = np.interp(np.log(tm), np.log(ds.tau.values), sel.gen_loss.values)
            assert g == pytest.approx(0.5 * float(sel.gen_loss_inf), rel=1e-9)
    # the theory column is the theory module's
    c = th.theory_constants(p["t"])
    for x in p["psi_n"]:
        assert float(ds.tau_mem_theory.sel(psi_n=x)[0]) == pytest.approx(th.tau_mem_theory(c, p["psi_p"], x))
    # the theory density: two or more pieces, memorization below population, tau_mem_density
    # from the lower edge
    assert np.all(ds.edge_density_mem_lo < ds.edge_density_mem_hi)
    assert np.all(ds.edge_density_mem_hi < ds.edge_density_pop_lo)
    np.testing.assert_allclose(ds.tau_mem_density, p["psi_p"] / (c.delta * ds.edge_density_mem_lo))
    # the fits are in the attributes, with an interval around the slope
    for k in ("tau_gen", "tau_mem"):
        lo, hi = ds.attrs[f"slope_{k}_ci"]
        assert lo <= ds.attrs[f"slope_{k}"] <= hi


def test_infinite_time_losses_against_least_squares(tiny):
    """L_train(inf), L_test(inf) against the least-squares A* = -sqrt(p/Delta) V U^{-1}
    computed here from the exact Grams with a linear solve (no flow)."""
    prm = pmx.PRESETS["tiny"]
    d, psi_p, psi_n, t, seed = prm["d"], prm["psi_p"], prm["psi_n"][1], prm["t"], prm["seeds"][1]
    p, n = psi_p * d, psi_n * d
    W = np.sqrt(d) * pm.paper_model(d, p, seed).W
    X = np.random.default_rng([seed, 1]).standard_normal((n, d))
    g, gp = noise_gram(W, X, t), population_gram(W, t)
    D = -np.expm1(-2 * t)
    A = -np.sqrt(p / D) * np.linalg.solve(g.U, g.V.T).T
    L = lambda U, V: (D / p * np.trace(A @ U @ A.T) + 2 * np.sqrt(D / p) * np.sum(A * V) + d) / d  # noqa: E731
    sel = tiny.sel(psi_n=psi_n, seed=seed)
    assert float(sel.train_loss_inf) == pytest.approx(1 - np.trace(g.V @ np.linalg.solve(g.U, g.V.T)) / d,
                                                      rel=1e-8)
    assert float(sel.train_loss_inf) == pytest.approx(L(g.U, g.V), rel=1e-8)
    assert float(sel.test_loss_inf) == pytest.approx(L(gp.U, gp.V), rel=1e-8)
    Es = (np.trace(A @ gp.U @ A.T) / p + 2 / np.sqrt(p) * np.sum(A * gp.Y) + d) / d
    assert float(sel.escore_inf) == pytest.approx(Es, rel=1e-8)


def test_first_crossing_and_bootstrap_slope():
    tau = np.logspace(0, 4, 5)
    assert pmx.first_crossing(tau, [0, 1, 2, 3, 4], 1.5, rising=True) == pytest.approx(10 ** 1.5)
    assert pmx.first_crossing(tau, [5, 4, 3, 2, 1], 5.5, rising=False) == 1.0
    assert np.isnan(pmx.first_crossing(tau, [0, 1, 2, 3, 4], 9, rising=True))
    n = np.array([8.0, 16, 32, 64])
    rng = np.random.default_rng(0)
    y = 3 * n**0.7 * np.exp(0.05 * rng.standard_normal((4, 4)))          # 4 seeds
    f = pmx.seed_bootstrap_slope(n, y)
    assert f["ci_low"] < f["slope"] < f["ci_high"] and abs(f["slope"] - 0.7) < 0.1
    assert f["ci_high"] - f["ci_low"] < 0.2
    exact = pmx.seed_bootstrap_slope(n, np.vstack([n**1.0, 2 * n**1.0]))
    assert exact["slope"] == pytest.approx(1.0) and exact["ci_low"] == pytest.approx(1.0)


@pytest.mark.parametrize("kw,name", [
    (dict(d=0), "d"), (dict(d=3.5), "d"), (dict(d=True), "d"), (dict(psi_p=-2), "psi_p"),
    (dict(psi_p=0.3), "psi_p"), (dict(psi_n=0.1), "psi_n"), (dict(psi_n=float("nan")), "psi_n"),
    (dict(t=0.0), "t"), (dict(t=-1.0), "t"), (dict(seed=-1), "seed"), (dict(seed=1.5), "seed"),
    (dict(sigma_x=0.0), "sigma_x")])
def test_point_bad_inputs(kw, name):
    args = dict(d=4, psi_p=2, psi_n=1, t=0.1, seed=0)
    args.update(kw)
    with pytest.raises(ValueError, match=rf"^{name} must"):
        pmx.point(**args)


def test_point_is_registered_for_sweeps():
    assert registered("analysis.experiments.pre_memorization:point") is pmx.point


def test_point_runs_from_a_sweep_config(tmp_path, monkeypatch):
    """``rfdiff sweep run`` with function = analysis.experiments.pre_memorization:point."""
    from pathlib import Path

    from rfdiff.run import collect, load_config, run_sweep
    monkeypatch.setenv("RFDIFF_CODE_VERSION", "premem-sweep-test")
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[2]))
    cfg = tmp_path / "sweep.toml"
    cfg.write_text('[sweep]\nname = "premem"\nfunction = "analysis.experiments.pre_memorization:point"\n'
                   'cache_dir = "cache"\n[grid]\npsi_n = [1, 2]\n[fixed]\nd = 6\npsi_p = 4\nt = 0.1\n'
                   'seed = 0\nper_decade = 2\n')
    rep = run_sweep(load_config(cfg), serial=True, progress=False)
    assert rep.failed == [] and rep.computed == 2
    ds = collect(load_config(cfg))
    assert ds["escore"].dims == ("psi_n", "tau") and ds["spectrum"].dims == ("psi_n", "mode")
    direct = pmx.point(d=6, psi_p=4, psi_n=2, t=0.1, seed=0, per_decade=2)
    np.testing.assert_allclose(ds["test_loss"].sel(psi_n=2).values, direct["test_loss"], rtol=1e-12)
