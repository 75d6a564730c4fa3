"""Minibatch training of score networks on the denoising loss, and the bridge
from any checkpoint back to the core's :class:`~rfdiff.score.Score` protocol.

The loss is :mod:`rfdiff.model.scorematching`'s, estimated by Monte Carlo:

    L^(theta) = 1/2 (T - t_min)^{-1} int_{t_min}^{T} lambda(t) (1/n) sum_i
                E_eps |s_theta(alpha_t x_i + sigma_t eps, t) + eps/sigma_t|^2 dt.

Each step draws a minibatch of data (reshuffled every epoch; the last batch of
an epoch may be smaller), one time per example and ``eps ~ N(0, I)``, and takes
``1/2 mean_b w_b lambda(t_b) |s_theta(x_b, t_b) + eps_b/sigma_{t_b}|^2``:

- ``time_sampling="uniform"``: ``t ~ U[t_min, T]``, ``w = 1``;
- ``"log"``: ``log t ~ U[log t_min, log T]`` with the importance weight
  ``w = t log(T/t_min) / (T - t_min)`` (the ratio of the two densities), so that
  both are unbiased for the same time average and ``tau = lr * steps`` keeps
  its meaning;
- ``t_fixed``: one noise level, no time average (single-noise-level mode,
  ``1/2 lambda(t) E|s + eps/sigma_t|^2``, as :meth:`ScoreMatching.single_level`).

Networks output the score (``parametrization = "score"``) or the noise
(``"eps"``, score ``= -eps_hat/sigma_t``; the loss term is then
``lambda/sigma^2 |eps - eps_hat|^2 / 2``, the same number computed without the
``1/sigma`` blow-up).

Randomness: everything the loop draws (batches, times, noises) comes from
``numpy.random.default_rng(seed)`` on the host; the networks here draw their
initial weights from their own ``seed``. The global torch RNG is neither used
nor changed, so a run is a function of its seeds: on CPU the same seeds give
bit-identical checkpoints (for the same thread count).

Speed on CPU: small networks are overhead-bound, and torch's intra-op threads
only add synchronisation; on a loaded machine they can make a step 20x slower.
Processes running many small trainings should call ``torch.set_num_threads(1)``
(the tests do).
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

import numpy as np
import torch

from .. import _validate as v
from ..process import OU, Process
from ..score import Score
from ..model.scorematching import WEIGHTINGS, weighting as weighting_fn
from ..targets import Empirical
from ._common import DEFAULT_DTYPE, progress_bar, to_numpy, to_tensor

OPTIMIZERS = ("sgd", "adam")
TIME_SAMPLINGS = ("uniform", "log")


@dataclass(frozen=True, eq=False)
class NetScore(Score):
    """A torch score network as an rfdiff score: numpy ``(k, d)`` in and out.

    ``__call__`` evaluates ``net.score(z, t)`` without gradients; ``dz`` is the
    exact divergence by autograd, one backward pass per coordinate (cost
    ``d`` passes: fine in 1D and small d). Valid because the networks here
    treat the examples of a batch independently (no batch norm). Points are
    evaluated in chunks of ``chunk`` rows.
    """

    net: torch.nn.Module
    dim: int
    chunk: int = 65536

    def _inputs(self, z, t):
        z = v.points("z", z, self.dim)
        t = np.broadcast_to(np.asarray(t, dtype=np.float64), (len(z),))
        p = next(self.net.parameters())
        return to_tensor(z, p.dtype, p.device), to_tensor(t, p.dtype, p.device)

    def __call__(self, z, t) -> np.ndarray:
        z, t = self._inputs(z, t)
        with torch.no_grad():
            out = [self.net.score(z[i:i + self.chunk], t[i:i + self.chunk])
                   for i in range(0, len(z), self.chunk)]
        return to_numpy(torch.cat(out)).reshape(len(z), self.dim)

    def dz(self, z, t) -> np.ndarray:
        z, t = self._inputs(z, t)
        out = []
        for i in range(0, len(z), self.chunk):
            zi = z[i:i + self.chunk].clone().requires_grad_(True)
            with torch.enable_grad():
                s = self.net.score(zi, t[i:i + self.chunk]).reshape(len(zi), self.dim)
                div = torch.zeros(len(zi), dtype=s.dtype, device=s.device)
                for c in range(self.dim):
                    g, = torch.autograd.grad(s[:, c].sum(), zi, retain_graph=c < self.dim - 1)
                    div = div + g.reshape(len(zi), self.dim)[:, c]
            out.append(div.detach())
        return to_numpy(torch.cat(out))


def as_rfdiff_score(net: torch.nn.Module, dtype=DEFAULT_DTYPE, device="cpu") -> Score:
    """A float64 copy of ``net`` (left untouched) as an rfdiff :class:`~rfdiff.score.Score`.

    A net with an ``rfdiff_score()`` method (the random-feature :class:`RFNet`)
    gives the core's own score object instead.
    """
    if hasattr(net, "rfdiff_score"):
        return net.rfdiff_score()
    net = copy.deepcopy(net).to(device=device, dtype=dtype).eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return NetScore(net, int(net.dim))


@dataclass(frozen=True, eq=False)
class TrainHistory:
    """What :func:`train` did.

    ``losses`` (steps,) the minibatch loss of every step; ``steps`` the
    checkpoint step counts and ``states`` their state dicts (CPU tensors in the
    training dtype), ``steps_per_epoch``; ``monitor_steps`` and ``metrics``
    (name -> array) the monitored diagnostics (e.g. a residual net's
    ``max_increment_W``); ``callback_results`` step -> what ``on_checkpoint``
    returned; ``config`` the settings (seed, optimiser, lr, window, ...).
    """

    losses: np.ndarray
    steps: np.ndarray
    states: tuple
    steps_per_epoch: int
    template: torch.nn.Module
    monitor_steps: np.ndarray
    metrics: dict
    callback_results: dict
    config: dict = field(default_factory=dict)

    @property
    def epochs(self) -> np.ndarray:
        """Checkpoint steps in epochs."""
        return self.steps / self.steps_per_epoch

    def state_at(self, step: int) -> dict:
        hit = np.flatnonzero(self.steps == step)
        if hit.size == 0:
            raise ValueError(f"no checkpoint at step {step}; checkpoints: {self.steps.tolist()}")
        return self.states[hit[0]]

    def net_at(self, step: int, dtype=DEFAULT_DTYPE, device="cpu") -> torch.nn.Module:
        """A fresh copy of the network with the checkpoint's weights, in eval mode."""
        net = copy.deepcopy(self.template)
        net.load_state_dict(self.state_at(step))
        return net.to(device=device, dtype=dtype).eval()

    def score_at(self, step: int, dtype=DEFAULT_DTYPE, device="cpu") -> Score:
        """The checkpoint as an rfdiff score (float64 numpy in/out, autograd ``dz``),
        ready for ``kl_ode``, ``kl_sde`` and the samplers."""
        return as_rfdiff_score(self.net_at(step, dtype, device))

    def scores(self):
        """``(step, score)`` for every checkpoint: a KL-vs-step curve is one loop."""
        for s in self.steps:
            yield int(s), self.score_at(int(s))


