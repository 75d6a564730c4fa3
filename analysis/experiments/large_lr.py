"""Figure ``large-lr``: large learning rates in denoising score matching prevent memorization.

After Wu, Marion, Biau, Boyer (COLT 2025, arXiv 2502.03435). One noise level
``t`` of the OU process (``mu_t = e^{-t}``, ``sigma_t^2 = 1 - e^{-2t}``), a
training set ``x_1..x_n ~ N(0, I_d)`` (fresh per seed, shared by every lr),
and the denoising risk

    R_n(s) = (1/n) sum_i E_{Y ~ N(mu_t x_i, sigma_t^2 I)} |s(Y) + (Y - mu_t x_i)/sigma_t^2|^2
           = R_n(s*) + E_{Y ~ p_t} |s(Y) - s*(Y)|^2,

``p_t = (1/n) sum_i N(mu_t x_i, sigma_t^2 I)`` and ``s* = grad log p_t`` the
empirical optimal score (``rf.Empirical(x).score_fn(rf.OU())``). The second
line is the excess risk we report.

Network (mean-field two-layer ReLU): ``s(y) = (1/m) sum_j a_j ReLU(w_j . y + b_j)``,
``a_j ~ N(0, I_d)``, ``w_j ~ N(0, I_d/d)``, ``b_j = 0``.

Normalisation of the learning rate (our reading of the paper's eq. 8): the
(S)GD step is ``theta <- theta - lr * m * grad``, the mean-field scaling under
which each neuron moves O(lr) per step. Gradient descent is linearly stable at
a minimum only if ``lr * m * lambda_max(Hess R_n) <= 2``: the threshold on the
sharpness is ``2 / (m * lr)``.

Training: SGD, batches of 50 fresh draws ``(i, eps)``, ``Y = mu_t x_i + sigma_t eps``,
loss ``mean |s(Y) + eps/sigma_t|^2``; ``steps = round(horizon / lr)`` (steps
proportional to 1/lr, as the paper's 5k..200k epochs). ``train="outer"``
trains ``a`` only (the random-feature model).

Measurements at the end of training:

- ``excess_risk``: d = 1: composite Gauss-Legendre quadrature in y on
  ``[min mu x - 12 sigma, max mu x + 12 sigma]`` (mass outside < 1e-32), with
  the kinks ``-b_j/w_j`` of the ReLU net and a grid of spacing ``sigma/4`` as
  breakpoints, so that the integrand is analytic on every panel; the error
  estimate is the difference between 8 and 16 nodes per panel (raises
  ``rf.ConvergenceError`` above ``quad_tol``). d > 1: Monte Carlo with
  ``mc_draws`` fixed draws (its standard error reported).
- ``sharpness``: ``lambda_max`` of the Hessian of ``R_n`` in the trained
  parameters. d = 1: the largest eigenvalue of the closed-form Hessian
  (:func:`hessian_matrix`) of the quadrature risk, including the kink terms the
  a.e. second derivative misses: ``d^2 s / d(w_j,b_j)^2 = (a_j/m) [y^2, y; y, 1] delta(w_j y + b_j)``,
  which adds ``2 p_t(y_j) r(y_j) a_j / (m |w_j|) [y_j^2, y_j; y_j, 1]`` at ``y_j = -b_j/w_j``,
  ``r = s - s*`` (:func:`hessian_operator`, autograd HVPs plus the same kink terms, is the
  tests' reference). d > 1: Lanczos (``scipy.sparse.linalg.eigsh``) on the Monte Carlo
  risk's closed-form Hessian-vector products (:func:`hessian_product`; kink terms omitted;
  autograd's, :func:`hessian_operator`, is the tests' reference).
- ``memorization``: the paper trains at one noise level, so there is no
  reverse-time sampler; we use the one-step Tweedie denoiser
  ``x_hat = (Y + sigma_t^2 s(Y)) / mu_t`` with ``Y ~ p_t`` (``n_samples`` draws)
  and report ``rf.metrics.memorization_fraction(x_hat, x)`` (nearest / second
  nearest distance < 1/3). The same for ``s*`` is ``memorization_optimal``.

The outer-only model is a quadratic in ``a``: ``R_n = a^T G a/m^2 - 2 a^T c/m + const``
with ``G_jk = E_{p_t} phi_j phi_k``, ``c_j = E_{p_t} phi_j s*``, ``phi_j = ReLU(w_j y + b_j)``;
full-batch gradient descent with step ``lr*m`` is ``a_k = a_0 - V diag((1-(1-lr l)^k)/l) V^T g_0``
(eigenpairs ``(l, V)`` of ``H = 2G/m``, ``g_0 = H a_0 - 2c``): :func:`outer_closed_form`.
Every stable lr has the same limit ``a_inf`` (the least-squares solution).
"""
from __future__ import annotations

import math

import numba
import numpy as np

import rfdiff as rf
from rfdiff.run import Experiment, Task, point_function

NAME = "large-lr"
TRAIN_MODES = ("all", "outer")
_GL8 = np.polynomial.legendre.leggauss(8)
_GL16 = np.polynomial.legendre.leggauss(16)


