"""The paper's single-level tanh model on the closed-form flow (rfdiff.model.premem) and
its theory constants (rfdiff.model.premem_theory), against independent references."""
import numpy as np
import pytest
from scipy.linalg import expm

from rfdiff.model import premem as pm
from rfdiff.model import premem_theory as th


@pytest.fixture(scope="module")
def small():
    d, p, n, t = 6, 24, 12, 0.1
    model = pm.paper_model(d, p, seed=4)
    W = pm.paper_weights(model)
    X = np.random.default_rng(5).standard_normal((n, d))
    forms = pm.paper_forms(W, X, t)
    return model, W, X, t, forms, pm.paper_flow(forms)


def test_paper_model_features_are_the_papers(small):
    model, W, X, t, forms, _ = small
    d = X.shape[1]
    np.testing.assert_allclose(model.features(X, t), np.tanh(X @ W.T / np.sqrt(d)), rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(W, np.random.default_rng(4).standard_normal(W.shape), rtol=1e-14)


def test_losses_match_monte_carlo(small):
    """L_train, L_test, E_score of the forms at a random A against direct Monte Carlo
    of the paper's definitions (model.features, fresh noise / fresh data)."""
    model, W, X, t, F, _ = small
    rng = np.random.default_rng(6)
    n, d = X.shape
    p = W.shape[0]
    A = 0.4 * rng.standard_normal((d, p))
    D, M = -np.expm1(-2 * t), 400_000
    s = lambda y: model.features(y, t) @ A.T / np.sqrt(p)              # noqa: E731
    xi = rng.standard_normal((M, d))
    x = X[rng.integers(0, n, M)]
    cases = {"train": (F.train, np.exp(-t) * x + np.sqrt(D) * xi, xi, "dsm")}
    x = rng.standard_normal((M, d))
    cases["test"] = (F.test, np.exp(-t) * x + np.sqrt(D) * xi, xi, "dsm")
    cases["escore"] = (F.escore, np.exp(-t) * x + np.sqrt(D) * xi, None, "esm")
    for name, (form, y, noise, kind) in cases.items():
        v = (((np.sqrt(D) * s(y) + noise) if kind == "dsm" else (s(y) + y)) ** 2).sum(axis=1) / d
        z = abs(form.loss(A) - v.mean()) / (v.std() / np.sqrt(M))
        assert z < 4.5, name
    # and at A = 0 all three are exactly 1 (sigma_x = 1)
    for form in (F.train, F.test, F.escore):
        assert form.loss(np.zeros((d, p))) == pytest.approx(1.0, abs=1e-14)


def test_flow_in_paper_time_is_the_expm_solution(small):
    """A(tau) = -sqrt(p/Delta) V U^{-1} (I - exp(-2 Delta U tau/psi_p)) (the paper's time)."""
    _, W, X, t, F, flow = small
    p, d = W.shape
    from rfdiff.model.noise_gram import noise_gram
    g = noise_gram(W, X, t)
    D = F.delta
    for tau in (0.3, 7.0, 150.0):
        ref = -np.sqrt(p / D) * g.V @ np.linalg.solve(g.U, np.eye(p) - expm(-2 * D * g.U * tau * d / p))
        np.testing.assert_allclose(flow.params(pm.tau_rfdiff(tau, d)), ref, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(pm.spectrum_of_U(flow, F), np.linalg.eigvalsh(F.U), rtol=1e-10)


def test_form_curve_equals_loss_of_params(small):
    *_, F, flow = small
    taus = pm.tau_rfdiff(np.r_[0.0, np.logspace(-1, 7, 9), np.inf], F.d)
    A = flow.params(taus)
    for form in (F.train, F.test, F.escore):
        np.testing.assert_allclose(pm.form_curve(flow, form, taus), form.loss(A), rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(pm.form_curve(flow, F.train, taus), flow.train_loss(taus), rtol=1e-12)


def test_constants_against_monte_carlo_and_mpmath():
    mpmath = pytest.importorskip("mpmath")
    t, sx = 0.1, 1.3
    c = th.theory_constants(t, sigma_x=sx)
    assert c.error < 1e-12
    al, be = np.exp(-t) * sx, np.sqrt(-np.expm1(-2 * t))
    G = np.sqrt(al**2 + be**2)
    phi = lambda f: mpmath.quad(lambda z: f(z) * mpmath.npdf(z), [-mpmath.inf, mpmath.inf])   # noqa: E731
    assert c.a == pytest.approx(float(phi(lambda z: mpmath.sech(G * z) ** 2)), rel=1e-11)
    Etanh2 = float(phi(lambda z: mpmath.tanh(G * z) ** 2))
    assert c.s2 + c.v2 + c.a**2 * c.gamma2 == pytest.approx(Etanh2, rel=1e-11)
    assert c.b == pytest.approx(be * c.a, rel=1e-14)
    # the paper's definitions by Monte Carlo (u, v, w independent)
    rng = np.random.default_rng(0)
    M = 2_000_000
    u, v, w = rng.standard_normal((3, M))
    f1, f2 = np.tanh(al * u + be * v), np.tanh(al * u + be * w)
    a_mc = f1 * u / al                                                  # E[tanh(zeta) u]/(e^-t sigma_x)
    b_mc = v * f1
    v2_mc = f1 * f2
    for est, ref, shift in ((a_mc, c.a, 0.0), (b_mc, c.b, 0.0), (v2_mc, c.v2, c.a**2 * al**2)):
        assert abs(est.mean() - shift - ref) < 5 * est.std() / np.sqrt(M)


def test_constants_formula_with_a_polynomial_activation_against_sympy():
    """For act(x) = x^3 - 2x the Gaussian integrals are polynomial moments: SymPy exact."""
    sp = pytest.importorskip("sympy")
    t = 0.25
    c = th.theory_constants(t, act=lambda x: x**3 - 2 * x, dact=lambda x: 3 * x**2 - 2, tol=1e-10)
    u, v, w = sp.symbols("u v w", real=True)
    al, be = sp.exp(-sp.Rational(1, 4)), sp.sqrt(1 - sp.exp(-sp.Rational(1, 2)))
    act = lambda x: x**3 - 2 * x                                       # noqa: E731
    def E(f, *xs):            # exact Gaussian expectation of a polynomial: E g^k = (k-1)!! (k even)
        poly = sp.Poly(sp.expand(f), *xs)
        return sum(coef * sp.Mul(*[sp.factorial2(k - 1) if k % 2 == 0 else 0 for k in mon])
                   for mon, coef in poly.terms())

    zeta1, zeta2 = al * u + be * v, al * u + be * w
    a = E(sp.diff(act(zeta1), v) / be, u, v)
    v2 = E(act(zeta1) * act(zeta2), u, v, w) - a**2 * al**2
    s2 = E(act(zeta1) ** 2, u, v) - a**2 * (al**2 + be**2) - v2
    assert c.a == pytest.approx(float(a), rel=1e-10)
    assert c.v2 == pytest.approx(float(v2), rel=1e-10)
    assert c.s2 == pytest.approx(float(s2), rel=1e-10, abs=1e-10)


def test_lambda_min_is_the_marchenko_pastur_edge_of_a_sampled_matrix():
    """lambda_min = s^2 + v^2 (1 - sqrt(psi_p/psi_n))^2 against the smallest nonzero
    eigenvalue of a large sampled s^2 I + v^2 Omega Omega^T/n (p x n Gaussian Omega)."""
    c = th.theory_constants(0.1)
    rng = np.random.default_rng(1)
    d = 100
    for psi_p, psi_n in ((32, 4), (32, 16), (8, 2)):
        p, n = psi_p * d, psi_n * d
        Om = rng.standard_normal((p, n))
        ev = np.linalg.eigvalsh(Om.T @ Om / n)                          # the n nonzero eigenvalues
        lam_num = c.s2 + c.v2 * ev[0]
        assert th.lambda_min(c, psi_p, psi_n) == pytest.approx(lam_num, rel=0.04)
        assert th.tau_mem_theory(c, psi_p, psi_n) == pytest.approx(psi_p / (c.delta * lam_num), rel=0.04)
        lo, hi = th.bulk_edges(c, psi_p, psi_n)["memorization"]
        assert c.s2 + c.v2 * ev[-1] == pytest.approx(hi, rel=0.04)


def test_theory_bad_inputs():
    for kw, name in ((dict(t=0.0), "t"), (dict(t=0.1, sigma_x=-1.0), "sigma_x")):
        with pytest.raises(ValueError, match=f"^{name} must"):
            th.theory_constants(**kw)
    with pytest.raises(RuntimeError, match="not converged"):
        th.theory_constants(0.1, tol=1e-30, max_nodes=64)


def test_spectral_density_against_a_sampled_gaussian_equivalent_U():
    """The saddle-point density of U against the eigenvalues of a sampled
    U = GG^T/n + b^2 W W^T/d + s^2 I, G = e^-t a W X/sqrt(d) + v Omega (p = 800)."""
    c = th.theory_constants(0.1)
    d, psi_p, psi_n = 100, 8, 2
    p, n = psi_p * d, psi_n * d
    rng = np.random.default_rng(0)
    W, X, Om = rng.standard_normal((p, d)), rng.standard_normal((n, d)), rng.standard_normal((p, n))
    G = np.exp(-0.1) * c.a * W @ X.T / np.sqrt(d) + np.sqrt(c.v2) * Om
    ev = np.linalg.eigvalsh(G @ G.T / n + c.b**2 * W @ W.T / d + c.s2 * np.eye(p))
    np.testing.assert_allclose(ev[:p - n - d], c.s2, rtol=1e-9)              # the atom
    mem, pop = ev[p - n - d:p - d], ev[p - d:]
    inside = [np.quantile(b, q) for b in (mem, pop) for q in (0.1, 0.5, 0.9)]
    gaps = [0.7 * mem[0] + 0.3 * c.s2, np.sqrt(mem[-1] * pop[0]), 1.25 * pop[-1]]
    rho = th.spectral_density(c, psi_p, psi_n, inside + gaps)
    assert np.all(rho[:6] > 1e-3) and np.all(np.abs(rho[6:]) < 1e-4)
    lam = np.linspace(0.9 * pop[0], 1.1 * pop[-1], 80)
    mass = np.trapezoid(th.spectral_density(c, psi_p, psi_n, lam), lam)
    assert mass == pytest.approx(d / p, rel=0.05)
    # the leading-order memorization edge is not the density's (its lower piece holds ~d modes)
    assert th.lambda_min(c, psi_p, psi_n) > 1.3 * mem[0]
