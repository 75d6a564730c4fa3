"""The bias-free, time-free option of RandomFeatureScore (u_scale = 0): phi(x, t) = act(W x)."""
import numpy as np
import pytest

import rfdiff as rf


def test_time_free_features_are_act_of_Wx_and_ignore_t():
    d, p = 5, 12
    model = rf.RandomFeatureScore(m=p, dim=d, activation="tanh", w_scale=1 / np.sqrt(d), u_scale=0.0, seed=3)
    assert model.time_free and not rf.RandomFeatureScore(m=p, dim=d, activation="tanh").time_free
    # same W as the default model of that seed (W is drawn first), scaled
    Wstd = rf.RandomFeatureScore(m=p, dim=d, activation="tanh", seed=3).W
    np.testing.assert_allclose(model.W * np.sqrt(d), Wstd, rtol=1e-15)
    x = np.random.default_rng(0).standard_normal((7, d))
    ref = np.tanh(x @ Wstd.T / np.sqrt(d))                     # the paper's tanh(W x / sqrt(d))
    for t in (1e-3, 0.1, 5.0, np.full(7, 0.37)):
        np.testing.assert_allclose(model.features(x, t), ref, rtol=1e-13, atol=1e-15)
    assert np.all(model.bias(np.array([0.01, 1.0])) == 0.0)
    # the divergence uses act'(W x): finite differences of the score
    A = np.random.default_rng(1).standard_normal((d, p))
    h = 1e-6
    div = sum((model.score(A, x + h * np.eye(d)[i], 0.2)[:, i] - model.score(A, x - h * np.eye(d)[i], 0.2)[:, i])
              / (2 * h) for i in range(d))
    np.testing.assert_allclose(model.score_dz(A, x, 0.2), div, rtol=1e-6, atol=1e-9)


def test_relu_time_free_has_kinks_at_zero_in_1d():
    model = rf.RandomFeatureScore(m=8, dim=1, activation="relu", u_scale=0, seed=0)
    z = np.linspace(-2, 2, 9)[:, None]
    np.testing.assert_array_equal(model.features(z, 0.5), np.maximum(z @ model.W.T, 0.0))


def test_torch_rfnet_time_free():
    torch = pytest.importorskip("torch")
    from rfdiff.torch import RFNet
    model = rf.RandomFeatureScore(m=6, dim=3, activation="tanh", u_scale=0.0, seed=2)
    net = RFNet(model, features="torch")
    z = torch.randn(4, 3, dtype=torch.float64)
    t = torch.full((4,), 0.3, dtype=torch.float64)
    np.testing.assert_allclose(net.features(z, t).numpy(), model.features(z.numpy(), 0.3), rtol=1e-12)


@pytest.mark.parametrize("bad", [-1.0, np.nan, np.inf, "x"])
def test_u_scale_must_be_nonnegative(bad):
    with pytest.raises(ValueError, match="u_scale"):
        rf.RandomFeatureScore(m=4, dim=2, u_scale=bad)
