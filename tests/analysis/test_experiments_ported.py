"""The three figures ported onto rfdiff.run's protocol (kl-dynamics, modes-shift,
memorization-time): their tiny data, run by :func:`rfdiff.run.run_serial`, against
independent references and the invariants of their definitions.

(The figure pipeline's own checks, through ``analysis.figures.make``, are in
tests/analysis/test_figures.py; these exercise the protocol path and the point functions.)
"""
import numpy as np
import pytest
from scipy.stats import norm

pytest.importorskip("xarray")

import rfdiff as rf  # noqa: E402
from analysis.experiments import kl_dynamics, memorization_time, modes_shift  # noqa: E402
from analysis.experiments._threads import threads  # noqa: E402
from rfdiff.run import Experiment, Task, run_serial  # noqa: E402

MODULES = (kl_dynamics, modes_shift, memorization_time)


def _tiny(module):
    with threads(1):
        return run_serial(module.EXPERIMENT, "tiny")


@pytest.fixture(scope="module")
def kd():
    return _tiny(kl_dynamics)


@pytest.fixture(scope="module")
def ms():
    return _tiny(modes_shift)


@pytest.fixture(scope="module")
def mt():
    return _tiny(memorization_time)


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.__name__.rsplit(".", 1)[-1])
def test_protocol_shape(module):
    """An Experiment with a regime; every task a registered point with JSON-able
    params; the old ``compute`` is gone."""
    import json

    e = module.EXPERIMENT
    assert isinstance(e, Experiment) and e.name == module.NAME and e.regime
    assert set(e.presets) == {"tiny", "quick", "full"}
    assert not hasattr(module, "compute")
    ts = e.tasks(e.params("tiny"))
    assert ts and all(isinstance(t, Task) for t in ts)
    for t in ts:
        assert rf.run.registered(t.spec) is t.function
        json.dumps(t.params)


def test_memorization_regime_is_not_the_high_dimensional_one():
    r = memorization_time.EXPERIMENT.regime
    assert "1D" in r and "NOT" in r and "high-dimensional" in r


# --------------------------------------------------------------------------- kl-dynamics

def test_kl_dynamics_kl_star_matches_a_separate_solve(kd):
    """KL(tau*) of the batched path solve agrees with rfdiff.kl_ode on the one score
    flow.score_at(tau*), within the two error estimates."""
    from analysis.experiments import _common as c

    p = kl_dynamics.PRESETS["tiny"]
    a = kd.attrs
    target = rf.two_modes(p["mu"], p["q1"])
    flow, _, _ = c.rf_flow(target, p["n"], p["m"], seed=p["seed"], data_seed=p["data_seed"],
                           n_time=p["n_time"], t_min=p["t_min"], T=p["T"], weighting=p["weighting"])
    r = rf.kl_ode(flow.score_at(a["ode_tau_star"]), target, t_min=p["t_min"], T=p["T"], tol=2e-3)
    assert a["ode_kl_star"] == pytest.approx(float(r.value), abs=a["ode_kl_star_error"] + float(r.error) + 1e-4)


def test_kl_dynamics_stacks_nets_by_optimizer_and_seed(kd):
    p = kl_dynamics.PRESETS["tiny"]
    tasks = kl_dynamics.tasks(p)
    assert [t.params.get("optimizer") for t in tasks[1:]] == list(kd.optimizer.values)
    assert len(tasks) == 1 + 2 * len(p["net"]["seeds"])
    assert list(kd.epoch.values) == [0, 2, 4]                  # 4 epochs, 2 checkpoints + epoch 0
    assert np.all(np.isfinite(kd.net_loss.values)) and np.all(kd.net_loss.values > 0)
    # the summary's best epoch is the argmin of the seed-mean KL
    for i, opt in enumerate(kd.optimizer.values):
        mean = kd.net_kl.values[i].mean(axis=0)
        assert kd.attrs[f"net_best_epoch_{opt}"] == kd.epoch.values[np.argmin(mean)]
        assert kd.attrs[f"net_best_kl_{opt}"] == pytest.approx(mean.min(), rel=1e-12)


# --------------------------------------------------------------------------- modes-shift

