"""One refinement loop for every converged-or-raise computation.

A *refinable* estimate of ``n`` quantities (e.g. a KL at many training times)
is computed at a resolution that can be raised step by step (quadrature order,
grid level, ODE tolerance, time nodes). :func:`refine` drives it, elementwise,
in the manner of scipy's elementwise iterative methods:

    repeat: (value, error) <- problem.evaluate(active)
            element i stops with CONVERGED when every error_i <= tol_i,
            with NOT_FINITE when an error is NaN/inf, or with the status the
            problem reports (a failed solve);
            the rest stay active: problem.refine(active, error) raises the
            resolution, or answers the limit it hit (QUADRATURE_LIMIT, ...);
            the work budget (iterations, wall time) ends the loop with WORK_BUDGET.

``tol_i = tol * max(1, scale_i)`` when ``relative`` (scale: the largest
``|value|`` of element i), else ``tol``: an absolute tolerance for quantities
up to 1 and a relative one beyond.

Every element ends with an integer :class:`Status` and a message; converged
elements are dropped from later evaluations (their value is the one at which
they converged).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import IntEnum

import numpy as np

__all__ = ["Status", "Estimate", "Budget", "Refined", "refine", "progress_bar"]


class Status(IntEnum):
    """Why a solver stopped, per element (integer codes; compare members, not strings)."""

    CONVERGED = 0
    QUADRATURE_LIMIT = 1       # the quadrature (order, grid) could not be refined further
    TOLERANCE_LIMIT = 2        # the inner solver's tolerance could not be tightened further
    SOLVER_FAILED = 3          # an inner solver (ODE, Fokker-Planck) failed
    NOT_FINITE = 4             # the estimate or its error is NaN or inf
    WORK_BUDGET = 5            # the work budget (steps, iterations, wall time) ran out
    NOT_CONVERGED = 6          # stopped for another reason (still active at the end)
    NEGATIVE = 7               # a KL below 0 beyond its error bar (the error estimate is wrong)

    @property
    def converged(self) -> bool:
        return self is Status.CONVERGED


@dataclass(frozen=True)
class Estimate:
    """One evaluation for the active elements: ``value`` and ``error`` of shape
    ``(..., len(active))`` (leading axes: several quantities per element, all
    held to ``tol``); ``status`` (len(active),) int, nonzero where the problem
    itself failed (the element stops with it; ``detail`` gives the message);
    ``hold`` (len(active),) bool where the element must not be accepted yet
    even if its error is small (e.g. a pre-asymptotic resolution)."""

    value: np.ndarray
    error: np.ndarray
    status: np.ndarray | None = None
    detail: dict = field(default_factory=dict)
    hold: np.ndarray | None = None


@dataclass(frozen=True)
class Budget:
    """Work limits of one refinement: ``max_iter`` evaluations, ``max_seconds``
    of wall time (``None``: no limit). Inner solvers have their own (ODE steps,
    grid levels), reported through their status."""

    max_iter: int | None = None
    max_seconds: float | None = None

    def __post_init__(self):
        if self.max_iter is not None and (isinstance(self.max_iter, bool) or int(self.max_iter) < 1):
            raise ValueError(f"max_iter must be an integer >= 1 or None, got {self.max_iter!r}")
        if self.max_seconds is not None and not float(self.max_seconds) > 0:
            raise ValueError(f"max_seconds must be > 0 or None, got {self.max_seconds!r}")


@dataclass
class Refined:
    """Outcome of :func:`refine`: ``value``/``error`` ``(..., n)``, ``status`` (n,)
    int, ``messages`` (n,) str, ``iterations``, ``seconds``."""

    value: np.ndarray
    error: np.ndarray
    status: np.ndarray
    messages: list
    iterations: int = 0
    seconds: float = 0.0

    @property
    def converged(self) -> np.ndarray:
        return self.status == Status.CONVERGED


def _message(status, err, tol):
    if status == Status.CONVERGED:
        return "converged"
    if status == Status.NOT_FINITE:
        return "the estimate is not finite"
    return f"not converged: error {err:.2g} > tol {tol:g}"


def refine(problem, n: int, tol: float, *, relative: bool = False, budget: Budget | None = None,
           progress=None) -> Refined:
    """Refine ``problem`` until every element meets ``tol`` or stops (see the module docstring).

    ``problem.evaluate(active) -> Estimate``; ``problem.refine(active, error) ->
    None`` (resolution raised) or ``(Status, message)`` (a limit: every active
    element stops with it). ``progress``: an object with ``update(k)`` and
    ``set_postfix_str(s)`` (a tqdm bar), told how many elements finished.
    """
    budget = budget or Budget()
    t0 = time.perf_counter()
    active = np.arange(int(n))
    status = np.full(int(n), int(Status.NOT_CONVERGED), dtype=np.int64)
    messages = [""] * int(n)
    value = error = None
    tols = np.full(int(n), float(tol))
    it = 0
    while active.size:
        est = problem.evaluate(active)
        it += 1
        v_, e_ = np.asarray(est.value, dtype=np.float64), np.asarray(est.error, dtype=np.float64)
        if value is None:
            value = np.full(v_.shape[:-1] + (int(n),), np.nan)
            error = np.full(v_.shape[:-1] + (int(n),), np.inf)
        value[..., active], error[..., active] = v_, e_
        lead = tuple(range(v_.ndim - 1))
        failed = np.zeros(active.size, dtype=bool) if est.status is None else np.asarray(est.status) != 0
        for j in np.flatnonzero(failed):
            b = active[j]
            status[b] = int(est.status[j])
            messages[b] = est.detail.get(b, Status(int(est.status[j])).name.lower().replace("_", " "))
        finite = np.all(np.isfinite(e_), axis=lead) & np.all(np.isfinite(v_), axis=lead) & ~failed
        for b in active[~finite & ~failed]:
            status[b] = int(Status.NOT_FINITE)
            messages[b] = est.detail.get(b, _message(Status.NOT_FINITE, np.inf, tol))
        if relative:
            scale = np.max(np.abs(np.where(np.isfinite(v_), v_, 0.0)), axis=lead) if lead else np.abs(v_)
            tols[active] = float(tol) * np.maximum(1.0, scale)
        ok = finite & np.all(e_ <= tols[active], axis=lead)
        if est.hold is not None:
            ok &= ~np.asarray(est.hold, dtype=bool)
        status[active[ok]] = int(Status.CONVERGED)
        left = finite & ~ok
        if progress is not None:
            progress.update(int(active.size - left.sum()))
        active, e_left = active[left], e_[..., left]
        if not active.size:
            break
        if progress is not None:
            progress.set_postfix_str(f"error {float(np.max(e_left / tols[active])):.2g} x tol")
        elapsed = time.perf_counter() - t0
        out = None
        if budget.max_iter is not None and it >= budget.max_iter:
            out = (Status.WORK_BUDGET, f"work budget: {it} refinements (max_iter={budget.max_iter})")
        elif budget.max_seconds is not None and elapsed > budget.max_seconds:
            out = (Status.WORK_BUDGET, f"work budget: {elapsed:.3g} s of wall time "
                                       f"(max_seconds={budget.max_seconds:g})")
        else:
            out = problem.refine(active, e_left, tols[active])
        if out is not None:
            st, msg = out
            for j, b in enumerate(active):
                status[b] = int(st)
                err_b = float(np.max(e_left[..., j]))
                messages[b] = f"{msg}; error {err_b:.2g} > tol {tols[b]:g}"
            break
    for b in range(int(n)):
        if status[b] == Status.CONVERGED:
            messages[b] = "converged"
        elif not messages[b]:
            messages[b] = _message(Status(status[b]), float(np.max(error[..., b])), tols[b])
    return Refined(value, error, status, messages, it, time.perf_counter() - t0)


def progress_bar(total: int, desc: str, enabled=None):
    """A tqdm bar on stderr, shown only when asked (``enabled=True``) or, with
    ``None``, when stderr is a terminal; ``None`` when tqdm is not installed
    and the bar was not asked for."""
    import sys
    show = sys.stderr.isatty() if enabled is None else bool(enabled)
    if not show:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError as exc:          # pragma: no cover - tqdm is a dependency
        if enabled:
            raise ImportError("progress bars need tqdm: pip install tqdm") from exc
        return None
    return tqdm(total=total, desc=desc, leave=False, file=sys.stderr)
