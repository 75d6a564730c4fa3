"""The figure registry: name -> experiment module, run through the one runner of rfdiff.run.

Each figure is one module of :mod:`analysis.experiments` that defines
``EXPERIMENT`` (:class:`rfdiff.run.Experiment`: presets, tasks, reduce, plot,
summary). :func:`make` runs one figure as a sweep would: every task of the
experiment is a point, cached by content (function, parameters, code
version; a rerun with the same parameters recomputes nothing, a killed run
resumes), computed in this process, in local worker processes (``jobs``) or
on Dask (``cluster="local"``, ``scheduler=ADDRESS``), then reduced, given
its provenance (parameters, seeds, versions, git revision), plotted and saved.
"""
from __future__ import annotations

import importlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from rfdiff.run import Experiment

__all__ = ["FIGURES", "PRESET_NAMES", "Figure", "FigureRun", "get", "compute", "make", "make_all",
           "threads", "write_snippet"]

PRESET_NAMES = ("tiny", "quick", "full")

#: numba/torch threads used while computing a figure (see :func:`threads`)
_THREADS = [1]


def threads(n: int | None = 1):
    """Context: ``n`` numba, torch and OpenBLAS threads (:mod:`analysis.experiments._threads`)."""
    from analysis.experiments._threads import threads as _threads
    return _threads(n)


def set_threads(n: int | None) -> None:
    """Threads for figure computations (``None``: leave numba's and torch's defaults)."""
    _THREADS[0] = n


#: figure name -> module under analysis.experiments (in the order ``figures`` makes them)
FIGURES = {
    "kl-dynamics": "kl_dynamics",
    "scaling": "scaling",
    "modes-shift": "modes_shift",
    "width": "width",
    "memorization-time": "memorization_time",
    "large-lr": "large_lr",
    "resnet-ode": "resnet_ode",
    "pre-memorization": "pre_memorization",
    "quantile-vs-l2": "quantile_vs_l2",
    "reproducibility": "reproducibility",
    "real-digits": "real_digits",
}


@dataclass(frozen=True)
class Figure:
    name: str
    module: object

    @property
    def experiment(self) -> Experiment:
        return self.module.EXPERIMENT

    @property
    def title(self) -> str:
        return self.experiment.title

    @property
    def presets(self) -> dict:
        return self.experiment.presets

    def params(self, preset: str = "quick", overrides: dict | None = None) -> dict:
        return self.experiment.params(preset, overrides)


@dataclass
class FigureRun:
    """What :func:`make` did: the dataset, written files, timings, cache hit."""

    name: str
    preset: str
    dataset: object
    paths: list
    seconds_compute: float
    seconds_total: float
    cache_hit: bool
    summary: dict = field(default_factory=dict)


def get(name: str) -> Figure:
    """The registered figure ``name`` (see :data:`FIGURES`)."""
    key = name.replace("_", "-")
    if key not in FIGURES:
        raise ValueError(f"unknown figure {name!r}; figures: {', '.join(FIGURES)}")
    return Figure(key, importlib.import_module(f"analysis.experiments.{FIGURES[key]}"))


# --------------------------------------------------------------------------- running

def _json(obj) -> str:
    from rfdiff.io import canonical_json
    return canonical_json(obj)


def _engine(jobs: int = 1, cluster: str | None = None, scheduler: str | None = None) -> dict:
    """Executor arguments of :func:`rfdiff.run.run_experiments`: ``jobs`` local processes
    (1: in this process), or Dask (``cluster="local"`` with ``jobs`` workers, ``scheduler``)."""
    if cluster is not None or scheduler is not None:
        return {"cluster": cluster, "scheduler": scheduler, "workers": jobs}
    if jobs <= 1:
        return {"serial": True}
    return {"workers": jobs, "threads": _THREADS[0] or None}


def _finish(fig: Figure, preset: str, params: dict, ds, report, seconds: float):
    ds.attrs["seconds_compute"] = seconds
    ds.attrs["threads"] = "library defaults" if _THREADS[0] is None else int(_THREADS[0])
    ds.attrs["preset_params_json"] = _json(params)
    ds.attrs["points_total"] = report.total
    ds.attrs["points_cached"] = report.cached
    return ds


def compute(name: str, preset: str = "quick", *, cache=None, overrides: dict | None = None,
            use_cache: bool = True, jobs: int = 1, cluster: str | None = None,
            scheduler: str | None = None, progress: bool = False, max_seconds: float | None = None):
    """``(dataset, seconds, cache_hit)`` of figure ``name`` at ``preset`` (through the runner)."""
    from rfdiff.run import run_experiment

    fig = get(name)
    params = fig.params(preset, overrides)
    t0 = time.perf_counter()
    with threads(_THREADS[0]):
        ds, report = run_experiment(fig.experiment, params, preset, cache=cache,
                                    use_cache=use_cache, progress=progress,
                                    max_seconds=max_seconds, **_engine(jobs, cluster, scheduler))
    secs = time.perf_counter() - t0
    hit = use_cache and report.cached == report.total
    return _finish(fig, preset, params, ds, report, secs), secs, hit


