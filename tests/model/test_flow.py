"""Closed-form flow vs independent references (solve_ivp, pinv, Monte Carlo)."""
import numpy as np
import pytest
from scipy.integrate import solve_ivp

import rfdiff as rf
from rfdiff.model.flow import Flow, QuadraticForm

TAUS = np.array([0.0, 1.0, 1e2, 1e4, 1e6])


def _problem(d, n=40, m=24, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d)) + (2.0 if d == 1 else 0.0) * np.sign(rng.standard_normal((n, 1)))
    model = rf.RandomFeatureScore(m=m, dim=d, seed=seed)
    kw = dict(n_time=16) if d == 1 else dict(n_time=6, n_eps=4)
    return rf.ScoreMatching(model, x, t_min=1e-2, T=4.0, **kw)


def _ivp(form, A0, taus):
    m, d = form.m, form.cross.shape[0]
    H = form.gram / m**2
    Cm = form.cross / m

    def rhs(_, a):
        return (-(a.reshape(d, m) @ H) + Cm).ravel()

    jac = -np.kron(np.eye(d), H.T)
    sol = solve_ivp(rhs, (0, taus[-1]), A0.ravel(), method="Radau", jac=jac,
                    t_eval=taus, rtol=1e-12, atol=1e-15 * max(1.0, np.abs(Cm).max()))
    assert sol.success
    return sol.y.T.reshape(len(taus), d, m)


@pytest.mark.parametrize("d", [1, 2])
@pytest.mark.parametrize("random_init", [False, True])
def test_closed_form_matches_solve_ivp(d, random_init):
    sm = _problem(d)
    form = sm.train_form
    A0 = np.random.default_rng(1).standard_normal((d, sm.model.m)) if random_init else None
    flow = sm.flow(A0=A0)
    A_cf = flow.params(TAUS)
    A_ivp = _ivp(form, flow.A0, TAUS)
    for k in range(len(TAUS)):
        err = np.linalg.norm(A_cf[k] - A_ivp[k]) / np.linalg.norm(A_ivp[k] if np.any(A_ivp[k]) else 1.0)
        assert err < 1e-10, (TAUS[k], err)


