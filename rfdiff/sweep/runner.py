"""Run, inspect and collect a sweep: cached, resumable, parallel.

Every grid point has a cache key (:func:`point_key`: the function, the
point's full parameters and the code version). :func:`run_sweep` computes
only the points whose key has no intact cache entry, in parallel (see
:mod:`rfdiff.sweep.executors`), and writes each result the moment it arrives,
from this process, atomically (:class:`rfdiff.cache.Cache`). So:

- killing a sweep (even with SIGKILL) loses at most the points in flight;
  rerunning computes exactly the points without a result;
- a point that raises is recorded with its traceback in
  ``<key>.failed.json`` and the others go on; ``[run].retries`` retries it
  within the run, and a later run retries it again;
- :func:`sweep_status` counts done / failed / pending, :func:`collect` stacks
  the results into one labelled ``xarray.Dataset`` with provenance.

``timeout_s`` interrupts a point with SIGALRM in local and serial runs (at the
next Python bytecode: a long numba or BLAS call finishes first). Under Dask
it is counted from submission by this process, and a timed-out task may
keep its worker busy until it returns.
"""
from __future__ import annotations

import contextlib
import signal
import sys
import threading
import time
import traceback
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from ..cache import Cache, cache_key
from .config import Point, SweepConfig, load_config, resolve_function
from .executors import make_executor
from .result import normalize_result, stack_results

__all__ = ["PointFailure", "SweepReport", "SweepStatus", "SweepIncomplete", "run_sweep",
           "sweep_status", "collect", "point_key"]


class SweepIncomplete(RuntimeError):
    """Some points have no result yet (collect without ``allow_missing``)."""


class PointTimeout(BaseException):
    """Raised inside a point that ran past ``timeout_s``.

    A BaseException so that an experiment's own ``except Exception`` cannot
    swallow it.
    """


@dataclass(frozen=True)
class PointFailure:
    """A point whose last attempt raised: its grid coordinates and the traceback."""

    coords: dict
    key: str
    error: str
    traceback: str
    attempts: int

    def describe(self) -> str:
        at = ", ".join(f"{k}={v!r}" for k, v in self.coords.items()) or "(single point)"
        return f"{at}: {self.error}"


@dataclass
class SweepReport:
    """What :func:`run_sweep` did: points already cached, computed now, failed."""

    name: str
    total: int
    cached: int
    computed: int = 0
    failed: list[PointFailure] = field(default_factory=list)
    elapsed_s: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failed

    def summary(self) -> str:
        return (f"sweep {self.name}: {self.total} points: {self.cached} already cached, "
                f"{self.computed} computed, {len(self.failed)} failed "
                f"({self.elapsed_s:.1f} s)")


@dataclass
class SweepStatus:
    """Done / failed / pending points of a sweep for the current code version."""

    name: str
    total: int
    done: int
    failed: list[PointFailure]
    pending: list[dict]

    def summary(self) -> str:
        return (f"sweep {self.name}: {self.total} points: {self.done} done, "
                f"{len(self.failed)} failed, {len(self.pending)} pending")


def _config(config) -> SweepConfig:
    return config if isinstance(config, SweepConfig) else load_config(config)


def _cache(config: SweepConfig, cache) -> Cache:
    if isinstance(cache, Cache):
        return cache
    if cache is not None:
        return Cache(cache)
    return Cache(config.cache_dir)  # None -> $RFDIFF_CACHE_DIR or ./.rfdiff_cache


def _code_version(code_version: str | None) -> str:
    if code_version is not None:
        return code_version
    from ..provenance import code_version as cv
    return cv()


def point_key(config: SweepConfig, point: Point, code_version: str) -> str:
    """The cache key of one point: function, full parameters, code version."""
    return cache_key(config.function, point.params, code_version)


# --------------------------------------------------------------------------- worker side

