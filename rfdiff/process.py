"""Forward noising processes with linear drift.

A process ``dx = f(t) x dt + g(t) dW`` started at ``x_0`` has the Gaussian
transition kernel

    x_t | x_0 ~ N(alpha(t) x_0, sigma2(t) I),

and everything downstream (losses, samplers, likelihoods) only uses
``alpha``, ``sigma2``, the drift coefficient ``f`` and the squared diffusion
``g2``. The prior ``pi`` that sampling starts from is ``N(0, prior_var I)``.

``OU``: ``dx = -x dt + sqrt(2) dW``; ``alpha = exp(-t)``,
``sigma2 = -expm1(-2t)`` (expm1 keeps ``sigma2`` accurate at t = 1e-6).

``VP``: ``dx = -beta(t)/2 x dt + sqrt(beta(t)) dW`` with the linear schedule
``beta(t) = beta_min + (beta_max - beta_min) t`` (time in [0, 1] in the usual
DDPM convention, but any t >= 0 is allowed); ``B(t) = int_0^t beta``,
``alpha = exp(-B/2)``, ``sigma2 = -expm1(-B)``. ``OU`` is ``VP`` with beta = 2.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import _validate as v


class Process:
    """Interface of a forward process; subclasses are frozen dataclasses."""

    prior_var: float = 1.0

    def log_alpha(self, t):
        raise NotImplementedError

    def sigma2(self, t):
        raise NotImplementedError

    def f(self, t):
        """Drift coefficient: the drift is ``f(t) * x``."""
        raise NotImplementedError

    def g2(self, t):
        """Squared diffusion coefficient ``g(t)^2``."""
        raise NotImplementedError

    def alpha(self, t):
        return np.exp(self.log_alpha(t))

    def sigma(self, t):
        return np.sqrt(self.sigma2(t))

    def prior_logpdf(self, x):
        """``log pi(x)`` for points ``x`` of shape (k, d)."""
        x = np.asarray(x, dtype=np.float64)
        d = x.shape[-1]
        return -0.5 * np.sum(x * x, axis=-1) / self.prior_var - 0.5 * d * np.log(2 * np.pi * self.prior_var)

    def describe(self) -> dict:
        """Parameters for provenance records."""
        out = {"name": type(self).__name__}
        out.update({k: getattr(self, k) for k in getattr(self, "__dataclass_fields__", {})})
        return out


@dataclass(frozen=True)
class OU(Process):
    """Ornstein-Uhlenbeck process ``dx = -x dt + sqrt(2) dW``, prior N(0, I)."""

    def log_alpha(self, t):
        return -np.asarray(t, dtype=np.float64)

    def sigma2(self, t):
        return -np.expm1(-2.0 * np.asarray(t, dtype=np.float64))

    def f(self, t):
        return -np.ones_like(np.asarray(t, dtype=np.float64))

    def g2(self, t):
        return 2.0 * np.ones_like(np.asarray(t, dtype=np.float64))


@dataclass(frozen=True)
class VP(Process):
    """Variance-preserving process with a linear beta schedule, prior N(0, I)."""

    beta_min: float = 0.1
    beta_max: float = 20.0

    def __post_init__(self):
        b0 = v.real("beta_min", self.beta_min, lo=0.0, lo_open=True)
        b1 = v.real("beta_max", self.beta_max, lo=0.0, lo_open=True)
        object.__setattr__(self, "beta_min", b0)
        object.__setattr__(self, "beta_max", b1)

    def beta(self, t):
        t = np.asarray(t, dtype=np.float64)
        return self.beta_min + (self.beta_max - self.beta_min) * t

    def integrated_beta(self, t):
        t = np.asarray(t, dtype=np.float64)
        return self.beta_min * t + 0.5 * (self.beta_max - self.beta_min) * t * t

    def log_alpha(self, t):
        return -0.5 * self.integrated_beta(t)

    def sigma2(self, t):
        return -np.expm1(-self.integrated_beta(t))

    def f(self, t):
        return -0.5 * self.beta(t)

    def g2(self, t):
        return self.beta(t)


def kl_to_prior_gaussian(mean, var, prior_var=1.0):
    """KL(N(mean, var) || N(0, prior_var)) in 1D, elementwise."""
    mean = np.asarray(mean, dtype=np.float64)
    var = np.asarray(var, dtype=np.float64)
    r = var / prior_var
    return 0.5 * (r - 1.0 - np.log(r) + mean * mean / prior_var)
