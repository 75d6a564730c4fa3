"""Gram assembly: exactness, convergence, and validation."""
import numpy as np
import pytest

import rfdiff as rf


def _sm(**kw):
    target = rf.two_modes(mu=3.0, q1=0.5)
    x = target.sample(kw.pop("n", 300), seed=0)
    model = rf.RandomFeatureScore(m=kw.pop("m", 64), activation=kw.pop("activation", "relu"), seed=1)
    return rf.ScoreMatching(model, x, **kw), target


def _rel(a, b):
    return np.linalg.norm(a - b) / np.linalg.norm(b)


def test_relu_exact_gram_matches_direct_quadrature_at_one_time():
    """Exact ReLU E[phi phi^T] vs scipy quad of the integrand at one noise level."""
    from scipy.integrate import quad
    sm, target = _sm(m=6, n=20)
    one = rf.ScoreMatching.single_level(sm.model, sm.data.x, t=0.05)
    form = one.train_form
    t, lam = 0.05, rf.OU().sigma2(0.05)
    p = lambda z: np.exp(sm.data.log_pt(np.array([[z]]), t, rf.OU()))[0]
    s = lambda z: sm.data.score(np.array([[z]]), t, rf.OU())[0, 0]
    phi = lambda z: sm.model.features(np.array([[z]]), t)[0]
    kinks = sorted(-sm.model.bias(t) / sm.model.W[:, 0])
    pts = sorted(set(kinks + list(3.0 * np.sign(sm.data.x[:, 0]) * np.exp(-t))))
    for j, k in [(0, 0), (0, 3), (2, 5), (4, 4)]:
        ref = quad(lambda z: phi(z)[j] * phi(z)[k] * p(z), -12, 12, points=pts, limit=500,
                   epsabs=1e-13, epsrel=1e-12)[0]
        assert form.gram[j, k] == pytest.approx(lam * ref, rel=1e-9, abs=1e-13)
    for j in range(6):
        ref = quad(lambda z: s(z) * phi(z)[j] * p(z), -12, 12, points=pts, limit=500,
                   epsabs=1e-13, epsrel=1e-12)[0]
        assert form.cross[0, j] == pytest.approx(lam * ref, rel=1e-8, abs=1e-12)


def test_grid_method_converges_to_relu_exact_at_second_order():
    exact, _ = _sm(n_time=8)
    G = exact.train_form.gram
    errs = []
    for dens in (4.0, 8.0, 16.0):
        grid, _ = _sm(n_time=8, method="grid", z_density=dens, z_order=4)
        errs.append(_rel(grid.train_form.gram, G))
    assert errs[-1] < 5e-6
    order = np.log2(errs[0] / errs[1]), np.log2(errs[1] / errs[2])
    assert min(order) > 1.7, (errs, order)


def test_default_time_quadrature_is_converged():
    sm, target = _sm(m=128, n=500)
    fine, _ = _sm(m=128, n=500, n_time=4 * sm.n_time)
    assert _rel(sm.train_form.gram, fine.train_form.gram) < 1e-6
    assert _rel(sm.train_form.cross, fine.train_form.cross) < 1e-6
    assert sm.train_form.c0 == pytest.approx(fine.train_form.c0, rel=1e-6)
    pop, pop_fine = sm.quadratic_form(target), fine.quadratic_form(target)
    assert _rel(pop.gram, pop_fine.gram) < 1e-6
    assert pop.c0 == pytest.approx(pop_fine.c0, rel=1e-6)
    est = sm.quadrature_error()
    assert est["gram"] < 1e-6


def test_smooth_activation_grid_default_is_converged():
    sm, _ = _sm(activation="tanh", m=32, n=100)
    fine, _ = _sm(activation="tanh", m=32, n=100, n_time=4 * sm.n_time, z_density=4 * sm.z_density)
    assert _rel(sm.train_form.gram, fine.train_form.gram) < 1e-6
    assert _rel(sm.train_form.cross, fine.train_form.cross) < 1e-6


def test_gram_is_psd_and_dsm_esm_differ_only_in_c0():
    dsm, _ = _sm(objective="dsm", n_time=12)
    esm, _ = _sm(objective="esm", n_time=12)
    lam = np.linalg.eigvalsh(dsm.train_form.gram)
    assert lam.min() > -1e-12 * lam.max()
    np.testing.assert_array_equal(dsm.train_form.gram, esm.train_form.gram)
    # DSM c0 exceeds ESM c0 by avg lambda E Var(-eps/sigma | z) > 0
    assert dsm.train_form.c0 > esm.train_form.c0 > 0
    assert dsm.train_form.info["objective"] == "dsm"


def test_rows_method_in_2d_approaches_exact_moments():
    """QMC rows with a constant-ish model: G_11 = avg lambda E[phi_1^2] converges as n_eps grows."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((30, 2))
    model = rf.RandomFeatureScore(m=16, dim=2, seed=2)
    coarse = rf.ScoreMatching(model, x, n_time=6, n_eps=64).train_form.gram
    fine = rf.ScoreMatching(model, x, n_time=6, n_eps=1024, seed=3).train_form.gram
    assert _rel(coarse, fine) < 5e-3


def test_single_level_mode_weights():
    sm, _ = _sm(n=50, m=16)
    one = rf.ScoreMatching.single_level(sm.model, sm.data.x, t=0.1)
    assert one.t_nodes.tolist() == [0.1]
    assert one.train_form.c0 == pytest.approx(1.0)        # lambda d / sigma^2 = 1


@pytest.mark.parametrize("kw,match", [
    (dict(t_min=0.0), "t_min"), (dict(t_min=2.0, T=1.0), "t_min must be < T"),
    (dict(weighting="uniform"), "weighting"), (dict(n_time=0), "n_time"),
    (dict(method="magic"), "method"), (dict(objective="mle"), "objective"),
])
def test_bad_problem_arguments(kw, match):
    model = rf.RandomFeatureScore(m=4)
    with pytest.raises(ValueError, match=match):
        rf.ScoreMatching(model, np.zeros((3, 1)), **kw)


def test_bad_data():
    model = rf.RandomFeatureScore(m=4)
    with pytest.raises(ValueError, match="finite"):
        rf.ScoreMatching(model, np.array([[0.0], [np.nan]]))
    with pytest.raises(ValueError, match="dimension"):
        rf.ScoreMatching(model, np.zeros((3, 2)))
    with pytest.raises(ValueError, match="n >= 1|x must"):
        rf.ScoreMatching(model, np.zeros((0, 1)))
    with pytest.raises(ValueError, match="1D only"):
        rf.ScoreMatching(rf.RandomFeatureScore(m=4, dim=2), np.zeros((3, 2)), method="grid")
