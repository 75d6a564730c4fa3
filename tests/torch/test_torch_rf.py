"""Torch training of the random-feature model vs the closed form (rfdiff/torch/rf.py)."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

import rfdiff as rf  # noqa: E402
from rfdiff import torch as rft  # noqa: E402
from rfdiff.model.features import ACTIVATIONS  # noqa: E402

RECORD = [0, 1, 10, 100, 1000, 10_000]


def _problem(kind, m=32, n=20, seed=0):
    rng = np.random.default_rng(seed)
    if kind == "rows2d":
        model = rf.RandomFeatureScore(m=m, dim=2, activation="swish", seed=seed)
        return rf.ScoreMatching(model, rng.standard_normal((n, 2)), t_min=1e-2, T=4.0,
                                n_time=6, n_eps=4)
    x = rng.standard_normal(n) + 2.0 * np.sign(rng.standard_normal(n))
    model = rf.RandomFeatureScore(m=m, seed=seed)
    method = "grid" if kind == "grid" else "relu_exact"
    return rf.ScoreMatching(model, x, t_min=1e-2, T=4.0, n_time=8, method=method, z_density=2.0)


@pytest.fixture(scope="module")
def problems():
    return {k: _problem(k) for k in ("grid", "relu_exact", "rows2d")}


def _rel(a, b):
    return np.linalg.norm(a - b) / np.linalg.norm(b)


# -- the model -------------------------------------------------------------------------
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("emb", ["log-sinusoidal", "ou"])
@pytest.mark.parametrize("d", [1, 2])
def test_features_match_core(activation, emb, d):
    model = rf.RandomFeatureScore(m=40, dim=d, activation=activation, time_embedding=emb, seed=3)
    rng = np.random.default_rng(0)
    z, t = 3 * rng.standard_normal((200, d)), np.exp(rng.uniform(np.log(1e-3), np.log(8), 200))
    ref = model.features(z, t)
    zt, tt = torch.tensor(z, dtype=torch.float64), torch.tensor(t, dtype=torch.float64)
    exact = rft.RFNet(model, features="numpy").features(zt, tt).numpy()
    np.testing.assert_array_equal(exact, ref)                       # bit-identical
    native = rft.RFNet(model, features="torch").features(zt, tt).numpy()
    np.testing.assert_allclose(native, ref, rtol=1e-13, atol=1e-13)  # torch's own kernels
    A = rng.standard_normal((d, 40))
    net = rft.RFNet(model, A, features="torch")
    np.testing.assert_allclose(net(zt, tt).detach().numpy(), model.score(A, z, t), rtol=1e-12, atol=1e-13)


def test_rfnet_validates():
    model = rf.RandomFeatureScore(m=8)
    with pytest.raises(ValueError, match="A0 must have shape"):
        rft.RFNet(model, np.zeros((2, 8)))
    with pytest.raises(ValueError, match="features"):
        rft.RFNet(model, features="jax")
    with pytest.raises(ValueError, match="model"):
        rft.RFNet("model")


# -- full-batch gradient descent = closed-form GD --------------------------------------
@pytest.mark.parametrize("kind,steps", [("grid", 10_000), ("rows2d", 10_000), ("relu_exact", 1000)])
def test_gradient_descent_equals_closed_form(problems, kind, steps):
    sm = problems[kind]
    A0 = 50.0 * np.random.default_rng(1).standard_normal((sm.model.dim, sm.model.m))
    flow = sm.flow(A0=A0)
    lr = 0.9 / flow.lambda_max
    record = [k for k in RECORD if k <= steps]
    hist = rft.gradient_descent(sm, lr=lr, steps=steps, record=record, A0=A0)
    assert hist.method == ("gd-quadratic" if kind == "relu_exact" else "gd-rows")
    assert hist.params.dtype == np.float64 and hist.params.shape == (len(record), sm.model.dim, sm.model.m)
    np.testing.assert_array_equal(hist.steps, record)
    np.testing.assert_array_equal(hist.params[0], A0)
    closed = flow.gd_params(lr, record)
    errs = [_rel(a, b) for a, b in zip(hist.params, closed)]
    assert max(errs) < 1e-9, errs
    np.testing.assert_allclose(hist.train_loss, sm.train_form.loss(closed), rtol=1e-9)
    np.testing.assert_allclose(hist.tau, lr * np.asarray(record))
    # the score callable is the core's own model at those parameters
    s = hist.score_at(record[-1])
    z = np.linspace(-3, 3, 7)[:, None].repeat(sm.model.dim, axis=1)
    np.testing.assert_array_equal(s(z, 0.5), sm.model.score(hist.params[-1], z, 0.5))


def test_gradient_descent_zero_steps_and_validation(problems):
    sm = problems["relu_exact"]
    hist = rft.gradient_descent(sm, lr=1.0, steps=0)
    np.testing.assert_array_equal(hist.params, 0.0)
    assert hist.train_loss[0] == pytest.approx(0.5 * sm.train_form.c0)
    with pytest.raises(ValueError, match="record"):
        rft.gradient_descent(sm, lr=1.0, steps=5, record=[0, 6])
    with pytest.raises(ValueError, match="lr"):
        rft.gradient_descent(sm, lr=-1.0, steps=5)
    with pytest.raises(ValueError, match="not recorded"):
        hist.score_at(3)


def test_gradient_descent_torch_features_path(problems):
    sm = problems["grid"]
    a = rft.gradient_descent(sm, lr=20.0, steps=200, record=[200], features="numpy").params
    b = rft.gradient_descent(sm, lr=20.0, steps=200, record=[200], features="torch").params
    assert _rel(b, a) < 1e-12


# -- GD vs the flow: the O(lr lambda_max) gap ------------------------------------------
@pytest.mark.parametrize("kind", ["grid", "rows2d"])
def test_gd_flow_gap_bound_holds(problems, kind):
    sm = problems[kind]
    A0 = 50.0 * np.random.default_rng(2).standard_normal((sm.model.dim, sm.model.m))
    flow = sm.flow(A0=A0)
    for u in (0.05, 0.3, 0.9):
        lr = u / flow.lambda_max
        k = np.array([0, 1, 3, 10, 30, 100, 1000, 10_000])
        gap = np.linalg.norm(flow.gd_params(lr, k) - flow.params(lr * k), axis=(1, 2))
        bound = rft.gd_flow_gap_bound(flow, lr, k)
        uniform = rft.gd_flow_gap_bound(flow, lr, k, uniform=True)
        assert np.all(gap <= bound * (1 + 1e-9) + 1e-12 * np.linalg.norm(A0)), (u, gap, bound)
        assert np.all(bound <= uniform * (1 + 1e-12))
        assert gap[1:].max() > 0.05 * bound[1:].max()     # and it is not vacuous
    with pytest.raises(ValueError, match="lambda_max"):
        rft.gd_flow_gap_bound(flow, 1.5 / flow.lambda_max, 10)


def test_torch_gd_approaches_flow_linearly_in_lr(problems):
    """At fixed tau the torch GD iterate approaches the flow as O(lr): fitted order 1."""
    sm = problems["grid"]
    A0 = 50.0 * np.random.default_rng(3).standard_normal((1, sm.model.m))
    flow = sm.flow(A0=A0)
    tau = 2.0 / flow.lambda_max
    lrs = tau / np.array([8, 16, 32, 64, 128])
    gaps, bounds = [], []
    for lr, k in zip(lrs, [8, 16, 32, 64, 128]):
        hist = rft.gradient_descent(sm, lr=lr, steps=k, record=[k], A0=A0)
        gaps.append(np.linalg.norm(hist.params[0] - flow.params(tau)))
        bounds.append(rft.gd_flow_gap_bound(flow, lr, k))
    gaps, bounds = np.array(gaps), np.array(bounds)
    assert np.all(gaps <= bounds)
    order = np.polyfit(np.log(lrs), np.log(gaps), 1)[0]
    assert abs(order - 1.0) < 0.05, order
    rel = gaps / np.linalg.norm(flow.params(tau))
    assert np.all(np.diff(rel) < 0) and rel[0] < 0.05


# -- minibatch SGD tracks the closed form in expectation --------------------------------
def _sgd_runs(sm, lr, steps, record, seeds, **kw):
    runs = [rft.minibatch_training(sm, lr, steps, batch_size=20, record=record, seed=s, **kw)
            for s in seeds]
    return np.stack([h.params for h in runs]), np.stack([h.train_loss for h in runs]), runs


@pytest.mark.parametrize("time_sampling", ["uniform", pytest.param("log", marks=pytest.mark.slow)])
def test_sgd_mean_tracks_closed_form(time_sampling):
    """E[A_k] of SGD is GD's A_k exactly (quadratic loss, unbiased gradients), and the
    mean train loss tracks flow.train_loss(lr k) within the seeds' error bars, up to
    the noise term 1/2 tr(H Cov A_k) (= O(lr/batch), estimated from the seeds)."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal(40) + 2.0 * np.sign(rng.standard_normal(40))
    sm = rf.ScoreMatching(rf.RandomFeatureScore(m=32, seed=1), x, t_min=1e-2, T=4.0, n_time=48)
    flow = sm.flow()
    lr, steps, S = 2.0, 500, 16
    record = [0, 25, 100, 250, 500]
    P, L, runs = _sgd_runs(sm, lr, steps, record, range(S), time_sampling=time_sampling)
    assert runs[0].method == "sgd" and runs[0].batch_losses.shape == (steps,)
    # parameters: mean over seeds vs closed-form GD, entrywise t-statistics
    mean, se = P.mean(0), P.std(0, ddof=1) / np.sqrt(S)
    gd = flow.gd_params(lr, record)
    np.testing.assert_array_equal(P[:, 0], 0.0)
    zstat = np.abs(mean[1:] - gd[1:]) / se[1:]
    assert zstat.max() < 6.0, zstat.max(axis=(1, 2))
    # the loss: closed-form flow at tau = lr k vs the seeds' mean
    flow_loss = flow.train_loss(lr * np.asarray(record))
    Lmean, Lse = L.mean(0), L.std(0, ddof=1) / np.sqrt(S)
    H = sm.train_form.gram / sm.model.m**2
    dev = P - mean[None]
    noise = 0.5 * np.einsum("skim,mn,skin->k", dev, H, dev) / S
    disc = np.abs(sm.train_form.loss(gd) - flow_loss)                  # GD vs flow, O(lr)
    err = np.abs(Lmean - flow_loss)
    assert err[0] < 1e-15
    assert np.all(err[1:] <= 4 * Lse[1:] + disc[1:] + noise[1:]), (err, Lse, disc, noise)
    # the loss really moved, and the same error bars reject a wrong time scale tau = 2 lr k
    assert Lmean[-1] < 0.3 * Lmean[0]
    wrong = np.abs(Lmean - flow.train_loss(2 * lr * np.asarray(record)))
    assert np.any(wrong[1:] > 4 * Lse[1:] + disc[1:] + noise[1:])


def test_single_level_sgd_uses_fixed_t():
    rng = np.random.default_rng(6)
    sm = rf.ScoreMatching.single_level(rf.RandomFeatureScore(m=16), rng.standard_normal(20), t=0.2)
    hist = rft.minibatch_training(sm, lr=5.0, steps=200, batch_size=10, record=[0, 200], seed=0)
    assert hist.info["t_fixed"] == 0.2
    assert hist.train_loss[-1] < hist.train_loss[0]
    adam = rft.minibatch_training(sm, lr=0.5, steps=200, batch_size=10, record=[200], optimizer="adam")
    assert adam.method == "adam" and adam.train_loss[0] < hist.train_loss[0]