def _torch():
    """PyTorch, imported when first needed (rfdiff.torch's import, with its install hint)."""
    from rfdiff.torch import require_torch
    return require_torch()


def _check(lr, t, seed, train, width, n, d):
    if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a finite number > 0, got {lr!r}")
    if not (isinstance(t, (int, float)) and math.isfinite(t) and t > 0):
        raise ValueError(f"t must be a finite number > 0, got {t!r}")
    if train not in TRAIN_MODES:
        raise ValueError(f"train must be one of {TRAIN_MODES}, got {train!r}")
    for name, val, lo in (("seed", seed, 0), ("width", width, 1), ("n", n, 2), ("d", d, 1)):
        if not isinstance(val, (int, np.integer)) or isinstance(val, bool) or val < lo:
            raise ValueError(f"{name} must be an integer >= {lo}, got {val!r}")


def training_set(n: int, d: int, seed: int) -> np.ndarray:
    """``x_i ~ N(0, I_d)``, (n, d); the same for every learning rate."""
    return np.random.default_rng([seed, 1]).standard_normal((n, d))


def init_params(width: int, d: int, seed: int) -> dict:
    """``a ~ N(0, I_d)``, ``w ~ N(0, I_d/d)``, ``b = 0`` (numpy float64)."""
    rng = np.random.default_rng([seed, 2])
    return {"a": rng.standard_normal((width, d)), "w": rng.standard_normal((width, d)) / math.sqrt(d),
            "b": np.zeros(width)}


def net(params, y):
    """``s(y) = (1/m) ReLU(y w^T + b) a`` for torch or numpy arrays; y (N, d) -> (N, d)."""
    h = y @ params["w"].T + params["b"]
    h = h * (h > 0)
    return h @ params["a"] / params["a"].shape[0]


def kinks(params) -> np.ndarray:
    """The ReLU kinks ``-b_j / w_j`` (d = 1; units with w_j = 0 have none)."""
    w = np.asarray(params["w"])[:, 0]
    b = np.asarray(params["b"])
    ok = w != 0
    return -b[ok] / w[ok]


class Risk:
    """The excess risk's measure: nodes ``y`` (N, d), weights (N,) of ``p_t``, ``s*(y)``.

    d = 1: composite Gauss-Legendre on panels split at ``breaks`` (module
    docstring), ``order`` 8 or 16 nodes per panel. d > 1: ``mc_draws`` fixed
    draws of ``p_t`` with weight 1/N.
    """

    def __init__(self, x, t, breaks=(), order=16, mc_draws=20000, seed=0):
        self.x = np.asarray(x, dtype=float)
        self.t = float(t)
        proc = rf.OU()
        self.mu, self.sigma = float(proc.alpha(t)), float(proc.sigma(t))
        n, d = self.x.shape
        if d == 1:
            c = self.mu * self.x[:, 0]
            lo, hi = c.min() - 12 * self.sigma, c.max() + 12 * self.sigma
            grid = np.arange(lo, hi, self.sigma / 4)
            b = np.asarray(breaks, dtype=float)
            edges = np.unique(np.concatenate([grid, [hi], b[(b > lo) & (b < hi)]]))
            nodes, w = (_GL8 if order == 8 else _GL16)
            half = np.diff(edges)[:, None] / 2
            mid = (edges[:-1] + edges[1:])[:, None] / 2
            y = (mid + half * nodes[None]).ravel()
            dens = np.exp(-0.5 * ((y[:, None] - c[None]) / self.sigma) ** 2).mean(axis=1)
            dens /= self.sigma * math.sqrt(2 * math.pi)
            self.y = y[:, None]
            self.weights = (half * w[None]).ravel() * dens
        else:
            rng = np.random.default_rng([seed, 3])
            i = rng.integers(0, n, mc_draws)
            self.y = self.mu * self.x[i] + self.sigma * rng.standard_normal((mc_draws, d))
            self.weights = np.full(mc_draws, 1.0 / mc_draws)
        self.s_star = np.asarray(rf.Empirical(self.x).score_fn(proc)(self.y, self.t)).reshape(self.y.shape)

    def density(self, y):
        c = self.mu * self.x[:, 0]
        return np.exp(-0.5 * ((np.asarray(y)[:, None] - c[None]) / self.sigma) ** 2).mean(axis=1) / (
            self.sigma * math.sqrt(2 * math.pi))

    def excess(self, params) -> float:
        r = net({k: np.asarray(v) for k, v in params.items()}, self.y) - self.s_star
        return float(np.sum(self.weights * np.sum(r ** 2, axis=1)))


def excess_risk(params, x, t, *, tol=1e-8, mc_draws=20000, seed=0) -> tuple[float, float]:
    """``E_{p_t} |s - s*|^2`` and its error estimate (module docstring)."""
    params = {k: np.asarray(v, dtype=float) for k, v in params.items()}
    x = np.asarray(x, dtype=float)
    if x.shape[1] == 1:
        br = kinks(params)
        v16 = Risk(x, t, br, 16).excess(params)
        v8 = Risk(x, t, br, 8).excess(params)
        err = abs(v16 - v8)
        if not err <= tol * max(1.0, abs(v16)):
            raise rf.ConvergenceError(f"excess-risk quadrature: 8/16-node difference {err:.2e} > tol {tol:g}")
        return v16, err
    risk = Risk(x, t, mc_draws=mc_draws, seed=seed)
    r = net(params, risk.y) - risk.s_star
    e = np.sum(r ** 2, axis=1)
    return float(e.mean()), float(e.std(ddof=1) / math.sqrt(e.size))


