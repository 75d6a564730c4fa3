"""Metrics along a whole training trajectory: one call, labelled, saved with provenance."""
import json

import numpy as np
import pytest

import rfdiff as rf
from rfdiff.kl.fokker_planck import kl_sde
from rfdiff.kl.ode import kl_ode
from rfdiff.trajectory import DEFAULT_METRICS, load, save, trajectory

OU = rf.OU()


@pytest.fixture(scope="module")
def problem():
    target = rf.two_modes(2.0)
    x = target.sample(200, seed=0)
    sm = rf.ScoreMatching(rf.RandomFeatureScore(m=48, seed=5), x, t_min=1e-2, T=4.0, n_time=16)
    return target, sm


@pytest.fixture(scope="module")
def ds(problem):
    target, sm = problem
    taus = np.array([0.0, 1.0, 1e2, 1e4, 1e6])
    metrics = DEFAULT_METRICS + ("score_error", "empirical_distance")
    return trajectory(sm, taus, target, metrics=metrics, tol=1e-3, seeds={"data": 0})


def test_dataset_layout(ds):
    assert list(ds.tau.values) == [0.0, 1.0, 1e2, 1e4, 1e6]
    for m in DEFAULT_METRICS + ("score_error", "empirical_distance"):
        assert ds[m].dims == ("tau",) and ds[f"{m}_error"].dims == ("tau",)
        assert np.all(np.isfinite(ds[m].values)) and np.all(ds[f"{m}_error"].values >= 0)
    for m in ("kl_ode", "kl_sde", "girsanov"):
        assert ds[f"{m}_converged"].values.all()
        assert ds[f"{m}_status"].dtype.kind == "i" and np.all(ds[f"{m}_status"].values == 0)
        assert np.all(ds[f"{m}_error"].values <= 1e-3)
    assert np.all(ds["kl_sde_mass_loss"].values < 1e-10)
    assert "kl_ode_tmin" in ds and "kl_sde_tmin" in ds


def test_values_equal_single_calls(problem, ds):
    target, sm = problem
    flow = sm.flow()
    np.testing.assert_allclose(ds["train_loss"].values, flow.train_loss(ds.tau.values))
    np.testing.assert_allclose(ds["population_loss"].values, flow.population_loss(ds.tau.values, target))
    tau = 1e4
    i = list(ds.tau.values).index(tau)
    o = kl_ode(flow.score_at(tau), target, OU, 1e-2, 4.0, tol=1e-3)
    s = kl_sde(flow.score_at(tau), target, OU, 1e-2, 4.0, tol=1e-3)
    assert o.value == pytest.approx(ds["kl_ode"].values[i], abs=o.error + ds["kl_ode_error"].values[i])
    assert s.value == pytest.approx(ds["kl_sde"].values[i], abs=s.error + ds["kl_sde_error"].values[i])


def test_girsanov_holds_along_the_trajectory(ds):
    lhs = ds["kl_sde_tmin"].values - ds["kl_sde_tmin_error"].values
    rhs = ds["girsanov"].values + ds["girsanov_error"].values
    assert np.all(lhs <= rhs)
    # the score term is the bound minus KL(p_T || pi)
    np.testing.assert_allclose(ds["girsanov"].values - ds["score_error"].values, ds.attrs["girsanov_kl_prior"])


def test_provenance_and_save_roundtrip(ds, tmp_path):
    prov = json.loads(ds.attrs["provenance"])
    assert prov["params"]["target"]["name"] == "GaussianMixture"
    assert prov["params"]["score_matching"]["model"]["m"] == 48
    assert prov["seeds"] == {"model": 5, "score_matching": 0, "data": 0}
    assert "git" in prov and "versions" in prov and prov["params"]["tol"] == 1e-3
    path = save(ds, tmp_path / "traj.nc")
    back = load(path)
    for name in ds.data_vars:
        np.testing.assert_array_equal(back[name].values, ds[name].values)
    assert back.attrs["provenance"] == ds.attrs["provenance"]


def test_validation(problem):
    target, sm = problem
    with pytest.raises(ValueError, match="metric"):
        trajectory(sm, [1.0], target, metrics=("kl",))
    with pytest.raises(ValueError, match="target"):
        trajectory(sm, [1.0], None, metrics=("kl_ode",))
    with pytest.raises(ValueError, match="taus"):
        trajectory(sm, [-1.0], target, metrics=("train_loss",))
    only = trajectory(sm.flow(), [1.0, 2.0], metrics=("train_loss",))
    assert set(only.data_vars) == {"train_loss", "train_loss_error"}
