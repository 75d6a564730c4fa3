"""Closed form of the paper's single-level tanh model against explicit torch full-batch
gradient descent on the same W and training set, with fresh noise every step."""
import numpy as np
import pytest

from rfdiff.model import premem as pm

torch = pytest.importorskip("torch")


def _gd_replicas(W, X, t, lr, steps, R, seed):
    """R independent runs of A <- A - lr grad L^(A), L^ the training loss with one fresh
    noise draw per point per step (autograd); returns A after ``steps`` (R, d, p)."""
    g = torch.Generator().manual_seed(seed)
    Wt, Xt = torch.tensor(W), torch.tensor(X)
    p, d = W.shape
    n = X.shape[0]
    D = -np.expm1(-2 * t)
    A = torch.zeros((R, d, p), dtype=torch.float64, requires_grad=True)
    for _ in range(steps):
        xi = torch.randn((R, n, d), generator=g, dtype=torch.float64)
        xt = np.exp(-t) * Xt[None] + np.sqrt(D) * xi
        phi = torch.tanh(xt @ Wt.T / np.sqrt(d))                          # (R, n, p)
        s = phi @ A.transpose(1, 2) / np.sqrt(p)                         # (R, n, d)
        loss = ((np.sqrt(D) * s + xi) ** 2).sum(dim=(1, 2)) / (d * n)    # (R,), L^ of each run
        (grad,) = torch.autograd.grad(loss.sum(), A)
        with torch.no_grad():
            A -= lr * grad
    return A.detach().numpy()


def test_closed_form_matches_torch_gradient_descent_within_monte_carlo_error():
    d, p, n, t = 4, 16, 6, 0.2
    W = pm.paper_weights(pm.paper_model(d, p, seed=1))
    X = np.random.default_rng([1, 1]).standard_normal((n, d))
    forms = pm.paper_forms(W, X, t)
    flow = pm.paper_flow(forms)
    lr = 0.5 / flow.lambda_max                       # rfdiff time per step (tau_rf = lr k)
    steps, R = 300, 2000
    A = _gd_replicas(W, X, t, lr, steps, R, seed=0)
    mean, se = A.mean(axis=0), A.std(axis=0, ddof=1) / np.sqrt(R)
    # E[A_k] follows exact GD on the expected (exact-in-noise) loss: the loss is quadratic
    # in A and each step's noise is independent of A_k
    exact = flow.gd_params(lr, steps)
    z = np.abs(mean - exact) / se
    assert z.max() < 5.0                              # 64 entries, 5 sigma
    # the comparison resolves the dynamics: 20% fewer steps is far outside the error
    assert (np.abs(mean - flow.gd_params(lr, int(0.8 * steps))) / se).max() > 10
    # and the flow at tau = lr k is within O(lr) of GD (paper time tau = lr k / d^2)
    tau_paper = lr * steps / d**2
    Af = flow.params(pm.tau_rfdiff(tau_paper, d))
    assert np.abs(Af - exact).max() < 0.05 * np.abs(exact).max()
    # the training loss of the mean iterate vs the closed-form curve
    assert forms.train.loss(mean) == pytest.approx(forms.train.loss(exact), abs=5e-3)
