"""The one runner: points -> cache -> executor, for sweeps and figures alike.

A *point* is a registered point function and its keyword parameters; its
cache key (:func:`rfdiff.run.cache.cache_key`) is the function's name, the
parameters and the code version. :func:`run_points` computes the points whose
key has no intact cache entry, in parallel (:mod:`rfdiff.run.executors`), and
writes each result the moment it arrives, from this process, atomically. So:

- killing a run (even with SIGKILL) loses at most the points in flight, and
  its local workers exit with it; rerunning computes exactly the points
  without a result;
- before computing a point a run *claims* it (:meth:`Cache.claim`: an atomic
  lock file with its pid and host). Two runs on one cache share the work:
  each point is computed once in total, and a run waits for the points the
  other one holds; a claim whose owner is gone is taken over;
- a point that raises is recorded with its traceback in
  ``<key>.failed.json`` and the others go on; ``retries`` retries it within
  the run, and a later run retries it again;
- where the cache itself cannot be written (checked before anything runs:
  one-line :class:`CacheNotWritable`), nothing is computed; if a write fails
  later, the result is kept in a temporary cache directory and the run says
  where (:attr:`RunReport.rescued`).

Sweeps (:func:`run_sweep`, :func:`sweep_status`, :func:`collect`) take their
points from a TOML grid (:mod:`rfdiff.run.config`); figures
(:func:`run_experiment`) from an :class:`~rfdiff.run.Experiment`'s tasks, then
reduce them. ``status`` and ``collect`` import no experiment code and delete
nothing (corrupt entries are reported; ``repair=True`` removes them).

``timeout_s`` interrupts a point with SIGALRM in local and serial runs (at the
next Python bytecode: a long numba or BLAS call finishes first). Under Dask
it is counted from submission by this process, and a timed-out task may
keep its worker busy until it returns.
"""
from __future__ import annotations

import contextlib
import signal
import sys
import tempfile
import threading
import time
import traceback
import warnings
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from .cache import Cache, CacheWarning, cache_key
from .config import Point, SweepConfig, load_config, resolve_function
from .executors import make_executor
from .experiment import reduce_results
from .result import is_dataset, normalize_result, stack_results, to_dataset

__all__ = ["PointJob", "PointFailure", "RunReport", "SweepReport", "SweepStatus",
           "SweepIncomplete", "PointsFailed", "PointsPending", "run_points", "run_sweep", "sweep_status",
           "collect", "point_key", "evaluate_point", "run_experiment", "run_experiments"]


class SweepIncomplete(RuntimeError):
    """Some points have no result yet (collect without ``allow_missing``)."""


class PointsFailed(RuntimeError):
    """Points of an experiment failed, so it cannot be reduced; the message names the first."""


class PointsPending(RuntimeError):
    """A run stopped at its ``max_seconds`` budget with points left; the ones computed are
    cached, so running it again resumes. The message says how many are left."""


class PointTimeout(BaseException):
    """Raised inside a point that ran past ``timeout_s``.

    A BaseException so that an experiment's own ``except Exception`` cannot
    swallow it.
    """


@dataclass(frozen=True)
class PointJob:
    """One point to compute: function name, parameters, cache key, a label for messages."""

    function: str
    params: dict
    key: str
    label: dict = field(default_factory=dict)


@dataclass(frozen=True)
class PointFailure:
    """A point whose last attempt raised: its label (grid coordinates) and the traceback."""

    coords: dict
    key: str
    error: str
    traceback: str
    attempts: int

    def describe(self) -> str:
        at = ", ".join(f"{k}={v!r}" for k, v in self.coords.items()) or "(single point)"
        return f"{at}: {self.error}"


@dataclass
class RunReport:
    """What :func:`run_points` did: points already cached, computed now (here or by another
    run on the same cache), failed, and where results went when the cache could not take them."""

    name: str
    total: int
    cached: int
    computed: int = 0
    by_other: int = 0
    failed: list[PointFailure] = field(default_factory=list)
    rescued: list[Path] = field(default_factory=list)
    elapsed_s: float = 0.0
    pending: int = 0                          # not started: the max_seconds budget ran out


    @property
    def ok(self) -> bool:
        return not self.failed and not self.rescued

    def summary(self) -> str:
        other = f", {self.by_other} computed by another run" if self.by_other else ""
        left = f", {self.pending} left for a later run (max_seconds)" if self.pending else ""
        return (f"sweep {self.name}: {self.total} points: {self.cached} already cached, "
                f"{self.computed} computed{other}, {len(self.failed)} failed{left} "
                f"({self.elapsed_s:.1f} s)")