@contextlib.contextmanager
def _alarm(timeout_s: float | None):
    usable = (timeout_s and hasattr(signal, "setitimer")
              and threading.current_thread() is threading.main_thread())
    if not usable:
        yield
        return

    def on_alarm(signum, frame):
        raise PointTimeout(f"point ran past timeout_s = {timeout_s:g} s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, timeout_s)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def evaluate_point(function: str, params: dict, search_path=(), reserved=(),
                   timeout_s: float | None = None) -> dict:
    """Compute one point; never raises (what it returns is sent back to the runner).

    Returns ``{"ok": True, "result": normalized result, "elapsed_s"}`` or
    ``{"ok": False, "traceback": text, "elapsed_s"}``.
    """
    start = time.perf_counter()
    try:
        fn = resolve_function(function, search_path)
        with _alarm(timeout_s):
            raw = fn(**params)
        result = normalize_result(raw, reserved)
        return {"ok": True, "result": result, "elapsed_s": time.perf_counter() - start}
    except (Exception, PointTimeout):
        return {"ok": False, "traceback": traceback.format_exc(),
                "elapsed_s": time.perf_counter() - start}


# --------------------------------------------------------------------------- parent side

def _last_line(tb: str) -> str:
    lines = [ln for ln in tb.strip().splitlines() if ln.strip()]
    return lines[-1].strip() if lines else "unknown error"


def _progress(config: SweepConfig, total: int, initial: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=config.name, unit="pt", file=sys.stderr,
                disable=not enabled or not sys.stderr.isatty(), dynamic_ncols=True,
                smoothing=0.1)


def run_sweep(config, *, cache=None, workers: int | None = None, serial: bool = False,
              scheduler: str | None = None, cluster: str | None = None, client=None,
              retries: int | None = None, progress: bool = True,
              code_version: str | None = None) -> SweepReport:
    """Compute every point of ``config`` (a path or a :class:`SweepConfig`) not yet cached.

    Engine: local processes (default; ``workers`` or ``[run].workers`` of
    them), ``serial=True`` in this process, or Dask with ``scheduler=ADDRESS``,
    ``cluster="local"`` or ``client=``. ``cache`` (a :class:`Cache` or a
    directory) overrides ``[sweep].cache_dir``. Failures are reported in the
    returned :class:`SweepReport`, not raised.
    """
    config = _config(config)
    cache = _cache(config, cache)
    cv = _code_version(code_version)
    retries = config.retries if retries is None else int(retries)
    workers = workers or config.workers
    started = time.perf_counter()

    points = config.points()
    keys = [point_key(config, p, cv) for p in points]
    cache.clean()
    todo = [i for i, k in enumerate(keys) if not cache.has(k)]
    report = SweepReport(name=config.name, total=len(points), cached=len(points) - len(todo))
    if not todo:
        report.elapsed_s = time.perf_counter() - started
        return report

    bar = _progress(config, len(points), report.cached, progress)
    queue = deque((i, 1) for i in todo)
    inflight: dict = {}
    try:
        with make_executor(serial=serial, workers=workers, scheduler=scheduler,
                           cluster=cluster, client=client) as ex:
            alarm_s = config.timeout_s if ex.enforces_timeout else None
            watch_s = None if ex.enforces_timeout else config.timeout_s
            while queue or inflight:
                slots = ex.slots
                while queue and len(inflight) < slots:
                    i, attempt = queue.popleft()
                    fut = ex.submit(evaluate_point, config.function, points[i].params,
                                    config.search_path, config.dims, alarm_s)
                    inflight[fut] = (i, attempt, time.monotonic())
                done = ex.wait(inflight, timeout=0.25 if watch_s else 2.0)
                outcomes = []
                for fut in done:
                    i, attempt, _ = inflight.pop(fut)
                    try:
                        out = ex.outcome(fut)
                    except Exception:  # the engine failed, e.g. a worker process died
                        out = {"ok": False, "traceback": traceback.format_exc(), "elapsed_s": None}
                    outcomes.append((i, attempt, out))
                if watch_s:
                    now = time.monotonic()
                    for fut, (i, attempt, t0) in list(inflight.items()):
                        if now - t0 > watch_s:
                            del inflight[fut]
                            ex.cancel(fut)
                            tb = f"PointTimeout: point ran past timeout_s = {watch_s:g} s\n"
                            outcomes.append((i, attempt, {"ok": False, "traceback": tb,
                                                          "elapsed_s": now - t0}))
                for i, attempt, out in outcomes:
                    if not out["ok"] and attempt <= retries:
                        queue.append((i, attempt + 1))
                    else:
                        _record(config, cache, cv, points[i], keys[i], attempt, out, report, bar)
    finally:
        bar.close()
    report.elapsed_s = time.perf_counter() - started
    return report