def _stem(fig: Figure, preset: str, stem: str | None) -> str:
    return stem or fig.name.replace("-", "_") + ("" if preset == "quick" else f"_{preset}")


def _check_out(out) -> None:
    from rfdiff.run.cache import check_writable_dir
    check_writable_dir(out, "--out")


def _draw(fig: Figure, preset: str, ds, out, stem, secs, hit, t0) -> FigureRun:
    try:
        paths = fig.experiment.plot(ds, Path(out) / _stem(fig, preset, stem))
    except OSError as exc:
        raise ValueError(f"--out {out}: cannot write the figure ({exc.strerror or exc}); its "
                         "points are in the cache: rerun with a writable --out") from None
    summary = fig.experiment.summary(ds) if fig.experiment.summary else {}
    return FigureRun(fig.name, preset, ds, [Path(p) for p in paths], secs,
                     time.perf_counter() - t0, hit, summary)


def make(name: str, preset: str = "quick", out="figures", *, cache=None, overrides: dict | None = None,
         use_cache: bool = True, stem: str | None = None, jobs: int = 1, cluster: str | None = None,
         scheduler: str | None = None, progress: bool = False, max_seconds: float | None = None) -> FigureRun:
    """Compute (points from the cache where they are), plot and save figure ``name``.

    Files: ``<out>/<stem>.png``, ``.pdf`` and ``.nc`` (``stem`` defaults to the
    figure name with ``_`` for ``-``, plus ``_<preset>`` unless quick).
    ``--out`` is checked for writability before anything is computed. ``max_seconds``:
    a run in parts (no point started after that; :class:`rfdiff.run.PointsPending` if
    points are left, which the same call resumes).
    """
    t0 = time.perf_counter()
    fig = get(name)
    _check_out(out)
    ds, secs, hit = compute(fig.name, preset, cache=cache, overrides=overrides, use_cache=use_cache,
                            jobs=jobs, cluster=cluster, scheduler=scheduler, progress=progress,
                            max_seconds=max_seconds)
    return _draw(fig, preset, ds, out, stem, secs, hit, t0)


def make_all(preset: str = "quick", out="figures", *, cache=None, names=None, jobs: int = 1,
             on_done=None, use_cache: bool = True, cluster: str | None = None,
             scheduler: str | None = None, progress: bool = False,
             max_seconds: float | None = None) -> list[FigureRun]:
    """:func:`make` for every registered figure (or ``names``): the points of all of them
    go through one executor (``jobs`` processes with one numba/torch thread each, or Dask),
    then each figure is reduced and drawn."""
    from rfdiff.run import run_experiments

    t0 = time.perf_counter()
    figs = [get(n) for n in (names or FIGURES)]
    _check_out(out)
    runs = [(f.experiment, f.params(preset), preset) for f in figs]
    with threads(_THREADS[0]):
        results = run_experiments(runs, cache=cache, use_cache=use_cache, progress=progress,
                                  max_seconds=max_seconds, **_engine(jobs, cluster, scheduler))
    secs = time.perf_counter() - t0
    done = []
    for f, (exp, params, _), (ds, report) in zip(figs, runs, results):
        hit = use_cache and report.cached == report.total
        ds = _finish(f, preset, params, ds, report, secs)
        done.append(_draw(f, preset, ds, out, None, secs, hit, t0))
        if on_done:
            on_done(done[-1])
    return done


def write_snippet(preset, out, path, *, cache=None, wall_seconds=None, runs=None, image_dir=None) -> Path:
    """The README snippet (:func:`analysis.experiments._report.write_snippet`) from the
    cached datasets of ``scaling``, ``memorization-time``, ``kl-dynamics`` and ``modes-shift``."""
    from analysis.experiments._report import write_snippet as _write

    datasets = {n: compute(n, preset, cache=cache)[0]
                for n in ("scaling", "memorization-time", "kl-dynamics", "modes-shift")}
    docs = {n: (get(n).module.__doc__ or "").strip().splitlines()[0] for n in FIGURES}
    return _write(preset, out, path, datasets=datasets, docs=docs, wall_seconds=wall_seconds,
                  image_dir=image_dir)


# --------------------------------------------------------------------------- command line