SweepReport = RunReport


@dataclass
class SweepStatus:
    """Done / failed / pending points of a sweep for the current code version."""

    name: str
    total: int
    done: int
    failed: list[PointFailure]
    pending: list[dict]
    running: int = 0

    def summary(self) -> str:
        run = f", {self.running} being computed" if self.running else ""
        return (f"sweep {self.name}: {self.total} points: {self.done} done, "
                f"{len(self.failed)} failed, {len(self.pending)} pending{run}")


def _code_version(code_version: str | None) -> str:
    if code_version is not None:
        return code_version
    from ..provenance import code_version as cv
    return cv()


def _as_cache(cache, default_root=None, repair: bool = True) -> Cache:
    if isinstance(cache, Cache):
        return cache
    return Cache(cache if cache is not None else default_root, repair=repair)


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


def evaluate_point(function: str, params: dict, module_file=None, reserved=(),
                   timeout_s: float | None = None) -> dict:
    """Compute one point; never raises (what it returns is sent back to the runner).

    ``function`` must be a registered point function (:func:`resolve_function`).
    Returns ``{"ok": True, "result": normalized result (or a Dataset), "elapsed_s"}``
    or ``{"ok": False, "traceback": text, "elapsed_s"}``.
    """
    start = time.perf_counter()
    try:
        fn = resolve_function(function, module_file)
        with _alarm(timeout_s):
            raw = fn(**params)
        result = raw if is_dataset(raw) else normalize_result(raw, reserved)
        return {"ok": True, "result": result, "elapsed_s": time.perf_counter() - start}
    except (Exception, PointTimeout):
        return {"ok": False, "traceback": traceback.format_exc(),
                "elapsed_s": time.perf_counter() - start}


# --------------------------------------------------------------------------- parent side

def _last_line(tb: str) -> str:
    lines = [ln for ln in tb.strip().splitlines() if ln.strip()]
    return lines[-1].strip() if lines else "unknown error"


class _LogLines:
    """tqdm's output for a log (stderr not a terminal): each refresh as its own line."""

    def write(self, s: str) -> None:
        s = s.replace("\r", "").strip()
        if s:
            sys.stderr.write(s + "\n")
            sys.stderr.flush()

    def flush(self) -> None:
        sys.stderr.flush()


#: seconds between progress lines when stderr is not a terminal (a run in the background)
LOG_PROGRESS_EVERY_S = 60.0


def _progress(name: str, total: int, initial: int, enabled: bool):
    """A tqdm bar with ETA on a terminal; in a log, the same line every ``LOG_PROGRESS_EVERY_S``
    (the first after that long: a run that stops sooner writes none)."""
    from tqdm.auto import tqdm

    tty = sys.stderr.isatty()
    return tqdm(total=total, initial=initial, desc=name, unit="pt", file=sys.stderr if tty else _LogLines(),
                disable=not enabled, dynamic_ncols=tty, ncols=None if tty else 100,
                mininterval=0.1 if tty else LOG_PROGRESS_EVERY_S, delay=0 if tty else LOG_PROGRESS_EVERY_S,
                smoothing=0.1)


