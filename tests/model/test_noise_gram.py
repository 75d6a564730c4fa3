"""Exact-in-noise Gram (rfdiff.model.noise_gram) against Monte Carlo; bad inputs."""
import numpy as np
import pytest

from rfdiff.model import noise_gram as ng


def _mc(W, X, t, M, rng):
    p, d = W.shape
    D = -np.expm1(-2 * t)
    xi = rng.standard_normal((M, d))
    U = np.zeros((p, p)); U2 = np.zeros((p, p)); V = np.zeros((d, p)); V2 = np.zeros((d, p))
    for x in X:
        ph = np.tanh((np.exp(-t) * x + np.sqrt(D) * xi) @ W.T / np.sqrt(d))
        mU = ph.T @ ph / M; U += mU; U2 += ((ph**2).T @ ph**2 / M - mU**2) / M   # variance of the mean
        mV = xi.T @ ph / M; V += mV; V2 += ((xi**2).T @ ph**2 / M - mV**2) / M
    n = len(X)
    return U / n, np.sqrt(U2) / n, V / n, np.sqrt(V2) / n


def test_gram_matches_monte_carlo():
    rng = np.random.default_rng(1)
    d, p, n, t = 6, 12, 4, 0.3
    W = rng.standard_normal((p, d)); X = rng.standard_normal((n, d))
    g = ng.noise_gram(W, X, t)
    assert g.error < 3e-9
    U, sU, V, sV = _mc(W, X, t, 400_000, rng)
    zU = np.abs(U - g.U) / sU
    zV = np.abs(V - g.V) / sV
    assert zU.max() < 5.5 and zV.max() < 5.5          # independent per-entry 5.5-sigma
    # a real bug (e.g. dropping the k >= 2 terms) is caught
    c, sq, _ = ng.hermite_coefficients(np.exp(-t) * X @ W.T / np.sqrt(d),
                                       np.sqrt(-np.expm1(-2 * t)) * np.linalg.norm(W, axis=1) / np.sqrt(d), 1)
    wrong = (c[:, :, 0].T @ c[:, :, 0] + (W @ W.T / np.outer(*[np.linalg.norm(W, axis=1)] * 2))
             * (c[:, :, 1].T @ c[:, :, 1])) / n
    off = ~np.eye(p, dtype=bool)
    assert (np.abs(U - wrong) / sU)[off].max() > 6


def test_population_gram_matches_monte_carlo():
    rng = np.random.default_rng(2)
    d, p, t, sx = 5, 10, 0.2, 1.5
    W = rng.standard_normal((p, d))
    g = ng.population_gram(W, t, sigma_x=sx)
    M = 1_000_000
    D = -np.expm1(-2 * t)
    x = sx * rng.standard_normal((M, d)); xi = rng.standard_normal((M, d))
    y = np.exp(-t) * x + np.sqrt(D) * xi
    ph = np.tanh(y @ W.T / np.sqrt(d))
    U = ph.T @ ph / M; sU = np.sqrt(((ph**2).T @ ph**2 / M - U**2) / M)
    V = xi.T @ ph / M; sV = np.sqrt(((xi**2).T @ ph**2 / M - V**2) / M)
    Y = y.T @ ph / M; sY = np.sqrt(((y**2).T @ ph**2 / M - Y**2) / M)
    assert (np.abs(U - g.U) / sU).max() < 5.5
    assert (np.abs(V - g.V) / sV).max() < 5.5
    assert (np.abs(Y - g.Y) / sY).max() < 5.5


def test_series_truncation_is_refined_or_raises():
    rng = np.random.default_rng(3)
    W = rng.standard_normal((6, 3)); X = rng.standard_normal((3, 3))
    g = ng.noise_gram(W, X, 0.5, tol=1e-11)
    assert g.error <= 2e-9 and g.K > 8
    with pytest.raises(RuntimeError, match="not converged"):
        ng.noise_gram(W, X, 0.5, tol=1e-30, K0=2, Kmax=4)


@pytest.mark.parametrize("kw,name", [
    (dict(d=0, psi_p=2, psi_n=1, t=0.1), "d"), (dict(d=3.5, psi_p=2, psi_n=1, t=0.1), "d"),
    (dict(d=4, psi_p=-1, psi_n=1, t=0.1), "psi_p"), (dict(d=4, psi_p=0.3, psi_n=1, t=0.1), "psi_p"),
    (dict(d=4, psi_p=2, psi_n=0.1, t=0.1), "psi_n"), (dict(d=4, psi_p=2, psi_n=1, t=0.0), "t"),
    (dict(d=4, psi_p=2, psi_n=1, t=float("nan")), "t")])
def test_bad_inputs(kw, name):
    with pytest.raises(ValueError, match=rf"^{name} must"):
        ng.check_inputs(**kw)