class DenoisingSampler:
    """The host-side draws of :func:`train`'s steps, from ``numpy.random.default_rng(seed)``.

    ``draw()`` returns ``(idx, t, alpha_t, sigma_t, lam, eps)`` for one minibatch:
    data indices (an epoch-wise permutation cut into batches), times and the
    weights ``lam = lambda(t) * importance weight`` of the module docstring,
    and noises ``(b, d)``. With them :func:`denoising_loss` is an unbiased
    estimate of the normalised loss (``tests/torch/test_torch_train.py``).
    """

    def __init__(self, n, d, batch_size, process, t_min, T, weighting, t_fixed, time_sampling, seed):
        self.rng = np.random.default_rng(seed)
        self.n, self.d, self.bs = n, d, batch_size
        self.process, self.t_min, self.T = process, t_min, T
        self.weighting, self.t_fixed, self.time_sampling = weighting, t_fixed, time_sampling
        self.perm, self.pos = None, n

    def draw(self):
        if self.pos >= self.n:
            self.perm, self.pos = self.rng.permutation(self.n), 0
        idx = self.perm[self.pos:self.pos + self.bs]
        self.pos += len(idx)
        b = len(idx)
        if self.t_fixed is not None:
            t, iw = np.full(b, self.t_fixed), 1.0
        elif self.time_sampling == "uniform":
            t, iw = self.rng.uniform(self.t_min, self.T, b), 1.0
        else:
            span = math.log(self.T / self.t_min)
            t = self.t_min * np.exp(span * self.rng.random(b))
            iw = t * span / (self.T - self.t_min)
        eps = self.rng.standard_normal((b, self.d))
        lam = weighting_fn(self.weighting, self.process, t, self.d) * iw
        return idx, t, self.process.alpha(t), self.process.sigma(t), lam, eps