def run_points(jobs: list[PointJob], cache: Cache, *, name: str = "run", serial: bool = False,
               workers: int | None = None, scheduler: str | None = None,
               cluster: str | None = None, client=None, retries: int = 0,
               timeout_s: float | None = None, progress: bool = True, module_file=None,
               reserved=(), threads: int | None = None, meta: dict | None = None,
               poll_s: float = 0.2, max_seconds: float | None = None) -> RunReport:
    """Compute every job whose key has no intact entry in ``cache`` (see the module docstring).

    Engine: local processes (default, ``workers`` of them, each limited to
    ``threads`` threads), ``serial=True`` in this process, or Dask with
    ``scheduler=ADDRESS``, ``cluster="local"`` or ``client=``. Failures are
    reported in the returned :class:`RunReport`, not raised. ``max_seconds``: no
    point is started after that much wall time (the ones in flight finish and are
    cached); the points not started are counted in :attr:`RunReport.pending`, and
    a later run with the same cache computes them (a run in parts).
    """
    if max_seconds is not None and not (isinstance(max_seconds, (int, float)) and max_seconds > 0):
        raise ValueError(f"max_seconds must be a number > 0 (or None), got {max_seconds!r}")
    started, started_wall = time.perf_counter(), time.time()
    cache.check_writable()                    # one line, before anything is computed
    cache.clean()
    todo = [i for i, j in enumerate(jobs) if not cache.has(j.key)]
    report = RunReport(name=name, total=len(jobs), cached=len(jobs) - len(todo))
    if not todo:
        report.elapsed_s = time.perf_counter() - started
        return report
    bar = _progress(name, len(jobs), report.cached, progress)
    queue = deque((i, 1) for i in todo)
    waiting: list[int] = []                   # claimed by another live run
    held: set[int] = set()                    # claimed by this run
    inflight: dict = {}
    rescue: list = []
    last_poll = 0.0
    try:
        with make_executor(serial=serial, workers=workers, scheduler=scheduler, cluster=cluster,
                           client=client, threads=threads) as ex:
            alarm_s = timeout_s if ex.enforces_timeout else None
            watch_s = None if ex.enforces_timeout else timeout_s
            while queue or inflight or waiting:
                if (max_seconds is not None and (queue or waiting)
                        and time.perf_counter() - started >= max_seconds):
                    report.pending = len(queue) + len(waiting)
                    queue.clear()
                    waiting.clear()
                    continue
                slots = ex.slots
                while queue and len(inflight) < slots:
                    i, attempt = queue.popleft()
                    job = jobs[i]
                    if i not in held:
                        if cache.has(job.key):                # written by another run meanwhile
                            report.by_other += 1
                            bar.update(1)
                            continue
                        if not cache.claim(job.key):
                            waiting.append(i)
                            continue
                        held.add(i)
                        if cache.has(job.key):                # finished just before our claim
                            cache.release(job.key)
                            held.discard(i)
                            report.by_other += 1
                            bar.update(1)
                            continue
                    fut = ex.submit(evaluate_point, job.function, job.params, module_file,
                                    reserved, alarm_s)
                    inflight[fut] = (i, attempt, time.monotonic())
                if not inflight:
                    time.sleep(poll_s)
                    done = set()
                else:
                    done = ex.wait(inflight, timeout=min(poll_s, 0.25) if (watch_s or waiting)
                                   else 2.0)
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
                        _record(cache, jobs[i], attempt, out, report, bar, meta or {}, rescue)
                        cache.release(jobs[i].key)
                        held.discard(i)
                if waiting and time.monotonic() - last_poll >= poll_s:
                    last_poll = time.monotonic()
                    waiting = _poll_waiting(cache, jobs, waiting, queue, report, bar,
                                            started_wall)
    finally:
        for i in held:
            cache.release(jobs[i].key)
        bar.close()
    report.elapsed_s = time.perf_counter() - started
    return report


def _poll_waiting(cache, jobs, waiting, queue, report, bar, started_wall) -> list[int]:
    """Points held by another run: done by it, failed in it, or free again (ours to claim)."""
    still = []
    for i in waiting:
        key = jobs[i].key
        if cache.claimed_by_other(key):
            still.append(i)
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", CacheWarning)
            done = cache.has(key)
        if done:
            report.by_other += 1
            bar.update(1)
            continue
        rec = cache.failure(key)
        if rec is not None and float(rec.get("time_unix", 0)) >= started_wall:
            tb = str(rec.get("traceback", ""))
            report.failed.append(PointFailure(coords=jobs[i].label, key=key,
                                              error=str(rec.get("error") or _last_line(tb)),
                                              traceback=tb, attempts=int(rec.get("attempts", 1))))
            bar.update(1)
            continue
        queue.append((i, 1))                  # released without a result (or stale): ours now
    return still


