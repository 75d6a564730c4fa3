"""Score networks whose every layer is trained.

All take points ``x`` of shape (k, d) and times ``t`` of shape (k,), have a
``dim`` (= d), a ``parametrization`` and ``score(x, t)``:

- :class:`MLPScore`: one hidden layer,
  ``s(x, t) = V act(W [x; e(t)] + b) + c`` (``"standard"`` PyTorch
  parametrisation and init) or ``(1/m) A act(...)`` (``"mean-field"``, the
  random-feature model's 1/m readout, ``A`` entries N(0, 1), no output bias;
  unlike :class:`~rfdiff.torch.rf.RFNet` the hidden layer has a bias and is
  trained). Outputs the score.
- :class:`ResidualScore`: ``h_0 = W_in [x; e(t)] + b_in``,
  ``h_{k+1} = h_k + (1/L) V_k act(W_k h_k)`` (k = 0..L-1), ``s = W_out h_L``:
  the residual net whose large-depth limit is a neural ODE. Smooth init
  discretises smooth functions of depth, ``W_k = W(k/L)``,
  ``W(s) = W_a + s W_b`` (``"tied"``: ``W_b = 0``; ``"iid"``: independent
  layers, no limit). ``max_increment()`` measures ``max_k ||W_{k+1} - W_k||_F``
  (and the same for V), which stays O(1/L) along training from a smooth init.
  Outputs the score.
- :class:`UNet`: a small U-Net for (C, H, W) images with even H, W (8x8 digits,
  28x28 MNIST): one down/up level, residual conv blocks with GroupNorm and a
  time-embedding bias. Outputs the noise, ``eps_hat``; ``score = -eps_hat/sigma_t``
  (the process is a constructor argument). Input and output are flattened
  ``(k, C*H*W)`` so that images are points of R^d like everything else.

Weights are initialised from the constructor's ``seed`` (PyTorch's default
inits drawn inside ``torch.random.fork_rng``: the global RNG is left as it was).
Default dtype float64 (the cross-check precision); pass ``dtype=torch.float32``
for speed. No batch norm anywhere: examples never interact, so the autograd
divergence of :class:`~rfdiff.torch.train.NetScore` is exact.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .. import _validate as v
from ..process import OU, Process
from ._common import DEFAULT_DTYPE, act_fn, as_embedding, embed_time, to_tensor

SCALINGS = ("standard", "mean-field")
INITS = ("smooth", "tied", "iid")


class _Seeded:
    """Context: draw module inits from ``seed`` without touching the global RNG."""

    def __init__(self, seed):
        self.seed = v.positive_int("seed", seed, minimum=0)

    def __enter__(self):
        self._fork = torch.random.fork_rng(devices=[])
        self._fork.__enter__()
        torch.manual_seed(self.seed)

    def __exit__(self, *exc):
        return self._fork.__exit__(*exc)


class ScoreNet(nn.Module):
    """Base: ``forward(x, t)`` is the raw output; ``score`` converts it."""

    parametrization = "score"
    dim: int

    def embed(self, t: torch.Tensor) -> torch.Tensor:
        return embed_time(self.time_embedding, t)

    def score(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self(x, t)


class MLPScore(ScoreNet):
    """One-hidden-layer score net (module docstring).

    ``dim`` data dimension, ``width`` hidden units, ``activation`` (``"swish"``,
    ``'relu'``, ... as in :mod:`rfdiff.model.features`), ``time_embedding`` a name or
    :class:`~rfdiff.model.features.TimeEmbedding`, ``scaling`` ``"standard"`` or
    ``"mean-field"``, ``seed``, ``dtype``.
    """

    def __init__(self, dim: int = 1, width: int = 128, activation: str = "swish",
                 time_embedding="log-sinusoidal", scaling: str = "standard", seed: int = 0,
                 dtype=DEFAULT_DTYPE):
        super().__init__()
        self.dim = v.positive_int("dim", dim)
        self.width = v.positive_int("width", width)
        self.activation = activation
        self._act = act_fn(activation)
        self.time_embedding = as_embedding(time_embedding)
        self.scaling = v.choice("scaling", scaling, SCALINGS)
        with _Seeded(seed):
            self.hidden = nn.Linear(self.dim + self.time_embedding.dim, self.width, dtype=dtype)
            self.out = nn.Linear(self.width, self.dim, bias=scaling == "standard", dtype=dtype)
            if scaling == "mean-field":
                nn.init.normal_(self.out.weight)

    def forward(self, x, t):
        h = self._act(self.hidden(torch.cat([x, self.embed(t)], dim=-1)))
        out = self.out(h)
        return out / self.width if self.scaling == "mean-field" else out


class ResidualScore(ScoreNet):
    """Deep residual score net with 1/L scaling (module docstring).

    ``dim``, ``width``, ``depth`` L, ``activation`` (default ``"tanh"``, smooth),
    ``init`` (``"smooth"``, ``"tied"``, ``"iid"``), ``time_embedding``, ``seed``,
    ``dtype``. Hidden weights ``W_k, V_k`` have entries of variance 1/width
    (``W_a``, ``W_b`` each, for the smooth init).
    """

    def __init__(self, dim: int = 1, width: int = 32, depth: int = 8, activation: str = "tanh",
                 init: str = "smooth", time_embedding="log-sinusoidal", seed: int = 0,
                 dtype=DEFAULT_DTYPE):
        super().__init__()
        self.dim = v.positive_int("dim", dim)
        self.width = v.positive_int("width", width)
        self.depth = v.positive_int("depth", depth)
        self.activation = activation
        self._act = act_fn(activation)
        self.init = v.choice("init", init, INITS)
        self.time_embedding = as_embedding(time_embedding)
        L, w = self.depth, self.width
        with _Seeded(seed):
            self.inp = nn.Linear(self.dim + self.time_embedding.dim, w, dtype=dtype)
            self.out = nn.Linear(w, self.dim, dtype=dtype)
            self.W = nn.Parameter(self._init_stack(L, w, dtype))
            self.V = nn.Parameter(self._init_stack(L, w, dtype))

    def _init_stack(self, L, w, dtype):
        s = torch.arange(L, dtype=dtype)[:, None, None] / L
        scale = w ** -0.5
        if self.init == "iid":
            return scale * torch.randn(L, w, w, dtype=dtype)
        a = scale * torch.randn(w, w, dtype=dtype)
        b = scale * torch.randn(w, w, dtype=dtype) if self.init == "smooth" else torch.zeros(w, w, dtype=dtype)
        return a[None] + s * b[None]

    def forward(self, x, t):
        h = self.inp(torch.cat([x, self.embed(t)], dim=-1))
        for k in range(self.depth):
            h = h + (self._act(h @ self.W[k].T) @ self.V[k].T) / self.depth
        return self.out(h)

    def max_increment(self) -> dict:
        """``max_k ||W_{k+1} - W_k||_F`` and the same for ``V`` (0 for L = 1)."""
        out = {}
        for name in ("W", "V"):
            p = getattr(self, name).detach()
            d = torch.linalg.matrix_norm(p[1:] - p[:-1]) if self.depth > 1 else torch.zeros(1)
            out[name] = float(d.max())
        return out

    def diagnostics(self) -> dict:
        """What :func:`~rfdiff.torch.train.train` monitors by default."""
        inc = self.max_increment()
        return {"max_increment_W": inc["W"], "max_increment_V": inc["V"]}


class _Block(nn.Module):
    """GroupNorm-SiLU-conv twice, a per-channel time bias in between, residual."""

    def __init__(self, cin, cout, temb, dtype):
        super().__init__()
        self.n1 = nn.GroupNorm(min(4, cin), cin, dtype=dtype)
        self.c1 = nn.Conv2d(cin, cout, 3, padding=1, dtype=dtype)
        self.t = nn.Linear(temb, cout, dtype=dtype)
        self.n2 = nn.GroupNorm(min(4, cout), cout, dtype=dtype)
        self.c2 = nn.Conv2d(cout, cout, 3, padding=1, dtype=dtype)
        self.skip = nn.Conv2d(cin, cout, 1, dtype=dtype) if cin != cout else nn.Identity()

    def forward(self, x, te):
        h = self.c1(nn.functional.silu(self.n1(x))) + self.t(te)[:, :, None, None]
        h = self.c2(nn.functional.silu(self.n2(h)))
        return self.skip(x) + h


class UNet(ScoreNet):
    """Small U-Net noise predictor for images (module docstring).

    ``image_shape`` (C, H, W) with even H, W; ``channels`` c at full
    resolution (2c at half); ``process`` the forward process whose ``sigma_t``
    converts the noise to the score; ``time_embedding`` (its e(t) goes through
    a two-layer MLP of width 4c); ``seed``, ``dtype``. The last conv starts at
    zero (eps_hat = 0, score = 0 at initialisation).
    """

    parametrization = "eps"

    def __init__(self, image_shape=(1, 8, 8), channels: int = 16, process: Process | None = None,
                 time_embedding="log-sinusoidal", seed: int = 0, dtype=DEFAULT_DTYPE):
        super().__init__()
        shape = tuple(int(s) for s in image_shape)
        if len(shape) != 3 or min(shape) < 1 or shape[1] % 2 or shape[2] % 2:
            raise ValueError(f"image_shape must be (C, H, W) with even H and W, got {image_shape!r}")
        self.image_shape = shape
        self.dim = int(np.prod(shape))
        self.process = OU() if process is None else process
        if not isinstance(self.process, Process):
            raise ValueError(f"process must be an rfdiff Process, got {type(process).__name__}")
        self.time_embedding = as_embedding(time_embedding)
        c = v.positive_int("channels", channels)
        te = 4 * c
        C = shape[0]
        with _Seeded(seed):
            self.temb = nn.Sequential(nn.Linear(self.time_embedding.dim, te, dtype=dtype), nn.SiLU(),
                                      nn.Linear(te, te, dtype=dtype))
            self.inp = nn.Conv2d(C, c, 3, padding=1, dtype=dtype)
            self.down_block = _Block(c, c, te, dtype)
            self.down = nn.Conv2d(c, 2 * c, 3, stride=2, padding=1, dtype=dtype)
            self.mid = _Block(2 * c, 2 * c, te, dtype)
            self.up = nn.ConvTranspose2d(2 * c, c, 4, stride=2, padding=1, dtype=dtype)
            self.up_block = _Block(2 * c, c, te, dtype)
            self.out_norm = nn.GroupNorm(min(4, c), c, dtype=dtype)
            self.out = nn.Conv2d(c, C, 3, padding=1, dtype=dtype)
            nn.init.zeros_(self.out.weight)
            nn.init.zeros_(self.out.bias)

    def forward(self, x, t):
        k = x.shape[0]
        te = self.temb(self.embed(t))
        h0 = self.inp(x.reshape(k, *self.image_shape))
        h1 = self.down_block(h0, te)
        h = self.mid(self.down(h1), te)
        h = self.up_block(torch.cat([self.up(h), h1], dim=1), te)
        return self.out(nn.functional.silu(self.out_norm(h))).reshape(k, self.dim)

    def sigma(self, t: torch.Tensor) -> torch.Tensor:
        """``sigma_t`` of the process (host numpy; t carries no gradient)."""
        s = self.process.sigma(t.detach().to("cpu", torch.float64).numpy())
        return to_tensor(s, t.dtype, t.device)

    def score(self, x, t):
        return -self(x, t) / self.sigma(t)[:, None]
