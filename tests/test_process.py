import mpmath as mp
import numpy as np
import pytest

import rfdiff as rf
from rfdiff.numerics.quadrature import gauss_hermite_normal, log_time_grid


@pytest.mark.parametrize("t", [1e-8, 1e-4, 1e-3, 0.5, 8.0, 20.0])
def test_ou_sigma2_is_accurate_at_small_t(t):
    exact = float(1 - mp.exp(-2 * mp.mpf(t)))
    assert rf.OU().sigma2(t) == pytest.approx(exact, rel=1e-15)
    assert rf.OU().alpha(t) == pytest.approx(float(mp.exp(-mp.mpf(t))), rel=1e-15)


def test_vp_with_constant_beta_is_ou_and_moments_solve_the_sde():
    t = np.array([1e-5, 0.3, 2.0])
    vp, ou = rf.VP(2.0, 2.0), rf.OU()
    np.testing.assert_allclose(vp.sigma2(t), ou.sigma2(t), rtol=1e-14)
    np.testing.assert_allclose(vp.alpha(t), ou.alpha(t), rtol=1e-14)
    # mean and variance ODEs of dx = f x dt + g dW: m' = f m, v' = 2 f v + g2
    from scipy.integrate import solve_ivp
    p = rf.VP(0.1, 20.0)
    sol = solve_ivp(lambda s, y: [p.f(s) * y[0], 2 * p.f(s) * y[1] + p.g2(s)], (0, 1.0), [1.0, 0.0],
                    rtol=1e-12, atol=1e-14, dense_output=True)
    for s in (0.01, 0.5, 1.0):
        mean, var = sol.sol(s)
        assert p.alpha(s) == pytest.approx(mean, rel=1e-9)
        assert p.sigma2(s) == pytest.approx(var, rel=1e-9)


def test_bad_vp_parameters():
    with pytest.raises(ValueError, match="beta_min"):
        rf.VP(beta_min=-1.0)
    with pytest.raises(ValueError, match="beta_max"):
        rf.VP(beta_max=float("nan"))


def test_log_time_grid_integrates_and_hermite_nodes_are_normal_expectations():
    g = log_time_grid(1e-3, 8.0, 40)
    assert g.weights.sum() == pytest.approx(8.0 - 1e-3, rel=1e-13)
    assert (g.weights * g.t).sum() == pytest.approx((64 - 1e-6) / 2, rel=1e-12)
    assert g.mean_weights.sum() == pytest.approx(1.0, rel=1e-13)
    x, w = gauss_hermite_normal(12)
    assert w.sum() == pytest.approx(1.0, rel=1e-14)
    assert (w * x**4).sum() == pytest.approx(3.0, rel=1e-13)
    with pytest.raises(ValueError, match="t_min must be < T"):
        log_time_grid(2.0, 1.0, 4)