def test_modes_shift_p0_is_the_mixture_density(ms):
    for a, mu in enumerate(ms.main_mu.values):
        z = ms.z.values[a]
        ok = np.isfinite(z)
        ref = 0.5 * norm.pdf(z[ok] + mu) + 0.5 * norm.pdf(z[ok] - mu)
        np.testing.assert_allclose(ms.p0.values[a][ok], ref, rtol=1e-12, atol=1e-300)
        assert np.all(np.isnan(ms.p0.values[a][~ok]))


def test_modes_shift_snapshots_agree_with_the_exact_kl(ms):
    """KL(p_0 || p_gen) from the plotted snapshot densities (a Riemann sum on the plot
    grid) against the exact ODE KL at the snapshot tau: the snapshots are the right
    densities at the right times (early, best = grid argmin, late = last tau)."""
    a, mu = 0, float(ms.main_mu.values[0])
    assert mu == 3.0
    i = list(ms.mu.values).index(mu)
    kl = ms.kl_ode.values[i]
    taus = ms.tau.values
    snap = ms.snapshot_tau.values[a]
    assert snap[1] == taus[np.argmin(kl)] and snap[2] == taus[-1] and snap[0] <= snap[1]
    z = ms.z.values[a]
    ok = np.isfinite(z)
    h = z[ok][1] - z[ok][0]
    p0 = ms.p0.values[a][ok]
    for s, rel in ((0, 0.01), (1, 0.1), (2, 0.1)):        # later: spikes narrower than the grid
        pg = ms.density_rf.values[a, s][ok]
        grid_kl = np.sum(p0 * np.log(p0 / pg)) * h
        assert grid_kl == pytest.approx(kl[np.flatnonzero(taus == snap[s])[0]], rel=rel), s


def test_modes_shift_best_snapshot_has_the_two_modes_for_mu3(ms):
    i = list(ms.mu.values).index(3.0)
    j = int(np.argmin(ms.kl_ode.values[i]))
    pos = ms.mode_position.values[i, j]
    pos = np.sort(pos[np.isfinite(pos)])
    assert ms.n_modes.values[i, j] == 2 == pos.size
    np.testing.assert_allclose(pos, [-3.0, 3.0], atol=0.6)
    assert 0.4 < ms.mass_left.values[i, j] < 0.6


# --------------------------------------------------------------------------- memorization-time

def test_memorization_time_curves_obey_their_definitions(mt):
    # gap = test DSM - train DSM; test DSM - population loss and train - distance to the
    # empirical score are tau-independent constants (the DSM constants)
    np.testing.assert_array_equal(mt.gap.values, mt.test_dsm.values - mt.train.values)
    for a, b in (("test_dsm", "pop"), ("train", "emp_dist")):
        d = mt[a].values - mt[b].values
        assert np.all(np.ptp(d, axis=-1) <= 1e-9 * np.abs(mt[a].values).max())
    assert np.all(mt.pop.values >= 0) and np.all(mt.emp_dist.values >= -1e-12)


def test_memorization_time_half_times_are_their_definitions(mt):
    """L(tau_gen) is half-way from L(first tau) to L_min, interpolated in log tau; tau_min
    is the grid argmin; L(tau_mem) is half-way back up to L(last tau)."""
    taus = mt.tau.values
    for a in range(mt.n.size):
        for b in range(mt.seed.size):
            pop = mt.pop.values[a, b]
            i = int(np.argmin(pop))
            assert mt.tau_min.values[a, b] == taus[i]
            at = lambda t: np.interp(np.log(t), np.log(taus), pop)  # noqa: E731
            assert at(mt.tau_gen.values[a, b]) == pytest.approx(pop[i] + 0.5 * (pop[0] - pop[i]), rel=1e-9)
            if np.isfinite(mt.tau_mem.values[a, b]):
                assert at(mt.tau_mem.values[a, b]) == pytest.approx(pop[i] + 0.5 * (pop[-1] - pop[i]), rel=1e-9)


