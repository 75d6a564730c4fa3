"""The one refinement loop (rfdiff.numerics.refine): convergence on synthetic
sequences with a known error, per-element masks, status values, budgets; the
log-time integral problem against a closed form; the KL sign convention."""
import math
import time

import numpy as np
import pytest

import rfdiff as rf
from rfdiff.kl.results import clip_negative
from rfdiff.numerics.quadrature import LogTimeIntegral
from rfdiff.numerics.refine import Budget, Estimate, Status, refine


class Sequence:
    """Element i at level L: ``exact_i + c_i 4^-L`` (a second-order method with
    h = 2^-L); the error estimate is the difference of the last two levels,
    ``3 c_i 4^-L``. ``fail``: elements whose evaluation fails at level 1;
    ``nan``: elements whose value is NaN."""

    def __init__(self, exact, c, max_level=40, fail=(), nan=()):
        self.exact, self.c = np.asarray(exact, float), np.asarray(c, float)
        self.level, self.max_level = 1, max_level
        self.fail, self.nan = set(fail), set(nan)
        self.seen = []

    def value(self, L, idx):
        return self.exact[idx] + self.c[idx] * 4.0 ** -L

    def evaluate(self, active):
        self.seen.append(active.copy())
        v = self.value(self.level, active)
        e = np.abs(v - self.value(self.level - 1, active))
        v[np.isin(active, list(self.nan))] = np.nan
        status = np.where(np.isin(active, list(self.fail)) & (self.level == 1), int(Status.SOLVER_FAILED), 0)
        return Estimate(v, e, status=status, detail={b: "solver failed on purpose" for b in self.fail})

    def refine(self, active, error, tols):
        if self.level >= self.max_level:
            return Status.QUADRATURE_LIMIT, f"level limit {self.max_level}"
        self.level += 1
        return None


def first_level(c, tol):
    """The first level L >= 1 with 3 |c| 4^-L <= tol."""
    return max(1, math.ceil(math.log(3 * abs(c) / tol, 4))) if c else 1


def test_each_element_stops_at_its_own_level():
    exact, c, tol = np.array([1.0, -2.0, 0.5, 3.0]), np.array([0.0, 1.0, 100.0, 1e4]), 1e-6
    prob = Sequence(exact, c)
    out = refine(prob, 4, tol)
    assert np.all(out.status == Status.CONVERGED) and np.all(out.converged)
    assert out.messages == ["converged"] * 4
    for i in range(4):
        L = first_level(c[i], tol)
        assert out.value[i] == pytest.approx(exact[i] + c[i] * 4.0 ** -L, abs=0, rel=1e-15)
        assert abs(out.value[i] - exact[i]) <= out.error[i] <= tol
        # evaluated exactly at levels 1..L, never after it converged
        assert sum(i in s for s in prob.seen) == L
    assert out.iterations == first_level(c[-1], tol)


def test_limits_failures_and_non_finite_get_their_status():
    prob = Sequence([0.0, 0.0, 0.0, 0.0], [1.0, 1e12, 1.0, 1.0], max_level=6, fail=[2], nan=[3])
    out = refine(prob, 4, 1e-3)
    assert [Status(s) for s in out.status] == [Status.CONVERGED, Status.QUADRATURE_LIMIT,
                                               Status.SOLVER_FAILED, Status.NOT_FINITE]
    assert out.status.dtype.kind == "i"
    assert "level limit 6" in out.messages[1] and "> tol" in out.messages[1]
    assert out.messages[2] == "solver failed on purpose"
    assert not out.converged[1:].any()
    # the failed and the non-finite element were evaluated once
    assert sum(2 in s for s in prob.seen) == 1 and sum(3 in s for s in prob.seen) == 1


