"""The one protocol every score follows.

A score is a callable ``s(z, t) -> (k, d)`` approximating ``grad_z log p_t(z)``
for points ``z`` of shape ``(k, d)`` and a time ``t`` (a scalar, or an array of
shape ``(k,)``, one time per point), together with its divergence
``s.dz(z, t) -> (k,)``, ``sum_i d s_i / d z_i`` (in 1D simply ``ds/dz``), which
the probability-flow likelihood needs. The random-feature flow at a training
time, a torch network, a target's true score and the empirical optimal score
all implement it, so samplers, likelihoods and metrics take any of them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np


class Score:
    """Base class: subclasses implement ``__call__`` and ``dz``; ``dim`` is d."""

    dim: int = 1

    def __call__(self, z, t) -> np.ndarray:
        raise NotImplementedError

    def dz(self, z, t) -> np.ndarray:
        raise NotImplementedError(f"{type(self).__name__} has no divergence; pass dz= to as_score")


@dataclass(frozen=True)
class FunctionScore(Score):
    """A score made of plain callables (see :func:`as_score`)."""

    fn: Callable
    dz_fn: Callable | None = None
    dim: int = 1

    def __call__(self, z, t):
        return np.asarray(self.fn(z, t), dtype=np.float64).reshape(len(z), self.dim)

    def dz(self, z, t):
        if self.dz_fn is None:
            raise NotImplementedError("this score was built without dz; pass dz= to as_score")
        return np.asarray(self.dz_fn(z, t), dtype=np.float64).reshape(len(z))


def as_score(f, dz=None, dim: int = 1) -> Score:
    """Wrap ``f(z, t) -> (k, d)`` and optionally ``dz(z, t) -> (k,)`` into a score.

    Score objects pass through unchanged. ``dz`` is the divergence of the score
    (in 1D its z-derivative); it is needed by the ODE likelihood, not by samplers.
    """
    if isinstance(f, Score):
        return f
    if not callable(f):
        raise ValueError(f"score must be callable (z, t) -> (k, d), got {type(f).__name__}")
    if dz is not None and not callable(dz):
        raise ValueError("dz must be callable (z, t) -> (k,)")
    return FunctionScore(f, dz, int(dim))