def test_memorization_time_fits_and_fractions(mt):
    a = mt.attrs
    # the fitted slope is the least-squares slope of the seed-mean log times
    for name in ("tau_gen", "tau_mem", "tau_min"):
        y = np.log(mt[name].values).mean(axis=1)
        slope = np.polyfit(np.log(mt.n.values.astype(float)), y, 1)[0]
        assert a[f"fit_{name}_vs_n_slope"] == pytest.approx(slope, rel=1e-10)
    # binomial standard errors of the memorized fractions
    f = mt.mem_fraction.values
    n_samples = memorization_time.PRESETS["tiny"]["mem_samples"]
    np.testing.assert_allclose(mt.mem_fraction_error.values, np.sqrt(f * (1 - f) / n_samples), rtol=1e-12)
    # the empirical optimal score memorizes far more than fresh draws from p_0 do
    assert np.all(mt.mem_fraction_empirical_score.values > mt.mem_fraction_p0_samples.values + 0.3)
    assert mt.spectrum.shape == (mt.n.size, mt.seed.size, a["m"])


def test_memorization_time_refuses_m_not_above_n():
    with pytest.raises(ValueError, match="must exceed every n"):
        memorization_time.tasks(dict(memorization_time.PRESETS["tiny"], m=64))


# --------------------------------------------------------------------------- the Swish nets' seeds

def test_kl_dynamics_nets_have_the_seed_dimension(kd):
    p = kl_dynamics.PRESETS["tiny"]
    assert list(kd.net_seed.values) == list(p["net"]["seeds"])
    assert kd.net_kl.dims == ("optimizer", "net_seed", "epoch")
    assert kd.attrs["net_epochs"] == p["net"]["epochs"] and kd.attrs["net_paper_epochs"] == 2000
    for i, opt in enumerate(kd.optimizer.values):
        per_seed = np.atleast_1d(kd.attrs[f"net_best_epoch_{opt}_per_seed"])
        np.testing.assert_array_equal(per_seed, kd.epoch.values[np.argmin(kd.net_kl.values[i], axis=-1)])


def test_modes_shift_nets_have_the_seed_dimension(ms):
    """Every net variable runs over (main_mu, optimizer, net_seed); the stored KL of seed 0
    is that of a fresh net_point with the task's parameters (same seed -> same numbers)."""
    p = modes_shift.PRESETS["tiny"]
    assert list(ms.net_seed.values) == list(p["net"]["seeds"])
    for k in ("net_kl", "net_kl_error", "net_density", "net_snapshot_epoch", "net_mode_position", "net_n_modes",
              "net_mass_left", "net_diverged", "net_best_kl", "net_best_epoch"):
        assert ms[k].dims[:3] == ("main_mu", "optimizer", "net_seed"), k
    assert ms.attrs["net_epochs"] == p["net"]["epochs"]
    assert modes_shift._epochs_label(ms) == f"{p['net']['epochs']} epochs (paper: 2000)"
    task = [t for t in modes_shift.tasks(p) if t.function is modes_shift.net_point][0]
    with threads(1):
        fresh = task.function(**task.params)
    a = list(ms.main_mu.values).index(task.params["mu"])
    b = list(ms.optimizer.values).index(task.params["optimizer"])
    s = list(ms.net_seed.values).index(task.params["seed"])
    np.testing.assert_array_equal(ms.net_kl.values[a, b, s], fresh["kl"])
    assert ms.net_diverged.values[a, b, s] == 0
    assert ms.net_best_kl.values[a, b, s] == np.min(fresh["kl"])
    assert ms.net_best_epoch.values[a, b, s] == ms.epoch.values[np.argmin(fresh["kl"])]


def _fake_net(mu, opt, seed, ck, diverged=False):
    """A net_point-shaped result: mu = 15 has its KL minimum at the second checkpoint and
    ends on one mode (lighter side 0.05), mu = 3 keeps improving; values tagged by the point."""
    tag = 100 * (mu == 15.0) + 10 * (opt == "sgd") + seed
    kl = (1.0 + (ck - ck[1]) ** 2 if mu == 15.0 else 5.0 - ck / ck[-1]) + 1e-3 * tag
    out = {"kl": kl, "kl_error": np.full(ck.size, 1e-3), "density": np.full((3, 7), float(tag)),
           "mode_position": np.full((3, modes_shift.MAX_MODES), np.nan), "n_modes": np.array([2, 2, 1]),
           "mass_left": np.array([0.5, 0.5, 0.05]), "snapshot_epoch": ck[[0, 1, -1]], "note": "ok",
           "seconds": 0.0, "coords": {"epoch": ck, "snapshot": modes_shift.SNAPSHOTS,
                                      "mode": np.arange(modes_shift.MAX_MODES)},
           "dims": {"kl": ["epoch"], "kl_error": ["epoch"], "density": ["snapshot", "zi"],
                    "mode_position": ["snapshot", "mode"], "n_modes": ["snapshot"], "mass_left": ["snapshot"],
                    "snapshot_epoch": ["snapshot"]}}
    if diverged:
        out.update(kl=np.full(ck.size, np.nan), kl_error=np.full(ck.size, np.nan),
                   density=np.full((3, 7), np.nan), n_modes=np.array([-1, -1, -1]), note="FloatingPointError: x")
    return rf.run.as_dataset(out)