def _torch_params(params, torch):
    return {k: torch.tensor(np.asarray(v, dtype=float), dtype=torch.float64) for k, v in params.items()}


def hessian_operator(params, x, t, train="all", *, mc_draws=20000, seed=0):
    """``(matvec, p)``: the Hessian of ``R_n`` in the trained parameters (flattened
    ``[a, w, b]`` or ``[a]``) as a matrix-vector product (module docstring)."""
    torch = _torch()
    params = {k: np.asarray(v, dtype=float) for k, v in params.items()}
    d = params["a"].shape[1]
    m = params["a"].shape[0]
    risk = Risk(x, t, kinks(params) if d == 1 else (), 16, mc_draws=mc_draws, seed=seed)
    P = _torch_params(params, torch)
    names = ("a", "w", "b") if train == "all" else ("a",)
    shapes = [P[k].shape for k in names]
    sizes = [P[k].numel() for k in names]
    y = torch.tensor(risk.y)
    ss = torch.tensor(risk.s_star)
    om = torch.tensor(risk.weights)

    def loss(*flat):
        q = dict(P)
        for k, f in zip(names, flat):
            q[k] = f
        return torch.sum(om * torch.sum((net(q, y) - ss) ** 2, dim=1))

    # kink (delta) terms, d = 1 and trained hidden layer only
    kink = None
    if d == 1 and train == "all":
        w, b, a = params["w"][:, 0], params["b"], params["a"][:, 0]
        ok = w != 0
        yj = np.where(ok, -b / np.where(ok, w, 1.0), 0.0)
        r = (net(params, yj[:, None])[:, 0] - np.asarray(rf.Empirical(np.asarray(x)).score_fn(rf.OU())(
            yj[:, None], float(t))).reshape(-1))
        coef = np.where(ok, 2 * risk.density(yj) * r * a / (m * np.abs(np.where(ok, w, 1.0))), 0.0)
        kink = (coef, yj)

    def matvec(v):
        v = np.asarray(v, dtype=float).ravel()
        parts, o = [], 0
        for sh, sz in zip(shapes, sizes):
            parts.append(torch.tensor(v[o:o + sz]).reshape(sh))
            o += sz
        _, hv = torch.autograd.functional.hvp(loss, tuple(P[k] for k in names), tuple(parts))
        out = np.concatenate([h.detach().numpy().ravel() for h in hv])
        if kink is not None:
            coef, yj = kink
            vw, vb = v[m:2 * m], v[2 * m:3 * m]
            out[m:2 * m] += coef * (yj ** 2 * vw + yj * vb)
            out[2 * m:3 * m] += coef * (yj * vw + vb)
        return out

    return matvec, int(sum(sizes))


def gradient(params, x, t, train="all") -> np.ndarray:
    """Gradient of ``R_n`` (d = 1, quadrature with breakpoints at the current kinks)."""
    torch = _torch()
    params = {k: np.asarray(v, dtype=float) for k, v in params.items()}
    risk = Risk(x, t, kinks(params), 16)
    P = _torch_params(params, torch)
    names = ("a", "w", "b") if train == "all" else ("a",)
    for k in names:
        P[k].requires_grad_(True)
    loss = torch.sum(torch.tensor(risk.weights) * torch.sum((net(P, torch.tensor(risk.y))
                                                            - torch.tensor(risk.s_star)) ** 2, dim=1))
    g = torch.autograd.grad(loss, [P[k] for k in names])
    return np.concatenate([gi.numpy().ravel() for gi in g])


def hessian_matrix(params, x, t, train="all") -> np.ndarray:
    """The Hessian of ``R_n`` (d = 1) in closed form, flattened ``[a, w, b]`` or ``[a]``.

    With ``r = s - s*``, ``u_nj = 1[w_j y_n + b_j > 0]`` and the Jacobian
    ``J_n = (1/m) [phi_nj, a_j u_nj y_n, a_j u_nj]_j`` at the quadrature nodes (weights ``omega_n``):

        H = 2 J^T diag(omega) J + 2 sum_n omega_n r_n d^2 s(y_n) + kink terms,

    where the only a.e. second derivatives of ``s`` are ``d^2 s/da_j dw_j = u_nj y_n/m`` and
    ``d^2 s/da_j db_j = u_nj/m``, and the kink terms are those of the module docstring.
    Independent of :func:`hessian_operator` (autograd), which the tests compare it with.
    """
    params = {k: np.asarray(v, dtype=float) for k, v in params.items()}
    a, w, b = params["a"][:, 0], params["w"][:, 0], params["b"]
    m = a.size
    risk = Risk(x, t, kinks(params), 16)
    y, om = risk.y[:, 0], risk.weights
    h = np.outer(y, w) + b
    u = (h > 0).astype(float)
    phi = h * u
    if train == "outer":
        return 2 * (phi.T * om) @ phi / m ** 2
    J = np.concatenate([phi, a * u * y[:, None], a * u], axis=1) / m
    H = 2 * (J.T * om) @ J
    r = (phi @ a / m) - risk.s_star[:, 0]
    idx = np.arange(m)
    caw = 2 * (om * r * y) @ u / m
    cab = 2 * (om * r) @ u / m
    H[idx, m + idx] += caw
    H[m + idx, idx] += caw
    H[idx, 2 * m + idx] += cab
    H[2 * m + idx, idx] += cab
    ok = w != 0
    yj = np.where(ok, -b / np.where(ok, w, 1.0), 0.0)
    rj = net(params, yj[:, None])[:, 0] - np.asarray(
        rf.Empirical(np.asarray(x, dtype=float)).score_fn(rf.OU())(yj[:, None], float(t))).reshape(-1)
    coef = np.where(ok, 2 * risk.density(yj) * rj * a / (m * np.abs(np.where(ok, w, 1.0))), 0.0)
    H[m + idx, m + idx] += coef * yj ** 2
    H[m + idx, 2 * m + idx] += coef * yj
    H[2 * m + idx, m + idx] += coef * yj
    H[2 * m + idx, 2 * m + idx] += coef
    return H


