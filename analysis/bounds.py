"""The generalization bound of seed 000 and its optimisation over training time.

The data-independent theorem bounds (up to constants)

    KL(p_0 || p_gen(tau)) <~ tau^4/(m n) + tau^3/m^2 + 1/tau + [m-only terms].

Minimising over tau is done symbolically: the exponents are derived here, not
typed in. Three regimes are reported:

- ``m = c n`` (width grows with the data): dominant balance of
  ``tau^4/(m n)`` and ``1/tau`` gives ``tau* ~ n^{2/5}``, ``KL* ~ n^{-2/5}``;
- ``m -> inf`` at fixed n: ``tau* = (m n/4)^{1/5}``;
- ``n -> inf`` at fixed m: ``tau* = (m^2/3)^{1/4}``, ``KL* ~ m^{-1/2}``.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import sympy as sp

tau, n, m, c = sp.symbols("tau n m c", positive=True)

BOUND = tau**4 / (m * n) + tau**3 / m**2 + 1 / tau


@dataclass(frozen=True)
class Regime:
    name: str
    tau_star: sp.Expr          # minimiser of the (dominant part of the) bound
    kl_star: sp.Expr           # the bound at tau_star (dominant part)
    tau_exponent: sp.Rational  # d log tau* / d log(variable)
    kl_exponent: sp.Rational
    variable: sp.Symbol


def _argmin(expr):
    """The unique positive stationary point of a convex-in-tau expression."""
    sols = [s for s in sp.solve(sp.diff(expr, tau), tau) if s.is_positive is not False]
    if len(sols) != 1:
        raise RuntimeError(f"expected one positive stationary point of {expr}, got {sols}")
    return sp.simplify(sols[0])


def _exponent(expr, var):
    """``lim_{var -> inf} log(expr)/log(var)``: the power-law exponent."""
    return sp.nsimplify(sp.limit(sp.log(expr) / sp.log(var), var, sp.oo))


@lru_cache(maxsize=None)
def regimes() -> dict[str, Regime]:
    out = {}
    # m = c n: the tau^3/m^2 term is lower order at the optimum (checked below).
    prop = BOUND.subs(m, c * n)
    dominant = tau**4 / (c * n**2) + 1 / tau
    t_star = _argmin(dominant)
    full_at = sp.simplify(prop.subs(tau, t_star))
    out["m_proportional_to_n"] = Regime("m = c n", t_star, full_at, _exponent(t_star, n),
                                        _exponent(full_at, n), n)
    t_inf_m = _argmin(tau**4 / (m * n) + 1 / tau)
    out["m_to_infinity"] = Regime("m -> inf", t_inf_m, sp.simplify((tau**4 / (m * n) + 1 / tau).subs(tau, t_inf_m)),
                                  _exponent(t_inf_m, n), _exponent(1 / t_inf_m, n), n)
    t_inf_n = _argmin(tau**3 / m**2 + 1 / tau)
    kl_inf_n = sp.simplify((tau**3 / m**2 + 1 / tau).subs(tau, t_inf_n))
    out["n_to_infinity"] = Regime("n -> inf", t_inf_n, kl_inf_n, _exponent(t_inf_n, m),
                                  _exponent(kl_inf_n, m), m)
    return out


def theory_exponents() -> dict[str, float]:
    """Exponents the fits are compared with (derived symbolically)."""
    r = regimes()
    return {"tau_star_vs_n": float(r["m_proportional_to_n"].tau_exponent),
            "kl_star_vs_n": float(r["m_proportional_to_n"].kl_exponent),
            "kl_star_vs_m": float(r["n_to_infinity"].kl_exponent)}


def bound_curve(taus, n_value: float, m_value: float) -> np.ndarray:
    """The bound's tau-dependent part at given n, m (for drawing with a fitted constant)."""
    f = sp.lambdify(tau, BOUND.subs({n: n_value, m: m_value}), "numpy")
    return np.asarray(f(np.asarray(taus, dtype=float)), dtype=float)


def optimal_tau(n_value: float, m_value: float) -> float:
    """Numerical minimiser of the full bound over tau (a scalar convex problem)."""
    from scipy.optimize import minimize_scalar

    f = sp.lambdify(tau, BOUND.subs({n: n_value, m: m_value}), "numpy")
    res = minimize_scalar(lambda lt: f(np.exp(lt)), bracket=(-5.0, 5.0))
    return float(np.exp(res.x))
