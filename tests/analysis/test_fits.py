"""analysis.fits.fit_power_law: its bootstrap (scipy.stats.bootstrap) against analytic intervals."""
import numpy as np
import pytest
from scipy.stats import norm

from analysis.fits import fit_power_law


@pytest.mark.parametrize("seeds", [1, 4])
def test_noiseless_power_law_has_a_zero_width_interval(seeds):
    x = np.array([8.0, 16.0, 32.0, 64.0, 128.0])
    y = np.repeat((2.5 * x ** 0.7)[:, None], seeds, axis=1)
    f = fit_power_law(x, y, n_boot=200)
    assert f.slope == pytest.approx(0.7, abs=1e-12) and f.intercept == pytest.approx(np.log(2.5), abs=1e-12)
    assert f.ci_low == pytest.approx(0.7, abs=1e-12) and f.ci_high == pytest.approx(0.7, abs=1e-12)


def test_seed_groups_interval_matches_normal_theory():
    """s seeds per x, log y = a + b log x + sigma eps: the slope of the per-x means has
    standard error sigma / sqrt(s S_xx); the percentile interval of the stratified
    bootstrap is then +- z sigma_hat sqrt((s-1)/s) / sqrt(s S_xx) (plug-in variance)."""
    rng = np.random.default_rng(3)
    x = np.logspace(1, 3, 5)
    lx = np.log(x)
    s, sigma, b = 400, 0.1, -0.4
    ly = 1.0 + b * lx[:, None] + sigma * rng.standard_normal((x.size, s))
    f = fit_power_law(x, np.exp(ly), n_boot=4000, seed=1)
    sxx = np.sum((lx - lx.mean()) ** 2)
    sigma_hat = np.sqrt(np.mean(np.var(ly, axis=1, ddof=0)))
    half = norm.ppf(0.975) * sigma_hat / np.sqrt(s * sxx)
    assert (f.ci_high - f.ci_low) / 2 == pytest.approx(half, rel=0.06)
    assert (f.ci_high + f.ci_low) / 2 == pytest.approx(f.slope, abs=0.1 * half)
    assert f.contains(b)


def test_paired_interval_matches_normal_theory():
    """One seed per x: the (x, y) pairs are resampled; for a line with homoscedastic
    noise the slope's standard error is sigma / sqrt(S_xx) (many points)."""
    rng = np.random.default_rng(4)
    x = np.geomspace(1.0, 1e3, 400)
    lx = np.log(x)
    sigma = 0.05
    ly = 0.3 + 0.5 * lx + sigma * rng.standard_normal(x.size)
    f = fit_power_law(x, np.exp(ly), n_boot=4000, seed=2)
    resid = ly - np.polyval(np.polyfit(lx, ly, 1), lx)
    half = norm.ppf(0.975) * np.sqrt(np.mean(resid ** 2)) / np.sqrt(np.sum((lx - lx.mean()) ** 2))
    assert (f.ci_high - f.ci_low) / 2 == pytest.approx(half, rel=0.08)
    assert f.contains(0.5)


def test_same_seed_same_interval_and_three_points_work():
    x = np.array([1.0, 2.0, 4.0])
    y = np.exp(-0.5 * np.log(x)[:, None] + 0.1 * np.random.default_rng(0).standard_normal((3, 6)))
    a, b = fit_power_law(x, y, n_boot=300, seed=7), fit_power_law(x, y, n_boot=300, seed=7)
    assert a == b
    assert fit_power_law(x, y, n_boot=300, seed=8) != a
    # one seed, three points: a ninth of the resamples repeat one point and are dropped
    f = fit_power_law(x, y[:, 0], n_boot=300, seed=7)
    assert np.isfinite([f.ci_low, f.ci_high]).all() and f.ci_low <= f.slope <= f.ci_high


def test_bad_level_and_n_boot():
    with pytest.raises(ValueError, match="level"):
        fit_power_law([1, 2], [1, 2], level=1.5)
    with pytest.raises(ValueError, match="n_boot"):
        fit_power_law([1, 2], [1, 2], n_boot=1)