def _record(config, cache, cv, point, key, attempt, out, report, bar):
    """Write a point's final outcome: its result to the cache, or its failure record."""
    meta = {"sweep": config.name, "experiment": config.function, "params": point.params,
            "coords": point.coords, "code_version": cv, "elapsed_s": out.get("elapsed_s")}
    if out["ok"]:
        cache.put(key, out["result"], meta=meta)
        cache.clear_failure(key)
        report.computed += 1
        bar.update(1)
        return
    tb = out["traceback"]
    cache.record_failure(key, {**meta, "error": _last_line(tb), "traceback": tb,
                               "attempts": attempt,
                               "time": datetime.now(timezone.utc).isoformat(timespec="seconds")})
    report.failed.append(PointFailure(coords=point.coords, key=key, error=_last_line(tb),
                                      traceback=tb, attempts=attempt))
    bar.update(1)
    bar.set_postfix(failed=len(report.failed))


# --------------------------------------------------------------------------- status, collect

def sweep_status(config, *, cache=None, code_version: str | None = None) -> SweepStatus:
    """Which points are done, failed (with their last error) or pending."""
    config = _config(config)
    cache = _cache(config, cache)
    cv = _code_version(code_version)
    done, failed, pending = 0, [], []
    for p in config.points():
        key = point_key(config, p, cv)
        if cache.has(key):
            done += 1
            continue
        rec = cache.failure(key)
        if rec is not None:
            tb = str(rec.get("traceback", ""))
            failed.append(PointFailure(coords=p.coords, key=key,
                                       error=str(rec.get("error") or _last_line(tb)),
                                       traceback=tb, attempts=int(rec.get("attempts", 1))))
        else:
            pending.append(p.coords)
    return SweepStatus(name=config.name, total=done + len(failed) + len(pending), done=done,
                       failed=failed, pending=pending)


def collect(config, *, cache=None, allow_missing: bool = False,
            code_version: str | None = None):
    """Stack all results of a sweep into one labelled ``xarray.Dataset``.

    Dimensions are the grid parameters (coordinates: their values) followed by
    each output's own; attributes hold the sweep name, function, fixed
    parameters, the config text and the provenance (one JSON string, see
    :func:`rfdiff.io.attach_provenance`). Missing points raise
    :class:`SweepIncomplete` unless ``allow_missing`` (then they are NaN).
    """
    import json

    from ..io import attach_provenance, to_jsonable
    from ..provenance import provenance

    config = _config(config)
    cache = _cache(config, cache)
    cv = _code_version(code_version)
    results, missing = {}, 0
    for p in config.points():
        value = cache.get(point_key(config, p, cv), None)
        if isinstance(value, dict) and {"outputs", "dims", "coords"} <= set(value):
            results[p.index] = value
        else:
            missing += 1
    if missing and not allow_missing:
        st = sweep_status(config, cache=cache, code_version=cv)
        raise SweepIncomplete(f"{missing} of {st.total} points of sweep {config.name} have no "
                              f"result ({len(st.failed)} failed, {len(st.pending)} pending); "
                              f"run 'rfdiff sweep run {config.path}' or allow missing points")
    ds = stack_results(config.grid, results)
    ds.attrs.update({
        "sweep": config.name,
        "function": config.function,
        "fixed": json.dumps(to_jsonable(config.fixed, strict=False), sort_keys=True),
        "config_toml": config.text,
        "points_total": len(results) + missing,
        "points_missing": missing,
    })
    seeds = {k: list(v) for k, v in config.grid.items() if "seed" in k}
    seeds.update({k: v for k, v in config.fixed.items() if "seed" in k})
    prov = provenance({"sweep": config.name, "function": config.function,
                       "grid": {k: list(v) for k, v in config.grid.items()},
                       "fixed": config.fixed}, seeds=seeds or None)
    prov["code_version"] = cv
    return attach_provenance(ds, prov)


def default_output(config: SweepConfig) -> Path:
    """Where ``rfdiff sweep collect`` writes by default: ``<name>.nc`` in the current directory."""
    return Path(f"{config.name}.nc")