def _random_form(m=16, d=2, rank=None, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((rank or 3 * m, m))
    w = rng.random(len(X))
    G = X.T @ (w[:, None] * X)
    C = rng.standard_normal((d, len(X))) * w @ X   # C in the row space, as for a real loss
    return QuadraticForm(G, C, 5.0), X, w


def test_tau_zero_and_infinity():
    form, *_ = _random_form()
    A0 = np.random.default_rng(3).standard_normal((2, form.m))
    flow = Flow.from_gram(form, A0=A0)
    np.testing.assert_array_equal(flow.params(0.0), A0)
    A_ls = form.cross / form.m @ np.linalg.pinv(form.gram / form.m**2)
    np.testing.assert_allclose(flow.params(np.inf), A_ls, rtol=1e-8, atol=1e-10)
    # least-squares minimum of the loss
    assert flow.train_loss(np.inf) == pytest.approx(form.loss(A_ls), rel=1e-10)


def test_vector_of_taus_equals_one_by_one_and_semigroup():
    form, *_ = _random_form(seed=4)
    A0 = np.random.default_rng(5).standard_normal((2, form.m))
    flow = Flow.from_gram(form, A0=A0)
    taus = np.array([0.3, 2.0, 50.0, 700.0])
    stacked = flow.params(taus)
    for k, tau in enumerate(taus):
        np.testing.assert_array_equal(stacked[k], flow.params(tau))
    s, t = 37.0, 450.0
    restarted = Flow.from_gram(form, A0=flow.params(s))
    np.testing.assert_allclose(restarted.params(t - s), flow.params(t), rtol=1e-11, atol=1e-13)


def test_train_loss_closed_form_equals_loss_of_params_and_is_monotone():
    sm = _problem(1)
    flow = sm.flow(A0=np.random.default_rng(2).standard_normal((1, sm.model.m)))
    taus = np.concatenate([[0.0], np.logspace(-2, 8, 60)])
    closed = flow.train_loss(taus)
    direct = sm.train_form.loss(flow.params(taus))
    np.testing.assert_allclose(closed, direct, rtol=1e-9, atol=1e-12 * abs(sm.train_form.c0))
    assert np.all(np.diff(closed) <= 1e-12 * abs(closed[0]))
    assert closed[-1] == pytest.approx(flow.train_loss(np.inf), rel=1e-6)


def test_sample_space_form_matches_feature_space():
    form, X, w = _random_form(m=30, rank=12, seed=7)
    A0 = np.random.default_rng(8).standard_normal((2, 30))
    big = Flow.from_gram(form, A0=A0)
    small = Flow.from_rows(X, w, form.cross, form.c0, A0=A0)
    assert small.eigvals.shape == (12,)
    taus = np.array([0.0, 1.0, 1e2, 1e4])
    np.testing.assert_allclose(small.params(taus), big.params(taus), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(small.train_loss(taus), big.train_loss(taus), rtol=1e-10)


def test_rows_problem_uses_sample_space_when_rows_are_few():
    x = np.random.default_rng(0).standard_normal((3, 2))
    model = rf.RandomFeatureScore(m=64, dim=2, seed=1)
    for objective in ("dsm", "esm"):
        sm = rf.ScoreMatching(model, x, n_time=2, n_eps=4, objective=objective)   # 24 rows < 64
        flow = sm.flow()
        assert flow.eigvecs.shape == (64, 24)
        dense = Flow.from_gram(sm.train_form)
        taus = np.array([1.0, 1e3, 1e5])
        np.testing.assert_allclose(flow.params(taus), dense.params(taus), rtol=1e-6, atol=1e-8)
        np.testing.assert_allclose(flow.train_loss(taus), dense.train_loss(taus), rtol=1e-9)


def test_gradient_descent_closed_form_is_iterated_gd_and_approaches_flow_at_order_one():
    form, *_ = _random_form(m=12, seed=9)
    A0 = np.random.default_rng(1).standard_normal((2, 12))
    flow = Flow.from_gram(form, A0=A0)
    lr = 0.5 / flow.lambda_max
    A = A0.copy()
    for _ in range(200):
        A = A - lr * form.grad(A)
    np.testing.assert_allclose(flow.gd_params(lr, 200), A, rtol=1e-11, atol=1e-12)
    tau = 50.0 / flow.lambda_max
    lrs = np.array([0.4, 0.2, 0.1, 0.05]) / flow.lambda_max
    errs = [np.linalg.norm(flow.gd_params(lr, int(round(tau / lr))) - flow.params(tau)) for lr in lrs]
    order = np.polyfit(np.log(lrs), np.log(errs), 1)[0]
    assert 0.9 < order < 1.1


def test_null_space_is_not_moved_and_round_off_is_clipped():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((4, 10))
    G = X.T @ X
    C = rng.standard_normal((1, 4)) @ X
    A0 = rng.standard_normal((1, 10))
    flow = Flow.from_gram(QuadraticForm(G, C, 1.0), A0=A0)
    assert flow.n_clipped == 6
    null = np.linalg.svd(X)[2][4:]                 # basis of the null space of G
    for tau in (1.0, 1e6, 1e12, np.inf):
        A = flow.params(tau)
        assert np.all(np.isfinite(A))
        np.testing.assert_allclose(A @ null.T, A0 @ null.T, atol=1e-10)


def test_population_loss_closed_form_matches_monte_carlo():
    target = rf.two_modes(mu=2.0, q1=0.3)
    x = target.sample(200, seed=1)
    model = rf.RandomFeatureScore(m=32, seed=2)
    sm = rf.ScoreMatching(model, x, t_min=1e-2, T=2.0, n_time=8)
    flow = sm.flow()
    tau = 300.0
    closed = flow.population_loss(tau, target)
    # Monte Carlo over z ~ p_t at the same time nodes, with the true score
    rng = np.random.default_rng(5)
    A = flow.params(tau)
    per_t = []
    N = 125_000
    for t, om in zip(sm.t_nodes, sm.omega):
        x0 = target.sample(N, seed=int(rng.integers(1 << 30)))
        z = rf.OU().alpha(t) * x0 + np.sqrt(rf.OU().sigma2(t)) * rng.standard_normal((N, 1))
        r = (model.score(A, z, t) - target.score(z, t, rf.OU()))[:, 0] ** 2
        per_t.append((om * r.mean(), om**2 * r.var() / N))
    mc = 0.5 * sum(p[0] for p in per_t)
    se = 0.5 * np.sqrt(sum(p[1] for p in per_t))
    assert abs(closed - mc) < 4 * se, (closed, mc, se)
    assert se < 0.01 * mc


def test_population_loss_is_the_population_form_at_the_flow_params():
    """The flow's population loss at k taus equals the population quadratic form's
    loss at ``params(tau)``, also with A0 outside the rows' span (sample-space form)."""
    two_d = rf.GaussianMixture([0.5, 0.5], np.array([[1.0, 1.0], [-1.0, -1.0]]), np.ones(2))
    for tgt, m, n in ((rf.two_modes(mu=2.0), 24, 30), (two_d, 64, 3)):
        dim = tgt.dim
        x = tgt.sample(n, seed=0)
        sm = rf.ScoreMatching(rf.RandomFeatureScore(m=m, dim=dim, seed=1), x, n_time=4, n_eps=2,
                              n_rows_population=256)
        A0 = np.random.default_rng(2).standard_normal((dim, m))
        flow = sm.flow(A0=A0)
        taus = np.array([0.0, 3.0, 1e3, np.inf])
        ref = sm.quadratic_form(tgt).loss(flow.params(taus))
        np.testing.assert_allclose(flow.population_loss(taus, tgt), ref, rtol=1e-10)
        assert flow.population_loss(3.0, tgt) == pytest.approx(ref[1], rel=1e-10)


def test_bad_taus_and_shapes():
    form, *_ = _random_form()
    flow = Flow.from_gram(form)
    with pytest.raises(ValueError, match="tau"):
        flow.params(-1.0)
    with pytest.raises(ValueError, match="tau"):
        flow.train_loss(np.array([1.0, np.nan]))
    with pytest.raises(ValueError, match="A0"):
        Flow.from_gram(form, A0=np.zeros((3, 3)))
    with pytest.raises(ValueError, match="lr"):
        flow.gd_params(-0.1, 3)
    with pytest.raises(ValueError, match="steps"):
        flow.gd_params(0.1, -3)
