"""The figure registry: name -> experiment module (compute, plot, presets).

Each figure is one module of :mod:`analysis.experiments` with

- ``PRESETS``: ``{"tiny": ..., "quick": ..., "full": ...}`` parameter dicts
  (tiny: tests, seconds; quick: the README's figures, a few minutes for all
  of them on 2 CPU cores; full: paper size);
- ``compute(params) -> xarray.Dataset``: pure, deterministic given params;
- ``plot(ds, stem)``: writes ``<stem>.png``, ``<stem>.pdf``, ``<stem>.nc``;
- ``summary(ds) -> dict``: the headline numbers (printed by the CLI).

:func:`make` runs one figure: the dataset comes from the content-addressed
cache (:func:`rfdiff.cache.cached`, keyed by figure name, parameters and code
version; a rerun with the same parameters recomputes nothing), gets its
provenance (parameters, seeds, versions, git revision) attached, and is
plotted and saved.
"""
from __future__ import annotations

import importlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["FIGURES", "PRESET_NAMES", "Figure", "FigureRun", "get", "compute", "make", "make_all",
           "threads", "write_snippet"]

PRESET_NAMES = ("tiny", "quick", "full")

#: numba/torch threads used while computing a figure (see :func:`threads`)
_THREADS = [1]


def threads(n: int | None = 1):
    """Context: ``n`` numba, torch and OpenBLAS threads (:mod:`analysis.experiments._threads`)."""
    from analysis.experiments._threads import threads as _threads
    return _threads(n)


def write_snippet(*args, **kwargs):
    """The README snippet (:func:`analysis.experiments._report.write_snippet`)."""
    from analysis.experiments._report import write_snippet as _write
    return _write(*args, **kwargs)


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
}


@dataclass(frozen=True)
class Figure:
    name: str
    module: object

    @property
    def title(self) -> str:
        return getattr(self.module, "TITLE", self.name)

    @property
    def presets(self) -> dict:
        return self.module.PRESETS

    def params(self, preset: str = "quick", overrides: dict | None = None) -> dict:
        if preset not in self.presets:
            raise ValueError(f"preset must be one of {sorted(self.presets)}, got {preset!r}")
        p = dict(self.presets[preset])
        p.update(overrides or {})
        return p


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


def _compute_entry(figure: str, params: dict):
    """Cache entry point: compute the dataset and attach its provenance."""
    from rfdiff.io import attach_provenance
    from rfdiff.provenance import provenance

    fig = get(figure)
    t0, c0 = time.perf_counter(), time.process_time()
    with threads(_THREADS[0]):
        if hasattr(fig.module, "EXPERIMENT"):      # ported to the protocol of rfdiff.run
            from rfdiff.run import run_params
            ds = run_params(fig.module.EXPERIMENT, params)
        else:
            ds = fig.module.compute(params)
    ds.attrs["seconds_compute"] = time.perf_counter() - t0
    ds.attrs["cpu_seconds_compute"] = time.process_time() - c0
    ds.attrs["threads"] = "library defaults" if _THREADS[0] is None else int(_THREADS[0])
    ds.attrs["preset_params_json"] = _json(params)
    return attach_provenance(ds, provenance({"figure": figure, **params}, seeds=_seeds(params)))


def _json(obj) -> str:
    from rfdiff.io import canonical_json
    return canonical_json(obj)


def _seeds(params: dict) -> dict:
    """Every parameter whose name says it is a seed (nested ones included)."""
    out = {}

    def walk(d, prefix):
        for k, v in d.items():
            if isinstance(v, dict):
                walk(v, f"{prefix}{k}.")
            elif "seed" in k:
                out[f"{prefix}{k}"] = v
    walk(params, "")
    return out


def compute(name: str, preset: str = "quick", *, cache=None, overrides: dict | None = None,
            use_cache: bool = True):
    """``(dataset, seconds, cache_hit)`` of figure ``name`` at ``preset``."""
    from rfdiff.cache import Cache, cache_key, cached

    fig = get(name)
    params = fig.params(preset, overrides)
    args = {"figure": fig.name, "params": params}
    t0 = time.perf_counter()
    if not use_cache:
        ds = _compute_entry(**args)
        return ds, time.perf_counter() - t0, False
    cache = cache if cache is not None else Cache()
    key_name = f"analysis.figures:{fig.name}"
    hit = cache.has(cache_key(key_name, args))
    ds = cached(_compute_entry, args, cache, name=key_name)
    return ds, time.perf_counter() - t0, hit


def make(name: str, preset: str = "quick", out="figures", *, cache=None, overrides: dict | None = None,
         use_cache: bool = True, stem: str | None = None) -> FigureRun:
    """Compute (or load from the cache), plot and save figure ``name``.

    Files: ``<out>/<stem>.png``, ``.pdf`` and ``.nc`` (``stem`` defaults to the
    figure name with ``_`` for ``-``, plus ``_<preset>`` unless quick).
    """
    t0 = time.perf_counter()
    fig = get(name)
    ds, secs, hit = compute(fig.name, preset, cache=cache, overrides=overrides, use_cache=use_cache)
    if stem is None:
        stem = fig.name.replace("-", "_") + ("" if preset == "quick" else f"_{preset}")
    paths = fig.module.plot(ds, Path(out) / stem)
    summary = fig.module.summary(ds) if hasattr(fig.module, "summary") else {}
    return FigureRun(fig.name, preset, ds, [Path(p) for p in paths], secs, time.perf_counter() - t0, hit,
                     summary)


