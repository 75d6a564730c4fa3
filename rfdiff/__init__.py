"""rfdiff: exact training trajectories of random-feature diffusion score models.

Data flow: target -> process -> features -> Gram (quadrature) -> flow (closed
form) -> score -> density / KL / metrics. See README.md for a worked example.
"""
from .process import OU, VP, Process
from .score import Score, as_score
from .targets import (CompactDensity, Empirical, GaussianMixture, LowRankMixture, Target,
                      low_rank_mixture, quantile_mixture, two_modes)
from .features import RandomFeatureScore
from .flow import Flow, QuadraticForm
from .scorematching import ScoreMatching
from .backend import get_backend

__version__ = "0.1.0"

__all__ = [
    "OU", "VP", "Process", "Score", "as_score", "Target", "GaussianMixture", "two_modes",
    "quantile_mixture", "LowRankMixture", "low_rank_mixture", "CompactDensity", "Empirical", "RandomFeatureScore", "Flow", "QuadraticForm",
    "ScoreMatching", "get_backend",
]
