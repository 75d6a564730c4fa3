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
from ._results import ConvergenceError, KLResult, BoundResult
from .likelihood import generated_density, kl_ode, kl_ode_path, log_density_ode
from .fokker_planck import kl_sde, kl_sde_path, sde_density
from .girsanov import girsanov_bound, girsanov_bound_path
from .trajectory import trajectory
from . import metrics, samplers

__version__ = "0.1.0"

__all__ = [
    "OU", "VP", "Process", "Score", "as_score", "Target", "GaussianMixture", "two_modes",
    "quantile_mixture", "LowRankMixture", "low_rank_mixture", "CompactDensity", "Empirical", "RandomFeatureScore", "Flow", "QuadraticForm",
    "ScoreMatching", "get_backend", "ConvergenceError", "KLResult", "BoundResult",
    "kl_ode", "kl_ode_path", "log_density_ode", "generated_density", "kl_sde", "kl_sde_path",
    "sde_density", "girsanov_bound", "girsanov_bound_path", "trajectory", "metrics", "samplers",
]
