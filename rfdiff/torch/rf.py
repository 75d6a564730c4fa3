"""The random-feature score model in torch, trained explicitly.

Same model as :class:`rfdiff.model.features.RandomFeatureScore`:

    s_A(z, t) = (1/m) A phi(z, t),      phi(z, t) = act(W z + U e(t)),

with the frozen ``W``, ``U`` and ``e(t)`` of the given model and only ``A``
(d x m) trained. Two trainers, on the loss normalised as in
:mod:`rfdiff.model.scorematching` (a time *average* over ``[t_min, T]``):

- :func:`gradient_descent`: full-batch gradient descent
  ``A_{k+1} = A_k - lr grad L^(A_k)`` in float64, on exactly the loss whose
  closed form :class:`rfdiff.model.flow.Flow` solves. For the ``grid`` and ``rows``
  methods it is autograd on the quadrature rows ``(z_r, t_r, w_r, y_r)`` of
  :meth:`ScoreMatching.training_rows`,
  ``1/2 sum_r w_r |A phi_r / m - y_r|^2`` (+ a constant), whose Hessian is
  ``G/m^2`` exactly as in the closed form. ``relu_exact`` integrates exactly
  and has no rows: there the trainer runs autograd on the quadratic form
  ``1/2 [tr(A G A^T)/m^2 - 2 tr(A C^T)/m + c0]`` itself (a check of the
  iteration, not of the assembly).
- :func:`minibatch_training`: minibatch SGD (or Adam) on the Monte-Carlo
  denoising loss, as a practitioner would train (:func:`rfdiff.torch.train.train`).

Time scales: with this normalisation the expected SGD step and the GD step are
``-lr grad L^``, so ``k`` steps at learning rate ``lr`` correspond to the flow's
``tau = lr * k``. Gradient descent differs from the flow at the same tau by
``O(lr lambda_max)`` (:func:`gd_flow_gap_bound`); SGD's mean follows GD exactly
(the loss is quadratic and the stochastic gradient unbiased), its loss carries
an extra ``O(lr / batch_size)`` from the noise.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from .. import _validate as v
from ..model.features import RandomFeatureScore, RFScore
from ..model.flow import Flow
from ._common import DEFAULT_DTYPE, act_fn, embed_time, progress_bar, to_numpy, to_tensor

FEATURE_PATHS = ("numpy", "torch")


class RFNet(torch.nn.Module):
    """``s_A(z, t) = phi(z, t) A^T / m`` with the frozen ``W, U, e(t)`` of ``model``.

    Parameters
    ----------
    model : RandomFeatureScore
    A0 : initial ``A`` (d x m); default zeros
    features : ``"numpy"`` evaluates the frozen feature map with the core's own
        code (bit-identical to :meth:`RandomFeatureScore.features`; CPU round
        trip, no z-gradient), ``"torch"`` evaluates it natively in torch (any
        device, differentiable in z; agrees to a few ulp).
    dtype, device : of ``A`` and of the computation (default float64, CPU)
    """

    parametrization = "score"

    def __init__(self, model: RandomFeatureScore, A0=None, *, features: str = "numpy",
                 dtype=DEFAULT_DTYPE, device=None):
        super().__init__()
        if not isinstance(model, RandomFeatureScore):
            raise ValueError(f"model must be a RandomFeatureScore, got {type(model).__name__}")
        self.model = model
        self.dim, self.m = model.dim, model.m
        self.feature_path = v.choice("features", features, FEATURE_PATHS)
        A0 = np.zeros((model.dim, model.m)) if A0 is None else v.finite_array("A0", A0, ndim=2)
        if A0.shape != (model.dim, model.m):
            raise ValueError(f"A0 must have shape ({model.dim}, {model.m}), got {A0.shape}")
        self.A = torch.nn.Parameter(to_tensor(A0, dtype, device))
        self.register_buffer("W", to_tensor(model.W, dtype, device))
        self.register_buffer("U", to_tensor(model.U, dtype, device))
        self._act = act_fn(model.activation)

    def features(self, z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """``phi(z, t)``: (k, d), (k,) -> (k, m)."""
        if self.feature_path == "numpy":
            phi = self.model.features(to_numpy(z), to_numpy(t))
            return to_tensor(phi, self.A.dtype, self.A.device)
        pre = z @ self.W.T + embed_time(self.model.time_embedding, t) @ self.U.T
        return self._act(pre)

    def forward(self, z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.features(z, t) @ self.A.T / self.m

    score = forward

    def rfdiff_score(self) -> RFScore:
        """The model at the current ``A`` as the core's numpy score (analytic ``dz``)."""
        return self.model.score_fn(to_numpy(self.A))


