"""Torch versions of the core's small building blocks (activations, e(t)),
and the conversions between numpy and torch that every module here uses.

Formulas are those of :mod:`rfdiff.model.features`, written in the same order of
operations; torch's elementwise kernels (MKL/SLEEF) are not numpy's, so the
results agree to a few ulp, not bit for bit (``tests/torch/test_torch_rf.py``
measures it). Paths that must be bit-identical to the core evaluate the frozen
parts with numpy (see :class:`rfdiff.torch.rf.RFNet`).
"""
from __future__ import annotations

import math
import sys

import numpy as np
import torch

from ..model.features import TimeEmbedding, get_activation

DEFAULT_DTYPE = torch.float64


def act_fn(name: str):
    """The torch function of an activation named as in :data:`rfdiff.model.features.ACTIVATIONS`."""
    return get_activation(name).torch()


def embed_time(emb: TimeEmbedding, t: torch.Tensor) -> torch.Tensor:
    """``e(t)`` of :class:`~rfdiff.model.features.TimeEmbedding` in torch: (k,) -> (k, d_e)."""
    if emb.kind == "ou":
        return torch.stack([torch.sqrt(-torch.expm1(-2 * t)), torch.exp(-t), torch.ones_like(t)], dim=-1)
    u = torch.log(t / emb.t_lo) / math.log(emb.t_hi / emb.t_lo)
    k = torch.arange(1, emb.n_freq + 1, dtype=t.dtype, device=t.device)
    ang = math.pi * u[..., None] * k
    return torch.cat([torch.ones(t.shape + (1,), dtype=t.dtype, device=t.device),
                      torch.cos(ang), torch.sin(ang)], dim=-1)


def as_embedding(time_embedding) -> TimeEmbedding:
    if isinstance(time_embedding, TimeEmbedding):
        return time_embedding
    if isinstance(time_embedding, str):
        return TimeEmbedding(time_embedding)
    raise ValueError("time_embedding must be a name in ('log-sinusoidal', 'ou') or a "
                     f"TimeEmbedding, got {time_embedding!r}")


def to_tensor(a, dtype=DEFAULT_DTYPE, device=None) -> torch.Tensor:
    return torch.tensor(np.asarray(a), dtype=dtype, device=device)  # a copy: core arrays are read-only


def to_numpy(x: torch.Tensor) -> np.ndarray:
    return x.detach().to("cpu", torch.float64).numpy()


def progress_bar(total: int, desc: str, enabled: bool):
    """A tqdm bar, shown only when asked for and stderr is a terminal."""
    from tqdm.auto import tqdm
    return tqdm(total=total, desc=desc, leave=False, disable=not (enabled and sys.stderr.isatty()))