def hessian_product(params, x, t, train="all", *, mc_draws=20000, seed=0):
    """``(matvec, p)``: the Hessian of the Monte Carlo risk ``R(theta) = sum_n omega_n |r_n|^2``
    (:class:`Risk`'s draws, any d; no kink terms) times a vector, in closed form.

    With ``r_n = s(y_n) - s*_n``, ``h = y w^T + b``, ``u = 1[h > 0]``, ``Phi = ReLU(h)`` and a
    direction ``(A, W, beta)``: ``Z = u (y W^T + beta)``, ``dS = (Phi A + Z a)/m`` (the Jacobian
    times the direction) and ``E = u [(omega dS) a^T + (omega r) A^T]``, the product is

        H_a = (2/m) [Phi^T (omega dS) + Z^T (omega r)],   H_w = (2/m) E^T y,   H_b = (2/m) sum_n E_n,

    (the Gauss-Newton part plus the a.e. second derivatives ``d^2 s/da_j d(w_j, b_j)``);
    ``train="outer"``: ``H_a = (2/m) Phi^T (omega dS)`` with ``dS = Phi A/m``. Flattened as
    :func:`hessian_operator`, the autograd reference the tests compare it with.
    """
    params = {k: np.asarray(v, dtype=float) for k, v in params.items()}
    a, w, b = params["a"], params["w"], params["b"]
    m, d = a.shape
    risk = Risk(x, t, mc_draws=mc_draws, seed=seed)
    y, om = risk.y, risk.weights[:, None]
    h = y @ w.T + b
    u = h > 0
    phi = h * u
    omr = om * (phi @ a / m - risk.s_star)

    def matvec(v):
        v = np.asarray(v, dtype=float).ravel()
        A = v[:m * d].reshape(m, d)
        if train == "outer":
            return (2.0 / m) * (phi.T @ (om * (phi @ A / m))).ravel()
        W, beta = v[m * d:2 * m * d].reshape(m, d), v[2 * m * d:]
        Z = u * (y @ W.T + beta)
        omds = om * ((phi @ A + Z @ a) / m)
        E = u * (omds @ a.T + omr @ A.T)
        return (2.0 / m) * np.concatenate([(phi.T @ omds + Z.T @ omr).ravel(), (E.T @ y).ravel(),
                                           E.sum(axis=0)])

    return matvec, (2 * m * d + m) if train == "all" else m * d


def sharpness(params, x, t, train="all", **kw) -> float:
    """``lambda_max`` of the Hessian of ``R_n``: d = 1 the largest eigenvalue of
    :func:`hessian_matrix` (dense, LAPACK); d > 1 Lanczos on :func:`hessian_product`."""
    from scipy.sparse.linalg import LinearOperator, eigsh

    if np.asarray(params["a"]).shape[1] == 1:
        H = hessian_matrix(params, x, t, train)
        return float(np.linalg.eigvalsh((H + H.T) / 2)[-1])
    mv, p = hessian_product(params, x, t, train, **kw)
    op = LinearOperator((p, p), matvec=mv, dtype=float)
    return float(eigsh(op, k=1, which="LA", tol=1e-8, v0=np.ones(p))[0][0])


def outer_gram(params, x, t) -> tuple[np.ndarray, np.ndarray]:
    """``G_jk = E_{p_t} phi_j phi_k`` and ``c_j = E_{p_t} phi_j s*`` (d = 1, the same quadrature)."""
    params = {k: np.asarray(v, dtype=float) for k, v in params.items()}
    risk = Risk(x, t, kinks(params), 16)
    h = risk.y @ params["w"].T + params["b"]
    phi = h * (h > 0)
    G = phi.T @ (risk.weights[:, None] * phi)
    c = phi.T @ (risk.weights * risk.s_star[:, 0])
    return G, c


