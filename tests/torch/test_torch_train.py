"""The training loop, its loss estimator, checkpoints as scores (rfdiff/torch/train.py)."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

import rfdiff as rf  # noqa: E402
from rfdiff import torch as rft  # noqa: E402
from rfdiff.model.features import TimeEmbedding, activation, activation_derivative  # noqa: E402


def _data(n=20, d=1, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)) + 2.0 * np.sign(rng.standard_normal((n, 1)))


# -- the Monte-Carlo loss is unbiased for the closed form's loss --------------------------
@pytest.mark.parametrize("mode", ["uniform", "log", "fixed"])
def test_denoising_loss_is_unbiased(mode):
    x = _data(20)
    model = rf.RandomFeatureScore(m=16, seed=2)
    if mode == "fixed":
        sm = rf.ScoreMatching.single_level(model, x, t=0.3)
    else:
        sm = rf.ScoreMatching(model, x, t_min=1e-2, T=4.0, n_time=48)
    A = 3.0 * np.random.default_rng(1).standard_normal((1, 16)) + sm.flow().params(30.0)
    exact = float(sm.train_form.loss(A))
    net = rft.RFNet(model, A)
    # the training set repeated 500 times has the same empirical law: one draw = 10^4 samples
    xr = np.repeat(x, 500, axis=0)
    sampler = rft.DenoisingSampler(len(xr), 1, len(xr), rf.OU(), sm.t_min, sm.T, "sigma2",
                                   sm.single_t, "log" if mode == "log" else "uniform", seed=0)
    xt = torch.tensor(xr)
    est = []
    with torch.no_grad():
        for _ in range(30):
            idx, *rest = sampler.draw()
            est.append(float(rft.denoising_loss(net, xt[idx], *[torch.tensor(a) for a in rest])))
    est = np.array(est)
    se = est.std(ddof=1) / np.sqrt(len(est))
    assert abs(est.mean() - exact) < 4 * se + 1e-6 * exact, (est.mean(), exact, se)
    assert se < 0.02 * exact


def test_eps_parametrisation_gives_the_same_loss():
    """An eps-net's loss term equals the score form with score = -eps_hat/sigma."""
    rng = np.random.default_rng(0)
    net = rft.UNet((1, 4, 4), channels=4, seed=1)
    torch.nn.init.normal_(net.out.weight, std=0.1)
    x0, eps = torch.tensor(rng.standard_normal((8, 16))), torch.tensor(rng.standard_normal((8, 16)))
    t = torch.tensor(rng.uniform(0.01, 2.0, 8))
    proc = rf.OU()
    a, s = torch.tensor(proc.alpha(t.numpy())), torch.tensor(proc.sigma(t.numpy()))
    lam = torch.tensor(proc.sigma2(t.numpy()))
    got = rft.denoising_loss(net, x0, t, a, s, lam, eps)

    class AsScore(torch.nn.Module):
        dim = 16

        def score(self, x, t):
            return net.score(x, t)
    ref = rft.denoising_loss(AsScore(), x0, t, a, s, lam, eps)
    assert got.item() == pytest.approx(ref.item(), rel=1e-12)


# -- reproducibility, checkpoints, scores ----------------------------------------------------
def _mlp_run(seed=0, net_seed=0, **kw):
    net = rft.MLPScore(dim=2, width=16, activation="swish", seed=net_seed)
    args = dict(lr=0.05, steps=30, batch_size=8, seed=seed, checkpoints=[0, 15, 30], progress=False)
    args.update(kw)
    return net, rft.train(net, _data(24, 2), rf.OU(), 1e-2, 4.0, **args)


def test_same_seed_is_bit_identical():
    state = torch.get_rng_state()
    _, h1 = _mlp_run()
    _, h2 = _mlp_run()
    assert torch.equal(state, torch.get_rng_state())           # the global RNG is untouched
    np.testing.assert_array_equal(h1.losses, h2.losses)
    for s1, s2 in zip(h1.states, h2.states):
        assert s1.keys() == s2.keys() and all(torch.equal(s1[k], s2[k]) for k in s1)
    _, h3 = _mlp_run(seed=1)
    _, h4 = _mlp_run(net_seed=1)
    assert not np.array_equal(h1.losses, h3.losses) and not np.array_equal(h1.losses, h4.losses)
    assert h1.config["seed"] == 0 and h1.config["optimizer"] == "sgd"


