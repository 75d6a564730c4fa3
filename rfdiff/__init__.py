"""rfdiff: exact training trajectories of random-feature diffusion score models.

Data flow: target -> process -> features -> Gram (quadrature) -> flow (closed
form) -> score -> density / KL / metrics. See README.md for a worked example.
"""
from .process import OU, VP, Process
from .score import Score, as_score
from .targets.empirical import Empirical
from .targets.mixture import GaussianMixture, two_modes
from .features import RandomFeatureScore
from .flow import Flow, QuadraticForm
from .scorematching import ScoreMatching
from .backend import get_backend

__version__ = "0.1.0"

__all__ = [
    "OU", "VP", "Process", "Score", "as_score", "GaussianMixture", "two_modes",
    "Empirical", "RandomFeatureScore", "Flow", "QuadraticForm",
    "ScoreMatching", "get_backend",
]