@dataclass(frozen=True)
class RFHistory:
    """Parameters of a random-feature model recorded along explicit training.

    ``steps`` (k,) the recorded step counts, ``params`` (k, d, m) float64 the
    ``A`` after that many steps, ``train_loss`` (k,) the exact training loss
    ``sm.train_form.loss(A)`` there, ``lr`` the learning rate, ``method`` what
    trained it (``"gd-rows"``, ``"gd-quadratic"``, ``"sgd"``, ``"adam"``),
    ``batch_losses`` the per-step minibatch losses (stochastic trainers),
    ``info`` the settings.
    """

    steps: np.ndarray
    params: np.ndarray
    train_loss: np.ndarray
    lr: float
    model: RandomFeatureScore
    method: str
    batch_losses: np.ndarray | None = None
    info: dict = field(default_factory=dict)

    @property
    def tau(self) -> np.ndarray:
        """Flow time ``lr * steps`` (meaningful for GD and SGD, not for Adam)."""
        return self.lr * self.steps.astype(np.float64)

    def params_at(self, step: int) -> np.ndarray:
        hit = np.flatnonzero(self.steps == step)
        if hit.size == 0:
            raise ValueError(f"step {step} was not recorded; recorded: {self.steps.tolist()}")
        return self.params[hit[0]]

    def score_at(self, step: int) -> RFScore:
        """The model at a recorded step as a score object (for ``kl_ode``, samplers)."""
        return self.model.score_fn(self.params_at(step))


def _record_steps(record, steps):
    steps = v.positive_int("steps", steps, minimum=0)
    rec = np.array([0, steps] if record is None else np.atleast_1d(record))
    if rec.ndim != 1 or rec.size == 0 or np.any(rec != np.round(rec)):
        raise ValueError("record must be a non-empty list of integer step counts")
    rec = np.unique(rec.astype(np.int64))
    if rec[0] < 0 or rec[-1] > steps:
        raise ValueError(f"record must lie in [0, steps={steps}], got {rec.tolist()}")
    return steps, rec


def gradient_descent(sm, lr: float, steps: int, record=None, A0=None, *, features: str = "numpy",
                     device=None, progress: bool = False) -> RFHistory:
    """Full-batch gradient descent on the training loss of ``sm`` (torch, float64).

    ``A_{k+1} = A_k - lr grad L^(A_k)``, by autograd on the quadrature rows of
    ``sm`` (``grid``/``rows``; the rows' features computed once, the frozen
    map does not change) or on the quadratic form (``relu_exact``), see the
    module docstring. ``record`` lists the step counts to keep (default
    ``[0, steps]``). Equals ``sm.flow(A0).gd_params(lr, record)`` up to
    round-off; stable for ``lr < 2/lambda_max``.
    """
    lr = v.positive("lr", lr)
    steps, rec = _record_steps(record, steps)
    net = RFNet(sm.model, A0, features=features, device=device)
    form = sm.train_form
    dt, dev, m = net.A.dtype, net.A.device, sm.model.m
    if sm.method == "relu_exact":
        method = "gd-quadratic"
        G, C = to_tensor(form.gram, dt, dev), to_tensor(form.cross, dt, dev)

        def loss_fn():
            A = net.A
            return 0.5 * ((A @ G * A).sum() / m**2 - 2.0 * (A * C).sum() / m + form.c0)
    else:
        method = "gd-rows"
        z, t, w, y = sm.training_rows()
        with torch.no_grad():
            phi = net.features(to_tensor(z, dt, dev), to_tensor(t, dt, dev))
        w, y = to_tensor(w, dt, dev), to_tensor(y, dt, dev)

        def loss_fn():
            r = phi @ net.A.T / m - y
            return 0.5 * (w * (r * r).sum(dim=1)).sum()

    opt = torch.optim.SGD(net.parameters(), lr=lr)
    out = np.empty((len(rec), sm.model.dim, m))
    j = 0
    bar = progress_bar(steps, "GD", progress)
    for k in range(steps + 1):
        if k == rec[j]:
            out[j] = to_numpy(net.A)
            j += 1
            if j == len(rec):
                break
        opt.zero_grad(set_to_none=False)
        loss_fn().backward()
        opt.step()
        if not bar.disable:
            bar.update()
    bar.close()
    return RFHistory(rec, out, np.asarray(form.loss(out)), lr, sm.model, method,
                     info={"problem": sm.describe(), "features": features, "device": str(dev)})


