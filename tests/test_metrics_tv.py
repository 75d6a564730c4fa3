"""rfdiff.metrics.tv against the analytic total variation of two Gaussians.

The exact score of ``N(mu, 1)``'s OU path, ``-(x - mu e^{-t})``, run from the
prior ``N(0, 1)`` generates a unit-variance Gaussian: the probability-flow ODE
(velocity ``-mu e^{-t}``) shifts it by ``mu (e^{-t_min} - e^{-T})``, the reverse
SDE (mean ``dM/dr = -M + 2 mu e^{r - T}``, variance fixed at 1) by
``mu (e^{-t_min} - e^{t_min - 2T})``. ``TV(N(0, 1), N(c, 1)) = 2 Phi(|c|/2) - 1``.
"""
import numpy as np
import pytest
from scipy.stats import norm

import rfdiff as rf

T_MIN, T = 1e-3, 8.0


def _gauss(mu):
    return rf.GaussianMixture([1.0], [[mu]], [1.0])


def _tv_exact(c):
    return 2.0 * norm.cdf(abs(c) / 2.0) - 1.0


@pytest.mark.parametrize("kind, shift", [
    ("ode", lambda mu: mu * (np.exp(-T_MIN) - np.exp(-T))),
    ("sde", lambda mu: mu * (np.exp(-T_MIN) - np.exp(T_MIN - 2 * T))),
])
def test_tv_two_gaussians(kind, shift):
    mu = 1.5
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        r = rf.metrics.tv(_gauss(mu).score_fn(rf.OU()), _gauss(0.0), t_min=T_MIN, T=T, kind=kind, tol=1e-3)
    exact = _tv_exact(shift(mu))
    assert abs(r.value - exact) <= r.error
    assert r.error < 2e-3                      # the estimate is not vacuous
    assert r.info["kind"] == kind


def test_tv_list_of_scores_is_batched():
    mus = [0.0, 0.7, 3.0]
    r = rf.metrics.tv([_gauss(m).score_fn(rf.OU()) for m in mus], _gauss(0.0), t_min=T_MIN, T=T, tol=1e-3)
    exact = [_tv_exact(m * (np.exp(-T_MIN) - np.exp(-T))) for m in mus]
    assert r.value.shape == (3,)
    assert np.all(np.abs(r.value - exact) <= r.error)
    assert r.value[0] < 2e-3                   # the exact score: TV = prior mismatch ~ e^-T only


@pytest.mark.parametrize("kw, name", [({"kind": "euler"}, "kind"), ({"tol": 0.0}, "tol"),
                                      ({"t_min": -1.0}, "t_min"), ({"lo": 2.0, "hi": 1.0}, "hi")])
def test_tv_bad_input(kw, name):
    s = _gauss(0.0).score_fn(rf.OU())
    with pytest.raises(ValueError, match=name):
        rf.metrics.tv(s, _gauss(0.0), **kw)


def test_tv_needs_a_density():
    e = rf.Empirical(np.array([[0.0], [1.0]]))
    with pytest.raises(ValueError, match="density"):
        rf.metrics.tv(_gauss(0.0).score_fn(rf.OU()), e)
