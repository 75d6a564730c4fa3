"""Result objects shared by the likelihood, Fokker-Planck and bound solvers, and
the sign rule of the KL convention (:mod:`rfdiff.kl`); the public names are
re-exported from :mod:`rfdiff.kl`."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
import numpy as np

from ..numerics.refine import Status


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

    ``value`` is the KL of the convention of :mod:`rfdiff.kl` (data at t = 0,
    or at ``t_min`` for a target without a density there), ``kl_tmin`` the KL
    at ``t_min``; ``error`` and ``kl_tmin_error`` are absolute error estimates
    from a second, finer resolution. ``status`` is a :class:`Status` (an int
    array over tau for the path solvers), ``converged`` is ``status ==
    CONVERGED``; ``message`` says why in words. For the path solvers the numeric
    fields are arrays over tau. ``work`` says what was done (function
    evaluations, steps, rejected steps, nodes, grid sizes, levels, seconds);
    ``mass_loss`` is ``|1 - mass|`` of the Fokker-Planck density (``None`` for the ODE).
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
    status: object = None

    def __float__(self):
        return float(self.value)

    def __getitem__(self, i):
        """The result of one tau of a path result."""
        pick = lambda a: np.asarray(a)[i] if np.ndim(a) else a  # noqa: E731
        return replace(self, value=float(pick(self.value)), error=float(pick(self.error)),
                       kl_tmin=float(pick(self.kl_tmin)), kl_tmin_error=float(pick(self.kl_tmin_error)),
                       converged=bool(pick(self.converged)),
                       mass_loss=None if self.mass_loss is None else float(pick(self.mass_loss)),
                       status=None if self.status is None else Status(int(pick(self.status))))


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
    status: object = None

    def __float__(self):
        return float(self.value)


def clip_negative(value, error, status, tol):
    """The sign convention of :mod:`rfdiff.kl`: a KL below 0 is reported as 0
    with its error bar widened to cover the computed value
    (``error + |value|``); one below 0 beyond its own bar and the tolerance
    (``value + error < -tol``: the error estimate is wrong) is also no longer
    converged, status ``NEGATIVE`` (an unconverged status is kept). Arrays of
    one shape; ``tol`` the absolute tolerance."""
    value = np.array(value, dtype=np.float64)
    error = np.array(error, dtype=np.float64)
    status = np.array(status, dtype=np.int64)
    neg = value < 0
    beyond = neg & (value + error < -tol) & (status == Status.CONVERGED)
    status[beyond] = int(Status.NEGATIVE)
    error[neg] = error[neg] - value[neg]
    value[neg] = 0.0
    return value, error, status


def finish(result, strict: bool):
    """Raise :class:`ConvergenceError` for an unconverged result when ``strict``."""
    if strict and not np.all(result.converged):
        raise ConvergenceError(result.message, result)
    return result