def _size_arguments(p, jobs_default: int) -> None:
    from rfdiff.cli.usage import int_at_least, positive_float

    g = p.add_mutually_exclusive_group()
    for name, help_ in (("tiny", "seconds (tests)"), ("quick", "the README's size (default)"),
                        ("full", "paper size")):
        g.add_argument(f"--{name}", dest="preset", action="store_const", const=name, help=help_)
    p.set_defaults(preset="quick")
    p.add_argument("--out", default="figures", help="output directory (default: figures/)")
    p.add_argument("--cache-dir", default=None,
                   help="result cache (default: $RFDIFF_CACHE_DIR or ./.rfdiff_cache)")
    p.add_argument("--no-cache", action="store_true", help="recompute and do not store")
    p.add_argument("--threads", type=int_at_least(0), default=1,
                   help="numba/torch threads while computing (default 1; 0 = library defaults)")
    p.add_argument("--jobs", type=int_at_least(1), default=jobs_default, metavar="N",
                   help=f"points computed in parallel: local processes, or Dask workers with "
                        f"--cluster local (default: {jobs_default}; 1 = in this process)")
    engine = p.add_mutually_exclusive_group()
    engine.add_argument("--cluster", choices=["local"],
                        help="spread the points over a Dask LocalCluster of --jobs workers")
    engine.add_argument("--scheduler", metavar="ADDRESS",
                        help="spread the points over a running dask.distributed scheduler")
    p.add_argument("--max-seconds", type=positive_float, default=None, metavar="S",
                   help="a run in parts: start no point after S seconds; the points computed stay "
                        "cached and the same command resumes (exit status 3 while points are left)")


def add_figure_arguments(p) -> None:
    p.add_argument("name", help="figure name: " + ", ".join(FIGURES))
    _size_arguments(p, 1)


def add_figures_arguments(p) -> None:
    _size_arguments(p, min(2, os.cpu_count() or 1))
    p.add_argument("--only", nargs="+", default=None, metavar="NAME", help="a subset of the figures")
    p.add_argument("--snippet", default=None, metavar="PATH",
                   help="also write a markdown snippet (figure list and exponent table)")


def _print_run(run) -> None:
    src = "cache" if run.cache_hit else "computed"
    print(f"{run.name} [{run.preset}]: {run.seconds_total:.1f} s ({src} {run.seconds_compute:.1f} s)")
    for k, v in run.summary.items():
        print(f"  {k}: {_fmt(v)}")
    for pth in run.paths:
        print(f"  -> {pth}")


def _fmt(v) -> str:
    import numpy as np

    if isinstance(v, (float, np.floating)):
        return f"{float(v):.4g}"
    if isinstance(v, (tuple, list)):
        return "(" + ", ".join(_fmt(x) for x in v) + ")"
    return str(v)


def _cache(args):
    from rfdiff.run import Cache

    return Cache(args.cache_dir) if args.cache_dir else None


def _guard(fn):
    """Engine errors as one-line usage errors; failed points: their first error, exit 1."""
    import sys

    from rfdiff.cli.usage import UsageError
    from rfdiff.run import DaskUnavailable, PointsFailed, PointsPending, SchedulerUnavailable

    try:
        return fn()
    except (DaskUnavailable, SchedulerUnavailable) as exc:
        raise UsageError(str(exc)) from None
    except PointsFailed as exc:
        print(f"rfdiff figure: {exc}", file=sys.stderr)
        return 1
    except PointsPending as exc:
        print(f"rfdiff figure: {exc}", file=sys.stderr)
        return 3


def run_figure(args) -> int:
    set_threads(None if args.threads == 0 else args.threads)

    def go():
        run = make(args.name, args.preset, args.out, cache=_cache(args), use_cache=not args.no_cache,
                   jobs=args.jobs, cluster=args.cluster, scheduler=args.scheduler, progress=True,
                   max_seconds=args.max_seconds)
        _print_run(run)
        return 0
    return _guard(go)


def run_figures(args) -> int:
    set_threads(None if args.threads == 0 else args.threads)
    t0 = time.perf_counter()

    def go():
        runs = make_all(args.preset, args.out, cache=_cache(args), names=args.only, jobs=args.jobs,
                        on_done=_print_run, use_cache=not args.no_cache, cluster=args.cluster,
                        scheduler=args.scheduler, progress=True, max_seconds=args.max_seconds)
        wall = time.perf_counter() - t0
        print(f"all figures [{args.preset}]: {wall:.1f} s wall")
        if args.snippet:
            path = write_snippet(args.preset, args.out, args.snippet, cache=_cache(args),
                                 wall_seconds=wall, runs=runs)
            print(f"  -> {path}")
        return 0
    return _guard(go)
