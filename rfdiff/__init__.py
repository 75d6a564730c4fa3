"""rfdiff: exact training trajectories of random-feature diffusion score models.

Data flow: target -> process -> features -> Gram (quadrature) -> flow (closed
form) -> score -> density / KL / metrics. See README.md for a worked example.
"""
from .process import OU, VP, Process
from .score import Score, as_score
from .targets import (CompactDensity, Empirical, GaussianMixture, LowRankMixture, Target,
                      low_rank_mixture, quantile_mixture, two_modes)
from .model.features import RandomFeatureScore
from .model.flow import Flow, QuadraticForm
from .model.scorematching import ScoreMatching
from .backend import get_backend
from .kl.results import ConvergenceError, KLResult, BoundResult
from .kl.ode import generated_density, kl_ode, kl_ode_path, log_density_ode
from .kl.fokker_planck import kl_sde, kl_sde_path, sde_density
from .kl.girsanov import girsanov_bound, girsanov_bound_path
from .trajectory import trajectory
from . import kl, metrics, model, numerics, samplers
# the modules reachable as attributes before the subpackages (rf.features, ...)
from .model import features, flow, gram, scorematching  # noqa: E402
from .numerics import quadrature  # noqa: E402
from .kl import fokker_planck, girsanov  # noqa: E402
from .kl import ode as likelihood  # noqa: E402
from .kl.results import Status  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "OU", "VP", "Process", "Score", "as_score", "Target", "GaussianMixture", "two_modes",
    "quantile_mixture", "LowRankMixture", "low_rank_mixture", "CompactDensity", "Empirical", "RandomFeatureScore", "Flow", "QuadraticForm",
    "ScoreMatching", "get_backend", "ConvergenceError", "KLResult", "BoundResult",
    "kl_ode", "kl_ode_path", "log_density_ode", "generated_density", "kl_sde", "kl_sde_path",
    "sde_density", "girsanov_bound", "girsanov_bound_path", "trajectory", "metrics", "samplers",
    "Status", "kl", "model", "numerics",
]
