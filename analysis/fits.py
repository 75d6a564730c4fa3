"""Log-log power-law fits with bootstrap confidence intervals."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PowerLawFit:
    """``y ~ exp(intercept) x^slope`` with a bootstrap percentile interval."""

    slope: float
    intercept: float
    ci_low: float
    ci_high: float
    level: float
    n_boot: int

    def __call__(self, x):
        return np.exp(self.intercept) * np.asarray(x, dtype=float) ** self.slope

    def contains(self, value: float) -> bool:
        return self.ci_low <= value <= self.ci_high

    def as_dict(self) -> dict:
        return {"slope": self.slope, "intercept": self.intercept, "ci_low": self.ci_low,
                "ci_high": self.ci_high, "level": self.level, "n_boot": self.n_boot}


def _ls_slope(x, y, axis=-1):
    """Least-squares slope of ``y`` on ``x`` along ``axis``: ``sum(xc yc) / sum(xc^2)``
    (NaN where all x coincide: a bootstrap resample of one repeated point)."""
    xc = x - x.mean(axis=axis, keepdims=True)
    yc = y - y.mean(axis=axis, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (xc * yc).sum(axis=axis) / (xc * xc).sum(axis=axis)


def _rng_kw(seed) -> dict:
    """``rng=`` (SciPy >= 1.15) or ``random_state=`` (older), a NumPy Generator either way."""
    import inspect

    from scipy.stats import bootstrap

    key = "rng" if "rng" in inspect.signature(bootstrap).parameters else "random_state"
    return {key: np.random.default_rng(seed)}


def fit_power_law(x, y, *, n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> PowerLawFit:
    """Least-squares fit of ``log y`` on ``log x`` (of the mean of ``log y`` over seeds).

    ``x`` has shape (p,) and ``y`` shape (p,) or (p, s) with s seeds per x. The
    interval is the bootstrap percentile interval of :func:`scipy.stats.bootstrap`
    (``n_boot`` resamples, seeded by ``seed``): with s > 1 the p groups of seeds are
    resampled independently (a stratified bootstrap: the interval reflects
    seed-to-seed variation at fixed x); with one seed per x the (x, y) points are
    resampled in pairs, and resamples of a single repeated point (no slope) are dropped.
    """
    from scipy.stats import bootstrap

    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    if y.ndim == 1:
        y = y[:, None]
    if x.ndim != 1 or y.shape[0] != x.size or x.size < 2:
        raise ValueError("fit_power_law needs x of shape (p,), p >= 2, and y of shape (p,) or (p, seeds)")
    if np.any(x <= 0) or np.any(~np.isfinite(y)) or np.any(y <= 0):
        raise ValueError("fit_power_law needs positive finite x and y")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if n_boot < 2:
        raise ValueError(f"n_boot must be >= 2, got {n_boot}")
    lx, ly = np.log(x), np.log(y)
    slope, intercept = np.polyfit(lx, ly.mean(axis=1), 1)
    p, s = ly.shape
    kw = dict(n_resamples=n_boot, confidence_level=level, method="percentile", vectorized=True, **_rng_kw(seed))
    if s > 1:
        def stat(*groups, axis=-1):          # one resampled group of seeds per x
            means = np.stack([g.mean(axis=axis) for g in groups], axis=-1)
            return _ls_slope(lx, means)
        lo, hi = bootstrap(tuple(ly), stat, **kw).confidence_interval
    else:
        import warnings

        from scipy.stats import DegenerateDataWarning

        with warnings.catch_warnings():     # resamples of one repeated x: NaN slopes, dropped below
            warnings.simplefilter("ignore", DegenerateDataWarning)
            boots = bootstrap((lx, ly[:, 0]), _ls_slope, paired=True, **kw).bootstrap_distribution
        a = (1 - level) / 2
        lo, hi = np.nanquantile(boots, [a, 1 - a])      # the percentile interval without them
    return PowerLawFit(float(slope), float(intercept), float(lo), float(hi), level, n_boot)
