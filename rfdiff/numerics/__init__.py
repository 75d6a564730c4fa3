"""Numerical building blocks with no knowledge of the model: embedded
Runge-Kutta pairs (:mod:`~rfdiff.numerics.rk`), quadrature rules
(:mod:`~rfdiff.numerics.quadrature`), the refinement loop shared by the KL
solvers and metrics (:mod:`~rfdiff.numerics.refine`), and Hermite partial
moments of Gaussian mixtures (private)."""