def make_all(preset: str = "quick", out="figures", *, cache=None, names=None, jobs: int = 1,
             on_done=None) -> list[FigureRun]:
    """:func:`make` for every registered figure (or ``names``); ``jobs > 1`` runs
    them in that many worker processes (each with one numba/torch thread)."""
    names = list(names or FIGURES)
    if jobs <= 1:
        runs = []
        for n in names:
            runs.append(make(n, preset, out, cache=cache))
            if on_done:
                on_done(runs[-1])
        return runs
    import concurrent.futures as cf
    import multiprocessing as mp

    root = None if cache is None else str(cache.root)
    ctx = mp.get_context("spawn")
    runs = {}
    with cf.ProcessPoolExecutor(max_workers=jobs, mp_context=ctx, initializer=_worker_init) as ex:
        futs = {ex.submit(_worker_make, n, preset, str(out), root, _THREADS[0]): n for n in names}
        for f in cf.as_completed(futs):
            run = f.result()
            runs[run.name] = run
            if on_done:
                on_done(run)
    return [runs[n] for n in names]


def _worker_init():
    # torch reads this at import; numba's pool is limited at run time by threads()
    # (setting NUMBA_NUM_THREADS here would clash with numba's config reloads)
    os.environ.setdefault("OMP_NUM_THREADS", "1")


def _worker_make(name, preset, out, root, n_threads=1):
    from rfdiff.cache import Cache

    set_threads(n_threads)
    run = make(name, preset, out, cache=Cache(root) if root else None)
    run.dataset = None          # not shipped back between processes
    return run


# --------------------------------------------------------------------------- command line

_FIGURE_EPILOG = """\
examples:
  rfdiff figure kl-dynamics                 # quick size, into figures/
  rfdiff figure scaling --full --out paper/ # paper size
  rfdiff figure width --tiny --no-cache     # seconds; recompute
figures: {names}
files: <out>/<name>.png, .pdf and .nc (the numbers, with parameters, seeds,
versions and git revision in its 'provenance' attribute).
""".format(names=", ".join(FIGURES))

_FIGURES_EPILOG = """\
examples:
  rfdiff figures --quick                    # all figures, a few minutes on 2 cores
  rfdiff figures --quick --jobs 2           # two figures at a time (one thread each)
  rfdiff figures --full --out paper/
  rfdiff figures --quick --out docs/figures --snippet docs/figures/README_snippet.md
a rerun with the same parameters and code reads every figure from the cache.
"""


def _size_arguments(p) -> None:
    g = p.add_mutually_exclusive_group()
    for name, help_ in (("tiny", "seconds (tests)"), ("quick", "the README's size (default)"),
                        ("full", "paper size")):
        g.add_argument(f"--{name}", dest="preset", action="store_const", const=name, help=help_)
    p.set_defaults(preset="quick")
    p.add_argument("--out", default="figures", help="output directory (default: figures/)")
    p.add_argument("--cache-dir", default=None,
                   help="result cache (default: $RFDIFF_CACHE_DIR or ./.rfdiff_cache)")
    p.add_argument("--no-cache", action="store_true", help="recompute and do not store")
    p.add_argument("--threads", type=int, default=1,
                   help="numba/torch threads while computing (default 1; 0 = library defaults)")


def _at_least_one(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or value < 1:
        import argparse
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text!r}")
    return value


def add_figure_arguments(p) -> None:
    p.add_argument("name", help="figure name: " + ", ".join(FIGURES))
    _size_arguments(p)


def add_figures_arguments(p) -> None:
    _size_arguments(p)
    p.add_argument("--jobs", type=_at_least_one, default=min(2, os.cpu_count() or 1),
                   help="figures computed in parallel processes (default: 2, or 1 on one core)")
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
    from rfdiff.cache import Cache

    return Cache(args.cache_dir) if args.cache_dir else None


def run_figure(args) -> int:
    set_threads(None if args.threads == 0 else args.threads)
    run = make(args.name, args.preset, args.out, cache=_cache(args), use_cache=not args.no_cache)
    _print_run(run)
    return 0


def run_figures(args) -> int:
    set_threads(None if args.threads == 0 else args.threads)
    t0 = time.perf_counter()
    if args.no_cache:
        runs = []
        for n in (args.only or FIGURES):
            runs.append(make(n, args.preset, args.out, use_cache=False))
            _print_run(runs[-1])
    else:
        runs = make_all(args.preset, args.out, cache=_cache(args), names=args.only, jobs=args.jobs,
                        on_done=_print_run)
    wall = time.perf_counter() - t0
    print(f"all figures [{args.preset}]: {wall:.1f} s wall")
    if args.snippet:
        path = write_snippet(args.preset, args.out, args.snippet, cache=_cache(args), wall_seconds=wall,
                             runs=runs)
        print(f"  -> {path}")
    return 0