def test_adam_and_epochs():
    net = rft.MLPScore(dim=1, width=8, seed=0)
    x = _data(20)
    h = rft.train(net, x, lr=1e-2, epochs=5, batch_size=8, optimizer="adam", checkpoint_epochs=[0, 5],
                  progress=False)
    assert h.steps_per_epoch == 3 and len(h.losses) == 15
    np.testing.assert_array_equal(h.steps, [0, 15])
    np.testing.assert_array_equal(h.epochs, [0.0, 5.0])


def test_checkpoint_scores_match_the_network():
    net, hist = _mlp_run()
    rng = np.random.default_rng(4)
    z, t = rng.standard_normal((50, 2)), rng.uniform(1e-2, 4.0, 50)
    for step in (0, 15, 30):
        score = hist.score_at(step)
        assert isinstance(score, rf.Score) and score.dim == 2
        ref = hist.net_at(step)(torch.tensor(z), torch.tensor(t)).detach().numpy()
        np.testing.assert_array_equal(score(z, t), ref)
        # divergence: exact autograd trace vs central differences
        h = 1e-5
        fd = sum((score(z + h * e, t)[:, i] - score(z - h * e, t)[:, i]) / (2 * h)
                 for i, e in enumerate(np.eye(2)))
        np.testing.assert_allclose(score.dz(z, t), fd, rtol=1e-7, atol=1e-8)
    # the final checkpoint is the trained network itself; step 0 is its initialisation
    final = net(torch.tensor(z), torch.tensor(t)).detach().numpy()
    np.testing.assert_array_equal(hist.score_at(30)(z, t), final)
    init = rft.MLPScore(dim=2, width=16, activation="swish", seed=0)
    np.testing.assert_array_equal(hist.score_at(0)(z, t), init(torch.tensor(z), torch.tensor(t)).detach().numpy())
    assert [s for s, _ in hist.scores()] == [0, 15, 30]
    with pytest.raises(ValueError, match="no checkpoint"):
        hist.score_at(7)


def test_on_checkpoint_callback_and_scalar_time():
    seen = []

    def cb(step, score):
        seen.append(step)
        return float(score(np.zeros((1, 2)), 0.5)[0, 0])
    net, hist = _mlp_run(on_checkpoint=cb)
    assert seen == [0, 15, 30] and set(hist.callback_results) == {0, 15, 30}
    assert hist.callback_results[30] == pytest.approx(hist.score_at(30)(np.zeros((1, 2)), 0.5)[0, 0])


def test_train_validates():
    net = rft.MLPScore(dim=1, width=4)
    x = _data(10)
    with pytest.raises(ValueError, match="exactly one of steps and epochs"):
        rft.train(net, x, lr=0.1, steps=3, epochs=1, progress=False)
    with pytest.raises(ValueError, match="checkpoints"):
        rft.train(net, x, lr=0.1, steps=3, checkpoints=[5], progress=False)
    with pytest.raises(ValueError, match="dimension"):
        rft.train(net, _data(10, 2), lr=0.1, steps=3, progress=False)
    with pytest.raises(ValueError, match="optimizer"):
        rft.train(net, x, lr=0.1, steps=3, optimizer="lbfgs", progress=False)
    with pytest.raises(ValueError, match="t_min"):
        rft.train(net, x, t_min=2.0, T=1.0, lr=0.1, steps=3, progress=False)
    with pytest.raises(FloatingPointError, match="diverged"):
        rft.train(rft.MLPScore(dim=1, width=4), x, lr=1e12, steps=20, progress=False)


# -- single noise level and the excess risk (seed 001's large-learning-rate setting) -----------
def test_excess_risk_references():
    x = np.random.default_rng(0).standard_normal(20)
    emp = rf.Empirical(x)
    t, proc = 0.2, rf.OU()
    assert rft.excess_risk(emp.score_fn(proc), x, t) == 0.0
    zero = rf.as_score(lambda z, t: np.zeros((len(z), 1)), dim=1)
    # Monte Carlo reference of E_{p^_t}|s^_t|^2
    rng = np.random.default_rng(1)
    z = np.exp(-t) * rng.choice(x, 200_000)[:, None] + np.sqrt(-np.expm1(-2 * t)) * rng.standard_normal((200_000, 1))
    v = np.sum(emp.score(z, t, proc) ** 2, axis=1)
    assert rft.excess_risk(zero, x, t) == pytest.approx(v.mean(), abs=4 * v.std() / np.sqrt(len(v)))


