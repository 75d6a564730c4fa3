"""Empirical: the training set's marginal and the empirical optimal score (numba)."""
import json

import numba
import numpy as np
import pytest
from scipy import integrate
from scipy.special import logsumexp, softmax

from rfdiff.process import OU, VP
from rfdiff.targets import Empirical

P = OU()


def reference(x, z, t, process=P, w=None):
    """Direct NumPy: log p^_t, s^_t and its divergence from softmax weights."""
    a, s2 = process.alpha(t), process.sigma2(t)
    n, d = x.shape
    w = np.full(n, 1.0 / n) if w is None else w
    r = a * x[None, :, :] - z[:, None, :]                       # (k, n, d)
    logits = np.log(w)[None, :] - 0.5 * np.sum(r * r, axis=2) / s2
    logp = logsumexp(logits, axis=1) - 0.5 * d * np.log(2 * np.pi * s2)
    pi = softmax(logits, axis=1)
    mean = np.einsum("kn,knd->kd", pi, r)
    dev = r - mean[:, None, :]
    var = np.einsum("kn,knd,knd->k", pi, dev, dev)
    return logp, mean / s2, (-d + var / s2) / s2


def fd(f, z, h):
    return (-f(z + 2 * h) + 8 * f(z + h) - 8 * f(z - h) + f(z - 2 * h)) / (12 * h)


@pytest.mark.parametrize("d", [1, 2, 5])
@pytest.mark.parametrize("t", [1e-6, 1e-3, 0.1, 1.0, 20.0])
def test_matches_direct_numpy_reference(d, t):
    rng = np.random.default_rng(d)
    x = rng.normal(size=(37, d))
    emp = Empirical(x)
    z = np.concatenate([x[:3] * P.alpha(t) + 0.01, rng.normal(size=(20, d)) * 2])
    L, S, D = emp.evaluate(z, t, P)
    Lr, Sr, Dr = reference(x, z, t)
    np.testing.assert_allclose(L, Lr, rtol=1e-12)
    np.testing.assert_allclose(S, Sr, rtol=1e-9, atol=1e-12 * np.abs(Sr).max())
    np.testing.assert_allclose(D, Dr, rtol=1e-8, atol=1e-10 * np.abs(Dr).max())


def test_weighted_data_per_point_times_and_vp():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(12, 2))
    w = rng.uniform(0.5, 1.5, 12)
    w /= w.sum()
    emp = Empirical(x, weights=w)
    z = rng.normal(size=(6, 2))
    ts = np.array([1e-3, 0.01, 0.1, 0.5, 1.0, 3.0])
    L, S, D = emp.evaluate(z, ts, VP())
    for i, t in enumerate(ts):
        Lr, Sr, Dr = reference(x, z[i:i + 1], t, VP(), w)
        np.testing.assert_allclose([L[i], D[i]], [Lr[0], Dr[0]], rtol=1e-10)
        np.testing.assert_allclose(S[i], Sr[0], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("t", [1e-3, 0.1, 1.0, 10.0])
def test_score_and_derivative_are_finite_differences(t):
    rng = np.random.default_rng(0)
    emp = Empirical(rng.normal(size=25))
    z = np.linspace(-3, 3, 31)
    h = 1e-3 * min(1.0, float(np.sqrt(P.sigma2(t))))
    L, S, D = emp.evaluate(z, t, P)
    np.testing.assert_allclose(S[:, 0], fd(lambda q: emp.log_pt(q, t, P), z, h),
                               rtol=1e-7, atol=1e-7 * np.abs(S).max())
    np.testing.assert_allclose(D, fd(lambda q: emp.score(q, t, P)[:, 0], z, h),
                               rtol=1e-7, atol=1e-7 * np.abs(D).max())
    emp2 = Empirical(rng.normal(size=(15, 2)))
    z2 = rng.normal(size=(5, 2))
    S2, D2 = emp2.score(z2, t, P), emp2.score_dz(z2, t, P)
    div = np.zeros(5)
    for j in range(2):
        e = np.zeros(2)
        e[j] = h
        grad = (-emp2.log_pt(z2 + 2 * e, t, P) + 8 * emp2.log_pt(z2 + e, t, P)
                - 8 * emp2.log_pt(z2 - e, t, P) + emp2.log_pt(z2 - 2 * e, t, P)) / (12 * h)
        np.testing.assert_allclose(S2[:, j], grad, rtol=1e-7, atol=1e-7 * np.abs(S2).max())
        div += (-emp2.score(z2 + 2 * e, t, P)[:, j] + 8 * emp2.score(z2 + e, t, P)[:, j]
                - 8 * emp2.score(z2 - e, t, P)[:, j] + emp2.score(z2 - 2 * e, t, P)[:, j]) / (12 * h)
    np.testing.assert_allclose(D2, div, rtol=1e-7, atol=1e-7 * np.abs(D2).max())


@pytest.mark.parametrize("t", [1e-6, 1e-3, 1.0, 20.0])
def test_far_tails_finite_and_single_point_asymptote(t):
    emp = Empirical(np.array([-1.0, 0.0, 2.0]))
    with np.errstate(all="raise"):
        L, S, D = emp.evaluate(np.array([-50.0, 50.0]), t, P)
    assert np.all(np.isfinite(L)) and np.all(np.isfinite(S)) and np.all(np.isfinite(D))
    a, s2 = P.alpha(t), P.sigma2(t)
    if t < 1.0:   # the outermost point takes all the weight
        np.testing.assert_allclose(S[:, 0], [(-a + 50) / s2, (2 * a - 50) / s2], rtol=1e-12)
        np.testing.assert_allclose(D, -1.0 / s2, rtol=1e-12)


@pytest.mark.parametrize("t", [1e-3, 1.0])
def test_density_integrates_to_one(t):
    x = np.random.default_rng(2).normal(size=9)
    emp = Empirical(x)
    f = lambda q: np.exp(emp.log_pt(np.array([q]), t, P)[0])
    s = float(np.sqrt(P.sigma2(t)))
    edges = np.unique(np.concatenate([P.alpha(t) * np.sort(x), [-20.0, 20.0]]))
    val = sum(integrate.quad(f, a, b, epsabs=1e-14, epsrel=1e-13, limit=200, points=None)[0]
              for a, b in zip(edges[:-1], edges[1:]))
    assert val == pytest.approx(1.0, abs=1e-10)
    assert s > 0


def test_kernel_is_reproducible_bit_for_bit():
    rng = np.random.default_rng(9)
    emp = Empirical(rng.normal(size=(500, 3)))
    z = rng.normal(size=(300, 3))
    first = emp.evaluate(z, 0.05, P)
    for a, b in zip(first, emp.evaluate(z, 0.05, P)):
        np.testing.assert_array_equal(a, b)
    n_threads = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        single = emp.evaluate(z, 0.05, P)
    finally:
        numba.set_num_threads(n_threads)
    for a, b in zip(first, single):
        np.testing.assert_array_equal(a, b)
    serial = [emp.evaluate(z[i:i + 1], 0.05, P) for i in range(3)]
    for i in range(3):
        for a, b in zip(first, serial[i]):
            np.testing.assert_array_equal(a[i], b[0])


def test_nearest_matches_brute_force():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(50, 2))
    emp = Empirical(x)
    z = rng.normal(size=(20, 2))
    d1, d2, idx = emp.nearest(z)
    dist = np.linalg.norm(z[:, None, :] - x[None, :, :], axis=2)
    srt = np.sort(dist, axis=1)
    np.testing.assert_allclose(d1, srt[:, 0], rtol=1e-14)
    np.testing.assert_allclose(d2, srt[:, 1], rtol=1e-14)
    np.testing.assert_array_equal(idx, dist.argmin(axis=1))
    one = Empirical(np.array([[1.0, 2.0]]))
    d1, d2, idx = one.nearest(np.array([[1.0, 3.0]]))
    assert d1[0] == 1.0 and d2[0] == np.inf and idx[0] == 0