def _record(cache, job, attempt, out, report, bar, meta, rescue):
    """Write a point's final outcome: its result to the cache, or its failure record."""
    info = {**meta, "experiment": job.function, "params": job.params, "coords": job.label,
            "elapsed_s": out.get("elapsed_s")}
    if out["ok"]:
        try:
            cache.put(job.key, out["result"], meta=info)
        except OSError as exc:
            if not rescue:
                rescue.append(Cache(tempfile.mkdtemp(prefix="rfdiff-rescued-")))
            rescue[0].put(job.key, out["result"], meta=info)
            where = rescue[0].root
            if where not in report.rescued:
                report.rescued.append(where)
            warnings.warn(f"could not write to the cache {cache.root} ({exc.strerror or exc}); "
                          f"the result is kept in {where} (copy its contents into the cache)",
                          CacheWarning, stacklevel=3)
        else:
            cache.clear_failure(job.key)
        report.computed += 1
        bar.update(1)
        return
    tb = out["traceback"]
    cache.record_failure(job.key, {**info, "error": _last_line(tb), "traceback": tb,
                                   "attempts": attempt, "time_unix": time.time(),
                                   "time": datetime.now(timezone.utc).isoformat(timespec="seconds")})
    report.failed.append(PointFailure(coords=job.label, key=job.key, error=_last_line(tb),
                                      traceback=tb, attempts=attempt))
    bar.update(1)
    bar.set_postfix(failed=len(report.failed))


# --------------------------------------------------------------------------- sweeps

def _config(config, import_function: bool = True) -> SweepConfig:
    if isinstance(config, SweepConfig):
        return config
    return load_config(config, import_function=import_function)


def point_key(config: SweepConfig, point: Point, code_version: str) -> str:
    """The cache key of one point: function, full parameters, code version."""
    return cache_key(config.function, point.params, code_version)


def _jobs(config: SweepConfig, cv: str) -> list[PointJob]:
    return [PointJob(config.function, p.params, point_key(config, p, cv), p.coords)
            for p in config.points()]


def run_sweep(config, *, cache=None, workers: int | None = None, serial: bool = False,
              scheduler: str | None = None, cluster: str | None = None, client=None,
              retries: int | None = None, progress: bool = True,
              code_version: str | None = None) -> RunReport:
    """Compute every point of ``config`` (a path or a :class:`SweepConfig`) not yet cached.

    ``cache`` (a :class:`Cache` or a directory) overrides ``[sweep].cache_dir``.
    The point function is checked (registered, parameters) before anything runs.
    """
    if isinstance(config, SweepConfig):
        from .config import check_function
        check_function(config)            # registered, and takes these parameters
    else:
        config = load_config(config)
    cache = _as_cache(cache, config.cache_dir)
    cv = _code_version(code_version)
    return run_points(_jobs(config, cv), cache, name=config.name, serial=serial,
                      workers=workers or config.workers, scheduler=scheduler, cluster=cluster,
                      client=client, retries=config.retries if retries is None else int(retries),
                      timeout_s=config.timeout_s, progress=progress,
                      module_file=config.module_file, reserved=config.dims,
                      meta={"sweep": config.name, "code_version": cv})


def sweep_status(config, *, cache=None, code_version: str | None = None,
                 repair: bool = False) -> SweepStatus:
    """Which points are done, failed (with their last error), being computed, or pending.

    Imports no experiment code; deletes nothing unless ``repair`` (then corrupt
    entries and temporary files of dead writers are removed).
    """
    config = _config(config, import_function=False)
    cache = _as_cache(cache, config.cache_dir, repair=repair)
    if repair:
        cache.repair = True
        cache.clean()
    cv = _code_version(code_version)
    done, failed, pending, running = 0, [], [], 0
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
            running += cache.claimed_by_other(key)
    return SweepStatus(name=config.name, total=done + len(failed) + len(pending), done=done,
                       failed=failed, pending=pending, running=running)


