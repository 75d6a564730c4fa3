import numpy as np
import pytest

pytest.importorskip("torch")
import rfdiff as rf  # noqa: E402
from analysis.experiments import large_lr as L  # noqa: E402
from rfdiff.run import run_serial  # noqa: E402


def test_outer_gd_equals_closed_form():
    x, p = L.training_set(20, 1, 0), L.init_params(30, 1, 0)
    a1 = L.outer_closed_form(p, x, 0.2, 0.1, 50)
    a2 = L.outer_gradient_descent(p, x, 0.2, 0.1, 50)
    assert np.abs(a1 - p["a"][:, 0]).max() > 1e-2
    np.testing.assert_allclose(a1, a2, atol=1e-11)


def test_outer_point_end_point_is_the_closed_form_iterate():
    """The outer-only run by explicit full-batch GD (optimizer='gd') ends at the closed-form iterate:
    its excess risk is the closed form's, at two learning rates (40 and 200 steps)."""
    for lr in (0.5, 0.1):
        r = L.point(lr=lr, t=0.2, seed=3, train="outer", width=20, horizon=20.0, optimizer="gd", n_samples=50)
        assert r["gd_stable"] and not r["diverged"]
        assert abs(r["excess_risk"] - r["excess_risk_gd"]) < 1e-10 * r["excess_risk"]
        assert r["excess_risk_gd"] >= r["excess_risk_gd_limit"]


def test_outer_limit_is_the_least_squares_solution():
    x, p = L.training_set(20, 1, 1), L.init_params(30, 1, 1)
    a_inf = L.outer_limit(p, x, 0.2)
    G, c = L.outer_gram(p, x, 0.2)
    m = 30
    # stationary: the gradient 2 G a/m^2 - 2 c/m of R_n in a vanishes (to the rank cut)
    g = 2 * G @ a_inf / m ** 2 - 2 * c / m
    assert np.abs(g).max() < 1e-8 * np.abs(2 * c / m).max()
    # and the closed-form GD iterate tends to it, for two stable learning rates
    for lr in (0.05, 0.5):
        gap = [np.abs(L.outer_closed_form(p, x, 0.2, lr, k) - a_inf).max() for k in (10, 100, 10 ** 4)]
        assert gap[0] > gap[1] > gap[2] and gap[2] < 1e-8 * np.abs(a_inf).max()


@pytest.mark.parametrize("d,train", [(1, "all"), (1, "outer"), (3, "all")])
def test_batch_gradient_by_hand_equals_autograd(d, train):
    """SGD's hand-written gradient of the batch loss equals torch autograd's, at a point where
    about half the units are active for each input."""
    import torch

    x, p = L.training_set(20, d, 4), L.init_params(40, d, 4)
    p["b"] = np.random.default_rng(1).standard_normal(40) * 0.3
    rng = np.random.default_rng(2)
    eps = rng.standard_normal((50, d))
    y = 0.8 * x[rng.integers(0, 20, 50)] + 0.6 * eps
    loss, g = L.batch_loss_gradient(p, y, eps, 0.6, train)
    P = {k: torch.tensor(v, requires_grad=True) for k, v in p.items()}
    ref = torch.mean(torch.sum((L.net(P, torch.tensor(y)) + torch.tensor(eps) / 0.6) ** 2, dim=1))
    ref.backward()
    assert abs(loss - float(ref.detach())) < 1e-12 * float(ref.detach())
    assert set(g) == ({"a", "w", "b"} if train == "all" else {"a"})
    for k, gk in g.items():
        assert np.abs(gk).max() > 1e-3
        np.testing.assert_allclose(gk, P[k].grad.numpy(), rtol=1e-11, atol=1e-14)


@pytest.mark.parametrize("d,train", [(1, "all"), (1, "outer"), (2, "all")])
def test_sgd_steps_are_the_hand_gradient_steps(d, train):
    """Three steps of sgd (d = 1: the fused numba kernel) equal three steps of
    lr*m*batch_loss_gradient on the same draws, and its loss trace is the batch loss."""
    x, p = L.training_set(20, d, 0), L.init_params(30, d, 0)
    p["b"] = np.random.default_rng(1).standard_normal(30) * 0.3
    lr, t = 0.1, 0.2
    pT, div, trace = L.sgd(p, x, t, lr, 3, train, batch=7, seed=5)
    mu, sigma = np.exp(-t), np.sqrt(-np.expm1(-2 * t))
    rng = np.random.default_rng([5, 5])
    Q = {k: v.copy() for k, v in p.items()}
    losses = []
    for _ in range(3):
        eps = rng.standard_normal((7, d))
        y = mu * x[rng.integers(0, 20, 7)] + sigma * eps
        loss, g = L.batch_loss_gradient(Q, y, eps, sigma, train)
        losses.append(loss)
        for k, gk in g.items():
            Q[k] = Q[k] - lr * 30 * gk
    assert not div
    np.testing.assert_allclose(trace, losses, rtol=1e-12)
    for k in p:
        np.testing.assert_allclose(pT[k], Q[k], rtol=1e-12, atol=1e-14)
        assert (np.abs(pT[k] - p[k]).max() > 1e-4) == (train == "all" or k == "a")