def outer_closed_form(params, x, t, lr, steps) -> np.ndarray:
    """Full-batch GD on ``a`` (step ``lr*m``) after ``steps`` steps, in closed form (module docstring)."""
    a0 = np.asarray(params["a"], dtype=float)[:, 0]
    m = a0.size
    G, c = outer_gram(params, x, t)
    H = 2 * G / m
    lam, V = np.linalg.eigh(H)
    g0 = H @ a0 - 2 * c
    with np.errstate(divide="ignore", invalid="ignore"):
        f = np.where(np.abs(lam * lr) > 1e-12, -np.expm1(steps * np.log1p(-lr * lam)) / lam, lr * steps)
    return a0 - V @ (f * (V.T @ g0))


def outer_limit(params, x, t, rcond=1e-12) -> np.ndarray:
    """The limit of :func:`outer_closed_form` as ``steps -> inf`` for every stable lr
    (``lr * l_max < 2``): ``a_inf = a_0 - V diag(1/l) V^T g_0`` over ``l > rcond * l_max`` (the
    minimum-norm-change least-squares solution; directions with ``l = 0`` keep ``a_0``)."""
    a0 = np.asarray(params["a"], dtype=float)[:, 0]
    G, c = outer_gram(params, x, t)
    H = 2 * G / a0.size
    lam, V = np.linalg.eigh(H)
    keep = lam > rcond * lam.max()
    f = np.where(keep, 1.0 / np.where(keep, lam, 1.0), 0.0)
    return a0 - V @ (f * (V.T @ (H @ a0 - 2 * c)))


def outer_gradient_descent(params, x, t, lr, steps) -> np.ndarray:
    """The same iterate by explicit torch full-batch GD on the quadrature risk (the check)."""
    torch = _torch()
    params = {k: np.asarray(v, dtype=float) for k, v in params.items()}
    m = params["a"].shape[0]
    risk = Risk(x, t, kinks(params), 16)
    P = _torch_params(params, torch)
    y, ss, om = torch.tensor(risk.y), torch.tensor(risk.s_star), torch.tensor(risk.weights)
    h = y @ P["w"].T + P["b"]
    phi = h * (h > 0)
    a = P["a"].clone().requires_grad_(True)
    for _ in range(int(steps)):
        loss = torch.sum(om * torch.sum((phi @ a / m - ss) ** 2, dim=1))
        (g,) = torch.autograd.grad(loss, [a])
        with torch.no_grad():
            a -= lr * m * g
    return a.detach().numpy()[:, 0]


def batch_loss_gradient(params, y, eps, sigma, train="all"):
    """``(loss, grads)``: the batch loss ``mean_i |s(y_i) + eps_i/sigma|^2`` and its gradient in
    the trained parameters, by hand (:func:`sgd`'s step; the tests compare it with autograd).

    With ``h = y w^T + b``, ``u = 1[h > 0]``, ``r = s(y) + eps/sigma`` and ``G = 2 r / (B m)``:
    ``dL/da = ReLU(h)^T G``, ``dL/dh = (G a^T) u``, ``dL/dw = (dL/dh)^T y``, ``dL/db = sum_i dL/dh_i``.
    """
    a = params["a"]
    m, B = a.shape[0], y.shape[0]
    h = y @ params["w"].T + params["b"]
    u = h > 0
    phi = h * u
    r = phi @ a / m + eps / sigma
    G = r * (2.0 / (B * m))
    grads = {"a": phi.T @ G}
    if train == "all":
        dh = (G @ a.T) * u
        grads["w"] = dh.T @ y
        grads["b"] = dh.sum(axis=0)
    return float(np.mean(np.sum(r ** 2, axis=1))), grads


@numba.njit(fastmath=True, nogil=True, cache=True)
def _sgd_step_d1(a, w, b, y, eps, sigma, step, train_all):
    """One SGD step in place for d = 1 (vectors a, w, b of the m units; y, eps of the batch):
    the formulas of :func:`batch_loss_gradient` fused into two passes over the (B, m) units,
    without storing ``h``. Returns the batch loss before the step."""
    m, B = a.size, y.size
    G = np.empty(B)
    loss = 0.0
    for i in range(B):
        s = 0.0
        for j in range(m):
            s += max(y[i] * w[j] + b[j], 0.0) * a[j]
        r = s / m + eps[i] / sigma
        loss += r * r
        G[i] = r * (2.0 / (B * m))
    for j in range(m):
        ga, gw, gb = 0.0, 0.0, 0.0
        for i in range(B):
            h = y[i] * w[j] + b[j]
            ga += max(h, 0.0) * G[i]
            dh = G[i] * a[j] if h > 0 else 0.0
            gw += dh * y[i]
            gb += dh
        a[j] -= step * ga
        if train_all:
            w[j] -= step * gw
            b[j] -= step * gb
    return loss / B


