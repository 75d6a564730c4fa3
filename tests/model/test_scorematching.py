"""Gram assembly: exactness, convergence, and validation."""
import numpy as np
import pytest

import rfdiff as rf
from rfdiff.backend import Backend


def _sm(**kw):
    target = rf.two_modes(mu=3.0, q1=0.5)
    x = target.sample(kw.pop("n", 300), seed=0)
    model = rf.RandomFeatureScore(m=kw.pop("m", 64), activation=kw.pop("activation", "relu"), seed=1)
    return rf.ScoreMatching(model, x, **kw), target


def _rel(a, b):
    return np.linalg.norm(a - b) / np.linalg.norm(b)


def _with_weights(model, W):
    """``model`` with its input weights replaced (test-only: the model is frozen)."""
    W = np.array(W, dtype=np.float64).reshape(model.m, 1)
    W.flags.writeable = False
    object.__setattr__(model, "W", W)
    return model


@pytest.mark.parametrize("backend", ["numpy", Backend("generic", np)])
@pytest.mark.parametrize("zero_w", [False, True])
def test_relu_exact_gram_matches_direct_quadrature_at_one_time(zero_w, backend):
    """Exact ReLU E[phi phi^T] and E[y phi] vs scipy quad of the integrands at one
    noise level, every pair: both W > 0, both W < 0, mixed signs and (zero_w)
    W = 0 features, active everywhere (b > 0) or nowhere (b < 0). The generic
    backend takes the array-module kernel (CuPy's path) instead of numba's."""
    from scipy.integrate import quad
    sm, target = _sm(m=6, n=20)
    t, lam = 0.05, rf.OU().sigma2(0.05)
    W = np.array([0.8, -1.1, 0.5, 0.6, 1.3, -0.9])
    if zero_w:
        b = sm.model.bias(t)
        assert b.max() > 0 > b.min()
        W[np.argmax(b)] = W[np.argmin(b)] = 0.0
    model = _with_weights(rf.RandomFeatureScore(m=6, seed=1), W)
    assert (W > 0).sum() >= 2 and (W < 0).sum() >= 2
    form = rf.ScoreMatching.single_level(model, sm.data.x, t=t, backend=backend).train_form
    p = lambda z: np.exp(sm.data.log_pt(np.array([[z]]), t, rf.OU()))[0]
    s = lambda z: sm.data.score(np.array([[z]]), t, rf.OU())[0, 0]
    phi = lambda z: model.features(np.array([[z]]), t)[0]
    kinks = sorted(-model.bias(t)[W != 0] / W[W != 0])
    pts = sorted(set(kinks + list(3.0 * np.sign(sm.data.x[:, 0]) * np.exp(-t))))
    for j in range(6):
        for k in range(j, 6):
            ref = quad(lambda z: phi(z)[j] * phi(z)[k] * p(z), -12, 12, points=pts, limit=500,
                       epsabs=1e-13, epsrel=1e-12)[0]
            assert form.gram[j, k] == pytest.approx(lam * ref, rel=1e-9, abs=1e-13), (j, k)
            assert form.gram[k, j] == form.gram[j, k]
    for j in range(6):
        ref = quad(lambda z: s(z) * phi(z)[j] * p(z), -12, 12, points=pts, limit=500,
                   epsabs=1e-13, epsrel=1e-12)[0]
        assert form.cross[0, j] == pytest.approx(lam * ref, rel=1e-8, abs=1e-12)


def test_relu_exact_gram_parallel_kernel_matches_grid_quadrature():
    """m >= 256 takes the parallel tiled kernel (tiles of 16, a partial last tile):
    against the grid method on a fine z-grid at the same time nodes."""
    target = rf.two_modes(mu=3.0)
    x = target.sample(100, seed=0)
    model = rf.RandomFeatureScore(m=263, seed=3)
    kw = dict(n_time=6)
    for tgt in (None, target):
        exact = rf.ScoreMatching(model, x, **kw).quadratic_form(tgt)
        grid = rf.ScoreMatching(model, x, method="grid", z_density=32.0, **kw).quadratic_form(tgt)
        assert _rel(exact.gram, grid.gram) < 1e-6
        assert _rel(exact.cross, grid.cross) < 1e-6