def test_expectation_nodes_and_sampling():
    x = np.random.default_rng(6).normal(size=(40, 2))
    emp = Empirical(x)
    t = 0.4
    a, s2 = P.alpha(t), P.sigma2(t)
    z, w = emp.expectation_nodes(t, P, order=3)
    assert w.sum() == pytest.approx(1.0, abs=1e-15) and z.shape == (40 * 9, 2)
    np.testing.assert_allclose(w @ z, a * x.mean(0), rtol=1e-13)
    np.testing.assert_allclose((z * w[:, None]).T @ z, a * a * x.T @ x / 40 + s2 * np.eye(2), rtol=1e-13)
    z0, w0 = emp.expectation_nodes(0.0, P)
    np.testing.assert_array_equal(z0, x)
    e1 = Empirical(x[:, 0])
    z1, w1 = e1.expectation_nodes(t, P, order=4)
    assert w1 @ z1[:, 0] ** 4 == pytest.approx(np.mean(
        a**4 * x[:, 0] ** 4 + 6 * a**2 * x[:, 0] ** 2 * s2 + 3 * s2**2), rel=1e-13)
    s = emp.sample(100, seed=1)
    assert s.shape == (100, 2) and all(any(np.array_equal(r, q) for q in x) for r in s)
    np.testing.assert_array_equal(s, emp.sample(100, seed=1))
    assert emp.n == 40 and emp.dim == 2 and emp.x.shape == (40, 2)
    json.dumps(emp.describe())


def test_validation():
    for bad, match in [(lambda: Empirical(np.array([0.0, np.nan])), "x must contain only finite values"),
                       (lambda: Empirical(np.zeros((0, 2))), "x must hold at least one point"),
                       (lambda: Empirical(np.zeros((2, 2, 2))), "x must have shape"),
                       (lambda: Empirical([1.0, 2.0], weights=[0.7, 0.7]), "weights must sum to 1"),
                       (lambda: Empirical([1.0, 2.0], weights=[1.2, -0.2]), "weights must be > 0"),
                       (lambda: Empirical([1.0, 2.0], weights=[1.0]), "weights"),
                       (lambda: Empirical([1.0, 2.0]).log_pt([0.0], 0.0, P), "t must be > 0"),
                       (lambda: Empirical([1.0, 2.0]).score([0.0], -1.0, P), "t"),
                       (lambda: Empirical([1.0, 2.0]).partial_moments([0.0], 0.0, P), "t"),
                       (lambda: Empirical(np.ones((3, 2))).log_pt(np.ones((2, 3)), 0.1, P), "z")]:
        with pytest.raises(ValueError, match=match):
            bad()
