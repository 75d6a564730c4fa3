"""Score networks (rfdiff/torch/nets.py)."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

import rfdiff as rf  # noqa: E402
from rfdiff import torch as rft  # noqa: E402


def _zt(k=5, d=1, seed=0):
    rng = np.random.default_rng(seed)
    return torch.tensor(rng.standard_normal((k, d))), torch.tensor(rng.uniform(1e-2, 4.0, k))


# -- one hidden layer ------------------------------------------------------------------------
@pytest.mark.parametrize("activation", ["swish", "relu"])
def test_mlp_shapes_seed_and_dtype(activation):
    state = torch.get_rng_state()
    a = rft.MLPScore(dim=3, width=10, activation=activation, seed=4)
    b = rft.MLPScore(dim=3, width=10, activation=activation, seed=4)
    assert torch.equal(state, torch.get_rng_state())
    z, t = _zt(7, 3)
    out = a(z, t)
    assert out.shape == (7, 3) and out.dtype == torch.float64
    assert torch.equal(out, b(z, t))
    assert not torch.equal(out, rft.MLPScore(dim=3, width=10, activation=activation, seed=5)(z, t))
    f32 = rft.MLPScore(dim=3, width=10, activation=activation, seed=4, dtype=torch.float32)
    assert f32(z.float(), t.float()).dtype == torch.float32
    assert sum(p.numel() for p in a.parameters() if p.requires_grad) == (3 + 7) * 10 + 10 + 10 * 3 + 3


def test_mlp_mean_field_scaling():
    net = rft.MLPScore(dim=1, width=50, activation="relu", scaling="mean-field", seed=0)
    z, t = _zt(9)
    h = torch.relu(net.hidden(torch.cat([z, net.embed(t)], dim=1)))
    torch.testing.assert_close(net(z, t), h @ net.out.weight.T / 50, rtol=1e-14, atol=1e-14)
    assert net.out.bias is None
    with pytest.raises(ValueError, match="scaling"):
        rft.MLPScore(scaling="ntk")


def test_time_embedding_in_torch_matches_core():
    from rfdiff.model.features import TimeEmbedding
    from rfdiff.torch._common import embed_time
    t = np.exp(np.linspace(np.log(1e-4), np.log(10.0), 50))
    for emb in (TimeEmbedding("log-sinusoidal", n_freq=5), TimeEmbedding("ou")):
        np.testing.assert_allclose(embed_time(emb, torch.tensor(t)).numpy(), emb(t), rtol=1e-14, atol=1e-15)


# -- deep residual nets -----------------------------------------------------------------------
def test_residual_forward_is_the_recursion():
    net = rft.ResidualScore(dim=2, width=6, depth=5, activation="tanh", seed=1)
    z, t = _zt(4, 2)
    h = net.inp(torch.cat([z, net.embed(t)], dim=1))
    for k in range(5):
        h = h + torch.tanh(h @ net.W[k].T) @ net.V[k].T / 5
    torch.testing.assert_close(net(z, t), net.out(h), rtol=1e-14, atol=1e-14)


def test_residual_smooth_init_increments():
    incs = {}
    for L in (4, 8, 16):
        net = rft.ResidualScore(dim=1, width=12, depth=L, init="smooth", seed=0)
        W = net.W.detach()
        # W_k = W_a + (k/L) W_b: constant increments W_b / L
        torch.testing.assert_close(W[1:] - W[:-1], (W[1] - W[0]).expand(L - 1, -1, -1), rtol=0, atol=1e-14)
        incs[L] = net.max_increment()
    for L in (8, 16):
        assert incs[L]["W"] * L == pytest.approx(incs[4]["W"] * 4, rel=1e-12)
        assert incs[L]["V"] * L == pytest.approx(incs[4]["V"] * 4, rel=1e-12)
    tied = rft.ResidualScore(dim=1, width=12, depth=8, init="tied").max_increment()
    assert tied == {"W": 0.0, "V": 0.0}
    iid = rft.ResidualScore(dim=1, width=12, depth=16, init="iid").max_increment()
    assert iid["W"] > 10 * incs[16]["W"]
    assert rft.ResidualScore(depth=1).max_increment() == {"W": 0.0, "V": 0.0}
    with pytest.raises(ValueError, match="init"):
        rft.ResidualScore(init="orthogonal")


def _train_residual(L, init, steps=60):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 1)) + 2.0 * np.sign(rng.standard_normal((64, 1)))
    net = rft.ResidualScore(dim=1, width=16, depth=L, init=init, seed=0)
    W0 = net.W.detach().clone()
    # per-layer gradients are O(1/L): the stack's learning rate lr * L moves every layer O(1)
    hist = rft.train(net, x, rf.OU(), 1e-2, 4.0, lr=0.05, steps=steps, batch_size=32, seed=0,
                     monitor_every=20, lr_multipliers={"W": L, "V": L}, progress=False)
    moved = float(torch.linalg.norm(net.W.detach() - W0) / torch.linalg.norm(W0))
    return hist, moved


def test_residual_increments_tracked_and_O_of_one_over_L():
    finals, depths = [], (4, 8, 16, 32)
    for L in depths:
        hist, moved = _train_residual(L, "smooth")
        np.testing.assert_array_equal(hist.monitor_steps, [0, 20, 40, 60])
        inc = hist.metrics["max_increment_W"]
        assert inc.shape == (4,) and np.all(np.isfinite(hist.metrics["max_increment_V"]))
        assert moved > 0.01                                 # training did move the weights
        finals.append(inc.max())
    slope = np.polyfit(np.log(depths), np.log(finals), 1)[0]
    assert -1.15 < slope < -0.85, (slope, finals)
    # no such regularity from an i.i.d. initialisation
    hist, _ = _train_residual(16, "iid", steps=20)
    assert hist.metrics["max_increment_W"][-1] > 10 * finals[2]


# -- U-Net ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 28, 28)])
def test_unet_shapes_and_eps_parametrisation(shape):
    net = rft.UNet(shape, channels=8, seed=0)
    d = int(np.prod(shape))
    assert net.dim == d and net.parametrization == "eps"
    z = torch.randn(3, d, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([0.01, 0.5, 3.0], dtype=torch.float64)
    assert torch.equal(net(z, t), torch.zeros(3, d, dtype=torch.float64))      # zero last conv
    torch.nn.init.normal_(net.out.weight, std=0.1)
    eps_hat = net(z, t)
    sigma = torch.sqrt(-torch.expm1(-2 * t))
    torch.testing.assert_close(net.score(z, t), -eps_hat / sigma[:, None], rtol=1e-14, atol=0)
    # examples do not interact (GroupNorm is per example): the autograd divergence is exact
    torch.testing.assert_close(net(z[1:2], t[1:2]), eps_hat[1:2], rtol=1e-12, atol=1e-14)
    with pytest.raises(ValueError, match="image_shape"):
        rft.UNet((1, 7, 7))


def test_unet_divergence_and_training():
    net = rft.UNet((1, 4, 4), channels=4, seed=0)
    torch.nn.init.normal_(net.out.weight, std=0.1)
    score = rft.as_rfdiff_score(net)
    rng = np.random.default_rng(0)
    z, t = rng.standard_normal((2, 16)), 0.3
    div = score.dz(z, t)
    for i in range(2):
        J = torch.autograd.functional.jacobian(
            lambda u: net.score(u[None], torch.tensor([t], dtype=torch.float64))[0],
            torch.tensor(z[i]))
        assert div[i] == pytest.approx(float(torch.trace(J)), rel=1e-12)
    # a few Adam steps on 8x8 "images" (two blobs) in float32 lower the loss
    img = np.zeros((64, 8, 8))
    img[:32, 2:4, 2:4] = 1.0
    img[32:, 5:7, 4:6] = 1.0
    x = img.reshape(64, 64) + 0.05 * rng.standard_normal((64, 64))
    net32 = rft.UNet((1, 8, 8), channels=8, seed=0, dtype=torch.float32)
    hist = rft.train(net32, x, rf.OU(), 1e-2, 4.0, optimizer="adam", lr=3e-3, steps=80, batch_size=32,
                     checkpoints=[80], progress=False)
    assert hist.losses[-20:].mean() < 0.8 * hist.losses[:20].mean()
    s = hist.score_at(80)
    assert s(x[:3], 0.5).shape == (3, 64) and s(x[:3], 0.5).dtype == np.float64