def test_sgd_reproducible_and_diverges_at_a_huge_lr():
    x, p = L.training_set(20, 1, 0), L.init_params(30, 1, 0)
    p1, div1, tr1 = L.sgd(p, x, 0.2, 0.1, 200, seed=3)
    p2, div2, tr2 = L.sgd(p, x, 0.2, 0.1, 200, seed=3)
    p3, *_ = L.sgd(p, x, 0.2, 0.1, 200, seed=4)
    assert not div1 and all(np.array_equal(p1[k], p2[k]) for k in p1) and np.array_equal(tr1, tr2)
    assert np.abs(p1["w"] - p3["w"]).max() > 1e-6
    assert np.array_equal(p["a"], L.init_params(30, 1, 0)["a"])          # the input is not modified
    assert L.sgd(p, x, 0.2, 200.0, 200, seed=3)[1]


def test_hessian_vs_finite_difference_and_excess_vs_mc():
    x, p = L.training_set(20, 1, 0), L.init_params(30, 1, 0)
    pT, div, _ = L.sgd(p, x, 0.2, 0.1, 100, seed=0)
    assert not div
    mv, n = L.hessian_operator(pT, x, 0.2)
    H = L.hessian_matrix(pT, x, 0.2)
    v = np.random.default_rng(0).standard_normal(n)
    th = np.concatenate([pT["a"][:, 0], pT["w"][:, 0], pT["b"]])
    un = lambda f: {"a": f[:30, None], "w": f[30:60, None], "b": f[60:]}  # noqa: E731
    h = 1e-6
    fd = (L.gradient(un(th + h * v), x, 0.2) - L.gradient(un(th - h * v), x, 0.2)) / (2 * h)
    np.testing.assert_allclose(mv(v), fd, atol=1e-7 * np.abs(fd).max() + 1e-9)
    np.testing.assert_allclose(H @ v, fd, atol=1e-7 * np.abs(fd).max() + 1e-9)
    # the closed-form Hessian equals the autograd one column by column, and gives the sharpness
    Ha = np.stack([mv(e) for e in np.eye(n)], axis=1)
    np.testing.assert_allclose(H, Ha, atol=1e-12 * np.abs(Ha).max())
    assert abs(L.sharpness(pT, x, 0.2) - np.linalg.eigvalsh((Ha + Ha.T) / 2)[-1]) < 1e-12
    er, err = L.excess_risk(pT, x, 0.2)
    # Monte Carlo: 4e5 draws of p_t
    rng = np.random.default_rng(5)
    y = L.Risk(x, 0.2, mc_draws=10).mu * x[rng.integers(0, 20, 400000)]
    y = y + L.Risk(x, 0.2, mc_draws=10).sigma * rng.standard_normal((400000, 1))
    e = np.sum((L.net(pT, y) - np.asarray(rf.Empirical(x).score_fn(rf.OU())(y, 0.2)).reshape(y.shape)) ** 2, 1)
    assert abs(e.mean() - er) < 4 * e.std() / np.sqrt(e.size)