def minibatch_training(sm, lr: float, steps: int, batch_size: int = 256, record=None, A0=None, *,
                       seed: int = 0, optimizer: str = "sgd", time_sampling: str = "uniform",
                       features: str = "numpy", device=None, progress: bool = False,
                       optimizer_kwargs=None) -> RFHistory:
    """Minibatch SGD / Adam of the random-feature model on the Monte-Carlo
    denoising loss of ``sm``'s training set, window, process and weighting.

    Each step draws ``batch_size`` data points (epoch-wise reshuffled), times
    from the time measure of the loss (``time_sampling="uniform"`` on
    ``[t_min, T]``, or ``"log"``-uniform with the importance weight that keeps
    the estimate unbiased; the fixed t of a single-level problem) and noises
    ``eps ~ N(0, I)``, and descends ``1/2 mean lambda(t) |s_A(x_t, t) + eps/sigma_t|^2``,
    an unbiased estimate of ``sm``'s normalised loss: for SGD, ``tau = lr * steps``.
    ``train_loss`` is the exact ``sm.train_form.loss`` at the recorded steps.
    """
    from .train import train

    steps, rec = _record_steps(record, steps)
    net = RFNet(sm.model, A0, features=features, device=device)
    hist = train(net, sm.data.x, sm.process, sm.t_min, sm.T, sm.weighting,
                 t_fixed=sm.single_t, time_sampling=time_sampling, optimizer=optimizer, lr=lr,
                 steps=steps, batch_size=batch_size, seed=seed, checkpoints=rec,
                 progress=progress, optimizer_kwargs=optimizer_kwargs)
    params = np.stack([s["A"].to(torch.float64).numpy() for s in hist.states])
    return RFHistory(rec, params, np.asarray(sm.train_form.loss(params)), float(lr), sm.model,
                     optimizer, batch_losses=hist.losses,
                     info={"problem": sm.describe(), **hist.config})


def gd_flow_gap_bound(flow: Flow, lr: float, steps, uniform: bool = False) -> np.ndarray:
    """Bound on ``||A_GD(k) - A_flow(lr k)||_F`` for gradient descent with ``lr lambda_max < 1``.

    In the eigenbasis of ``H`` both move ``b - b*`` (``b* = c/lambda``, the
    least-squares coordinates) by a factor, ``(1 - x)^k`` and ``e^{-k x}`` with
    ``x = lr lambda``, so the gap per direction is ``|b0 - b*| (e^{-kx} - (1-x)^k)``.
    Writing ``(1-x)^k = e^{-kx} e^{-k a}``, ``a = -log(1-x) - x = sum_{j>=2} x^j/j
    <= x^2 / (2 (1-x))``, and ``1 - e^{-ka} <= k a``:

        0 <= e^{-kx} - (1-x)^k <= e^{-kx} k x^2 / (2 (1 - x))
                               = x/(2(1-x)) * (lambda tau) e^{-lambda tau}.

    Returns the Frobenius norm of these per-direction bounds, shape (k,) (a
    scalar for scalar ``steps``). With ``uniform=True`` the weaker, tau-free
    form: ``u e^{-1}/(2(1-u)) ||(A0 - A*)||_F``, ``u = lr lambda_max`` (since
    ``s e^{-s} <= 1/e``): the gap is O(lr lambda_max) relative to the distance
    still to travel, uniformly in training time. Null-space directions
    (``lambda = 0``) do not move in either and contribute nothing.
    """
    lr = v.positive("lr", lr)
    k = np.atleast_1d(np.asarray(steps, dtype=np.float64))
    be = flow.backend
    lam = be.to_numpy(flow.eigvals)
    if lr * lam.max() >= 1.0:
        raise ValueError(f"lr * lambda_max must be < 1 for this bound, got {lr * lam.max():.3g}")
    b0, c = be.to_numpy(flow.b0), be.to_numpy(flow.c)
    live = lam > 0
    dist = np.where(live[None, :], b0 - c / np.where(live, lam, 1.0)[None, :], 0.0)   # (d, r)
    x = lr * lam
    if uniform:
        u = lr * lam.max()
        out = np.full(k.shape, u / (2.0 * np.e * (1.0 - u)) * np.linalg.norm(dist))
    else:
        per = np.exp(-k[:, None] * x[None, :]) * k[:, None] * x[None, :] ** 2 / (2.0 * (1.0 - x[None, :]))
        out = np.sqrt(np.einsum("kr,dr->k", per**2, dist**2))
    return out[0] if np.ndim(steps) == 0 else out
