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


def fit_power_law(x, y, *, n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> PowerLawFit:
    """Least-squares fit of ``log y`` on ``log x``.

    ``x`` has shape (p,) and ``y`` shape (p,) or (p, s) with s seeds per x: the
    bootstrap resamples seeds independently at every x (so the interval
    reflects seed-to-seed variation); with one seed per x it resamples points.
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    if y.ndim == 1:
        y = y[:, None]
    if x.ndim != 1 or y.shape[0] != x.size or x.size < 2:
        raise ValueError("fit_power_law needs x of shape (p,), p >= 2, and y of shape (p,) or (p, seeds)")
    if np.any(x <= 0) or np.any(~np.isfinite(y)) or np.any(y <= 0):
        raise ValueError("fit_power_law needs positive finite x and y")
    lx, ly = np.log(x), np.log(y)
    slope, intercept = np.polyfit(lx, ly.mean(axis=1), 1)
    rng = np.random.default_rng(seed)
    p, s = ly.shape
    boots = np.empty(n_boot)
    for b in range(n_boot):
        if s > 1:
            cols = rng.integers(0, s, size=(p, s))
            yb = np.take_along_axis(ly, cols, axis=1).mean(axis=1)
            xb = lx
        else:
            idx = rng.integers(0, p, size=p)
            while np.unique(idx).size < 2:
                idx = rng.integers(0, p, size=p)
            xb, yb = lx[idx], ly[idx, 0]
        boots[b] = np.polyfit(xb, yb, 1)[0]
    a = (1 - level) / 2
    lo, hi = np.quantile(boots, [a, 1 - a])
    return PowerLawFit(float(slope), float(intercept), float(lo), float(hi), level, n_boot)