def test_excess_risk_is_converged_against_quad():
    """Small t, close training points: the empirical optimal score is a sharp
    ratio there, Gauss-Hermite at a fixed order is off; the refined value
    equals scipy quad to the requested rtol. Too few nodes allowed: raises."""
    from scipy.integrate import quad
    x = np.array([-1.0, -0.93, 0.0, 0.05, 1.2])
    emp, t, proc = rf.Empirical(x), 0.01, rf.OU()
    net = rft.MLPScore(dim=1, width=16, activation="relu", seed=1)
    s = rft.as_rfdiff_score(net)
    f = lambda u: (np.exp(emp.log_pt(np.array([[u]]), t, proc))[0]
                   * (s(np.array([[u]]), t)[0, 0] - emp.score(np.array([[u]]), t, proc)[0, 0]) ** 2)
    pts = sorted(np.exp(-t) * x)
    ref = quad(f, -4, 4, points=pts, limit=2000, epsabs=1e-12, epsrel=1e-10)[0]
    assert rft.excess_risk(net, x, t, rtol=1e-5) == pytest.approx(ref, rel=1e-4)
    with pytest.raises(rf.ConvergenceError, match="order"):
        rft.excess_risk(net, x, t, rtol=1e-14)


def test_fixed_t_training_reduces_excess_risk():
    """Two-layer ReLU net, all layers trained by SGD at one noise level (seed 001)."""
    x = np.random.default_rng(0).standard_normal(20)
    net = rft.MLPScore(dim=1, width=64, activation="relu", seed=0)
    r0 = rft.excess_risk(net, x, 0.2)
    hist = rft.train(net, x, t_fixed=0.2, lr=0.1, steps=300, batch_size=20, seed=0, checkpoints=[300],
                     progress=False)
    assert hist.config["t_fixed"] == 0.2
    r1 = rft.excess_risk(hist.score_at(300), x, 0.2)
    assert r1 < 0.5 * r0


def test_excess_risk_is_the_explicit_score_matching_loss():
    """For the RF model at one noise level, the ESM quadratic form (exact ReLU integrals)
    is 1/2 lambda(t) E_{p^_t}|s_A - s^_t|^2 = 1/2 sigma_t^2 excess_risk."""
    x = np.random.default_rng(2).standard_normal(20)
    t = 0.2
    sm = rf.ScoreMatching.single_level(rf.RandomFeatureScore(m=24, seed=1), x, t=t, objective="esm")
    A = sm.flow().params(50.0)
    r = rft.excess_risk(sm.model.score_fn(A), x, t, order=40)
    # Gauss-Hermite converges only algebraically across the ReLU kinks: ~1e-6 here
    assert 0.5 * rf.OU().sigma2(t) * r == pytest.approx(float(sm.train_form.loss(A)), rel=2e-5)


# -- KL machinery: a numpy re-implementation of the same MLP as a reference ---------------------
def numpy_mlp_score(net):
    """The MLPScore (standard scaling) in numpy, with its analytic z-derivative (1D)."""
    W1 = net.hidden.weight.detach().numpy().copy()
    b1 = net.hidden.bias.detach().numpy().copy()
    W2 = net.out.weight.detach().numpy().copy()
    b2 = net.out.bias.detach().numpy().copy()
    emb: TimeEmbedding = net.time_embedding

    def pre(z, t):
        z = np.asarray(z, dtype=np.float64).reshape(-1, 1)
        e = emb(np.broadcast_to(np.asarray(t, dtype=np.float64), (len(z),)))
        return np.concatenate([z, e], axis=1) @ W1.T + b1

    def s(z, t):
        return activation(net.activation, pre(z, t)) @ W2.T + b2

    def dz(z, t):
        return (activation_derivative(net.activation, pre(z, t)) * W1[:, 0]) @ W2[0]
    return rf.as_score(s, dz, dim=1)


def test_numpy_reference_agrees_with_torch_checkpoint():
    net = rft.MLPScore(dim=1, width=32, activation="swish", seed=3)
    hist = rft.train(net, _data(40), rf.OU(), 1e-2, 4.0, lr=0.2, steps=40, batch_size=20,
                     checkpoints=[40], progress=False)
    s_torch, s_np = hist.score_at(40), numpy_mlp_score(hist.net_at(40))
    z = np.linspace(-6, 6, 101)[:, None]
    for t in (1e-2, 0.3, 4.0):
        np.testing.assert_allclose(s_torch(z, t), s_np(z, t), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(s_torch.dz(z, t), s_np.dz(z, t), rtol=1e-11, atol=1e-12)
