import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from scipy.special import erf  # noqa: E402

from analysis.experiments import resnet_ode as R  # noqa: E402
from rfdiff.run import run_serial  # noqa: E402


@pytest.mark.parametrize("depth", [1, 8])
def test_tied_init_increments_exactly_zero(depth):
    assert np.all(R.increments(R.init_stack(depth, "tied", 3)) == 0.0)
    net = R.score_net(depth, "tied", 3)
    assert net.max_increment() == {"W": 0.0, "V": 0.0}
    assert np.all(R.increments(net.W) == 0.0) and np.all(net.V.detach().numpy() == 0.0)


def test_smooth_and_iid_init_increments():
    L = 16
    W = R.init_stack(L, "smooth", 0)
    inc = R.increments(W)
    # W_k = W_a + (k/L) W_b: every increment is ||W_b||_F / L
    Wb = (W[1] - W[0]) * L
    np.testing.assert_allclose(inc, np.linalg.norm(Wb) / L, rtol=1e-12)
    # iid: increments of two independent N(0, 1/16) 16x16 matrices, |.|_F^2 ~ 2 * 16 on average
    inc = R.increments(R.init_stack(256, "iid", 0))
    assert abs(np.mean(inc ** 2) / 32 - 1) < 0.05


def test_residual_forward_against_numpy():
    rng = np.random.default_rng(0)
    L, n = 5, 7
    W, V, h = rng.standard_normal((L, 16, 16)) / 4, rng.standard_normal((L, 16, 16)) / 4, rng.standard_normal((n, 16))
    ref = h.copy()
    gelu = lambda u: 0.5 * u * (1 + erf(u / math.sqrt(2)))  # noqa: E731
    for k in range(L):
        ref = ref + (V[k] @ gelu(W[k] @ ref.T)).T / L
    out = R.residual_forward(torch.tensor(W), torch.tensor(V), torch.tensor(h)).numpy()
    np.testing.assert_allclose(out, ref, rtol=1e-12, atol=1e-12)


def test_depth_one_never_has_increments_and_training_reduces_loss():
    r = R.point(depth=1, init="tied", seed=0, task="regression", steps=10)
    assert r["max_increment"] == 0.0 and r["max_increment_V"] == 0.0 and r["init_increment"] == 0.0
    r = R.point(depth=4, init="tied", seed=0, task="regression", steps=10)
    assert r["init_increment"] == 0.0 and r["max_increment"] > 0 and r["loss_final"] < r["loss_initial"]
    # the data's mean squared norm: E|y - x|^2 = 32 at init (V = 0: F(x) = x), within sampling error
    assert abs(r["loss_initial"] / 32 - 1) < 0.15


def test_diverging_run_recorded():
    r = R.point(depth=4, init="iid", seed=0, task="regression", steps=50, lr0=50.0)
    assert r["diverged"] and math.isnan(r["max_increment"])


def test_slope_fit_recovers_known_power():
    rng = np.random.default_rng(1)
    L = np.array([2, 4, 8, 16, 32])
    y = 3.0 * L[:, None] ** -1.0 * np.exp(0.1 * rng.standard_normal((5, 6)))
    f = R.slope_fit(L, y)
    lx = np.log(L)
    np.testing.assert_allclose(f["slope"], np.polyfit(lx, np.log(y).mean(axis=1), 1)[0], rtol=1e-12)
    assert abs(f["slope"] + 1) < 0.1
    # the interval's half-width against the normal-theory standard error of an OLS slope of seed means
    se = np.log(y).std(axis=1, ddof=1).mean() / np.sqrt(6) / np.sqrt(np.sum((lx - lx.mean()) ** 2))
    assert 0.6 < (f["ci_high"] - f["ci_low"]) / 2 / (1.96 * se) < 1.4


def test_slope_fit_pairs_depths_by_seed():
    """A seed-specific constant (its own init, shared by its depths) is not slope uncertainty:
    y = c_s / L exactly has slope -1 with an interval of zero width."""
    L = np.array([2, 4, 8, 16])
    c = np.array([0.5, 1.0, 3.0, 7.0])
    f = R.slope_fit(L, c[None, :] / L[:, None])
    assert abs(f["slope"] + 1) < 1e-12 and f["ci_high"] - f["ci_low"] < 1e-9


def test_tiny_experiment_data():
    ds = run_serial(R.EXPERIMENT, "tiny")
    assert int(ds.diverged.sum()) == 0
    assert np.all(ds.init_increment.sel(init="tied").values == 0.0)
    assert np.all(ds.max_increment >= ds.init_increment)
    for tk in ("regression", "score"):
        for i in ("tied", "smooth"):
            assert float(ds.max_increment_slope.sel(task=tk, init=i)) < -0.8
        assert abs(float(ds.max_increment_slope.sel(task=tk, init="iid"))) < 0.2


@pytest.mark.parametrize("kw, name", [(dict(depth=0), "depth"), (dict(depth=2.5), "depth"),
                                      (dict(init="xavier"), "init"), (dict(task="classification"), "task"),
                                      (dict(lr0=0.0), "lr0"), (dict(steps=0), "steps")])
def test_bad_input(kw, name):
    base = dict(depth=2, init="tied", seed=0, task="regression", steps=2)
    base.update(kw)
    with pytest.raises(ValueError, match=name):
        R.point(**base)