def test_relative_tolerance_beyond_one():
    # |value| 1e6: relative tol 1e-6 allows an error of 1; absolute needs 1e-6
    prob = Sequence([1e6], [100.0])
    rel = refine(prob, 1, 1e-6, relative=True)
    assert rel.converged[0] and rel.error[0] <= 1.0 and rel.error[0] > 1e-6
    ab = refine(Sequence([1e6], [100.0]), 1, 1e-6)
    assert ab.converged[0] and ab.error[0] <= 1e-6


def test_work_budget_names_what_ran_out():
    out = refine(Sequence([0.0], [1e6]), 1, 1e-12, budget=Budget(max_iter=3))
    assert out.status[0] == Status.WORK_BUDGET and out.iterations == 3
    assert "max_iter=3" in out.messages[0]

    class Slow(Sequence):
        def evaluate(self, active):
            time.sleep(0.02)
            return super().evaluate(active)
    out = refine(Slow([0.0], [1e6], max_level=1000), 1, 1e-300, budget=Budget(max_seconds=0.05))
    assert out.status[0] == Status.WORK_BUDGET and "max_seconds=0.05" in out.messages[0]
    assert out.seconds < 1.0
    with pytest.raises(ValueError, match="max_seconds"):
        Budget(max_seconds=0)
    with pytest.raises(ValueError, match="max_iter"):
        Budget(max_iter=0)


def test_hold_keeps_an_element_active():
    class Held(Sequence):
        def evaluate(self, active):
            est = super().evaluate(active)
            return Estimate(est.value, est.error, hold=np.full(active.size, self.level < 5))
    prob = Held([0.0], [0.0])
    out = refine(prob, 1, 1e-3)
    assert out.converged[0] and prob.level == 5


def test_log_time_integral_matches_closed_form():
    # int_{t_min}^{T} lam(t) h(t) dt with h = exp(-a t) (order-free), lam = t: closed form
    a = np.array([0.5, 2.0, 8.0])
    t_min, T = 1e-3, 6.0

    def exact(ai):
        F = lambda t: -np.exp(-ai * t) * (ai * t + 1) / ai ** 2  # noqa: E731
        return F(T) - F(t_min)
    prob = LogTimeIntegral(lambda t, o: np.exp(-a * t), lambda t: t, t_min, T, 4, 8, 4096, 64, 1e-10)
    out = refine(prob, 3, 1e-10)
    assert np.all(out.converged)
    np.testing.assert_allclose(out.value, [exact(ai) for ai in a], rtol=0, atol=1e-10)
    # a too small node budget ends in QUADRATURE_LIMIT, naming it
    prob = LogTimeIntegral(lambda t, o: np.exp(-a * t), lambda t: t, t_min, T, 2, 8, 8, 64, 1e-12)
    out = refine(prob, 3, 1e-12)
    assert np.any(out.status == Status.QUADRATURE_LIMIT) and "max_n_time=8" in " ".join(out.messages)


def test_negative_kl_is_clipped_with_the_bar_covering_it():
    value = np.array([0.2, -0.01, -0.0367, -0.0367, -5.6e-17])
    error = np.array([0.01, 0.02, 0.0088, 0.0088, 0.0])
    status = np.array([0, 0, 0, int(Status.QUADRATURE_LIMIT), 0])
    v, e, s = clip_negative(value, error, status, 1e-3)
    np.testing.assert_array_equal(v, [0.2, 0.0, 0.0, 0.0, 0.0])
    assert np.all(v >= 0) and np.all(np.abs(v - value) <= e)          # the bar covers the computed value
    np.testing.assert_allclose(e, [0.01, 0.03, 0.0455, 0.0455, 5.6e-17])
    # within its bar (or rounding, within tol): still converged; beyond it: NEGATIVE;
    # an unconverged status is kept
    assert [Status(x) for x in s] == [Status.CONVERGED, Status.CONVERGED, Status.NEGATIVE,
                                      Status.QUADRATURE_LIMIT, Status.CONVERGED]


def test_status_is_the_public_enum():
    assert rf.Status is Status and rf.kl.Status is Status
    assert int(Status.CONVERGED) == 0 and Status.CONVERGED.converged and not Status.NEGATIVE.converged
