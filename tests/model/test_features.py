import numpy as np
import pytest

import rfdiff as rf
from rfdiff.model.features import ACTIVATIONS, activation, activation_derivative


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_activation_derivative_is_finite_difference(name):
    x = np.linspace(-6, 6, 101) + 0.013      # avoid the ReLU kink at 0
    h = 1e-6
    fd = (activation(name, x + h) - activation(name, x - h)) / (2 * h)
    np.testing.assert_allclose(activation_derivative(name, x), fd, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("name", ACTIVATIONS)
@pytest.mark.parametrize("dim", [1, 3])
def test_score_divergence_is_finite_difference(name, dim):
    model = rf.RandomFeatureScore(m=50, dim=dim, activation=name, seed=3)
    A = np.random.default_rng(0).standard_normal((dim, 50))
    z = np.random.default_rng(1).standard_normal((7, dim))
    t, h = 0.37, 1e-6
    fd = np.zeros(7)
    for i in range(dim):
        e = np.zeros(dim)
        e[i] = h
        fd += (model.score(A, z + e, t)[:, i] - model.score(A, z - e, t)[:, i]) / (2 * h)
    np.testing.assert_allclose(model.score_dz(A, z, t), fd, rtol=1e-6, atol=1e-8)


def test_features_are_seeded_and_time_embedding_bounded():
    a = rf.RandomFeatureScore(m=20, seed=5)
    b = rf.RandomFeatureScore(m=20, seed=5)
    c = rf.RandomFeatureScore(m=20, seed=6)
    np.testing.assert_array_equal(a.W, b.W)
    assert not np.array_equal(a.W, c.W)
    t = np.logspace(-8, 3, 50)
    for kind in ("log-sinusoidal", "ou"):
        e = rf.features.TimeEmbedding(kind)(t)
        assert np.all(np.abs(e) <= 1.0 + 1e-15)
    z = np.zeros((4, 1))
    assert a.features(z, 0.5).shape == (4, 20)
    assert a.features(z, np.full(4, 0.5)).shape == (4, 20)


@pytest.mark.parametrize("dim", [2, 12])        # the fused ReLU kernel and the GEMM path
def test_features_with_a_time_per_point_are_the_rows_at_each_time(dim):
    """Equal times per point (one bias row, broadcast) and distinct times (a bias row per
    point) both give, row by row, the features at that one scalar time."""
    model = rf.RandomFeatureScore(m=30, dim=dim, seed=2)
    z = np.random.default_rng(0).standard_normal((5, dim))
    for t in (np.full(5, 0.3), np.array([0.01, 0.3, 0.3, 2.0, 7.5])):
        rows = np.stack([model.features(z[i:i + 1], float(t[i]))[0] for i in range(5)])
        np.testing.assert_allclose(model.features(z, t), rows, rtol=1e-13, atol=1e-15)
    with pytest.raises(ValueError, match="one time per point"):
        model.features(z, np.full(4, 0.3))


@pytest.mark.parametrize("u_scale", [1.0, 0.0])
def test_preactivation_is_w_z_plus_bias(u_scale):
    """The one-GEMM form [z, e(t)] [W, U]^T equals W z + U e(t) term by term, for one time,
    one time for all and a time per point (and U = 0: the time-free model's W z)."""
    model = rf.RandomFeatureScore(m=40, dim=12, seed=4, u_scale=u_scale)
    z = np.random.default_rng(2).standard_normal((7, 12))
    for t in (0.3, np.full(7, 0.3), np.geomspace(1e-3, 8.0, 7)):
        direct = np.einsum("kd,md->km", z, model.W) + np.atleast_2d(model.bias(t))
        np.testing.assert_allclose(model.preactivation(z, t), direct, rtol=1e-13, atol=1e-14)
    if u_scale == 0.0:
        np.testing.assert_allclose(model.preactivation(z, 0.3), z @ model.W.T, rtol=1e-14, atol=0)


@pytest.mark.parametrize("kw,match", [
    (dict(m=0), "m must"), (dict(m=-3), "m must"), (dict(m=4, dim=0), "dim"),
    (dict(m=4, activation="sigmoidish"), "activation"),
    (dict(m=4, time_embedding="fourier"), "time_embedding"), (dict(m=4, seed=-1), "seed"),
])
def test_bad_model_arguments(kw, match):
    with pytest.raises(ValueError, match=match):
        rf.RandomFeatureScore(**kw)


def test_score_fn_checks_shape():
    model = rf.RandomFeatureScore(m=8)
    with pytest.raises(ValueError, match="A must have shape"):
        model.score_fn(np.zeros((2, 8)))
    with pytest.raises(ValueError, match="finite"):
        model.score_fn(np.full((1, 8), np.nan))


@pytest.mark.parametrize("shape", [(7, 5), (600, 1000)])       # serial / threaded kernel
def test_relu_kernel_equals_numpy_maximum(shape):
    """The numba ReLU (a plain loop) equals np.maximum(x, 0): NaN stays NaN, inf,
    in place (out=x), and non-contiguous input (handed to np.maximum)."""
    x = np.random.default_rng(0).standard_normal(shape)
    x[0, :4] = [np.nan, np.inf, -np.inf, -0.0]
    ref = np.maximum(x, 0.0)
    np.testing.assert_array_equal(activation("relu", x), ref)
    np.testing.assert_array_equal(activation("relu", x.T), ref.T)
    y = x.copy()
    assert activation("relu", y, out=y) is y
    np.testing.assert_array_equal(y, ref)


@pytest.mark.parametrize("dim", [1, 2, 8, 9])           # fused ReLU kernel up to d = 8, GEMM above
def test_relu_features_equal_preactivation_path(dim):
    """ReLU features (one fused numba pass for small d) equal act(z W^T + b(t)),
    for one time and for a time per point, from a non-contiguous z."""
    model = rf.RandomFeatureScore(m=37, dim=dim, seed=2)
    z = np.random.default_rng(0).standard_normal((22, dim))[::2]
    for t in (0.3, np.linspace(0.01, 2.0, 11)):
        pre = z @ model.W.T + model.bias(t)
        np.testing.assert_allclose(model.features(z, t), np.maximum(pre, 0.0), rtol=1e-13, atol=1e-14)
        assert np.any(pre < 0) and np.any(pre > 0)
    with pytest.raises(ValueError, match="one time per point"):
        model.features(z, np.full(3, 0.5))


def test_m_bool_is_refused():
    import pytest
    with pytest.raises(ValueError, match="m must be a positive integer"):
        rf.RandomFeatureScore(m=True)


def test_activation_object_answers_its_properties():
    relu, tanh = rf.model.get_activation(rf.model.ACTIVATIONS[0]), rf.model.get_activation("tanh")
    assert relu.piecewise_linear and relu.kinks == (0.0,)
    assert not tanh.piecewise_linear and tanh.kinks == ()
    x = np.linspace(-2, 2, 9)
    np.testing.assert_allclose(tanh.derivative(x), 1 - np.tanh(x) ** 2)
