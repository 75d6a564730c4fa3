"""Data distributions ("targets") p_0 and their forward marginals p_t.

Every target implements the interface of :class:`rfdiff.targets.base.Target`:
``log_pt``, ``score``, ``score_dz``, ``evaluate``, ``score_fn``, ``sample``,
``expectation_nodes``, ``describe`` and, in 1D, ``partial_moments``.
"""
from .base import Target, TargetScore
from .compact import CompactDensity
from .empirical import Empirical
from .lowrank import LowRankMixture, low_rank_mixture
from .mixture import GaussianMixture, quantile_mixture, two_modes

__all__ = [
    "Target", "TargetScore", "GaussianMixture", "two_modes", "quantile_mixture",
    "LowRankMixture", "low_rank_mixture", "CompactDensity", "Empirical",
]
