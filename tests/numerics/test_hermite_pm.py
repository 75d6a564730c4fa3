"""The fast partial-moment kernel equals direct summation (independent references)."""
import numpy as np
import pytest
from scipy.special import ndtr

import rfdiff as rf


def _direct(x, z, a, s):
    m = a * x[None, :]
    u = (z[:, None] - m) / s
    P, ph = ndtr(u), np.exp(-0.5 * u * u) / np.sqrt(2 * np.pi)
    w = 1.0 / len(x)
    return np.stack([(w * P).sum(1), (w * (m * P - s * ph)).sum(1),
                     (w * ((m * m + s * s) * P - s * ph * (m + z[:, None]))).sum(1)])


@pytest.mark.parametrize("n", [7, 300, 3000])
@pytest.mark.parametrize("t", [1e-4, 1e-2, 0.5, 8.0])
def test_hermite_kernel_equals_direct_sum(n, t):
    x = rf.two_modes(3.0, 0.3).sample(n, seed=n)[:, 0]
    z = np.concatenate([np.linspace(-12, 12, 301), x[:20] * np.exp(-t)])
    proc = rf.OU()
    got = rf.Empirical(x).partial_moments_absolute(z, t, proc)
    ref = _direct(x, z, proc.alpha(t), np.sqrt(proc.sigma2(t)))
    scale = np.array([1.0, 3.0, 10.0])[:, None]
    np.testing.assert_allclose(got, ref, rtol=0, atol=2e-14 * scale.max())
    # and the targets' own (relative-accuracy) implementation agrees
    np.testing.assert_allclose(got, rf.Empirical(x).partial_moments(z[:, None], t, proc),
                               rtol=0, atol=2e-14 * scale.max())