def collect(config, *, cache=None, allow_missing: bool = False,
            code_version: str | None = None):
    """Stack all results of a sweep into one labelled ``xarray.Dataset``.

    Dimensions are the grid parameters (coordinates: their values) followed by
    each output's own; attributes hold the sweep name, function, fixed
    parameters, the config text and the provenance (one JSON string, see
    :func:`rfdiff.io.attach_provenance`). Missing points raise
    :class:`SweepIncomplete` unless ``allow_missing`` (then they are NaN).
    Imports no experiment code and deletes nothing.
    """
    import json

    from ..io import attach_provenance, to_jsonable
    from ..provenance import provenance

    config = _config(config, import_function=False)
    cache = _as_cache(cache, config.cache_dir, repair=False)
    cv = _code_version(code_version)
    results, missing = {}, 0
    for p in config.points():
        value = cache.get(point_key(config, p, cv), None)
        if isinstance(value, dict) and {"outputs", "dims", "coords"} <= set(value):
            results[p.index] = value
        else:
            missing += 1
    if missing and not allow_missing:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", CacheWarning)   # already reported once above
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


# --------------------------------------------------------------------------- experiments

def run_experiments(runs: list, *, cache=None, use_cache: bool = True, progress: bool = True,
                    code_version: str | None = None, max_seconds: float | None = None, **engine) -> list:
    """Several experiments through one executor: ``runs`` is a list of
    ``(experiment, params, preset)``; returns ``[(dataset, report), ...]``.

    Every task of every experiment is a cached point (shared between
    experiments and with sweeps naming the same function and parameters);
    each experiment is reduced once all of its points have a result, and gets
    its provenance attached. ``use_cache=False`` computes everything in a
    temporary cache that is removed afterwards. ``engine``: ``serial``,
    ``workers``, ``scheduler``, ``cluster``, ``client``, ``threads`` (see
    :func:`run_points`). A failed point raises :class:`PointsFailed`; points left
    when the ``max_seconds`` budget runs out raise :class:`PointsPending` (those
    computed are cached: the same call again resumes).
    """
    import shutil

    cv = _code_version(code_version)
    if max_seconds is not None and not use_cache:
        raise ValueError("max_seconds needs the cache (a run in parts resumes from it): "
                         "it cannot be combined with use_cache=False (--no-cache)")
    tmp = None
    if not use_cache:
        tmp = tempfile.mkdtemp(prefix="rfdiff-nocache-")
        cache = Cache(tmp)
    else:
        cache = _as_cache(cache)
    try:
        per_run, jobs, index = [], [], {}
        for experiment, params, preset in runs:
            mine = []
            for a, t in enumerate(experiment.tasks(params)):
                key = cache_key(t.spec, t.params, cv)
                if key not in index:
                    index[key] = len(jobs)
                    jobs.append(PointJob(t.spec, t.params, key,
                                         {"experiment": experiment.name, "task": a}))
                mine.append(key)
            per_run.append(mine)
        name = runs[0][0].name if len(runs) == 1 else "figures"
        report = run_points(jobs, cache, name=name, progress=progress,
                            meta={"code_version": cv}, max_seconds=max_seconds, **engine)
        if report.pending:
            raise PointsPending(f"{name}: stopped at max_seconds = {max_seconds:g} s with {report.pending} of "
                                f"{report.total} points not started ({report.total - report.pending} cached); "
                                f"run the same command again to resume")
        if report.failed:
            raise PointsFailed(f"{len(report.failed)} point(s) failed; first: "
                               f"{report.failed[0].describe()} (traceback in "
                               f"{cache.failure_path(report.failed[0].key)})")
        stores = [cache] + [Cache(p) for p in report.rescued]
        out = []
        for (experiment, params, preset), keys in zip(runs, per_run):
            results = []
            for key in keys:
                value = next((v for v in (c.get(key, None) for c in stores) if v is not None), None)
                if value is None:
                    raise PointsFailed(f"{experiment.name}: a point has no result (key {key[:12]})")
                results.append(value if is_dataset(value) else to_dataset(value))
            out.append((reduce_results(experiment, params, results, preset), report))
        return out
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def run_experiment(experiment, params: dict, preset: str | None = None, **kwargs):
    """One experiment through the runner: ``(dataset, report)`` (see :func:`run_experiments`)."""
    return run_experiments([(experiment, params, preset)], **kwargs)[0]
