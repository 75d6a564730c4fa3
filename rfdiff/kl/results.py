"""Result objects shared by the likelihood, Fokker-Planck and bound solvers (private;
the public names are re-exported from :mod:`rfdiff.kl.ode`)."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import IntEnum

import numpy as np


class Status(IntEnum):
    """Why a solver stopped, per element (integer codes; compare members, not strings)."""

    CONVERGED = 0
    QUADRATURE_LIMIT = 1
    TOLERANCE_LIMIT = 2
    SOLVER_FAILED = 3
    NOT_FINITE = 4
    WORK_BUDGET = 5
    NOT_CONVERGED = 6


class ConvergenceError(RuntimeError):
    """A solver could not meet its tolerance within its work limits.

    ``result`` holds what was reached (value, error estimate, work done), with
    ``converged=False``; pass ``strict=False`` to get it returned instead.
    """

    def __init__(self, message: str, result=None):
        super().__init__(message)
        self.result = result


@dataclass(frozen=True)
class KLResult:
    """A Kullback-Leibler divergence between the data and a generated law.

    ``value`` is ``KL(p_0 || p_gen)``, where ``p_gen`` is the generated density
    at ``t = t_min`` and ``p_0`` the target (for a target with no density at
    t = 0, e.g. ``Empirical``, ``value`` is ``KL(p_{t_min} || p_gen)``);
    ``kl_tmin`` is ``KL(p_{t_min} || p_gen)``. ``error`` and ``kl_tmin_error``
    are error estimates (absolute) from a second, finer resolution.
    For the path solvers (many taus at once) the numeric fields are arrays
    over tau. ``work`` says what was done (function evaluations, steps,
    rejected steps, nodes, grid sizes, levels); ``mass_loss`` is
    ``|1 - mass|`` of the Fokker-Planck density (``None`` for the ODE).
    """

    value: object
    error: object
    kl_tmin: object
    kl_tmin_error: object
    converged: object
    message: str
    kind: str
    tol: float
    work: dict = field(default_factory=dict)
    mass_loss: object = None

    def __float__(self):
        return float(self.value)

    def __getitem__(self, i):
        """The result of one tau of a path result."""
        pick = lambda a: np.asarray(a)[i] if np.ndim(a) else a  # noqa: E731
        return replace(self, value=float(pick(self.value)), error=float(pick(self.error)),
                       kl_tmin=float(pick(self.kl_tmin)), kl_tmin_error=float(pick(self.kl_tmin_error)),
                       converged=bool(pick(self.converged)),
                       mass_loss=None if self.mass_loss is None else float(pick(self.mass_loss)))


@dataclass(frozen=True)
class BoundResult:
    """The Girsanov bound ``KL(p_T || pi) + 1/2 int g^2 E_{p_t}|s - grad log p_t|^2 dt``.

    ``value`` = ``kl_prior + score_term``; ``error`` its quadrature error
    estimate; arrays over tau for the path version.
    """

    value: object
    error: object
    kl_prior: float
    kl_prior_error: float
    score_term: object
    score_term_error: object
    converged: object
    message: str
    tol: float
    work: dict = field(default_factory=dict)

    def __float__(self):
        return float(self.value)


def finish(result, strict: bool):
    """Raise :class:`ConvergenceError` for an unconverged result when ``strict``."""
    if strict and not np.all(result.converged):
        raise ConvergenceError(result.message, result)
    return result