def test_d10_variant_monte_carlo_and_lanczos():
    """d = 10: the excess risk is Monte Carlo (fixed draws, standard error); it agrees with an
    independent Monte Carlo, and the Lanczos sharpness equals the dense eigenvalue."""
    x, p = L.training_set(20, 10, 0), L.init_params(8, 10, 0)
    er, se = L.excess_risk(p, x, 0.2, mc_draws=20000, seed=0)
    er2, se2 = L.excess_risk(p, x, 0.2, mc_draws=20000, seed=1)
    assert se > 0 and abs(er - er2) < 4 * np.hypot(se, se2)
    mv, n = L.hessian_operator(p, x, 0.2, mc_draws=2000)
    Hd = np.stack([mv(e) for e in np.eye(n)], axis=1)
    assert abs(L.sharpness(p, x, 0.2, mc_draws=2000) - np.linalg.eigvalsh((Hd + Hd.T) / 2)[-1]) < 1e-6
    # the closed-form Hessian-vector product (which the sharpness uses) equals autograd's, after
    # training (r != 0, so the second-derivative terms count), for both trained sets
    pT, div, _ = L.sgd(L.init_params(12, 10, 1), x, 0.2, 0.1, 300, seed=0)
    assert not div
    v = np.random.default_rng(2).standard_normal(2 * 12 * 10 + 12)
    for train, k in (("all", v.size), ("outer", 120)):
        mv_ad, n_ad = L.hessian_operator(pT, x, 0.2, train, mc_draws=2000, seed=3)
        mv_cf, n_cf = L.hessian_product(pT, x, 0.2, train, mc_draws=2000, seed=3)
        ref = mv_ad(v[:k])
        assert n_ad == n_cf == k
        np.testing.assert_allclose(mv_cf(v[:k]), ref, rtol=0, atol=1e-12 * np.abs(ref).max())
    r = L.point(lr=0.1, t=0.2, seed=0, width=8, d=10, horizon=1.0, n_samples=100)
    assert not r["diverged"] and np.isfinite(r["excess_risk"]) and r["excess_risk_error"] > 0


def test_tiny_experiment_data():
    ds = run_serial(L.EXPERIMENT, "tiny")
    assert list(ds.d.values) == [1, 10] and list(ds.t.values) == [0.2]
    assert int(ds.diverged.sum()) == 0
    assert float(abs(ds.threshold - 2 / (ds.attrs["width"] * ds.lr)).max()) < 1e-12
    assert bool((ds.steps == np.round(ds.attrs["horizon_lr_times_steps"] / ds.lr)).all())
    assert np.all(ds.excess_risk > 0) and np.all(ds.sharpness > 0)
    # d = 10: Monte-Carlo excess risk with a standard error; no closed-form reference (d = 1 only)
    hi = ds.sel(d=10)
    assert np.all(hi.excess_risk_error > 0) and np.all(hi.excess_risk_error < 0.1 * hi.excess_risk)
    assert bool(hi.excess_risk_gd_limit.isnull().all())
    # the same seed draws the same data and init for every lr: lr = 0.1 trains 10 steps, lr = 0.5 two,
    # both from the same start; in d = 10 the untrained empirical optimum memorizes far more than in d = 1
    assert float(hi.memorization_optimal.mean()) > float(ds.sel(d=1).memorization_optimal.mean())
    out = ds.sel(d=1, train="outer")
    # the outer-only Hessian 2G/m^2 is fixed by the frozen features: the same at every lr
    assert float(abs(out.sharpness / out.sharpness.isel(lr=0) - 1).max()) < 1e-10
    # its limit is the least-squares optimum: below every finite-time iterate
    assert np.all(out.excess_risk_gd_limit <= out.excess_risk_gd + 1e-12)
    assert np.all(out.excess_risk_gd_limit <= out.excess_risk + 1e-12)


def test_grid_skips_high_d_noise_levels_not_asked_for():
    p = dict(L.PRESETS["tiny"], ts=[0.2, 0.05], ts_high_d=[0.05])
    tasks = L.tasks(p)
    assert {(k.params["d"], k.params["t"]) for k in tasks} == {(1, 0.2), (1, 0.05), (10, 0.05)}
    assert len(tasks) == 3 * 2 * 2 * 2
    with pytest.raises(ValueError, match="ts_high_d"):
        L.tasks(dict(p, ts_high_d=[0.3]))


def test_diverging_run_recorded():
    r = L.point(lr=1e4, t=0.2, seed=0, train="all", width=10, horizon=2e4)
    assert r["diverged"] and np.isnan(r["excess_risk"])


@pytest.mark.parametrize("kw, name", [(dict(lr=0.0), "lr"), (dict(lr=-1.0), "lr"), (dict(lr=float("nan")), "lr"),
                                      (dict(train="inner"), "train"), (dict(t=0.0), "t"),
                                      (dict(width=0), "width"), (dict(n=1), "n"), (dict(d=0), "d"),
                                      (dict(horizon=0.0), "horizon"), (dict(batch=0), "batch"),
                                      (dict(optimizer="adam"), "optimizer"), (dict(optimizer="gd"), "optimizer"),
                                      (dict(mc_draws=10), "mc_draws")])
def test_bad_input(kw, name):
    base = dict(lr=0.1, t=0.2, seed=0, train="all", width=10, n=20, d=1)
    base.update(kw)
    with pytest.raises(ValueError, match=name):
        L.point(**base)