def sgd(params, x, t, lr, steps, train="all", *, batch=50, seed=0, progress=False, max_norm=1e8):
    """SGD on the denoising loss (module docstring): ``(params, diverged, loss_trace)``.

    The gradient is by hand (:func:`batch_loss_gradient`), NumPy for d > 1 and the same formulas
    fused in numba for d = 1 (:func:`_sgd_step_d1`); ``benchmarks/large_lr.py`` times both against
    torch autograd. The draws ``(eps, i)`` of each step come from
    ``numpy.random.default_rng([seed, 5])``.
    """
    from tqdm.auto import tqdm

    proc = rf.OU()
    mu, sigma = float(proc.alpha(t)), float(proc.sigma(t))
    P = {k: np.array(v, dtype=float) for k, v in params.items()}
    m, d = P["a"].shape
    names = ("a", "w", "b") if train == "all" else ("a",)
    x = np.asarray(x, dtype=float)
    rng = np.random.default_rng([int(seed), 5])
    trace, diverged = [], False
    every = max(1, steps // 50)
    for k in tqdm(range(int(steps)), disable=not progress, desc=f"sgd lr={lr:g} {train}", leave=False):
        eps = rng.standard_normal((batch, d))
        y = mu * x[rng.integers(0, x.shape[0], batch)] + sigma * eps
        if d == 1:    # in place, on views of P's arrays
            loss = _sgd_step_d1(P["a"][:, 0], P["w"][:, 0], P["b"], y[:, 0], eps[:, 0], sigma, lr * m,
                                train == "all")
        else:
            loss, grads = batch_loss_gradient(P, y, eps, sigma, train)
            for name, g in grads.items():
                P[name] -= lr * m * g
        if not math.isfinite(loss):
            diverged = True
            break
        if not all(np.abs(P[name]).max() < max_norm for name in names):   # also False for NaN
            diverged = True
            break
        if k % every == 0:
            trace.append(loss)
    return P, diverged, np.asarray(trace)


def memorization(params, x, t, n_samples=1000, seed=0) -> float:
    """Memorization fraction of one-step Tweedie denoisings of ``Y ~ p_t`` (module docstring)."""
    proc = rf.OU()
    mu, sigma = float(proc.alpha(t)), float(proc.sigma(t))
    rng = np.random.default_rng([seed, 4])
    x = np.asarray(x, dtype=float)
    y = mu * x[rng.integers(0, x.shape[0], n_samples)] + sigma * rng.standard_normal((n_samples, x.shape[1]))
    s = net(params, y) if params is not None else np.asarray(
        rf.Empirical(x).score_fn(proc)(y, float(t))).reshape(y.shape)
    xhat = (y + sigma ** 2 * s) / mu
    return float(rf.metrics.memorization_fraction(xhat, x).value)


@point_function
def point(*, lr: float, t: float, seed: int, train: str = "all", width: int = 1000, n: int = 20, d: int = 1,
          horizon: float = 2500.0, batch: int = 50, n_samples: int = 1000, optimizer: str = "sgd",
          mc_draws: int = 20000, progress: bool = False) -> dict:
    """One training run at learning rate ``lr`` for ``round(horizon/lr)`` steps (module docstring).

    ``optimizer="sgd"`` (the experiment): SGD on fresh noise draws. ``"gd"`` (outer layer, d = 1
    only; the check of the closed form): explicit full-batch gradient descent on the exact
    (quadrature) risk, :func:`outer_gradient_descent`, whose end point is :func:`outer_closed_form`'s.
    ``mc_draws``: the fixed draws of ``p_t`` of the Monte-Carlo risk (d > 1: excess risk and sharpness).
    """
    _check(lr, t, seed, train, width, n, d)
    if not (isinstance(horizon, (int, float)) and math.isfinite(horizon) and horizon > 0):
        raise ValueError(f"horizon must be a finite number > 0, got {horizon!r}")
    if not isinstance(batch, (int, np.integer)) or isinstance(batch, bool) or batch < 1:
        raise ValueError(f"batch must be an integer >= 1, got {batch!r}")
    if not isinstance(mc_draws, (int, np.integer)) or isinstance(mc_draws, bool) or mc_draws < 100:
        raise ValueError(f"mc_draws must be an integer >= 100, got {mc_draws!r}")
    if optimizer not in ("sgd", "gd"):
        raise ValueError(f"optimizer must be 'sgd' or 'gd', got {optimizer!r}")
    if optimizer == "gd" and (train != "outer" or d != 1):
        raise ValueError("optimizer='gd' (exact full-batch GD) is implemented for train='outer', d=1 only")
    steps = max(1, int(round(horizon / lr)))
    x = training_set(n, d, seed)
    p0 = init_params(width, d, seed)
    if optimizer == "gd":
        aT = outer_gradient_descent(p0, x, t, lr, steps)
        diverged = not bool(np.all(np.isfinite(aT)) and np.abs(aT).max() < 1e8)
        pT, trace = dict(p0, a=aT[:, None]), np.array([])
    else:
        pT, diverged, trace = sgd(p0, x, t, lr, steps, train, batch=batch, seed=seed, progress=progress)
    nan = float("nan")
    out = {"steps": steps, "diverged": bool(diverged), "threshold": 2.0 / (width * lr),
           "memorization_optimal": memorization(None, x, t, n_samples, seed),
           "final_loss": float(np.mean(trace[-5:])) if trace.size else nan}
    if diverged:
        out.update(excess_risk=nan, excess_risk_error=nan, sharpness=nan, memorization=nan, gd_stable=False,
                   excess_risk_gd=nan, excess_risk_gd_limit=nan)
        return out
    er, err = excess_risk(pT, x, t, tol=1e-6, mc_draws=mc_draws, seed=seed)
    if train == "outer" and d == 1:
        # the random-feature reference: full-batch GD on a in closed form, same lr and steps, and its limit
        lmax = float(np.linalg.eigvalsh(2 * outer_gram(p0, x, t)[0] / width)[-1])
        out["gd_stable"] = bool(lr * lmax < 2)
        a_gd = outer_closed_form(p0, x, t, lr, steps) if out["gd_stable"] else None
        out["excess_risk_gd"] = excess_risk(dict(p0, a=a_gd[:, None]), x, t, tol=1e-6)[0] if out["gd_stable"] else nan
        out["excess_risk_gd_limit"] = excess_risk(dict(p0, a=outer_limit(p0, x, t)[:, None]), x, t, tol=1e-6)[0]
    else:
        out.update(gd_stable=False, excess_risk_gd=nan, excess_risk_gd_limit=nan)
    out.update(excess_risk=er, excess_risk_error=err,
               sharpness=sharpness(pT, x, t, train, seed=seed, **({} if d == 1 else {"mc_draws": mc_draws})),
               memorization=memorization(pT, x, t, n_samples, seed))
    return out


# ds: the data dimensions; ts_high_d: the noise levels run at d > 1 (a subset of ts)
_BASE = dict(n=20, ds=[1, 10], batch=50, lrs=[0.5, 0.1, 0.05, 0.01], ts=[0.2, 0.05], ts_high_d=[0.2, 0.05],
             trains=["all", "outer"], mc_draws=20000)
PRESETS = {
    "tiny": dict(_BASE, width=20, horizon=1.0, lrs=[0.5, 0.1], ts=[0.2], ts_high_d=[0.2], seeds=[0, 1],
                 n_samples=200, mc_draws=2000),
    # quick: width 100 and horizon 50 (lr*steps) instead of 1000 and 2500, to fit minutes on 2 shared cores;
    # d = 10 at t = 0.2 only, with 5000 Monte-Carlo draws (its Lanczos sharpness costs ~40 Hessian products)
    "quick": dict(_BASE, width=100, horizon=50.0, seeds=[0, 1, 2, 3, 4], n_samples=1000, ts_high_d=[0.2],
                  mc_draws=5000),
    "full": dict(_BASE, width=1000, horizon=2500.0, seeds=list(range(30)), n_samples=1000),
}


def _grid(p: dict):
    """The (d, train, t, lr, seed) combinations that are run, in task order."""
    bad = sorted(set(p["ts_high_d"]) - set(p["ts"]))
    if bad:
        raise ValueError(f"ts_high_d must be a subset of ts, got {bad} not in {p['ts']}")
    return [(d, tr, t, lr, s) for d in p["ds"] for tr in p["trains"] for t in p["ts"]
            if d == 1 or t in p["ts_high_d"] for lr in p["lrs"] for s in p["seeds"]]


def tasks(p: dict) -> list:
    return [Task(point, dict(lr=lr, t=t, seed=s, train=tr, width=p["width"], n=p["n"], d=d,
                             horizon=p["horizon"], batch=p["batch"], n_samples=p["n_samples"],
                             mc_draws=p["mc_draws"]))
            for d, tr, t, lr, s in _grid(p)]


_VARS = ("excess_risk", "excess_risk_error", "excess_risk_gd", "excess_risk_gd_limit", "gd_stable", "sharpness",
         "threshold", "memorization", "memorization_optimal",
         "steps", "diverged", "final_loss")
_DIMS = ("d", "train", "t", "lr", "seed")


def reduce(p: dict, results: list):
    """The runs on a (d, train, t, lr, seed) grid; NaN where a combination is not run
    (d > 1 at a t outside ``ts_high_d``)."""
    import xarray as xr

    coords = {"d": list(p["ds"]), "train": list(p["trains"]), "t": list(p["ts"]), "lr": list(p["lrs"]),
              "seed": list(p["seeds"])}
    index = [{c: i for i, c in enumerate(coords[k])} for k in _DIMS]
    data = {v: np.full(tuple(len(coords[k]) for k in _DIMS), np.nan) for v in _VARS}
    for combo, r in zip(_grid(p), results, strict=True):
        at = tuple(ix[c] for ix, c in zip(index, combo))
        for v in _VARS:
            data[v][at] = float(r[v].values)
    ds = xr.Dataset({v: (_DIMS, data[v]) for v in _VARS}, coords=coords)
    proc = rf.OU()
    ds["sigma_t"] = ("t", np.array([float(proc.sigma(t)) for t in p["ts"]]))
    ds.attrs.update({"width": p["width"], "n": p["n"], "horizon_lr_times_steps":
                     p["horizon"], "batch": p["batch"], "mc_draws": p["mc_draws"],
                     "lr_normalisation": "step = lr*m*grad; stability threshold 2/(m*lr)",
                     "excess_risk_method": "composite Gauss-Legendre, kinks as breakpoints (d=1); "
                                           "Monte Carlo over mc_draws fixed draws of p_t (d>1)",
                     "sharpness_method": "dense closed-form Hessian with kink terms (d=1); Lanczos on closed-form "
                                         "Hessian-vector products of the Monte-Carlo risk (d>1)",
                     "memorization_method": "one-step Tweedie denoiser of Y~p_t, ratio<1/3"})
    return ds


def _seed_quantiles(y, qs=(0.5, 0.1, 0.9)):
    """Quantiles over seeds (last axis) per row; NaN for a row with no finite value (every seed diverged)."""
    out = np.full((len(qs), y.shape[0]), np.nan)
    for i, row in enumerate(y):
        row = row[np.isfinite(row)]
        if row.size:
            out[:, i] = np.quantile(row, qs)
    return out


def _medians(y) -> list:
    return [None if np.isnan(v) else float(v) for v in _seed_quantiles(y, (0.5,))[0]]


def summary(ds) -> dict:
    out = {}
    for d in ds.d.values:
        for tr in ds.train.values:
            for t in ds.t.values:
                if np.all(np.isnan(ds.steps.sel(d=d, train=tr, t=t).values)):
                    continue                   # not run (d > 1 outside ts_high_d)
                key = f"d={d}, {tr}, t={t:g}"
                out[f"{key}: excess risk median over seeds per lr {[float(x) for x in ds.lr.values]}"] = _medians(
                    ds.excess_risk.sel(d=d, train=tr, t=t).values)
                out[f"{key}: sharpness / threshold, median per lr"] = _medians(
                    (ds.sharpness / ds.threshold).sel(d=d, train=tr, t=t).values)
                out[f"{key}: diverged runs per lr"] = [
                    int(v) for v in ds.diverged.sel(d=d, train=tr, t=t).sum("seed").values]
    out["diverged runs"] = int(np.nansum(ds.diverged.values))
    return out


def plot(ds, stem):
    from .. import plotting as P

    with P.style():
        fig, axes = P.subplots(3, ds.d.size, width=P.COLUMN_WIDTH * ds.d.size, height=9.0)
        lr = ds.lr.values
        for col, d in enumerate(ds.d.values):
            dd = ds.sel(d=d)
            run = [t for t in dd.t.values if np.any(np.isfinite(dd.steps.sel(t=t).values))]
            for row, (var, lab) in enumerate((("excess_risk", r"excess risk $R_n(\theta)-R_n(s^*)$"),
                                              ("sharpness", r"sharpness $\lambda_{max}$"),
                                              ("memorization", "memorization fraction"))):
                ax = axes[row, col]
                for tr, ls in zip(dd.train.values, ("-", "--")):
                    for t in run:
                        med, lo, hi = _seed_quantiles(dd[var].sel(train=tr, t=t).values)
                        if np.any(np.isfinite(med)):          # an lr whose every seed diverged: no point
                            P.band(ax, lr, med, lo, hi, marker="o", ls=ls, label=f"{tr}, t={t:g}")
                if var == "excess_risk" and "outer" in dd.train.values:
                    for t, c in zip(run, ("C4", "C5", "C6")):
                        ref = dd.excess_risk_gd.sel(train="outer", t=t).values
                        lim = dd.excess_risk_gd_limit.sel(train="outer", t=t).values
                        if not np.any(np.isfinite(lim)):
                            continue               # the closed form is d = 1 only
                        ax.plot(lr, np.nanmedian(ref, axis=1), "x", color=c, ms=4,
                                label=f"outer closed-form GD, same lr and steps, t={t:g}")
                        ax.axhline(float(np.nanmedian(lim)), color=c, lw=0.6, ls="-.",
                                   label=f"outer closed-form GD limit (every stable lr), t={t:g}")
                if var == "sharpness":
                    ax.plot(lr, 2 / (ds.attrs["width"] * lr), "k:", label=r"$2/(m\,\eta)$")
                if var == "memorization":
                    for t in run:
                        ax.axhline(float(np.nanmean(dd.memorization_optimal.sel(t=t, train=dd.train.values[0]))),
                                   color="gray", lw=0.6, ls=":", label=f"$s^*$, t={t:g}")
                ax.set(xscale="log", xlabel=r"learning rate $\eta$", ylabel=lab)
                if var != "memorization":
                    ax.set_yscale("log")
                if var == "excess_risk":
                    ax.legend(fontsize=4.5, ncol=2, loc="upper center", bbox_to_anchor=(0.5, -0.22))
                else:
                    ax.legend(fontsize=5)
            n_div = int(np.nansum(dd.diverged.values))
            how = "quadrature" if d == 1 else f"Monte Carlo, {ds.attrs['mc_draws']} draws"
            axes[0, col].set_title(f"d={d} ({how}); m={ds.attrs['width']}, n={ds.attrs['n']}, "
                                   f"lr*steps={ds.attrs['horizon_lr_times_steps']:g}\n"
                                   f"median, 10-90% over {ds.seed.size} seeds; diverged runs: {n_div}",
                                   loc="left", fontsize=6)
        return P.save_figure(fig, ds, stem)


EXPERIMENT = Experiment(name=NAME, title="Large learning rates prevent memorization (Wu et al. 2025)",
                        presets=PRESETS, tasks=tasks, reduce=reduce, plot=plot, summary=summary,
                        regime="n=20 points from N(0, I_d), d = 1 and 10, one noise level t, mean-field two-layer "
                               "ReLU, SGD")
