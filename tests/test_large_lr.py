import numpy as np
import pytest

pytest.importorskip("torch")
from analysis.experiments import large_lr as L  # noqa: E402


def test_outer_gd_equals_closed_form():
    x, p = L.training_set(20, 1, 0), L.init_params(30, 1, 0)
    a1 = L.outer_closed_form(p, x, 0.2, 0.1, 50)
    a2 = L.outer_gradient_descent(p, x, 0.2, 0.1, 50)
    assert np.abs(a1 - p["a"][:, 0]).max() > 1e-2
    np.testing.assert_allclose(a1, a2, atol=1e-11)


def test_hessian_vs_finite_difference_and_excess_vs_mc():
    x, p = L.training_set(20, 1, 0), L.init_params(30, 1, 0)
    pT, div, _ = L.sgd(p, x, 0.2, 0.1, 100, seed=0)
    assert not div
    mv, n = L.hessian_operator(pT, x, 0.2)
    v = np.random.default_rng(0).standard_normal(n)
    th = np.concatenate([pT["a"][:, 0], pT["w"][:, 0], pT["b"]])
    un = lambda f: {"a": f[:30, None], "w": f[30:60, None], "b": f[60:]}  # noqa: E731
    h = 1e-6
    fd = (L.gradient(un(th + h * v), x, 0.2) - L.gradient(un(th - h * v), x, 0.2)) / (2 * h)
    np.testing.assert_allclose(mv(v), fd, atol=1e-7 * np.abs(fd).max() + 1e-9)
    er, err = L.excess_risk(pT, x, 0.2)
    # Monte Carlo: 4e5 draws of p_t
    rng = np.random.default_rng(5)
    risk = L.Risk(x, 0.2, mc_draws=400000, seed=5)
    import rfdiff as rf
    y = risk.mu * x[rng.integers(0, 20, 400000)] + risk.sigma * rng.standard_normal((400000, 1))
    e = np.sum((L.net(pT, y) - np.asarray(rf.Empirical(x).score_fn(rf.OU())(y, 0.2)).reshape(y.shape)) ** 2, 1)
    assert abs(e.mean() - er) < 4 * e.std() / np.sqrt(e.size)


def test_diverging_run_recorded():
    r = L.point(lr=1e4, t=0.2, seed=0, train="all", width=10, horizon=2e4)
    assert r["diverged"] and np.isnan(r["excess_risk"])


@pytest.mark.parametrize("kw", [dict(lr=0.0), dict(lr=-1.0), dict(train="inner")])
def test_bad_input(kw):
    base = dict(lr=0.1, t=0.2, seed=0, train="all", width=10, n=20, d=1)
    base.update(kw)
    with pytest.raises(ValueError, match="lr|train"):
        L.point(**base)
