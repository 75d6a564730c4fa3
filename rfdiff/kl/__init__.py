"""Exact 1D KL divergences between the data and a generated law, with error
estimates, and the Girsanov bound.

Convention (stated here once, referenced by the solvers):

- ``value = KL(p_0 || p_gen) = E_{p_0}[log p_0 - log p_gen]`` with ``p_gen``
  the law the sampler generates at ``t = t_min`` from the prior at ``T``;
  ``kl_tmin = KL(p_{t_min} || p_gen)``; for a target without a density at
  t = 0 (``Empirical``) ``value`` is ``kl_tmin``.
- Tolerance: ``error <= tol * max(1, KL)``: absolute for a KL up to 1,
  relative beyond (a memorising law can be 1e4 nats from the data).
- Sign: a KL is >= 0. A computed value below 0 (discretisation error) is
  reported as 0 with its error bar widened to cover the computed value; one
  below 0 beyond its bar and ``tol`` is also unconverged, status
  ``Status.NEGATIVE`` (:func:`~rfdiff.kl.results.clip_negative`).
- Every result has a ``status`` (:class:`Status`, an int per tau for the path
  solvers: ``CONVERGED``, ``QUADRATURE_LIMIT``, ``TOLERANCE_LIMIT``,
  ``SOLVER_FAILED``, ``NOT_FINITE``, ``WORK_BUDGET``, ``NEGATIVE``);
  unconverged values are raised as :class:`ConvergenceError` unless
  ``strict=False``, and then carry their status so that figures can mark them.
  Every solver has a work budget (grid levels, steps, ``max_seconds``).
 :mod:`~rfdiff.kl.ode` computes ``log p_gen`` along
the probability-flow ODE (instantaneous change of variables),
:mod:`~rfdiff.kl.fokker_planck` by solving the reverse SDE's Fokker-Planck
equation, :mod:`~rfdiff.kl.girsanov` bounds the SDE's KL. Expectations use
the quadrature of :mod:`~rfdiff.kl.nodes`; results are
:mod:`~rfdiff.kl.results`.
"""
from .results import BoundResult, ConvergenceError, KLResult, Status
from .ode import generated_density, kl_ode, kl_ode_path, log_density_ode, ode_log_density
from .fokker_planck import kl_sde, kl_sde_path, sde_density
from .girsanov import girsanov_bound, girsanov_bound_path, kl_prior, score_term_path

__all__ = ["BoundResult", "ConvergenceError", "KLResult", "Status", "generated_density", "kl_ode",
           "kl_ode_path", "log_density_ode", "ode_log_density", "kl_sde", "kl_sde_path", "sde_density",
           "girsanov_bound", "girsanov_bound_path", "kl_prior", "score_term_path"]