def denoising_loss(net, x0, t, alpha, sigma, lam, eps):
    """``1/2 mean_b lam_b |s(x_t, t) + eps/sigma|^2`` (tensors, one row per example)."""
    xt = alpha[:, None] * x0 + sigma[:, None] * eps
    if getattr(net, "parametrization", "score") == "eps":
        r = eps - net(xt, t).reshape(eps.shape)
        return 0.5 * torch.mean(lam / sigma**2 * (r * r).sum(dim=1))
    r = net.score(xt, t).reshape(eps.shape) + eps / sigma[:, None]
    return 0.5 * torch.mean(lam * (r * r).sum(dim=1))


def _data_array(data):
    if isinstance(data, Empirical):
        return data.x
    x = v.finite_array("data", data)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2 or len(x) < 1:
        raise ValueError(f"data must have shape (n, d) with n >= 1, got {np.shape(data)}")
    return x


def _param_groups(net, lr, multipliers):
    if not multipliers:
        return list(net.parameters())
    names = {name.split(".")[0] for name, _ in net.named_parameters()}
    unknown = set(multipliers) - names
    if unknown:
        raise ValueError(f"lr_multipliers names {sorted(unknown)} are not parameters of the net "
                         f"(top-level names: {sorted(names)})")
    groups = {}
    for name, p in net.named_parameters():
        f = v.positive(f"lr_multipliers[{name.split('.')[0]!r}]", multipliers.get(name.split(".")[0], 1.0))
        groups.setdefault(f, []).append(p)
    return [{"params": ps, "lr": lr * f} for f, ps in groups.items()]


