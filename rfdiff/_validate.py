"""Input validation at the public boundary.

Every public constructor checks its inputs with these helpers and raises
``ValueError`` naming the parameter and the allowed range; internals trust
validated objects.
"""
from __future__ import annotations

import math
from numbers import Integral, Real

import numpy as np


def positive_int(name: str, value, *, minimum: int = 1) -> int:
    """Return ``value`` as an int, or raise if it is not an integer >= ``minimum`` (a bool is not)."""
    if isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if not isinstance(value, (Integral, np.integer)):
        if isinstance(value, (Real, np.floating)) and float(value).is_integer():
            value = int(value)
        else:
            raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value}")
    return int(value)


def real(name: str, value, *, lo: float = -math.inf, hi: float = math.inf,
         lo_open: bool = False, hi_open: bool = False) -> float:
    """Return ``value`` as a finite float inside the given interval, or raise."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a real number, got {value!r}") from None
    if not math.isfinite(x):
        raise ValueError(f"{name} must be finite, got {x}")
    bad_lo = x <= lo if lo_open else x < lo
    bad_hi = x >= hi if hi_open else x > hi
    if bad_lo or bad_hi:
        raise ValueError(f"{name} must be {_range_text(lo, hi, lo_open, hi_open)}, got {x}")
    return x


def _range_text(lo: float, hi: float, lo_open: bool, hi_open: bool) -> str:
    """The allowed range in words; an infinite end is not part of it (values are finite)."""
    if math.isinf(lo) and math.isinf(hi):
        return "a finite real number"
    if math.isinf(hi):
        return f"{'>' if lo_open else '>='} {lo:g}"
    if math.isinf(lo):
        return f"{'<' if hi_open else '<='} {hi:g}"
    return f"in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"


def positive(name: str, value) -> float:
    """A finite float > 0."""
    return real(name, value, lo=0.0, lo_open=True)


def finite_array(name: str, value, *, ndim: int | None = None, dtype=np.float64) -> np.ndarray:
    """Return a float64 array with no NaN or inf, of the given ndim if asked."""
    try:
        a = np.asarray(value, dtype=dtype)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be an array of real numbers") from None
    if ndim is not None and a.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimension(s), got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} must contain only finite values (found NaN or inf)")
    return a


def points(name: str, z, dim: int) -> np.ndarray:
    """Evaluation points as a (k, dim) float64 array.

    A 1D array is accepted as k points when ``dim == 1`` and as one point when
    its length equals ``dim``.
    """
    a = np.asarray(z, dtype=np.float64)
    if a.ndim == 0:
        a = a.reshape(1, 1)
    elif a.ndim == 1:
        a = a.reshape(-1, 1) if dim == 1 else a.reshape(1, -1)
    if a.ndim != 2 or a.shape[1] != dim:
        raise ValueError(f"{name} must have shape (k, {dim}), got {np.shape(z)}")
    return a


def times(name: str, t, *, allow_zero: bool = False) -> np.ndarray:
    """Diffusion times as a float64 array; each must be > 0 (or >= 0)."""
    a = np.asarray(t, dtype=np.float64)
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} must be finite")
    if allow_zero:
        if np.any(a < 0):
            raise ValueError(f"{name} must be >= 0, got min {a.min()}")
    elif np.any(a <= 0):
        raise ValueError(f"{name} must be > 0, got min {a.min()}")
    return a


def choice(name: str, value, allowed) -> str:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {sorted(allowed)}, got {value!r}")
    return value


def window(t_min, T) -> tuple[float, float]:
    """The sampling window 0 < t_min < T."""
    t_min = real("t_min", t_min, lo=0.0, lo_open=True)
    T = real("T", T, lo=0.0, lo_open=True)
    if not t_min < T:
        raise ValueError(f"t_min must be < T, got t_min={t_min}, T={T}")
    return t_min, T