@pytest.mark.parametrize("kw", [dict(), dict(method="grid"), dict(dim=2)])
def test_assembly_backend_runs_the_same_numbers(kw):
    """The assembly through a generic backend (the array-module code path CuPy
    takes: the exact ReLU kernel in blocks, the row GEMMs) equals numba/NumPy's,
    with more than one row block and both sign classes in the exact kernel."""
    from rfdiff.model import gram
    dim = kw.pop("dim", 1)
    x = np.random.default_rng(0).standard_normal((60, dim)) + 2.0
    model = rf.RandomFeatureScore(m=300, dim=dim, seed=4)
    generic = Backend("generic", np)
    old = gram._XP_BLOCK_ELEMENTS
    gram._XP_BLOCK_ELEMENTS = 300 * 8 * 7            # ~7 rows per block
    try:
        forms = [rf.ScoreMatching(model, x, n_time=8, backend=be, **kw).train_form
                 for be in ("numpy", generic)]
    finally:
        gram._XP_BLOCK_ELEMENTS = old
    assert _rel(forms[1].gram, forms[0].gram) < 1e-13
    assert _rel(forms[1].cross, forms[0].cross) < 1e-13
    sm = rf.ScoreMatching(model, x, n_time=8, backend=generic, **kw)
    assert sm.flow().backend is generic and sm.describe()["backend"] == "generic"


@pytest.mark.parametrize("signs", ["nonnegative", "mixed"])
def test_accumulate_rows_equals_direct_weighted_sums(signs):
    """G, C, c0 from row chunks (sqrt(w) rank-k update for w >= 0, the plain GEMM
    otherwise) against the sums written out with einsum."""
    from rfdiff.backend import NUMPY
    from rfdiff.model.gram import accumulate_rows
    rng = np.random.default_rng(5)
    model = rf.RandomFeatureScore(m=40, dim=2, seed=2)
    chunks = []
    for t in (0.1, 0.7):
        z, y = rng.standard_normal((2, 30, 2))
        w = rng.uniform(0.1, 1.0, 30) * (1 if signs == "nonnegative" else rng.choice([-1.0, 1.0], 30))
        chunks.append((z, t, w, y))
    G, C, c0 = accumulate_rows(model, chunks, NUMPY)
    phis = [model.features(z, t) for z, t, _, _ in chunks]
    G_ref = sum(np.einsum("r,ri,rj->ij", w, phi, phi) for phi, (_, _, w, _) in zip(phis, chunks))
    C_ref = sum(np.einsum("r,rd,rj->dj", w, y, phi) for phi, (_, _, w, y) in zip(phis, chunks))
    c0_ref = sum(float(w @ np.sum(y * y, axis=1)) for _, _, w, y in chunks)
    np.testing.assert_allclose(G, G_ref, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(C, C_ref, rtol=1e-12, atol=1e-13)
    assert c0 == pytest.approx(c0_ref, rel=1e-13)


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


@pytest.mark.parametrize("t", [1e-3, 1.0])
def test_population_form_at_one_time_matches_direct_quadrature(t):
    """Population form of a two-mode mixture (component std 1 >> sigma_t at small t):
    the grid rows must cover the mass between a component's nodes (they once
    skipped it), the exact form's c0 must be converged (Gauss-Hermite was 4e-4 off)."""
    from scipy.integrate import quad
    target, P = rf.two_modes(mu=3.0), rf.OU()
    x = target.sample(50, seed=0)
    model = rf.RandomFeatureScore(m=40, seed=3)
    p = lambda u: np.exp(target.log_pt(np.array([[u]]), t, P))[0]
    y2 = lambda u: target.score(np.array([[u]]), t, P)[0, 0] ** 2
    ref_c0 = P.sigma2(t) * quad(lambda u: p(u) * y2(u), -15, 15, points=[-3, 0, 3], epsabs=1e-15,
                                epsrel=1e-13, limit=500)[0]
    exact = rf.ScoreMatching.single_level(model, x, t=t).quadratic_form(target)
    grid = rf.ScoreMatching.single_level(model, x, t=t, method="grid", z_density=16.0).quadratic_form(target)
    assert exact.c0 == pytest.approx(ref_c0, rel=1e-11)
    assert grid.c0 == pytest.approx(ref_c0, rel=1e-11)
    # the grid is second order at the ReLU kinks: ~1e-6 here (the old gap bug: 0.5)
    assert _rel(grid.gram, exact.gram) < 1e-5
    assert _rel(grid.cross, exact.cross) < 1e-5