def train(net: torch.nn.Module, data, process: Process | None = None, t_min: float = 1e-3,
          T: float = 8.0, weighting: str = "sigma2", *, t_fixed: float | None = None,
          time_sampling: str = "uniform", optimizer: str = "sgd", lr: float = 1e-3,
          steps: int | None = None, epochs: int | None = None, batch_size: int | None = None,
          seed: int = 0, checkpoints=(), checkpoint_epochs=None, on_checkpoint=None,
          monitor=None, monitor_every: int | None = None, optimizer_kwargs=None,
          lr_multipliers: dict | None = None, progress: bool = True) -> TrainHistory:
    """Train ``net`` (in place) on the denoising loss of ``data`` (module docstring).

    Parameters
    ----------
    net : a module with ``dim``, ``forward(x, t)`` and ``score(x, t)`` on
        ``(k, d)``/(k,) tensors (the networks of :mod:`rfdiff.torch.nets`,
        :class:`~rfdiff.torch.rf.RFNet`); trained on its own device and dtype
    data : (n, d) array (a 1D array is n points in 1D) or an ``Empirical``
    process, t_min, T, weighting : the loss (defaults ``OU()``, 1e-3, 8, ``"sigma2"``)
    t_fixed : train at this single noise level instead of the window
    time_sampling : ``"uniform"`` or ``"log"`` (importance-weighted), see above
    optimizer : ``"sgd"`` (plain, no momentum unless given in
        ``optimizer_kwargs``) or ``"adam"``; ``lr`` its learning rate;
        ``lr_multipliers`` maps a parameter's top-level name (``"W"``,
        ``"hidden"``, ...) to a factor on ``lr`` (e.g. ``{"W": L, "V": L}`` for
        a residual stack whose per-layer gradients are O(1/L))
    steps or epochs : length of training (one of them); ``batch_size`` default n
        (full batch: then one step is one epoch)
    seed : of the host RNG drawing batches, times and noises
    checkpoints : step counts whose weights are kept (0 = before training);
        ``checkpoint_epochs`` the same in epochs
    on_checkpoint : ``f(step, score) -> any`` called at each checkpoint with
        the checkpoint as an rfdiff score; results in ``callback_results``
    monitor : ``f(net) -> dict[str, float]``, called every ``monitor_every``
        steps and at the end (default: ``net.diagnostics`` if the net has one,
        at the checkpoints)
    progress : tqdm bar (only when stderr is a terminal)
    """
    process = OU() if process is None else process
    if not isinstance(process, Process):
        raise ValueError(f"process must be an rfdiff Process, got {type(process).__name__}")
    x = _data_array(data)
    n, d = x.shape
    if d != int(net.dim):
        raise ValueError(f"data have dimension {d} but the network's dim is {net.dim}")
    if t_fixed is not None:
        t_fixed = v.real("t_fixed", t_fixed, lo=0.0, lo_open=True)
    else:
        t_min, T = v.window(t_min, T)
    v.choice("weighting", weighting, WEIGHTINGS)
    v.choice("time_sampling", time_sampling, TIME_SAMPLINGS)
    v.choice("optimizer", optimizer, OPTIMIZERS)
    lr = v.positive("lr", lr)
    batch_size = n if batch_size is None else v.positive_int("batch_size", batch_size)
    batch_size = min(batch_size, n)
    steps_per_epoch = -(-n // batch_size)
    if (steps is None) == (epochs is None):
        raise ValueError("give exactly one of steps and epochs")
    total = (v.positive_int("steps", steps, minimum=0) if steps is not None
             else steps_per_epoch * v.positive_int("epochs", epochs, minimum=0))
    ck = [int(c) for c in np.atleast_1d(checkpoints)] if np.size(checkpoints) else []
    if checkpoint_epochs is not None:
        ck += [int(e) * steps_per_epoch for e in np.atleast_1d(checkpoint_epochs)]
    ck = sorted(set(ck))
    if ck and (ck[0] < 0 or ck[-1] > total):
        raise ValueError(f"checkpoints must lie in [0, {total}] steps, got {ck}")
    if monitor is None and hasattr(net, "diagnostics"):
        monitor = type(net).diagnostics           # called as monitor(net)
    mon_set = set(ck) | {total} if monitor_every is None else \
        set(range(0, total + 1, v.positive_int("monitor_every", monitor_every))) | {total}

    p0 = next(net.parameters())
    dtype, device = p0.dtype, p0.device
    template = copy.deepcopy(net).to("cpu")
    xt = to_tensor(x, dtype, device)
    kw = dict(optimizer_kwargs or {})
    opt = (torch.optim.SGD if optimizer == "sgd" else torch.optim.Adam)(
        _param_groups(net, lr, lr_multipliers), lr=lr, **kw)
    sampler = DenoisingSampler(n, d, batch_size, process, t_min, T, weighting, t_fixed, time_sampling, seed)
    losses = torch.empty(total, dtype=torch.float64, device=device)
    states, results, mon_steps, mon_rows = [], {}, [], []

    def at_step(k):
        if k in mon_set and monitor is not None:
            mon_steps.append(k)
            mon_rows.append({key: float(val) for key, val in monitor(net).items()})
        if k in ck:
            states.append({key: val.detach().to("cpu").clone() for key, val in net.state_dict().items()})
            if on_checkpoint is not None:
                results[k] = on_checkpoint(k, as_rfdiff_score(net))

    bar = progress_bar(total, "train", progress)
    net.train()
    for k in range(total):
        at_step(k)
        idx, t, alpha, sigma, lam, eps = sampler.draw()
        T_ = lambda a: to_tensor(a, dtype, device)  # noqa: E731
        loss = denoising_loss(net, xt[torch.as_tensor(idx, device=device)], T_(t), T_(alpha),
                              T_(sigma), T_(lam), T_(eps))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses[k] = loss.detach()
        if not bar.disable:
            bar.update()
            if k % 100 == 0:
                bar.set_postfix(loss=f"{loss.item():.4g}")
    at_step(total)
    bar.close()
    losses = to_numpy(losses)
    if not np.all(np.isfinite(losses)):
        bad = int(np.flatnonzero(~np.isfinite(losses))[0])
        raise FloatingPointError(f"training diverged: non-finite loss at step {bad} (lr={lr}); "
                                 "lower the learning rate")
    metrics = {key: np.array([row[key] for row in mon_rows]) for key in (mon_rows[0] if mon_rows else {})}
    config = {"seed": seed, "optimizer": optimizer, "lr": lr, "optimizer_kwargs": kw,
              "lr_multipliers": dict(lr_multipliers or {}),
              "batch_size": batch_size, "steps": total, "t_min": t_min, "T": T, "t_fixed": t_fixed,
              "weighting": weighting, "time_sampling": time_sampling, "process": process.describe(),
              "n": n, "dim": d, "dtype": str(dtype), "device": str(device),
              "net": type(net).__name__, "torch": torch.__version__}
    return TrainHistory(losses, np.array(ck, dtype=np.int64), tuple(states), steps_per_epoch,
                        template, np.array(mon_steps, dtype=np.int64), metrics, results, config)


def excess_risk(score, data, t: float, process: Process | None = None, order: int = 16,
                rtol: float = 1e-3) -> float:
    """``E_{p^_t} |s(z, t) - s^_t(z)|^2``: the L2 distance to the empirical optimal score.

    ``p^_t`` is the training set's noised law and ``s^_t`` its score (the
    minimiser of the denoising loss at t). By Pythagoras it equals
    ``2 (L_t(s) - L_t(s^_t)) / lambda(t)`` for the single-level loss
    ``L_t = 1/2 lambda(t) E|s + eps/sigma_t|^2``. ``score`` is an rfdiff score
    or a torch network (evaluated through a float64 copy). The expectation uses
    the training set's Gauss-Hermite nodes, ``order`` per point and direction,
    doubled until two successive values agree to ``rtol`` (relative; the
    convergence is algebraic across ReLU kinks and for the ratio ``s^_t``:
    about 1e-6 at order 256 for a ReLU net at t = 0.2);
    :class:`rfdiff.ConvergenceError` if that needs an order above 256.
    """
    from ..kl.nodes import MAX_ORDER
    from ..kl.results import ConvergenceError

    process = OU() if process is None else process
    emp = data if isinstance(data, Empirical) else Empirical(_data_array(data))
    t = v.real("t", t, lo=0.0, lo_open=True)
    rtol = v.positive("rtol", rtol)
    order = v.positive_int("order", order)
    if isinstance(score, torch.nn.Module):
        score = as_rfdiff_score(score)

    def quad(k):
        z, w = emp.expectation_nodes(t, process, order=k)
        diff = np.asarray(score(z, t)) - emp.score(z, t, process)
        return float(w @ np.sum(diff * diff, axis=1))

    prev, change = quad(order), np.inf
    while 2 * order <= MAX_ORDER:
        order *= 2
        val = quad(order)
        change = abs(val - prev)
        if change <= rtol * abs(val):
            return val
        prev = val
    raise ConvergenceError(f"excess_risk: Gauss-Hermite values did not agree to rtol={rtol:g} up to "
                           f"order {order} (last change {change:.2g})")