def test_modes_shift_net_results_stack_by_mu_optimizer_seed():
    """The reduction puts result i of tasks' order (mu, optimizer, seed) at its index, marks
    a diverged seed as diverged, leaves it out of the verdict, and names it in the note."""
    ck = np.array([0, 10, 20, 30])
    p = dict(modes_shift.PRESETS["quick"], net=dict(modes_shift.PRESETS["quick"]["net"], seeds=[0, 1]))
    main, opts, seeds = [3.0, 15.0], ["adam", "sgd"], [0, 1]
    res = [_fake_net(mu, o, s, ck, diverged=(mu, o, s) == (15.0, "sgd", 1)) for mu in main for o in opts
           for s in seeds]
    data, epochs, got_seeds, notes, verdict = modes_shift._net_data(p, main, res, zmax=9)
    np.testing.assert_array_equal(epochs, ck)
    assert got_seeds == seeds
    kl, dens = data["net_kl"][1], data["net_density"][1]
    assert kl.shape == (2, 2, 2, 4) and dens.shape == (2, 2, 2, 3, 9)
    for a, mu in enumerate(main):
        for b, o in enumerate(opts):
            for s in seeds:
                tag = 100 * (mu == 15.0) + 10 * (o == "sgd") + s
                if (mu, o, s) == (15.0, "sgd", 1):
                    assert data["net_diverged"][1][a, b, s] == 1 and np.all(np.isnan(kl[a, b, s]))
                    assert data["net_best_epoch"][1][a, b, s] == -1 and np.isnan(data["net_best_kl"][1][a, b, s])
                    continue
                assert data["net_diverged"][1][a, b, s] == 0
                assert np.all(dens[a, b, s, :, :7] == tag) and np.all(np.isnan(dens[a, b, s, :, 7:]))
                assert data["net_best_epoch"][1][a, b, s] == (10 if mu == 15.0 else 30)
    assert notes["mu15_sgd_seed1"].startswith("FloatingPointError") and notes["mu3_sgd_seed1"] == "ok"
    for o in opts:
        assert verdict[f"{o}_best_epoch_mu3"] == 30 and verdict[f"{o}_best_epoch_mu15"] == 10
        assert verdict[f"{o}_best_earlier"] and verdict[f"{o}_degrades_mu15"] and verdict[f"{o}_collapse_mu15"]
        assert verdict[f"{o}_paper_observation_holds"]
        assert verdict[f"{o}_late_lighter_mass_mu15"] == [0.05] * (1 if o == "sgd" else 2)
    assert verdict["sgd_n_seeds_trained_mu15"] == 1 and verdict["adam_n_seeds_trained_mu15"] == 2
    assert verdict["sgd_best_epoch_mu15_per_seed"] == [10, -1]
    assert "mu=15 seed 1: FloatingPointError" in verdict["sgd_note"] and "adam_note" not in verdict
    # every seed diverged: no verdict, only the note
    res = [_fake_net(mu, o, s, ck, diverged=o == "sgd" and mu == 15.0) for mu in main for o in opts for s in seeds]
    verdict = modes_shift._net_data(p, main, res, zmax=9)[4]
    assert "sgd_paper_observation_holds" not in verdict and verdict["sgd_n_seeds_trained_mu15"] == 0
    assert "adam_paper_observation_holds" in verdict
    with pytest.raises(ValueError, match="one per"):
        modes_shift._net_data(p, main, res[:-1], zmax=9)
