"""Independent analytic references shared by the likelihood, Fokker-Planck and
sampler tests: closed-form OU laws of Gaussian targets and a plain-numpy
mixture score (none of them uses rfdiff's own density code)."""
import numpy as np
from scipy.integrate import solve_ivp

import rfdiff as rf


def kl_gauss(m1, v1, m2, v2):
    """KL(N(m1, v1) || N(m2, v2))."""
    return 0.5 * (v1 / v2 + (m1 - m2) ** 2 / v2 - 1.0 + np.log(v2 / v1))


def ode_generated_gaussian(mu, s2, t_min, T):
    """p_0 = N(mu, s2), exact score under OU: the flow map is the affine map that
    takes p_T = N(a_T mu, v_T) to p_tmin = N(a mu, v); pushing pi = N(0, 1) back gives
    N(a_tmin mu - r a_T mu, r^2), r = sqrt(v_tmin / v_T)."""
    a = lambda t: np.exp(-t)  # noqa: E731
    v = lambda t: a(t) ** 2 * s2 + 1.0 - a(t) ** 2  # noqa: E731
    r = np.sqrt(v(t_min) / v(T))
    return a(t_min) * mu - r * a(T) * mu, r * r


def sde_generated_gaussian(mu, s2, t_min, T, rtol=1e-13, atol=1e-15):
    """p_0 = N(mu, s2), exact score s = -(x - a mu)/v under OU; the reverse SDE
    from N(0, 1) at T keeps q Gaussian with mean m and variance P solving
    dm/dt = -m + 2 (m - a mu)/v, dP/dt = -2 (1 - 2/v) P - 2 (t decreasing)."""
    v = lambda t: 1.0 + np.exp(-2 * t) * (s2 - 1.0)  # noqa: E731

    def rhs(t, y):
        m, P = y
        return [-m + 2 * (m - np.exp(-t) * mu) / v(t), -2 * (1 - 2 / v(t)) * P - 2]
    sol = solve_ivp(rhs, (T, t_min), [0.0, 1.0], method="DOP853", rtol=rtol, atol=atol)
    return sol.y[0, -1], sol.y[1, -1]


def mixture_score(weights, means, variances):
    """Closed-form 1D Gaussian-mixture score and its z-derivative under OU (numpy)."""
    w, m, v0 = (np.asarray(a, dtype=float) for a in (weights, means, variances))

    def parts(z, t):
        z = np.asarray(z, float).reshape(-1, 1)
        t = np.asarray(t, float).reshape(-1, 1)
        a = np.exp(-t)
        var = a * a * v0 - np.expm1(-2 * t)
        lg = np.log(w) - 0.5 * (z - a * m) ** 2 / var - 0.5 * np.log(var)
        r = np.exp(lg - lg.max(1, keepdims=True))
        r /= r.sum(1, keepdims=True)
        g = -(z - a * m) / var
        s = (r * g).sum(1)
        return s, (r * (-1.0 / var)).sum(1) + (r * (g - s[:, None]) ** 2).sum(1)
    return rf.as_score(lambda z, t: parts(z, t)[0][:, None], lambda z, t: parts(z, t)[1])
