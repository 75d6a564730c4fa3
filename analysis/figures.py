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

import contextlib
import importlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["FIGURES", "PRESET_NAMES", "Figure", "FigureRun", "get", "compute", "make", "make_all"]

PRESET_NAMES = ("tiny", "quick", "full")

#: numba/torch threads used while computing a figure (see :func:`threads`)
_THREADS = [1]


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


def _openblas_controls():
    """``(get, set)`` ctypes pairs of every OpenBLAS loaded in this process (numpy's
    and scipy's own copies), found in /proc/self/maps; empty where unavailable.
    (threadpoolctl does this generally; it is not a dependency of rfdiff.)"""
    import ctypes

    out = []
    try:
        with open("/proc/self/maps") as f:
            libs = sorted({ln.split()[-1] for ln in f if "openblas" in ln.lower() and ".so" in ln})
    except OSError:
        return out
    for path in libs:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for pre in ("scipy_openblas", "openblas"):
            for suf in ("64_", ""):
                get, set_ = f"{pre}_get_num_threads{suf}", f"{pre}_set_num_threads{suf}"
                if hasattr(lib, get) and hasattr(lib, set_):
                    out.append((getattr(lib, get), getattr(lib, set_)))
                    break
            else:
                continue
            break
    return out


@contextlib.contextmanager
def threads(n: int | None = 1):
    """Run with ``n`` numba, torch and OpenBLAS threads, restoring the previous counts.

    Figures default to one thread: their kernels are small and launched
    thousands of times (one per ODE stage), and on a small or loaded machine a
    thread pool spends far more time synchronising than computing (measured on
    a busy 2-core machine: 68 s with 2 numba threads vs 3 s with one for the
    same KL solve; torch's MLP forward 5 ms vs 0.1 ms; a 1024 x 1024 eigh 3.7 s
    with 2 OpenBLAS threads vs 0.4 s with one). ``n=None`` leaves them.
    """
    if n is None:
        yield
        return
    import sys

    saved = []
    try:
        import numba
        saved.append((numba.set_num_threads, numba.get_num_threads()))
        numba.set_num_threads(min(int(n), numba.config.NUMBA_NUM_THREADS))
    except ImportError:
        pass
    torch = sys.modules.get("torch")
    if torch is None:
        try:
            import torch
        except ImportError:
            torch = None
    if torch is not None:
        saved.append((torch.set_num_threads, torch.get_num_threads()))
        torch.set_num_threads(int(n))
    for get, set_ in _openblas_controls():
        saved.append((set_, int(get())))
        set_(int(n))
    try:
        yield
    finally:
        for setter, value in saved:
            setter(value)


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


def add_figure_arguments(p) -> None:
    p.add_argument("name", help="figure name: " + ", ".join(FIGURES))
    _size_arguments(p)


def add_figures_arguments(p) -> None:
    _size_arguments(p)
    p.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1),
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


def write_snippet(preset, out, path, *, cache=None, wall_seconds=None, runs=None, image_dir=None) -> Path:
    """A markdown snippet for the README: the figure list and the exponent table of
    ``scaling`` and ``memorization-time``. Images are linked as
    ``<image_dir>/<stem>.png`` (default: ``out`` as given, i.e. relative to the
    directory the command runs in, the repository root for the README)."""
    import numpy as np

    path = Path(path)
    rel = Path(image_dir if image_dir is not None else out).as_posix()
    lines = [f"### Figures (`rfdiff figures --{preset}`)", ""]
    if wall_seconds is not None:
        import platform
        lines += [f"Made in {wall_seconds:.0f} s wall on {os.cpu_count()} CPU cores ({platform.machine()}); "
                  "a rerun reads every figure from the cache.", ""]
    for name in FIGURES:
        fig = get(name)
        stem = name.replace("-", "_") + ("" if preset == "quick" else f"_{preset}")
        doc = (fig.module.__doc__ or "").strip().splitlines()[0]
        lines += [f"**{name}** — {doc.split(': ', 1)[-1]}", "",
                  f"![{name}]({rel}/{stem}.png)", ""]
    ds, _, _ = compute("scaling", preset, cache=cache)
    from analysis.experiments.scaling import exponent_table

    lines += ["#### Measured exponents vs theory", "",
              "| quantity | measured slope [95% bootstrap CI] | bound, minimised in SymPy | slide (seed 000) "
              "| bound's exponent in the CI? |",
              "|---|---|---|---|---|"]
    for r in exponent_table(ds):
        inside = "yes" if r["ci_low"] <= r["theory_bound"] <= r["ci_high"] else "**no**"
        lines.append(f"| {r['quantity']} | {r['slope']:.2f} [{r['ci_low']:.2f}, {r['ci_high']:.2f}] | "
                     f"{_frac(r['theory_bound'])} | {r['slide']} | {inside} |")
    dm, _, _ = compute("memorization-time", preset, cache=cache)
    a = dm.attrs
    for name, th, what in (("tau_gen", 0.0, "half-descent"), ("tau_mem", 1.0, "half-rise"),
                           ("tau_min", None, "argmin")):
        s, lo, hi = (a[f"fit_{name}_vs_n_{k}"] for k in ("slope", "ci_low", "ci_high"))
        cell = f"{s:.2f} [{lo:.2f}, {hi:.2f}]" if np.isfinite(s) else "n/a (no rise on the grid)"
        ref = "—" if th is None else f"{th:g} (Bonnaire et al. 2025)"
        inside = "—" if th is None or not np.isfinite(s) else ("yes" if lo <= th <= hi else "**no**")
        lines.append(f"| {name} ({what} of the population loss) vs n, one noise level t = {a['t_level']:g} "
                     f"| {cell} | — | {ref} | {inside} |")
    lines += ["", "The bound bounds KL from above: a KL decaying faster than n^(-2/5) is consistent with "
              "it. Its tau_es ~ n^(2/5) minimises the bound, it is not a statement about the minimiser "
              "of the actual KL; the measured tau* grows much faster, in either time unit.", ""]
    lines += _headlines(preset, cache)
    lines += ["", "Seeds per point, sizes and every setting are in the `.nc` files' `provenance` "
              "attribute (next to each PNG, with the PDF).", ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    from rfdiff.io import atomic_path
    with atomic_path(path) as tmp:
        Path(tmp).write_text("\n".join(lines), encoding="utf-8")
    return path


def _headlines(preset, cache) -> list[str]:
    """A few numbers of kl-dynamics and modes-shift for the README."""
    import numpy as np

    out = ["#### Headline numbers", ""]
    ds, _, _ = compute("kl-dynamics", preset, cache=cache)
    a = ds.attrs
    out.append(f"- kl-dynamics (RF, m = {a['model_m']}, n = {a['score_matching_n']}, mu = 3): "
               f"tau* = {a['ode_tau_star']:.3g}, KL_ODE(tau*) = {a['ode_kl_star']:.4f} "
               f"+- {a['ode_kl_star_error']:.4f} (interior minimum: {'yes' if a['ode_interior'] else 'no'}; "
               f"KL at the last tau {a['ode_kl_final']:.3g}); SDE KL minimum {a['sde_kl_star']:.4f} "
               f"(interior: {'yes' if a['sde_interior'] else 'no'}).")
    for opt in ds.optimizer.values:
        out.append(f"- Swish net, {opt}: lowest mean KL {a[f'net_best_kl_{opt}']:.3f} at epoch "
                   f"{a[f'net_best_epoch_{opt}']} of {int(ds.epoch.values.max())} (3 seeds).")
    dm, _, _ = compute("modes-shift", preset, cache=cache)
    b = dm.attrs
    if "rf_verdict_paper_observation_holds" in b:
        r3, r15 = (dm.sel(mu=m) for m in (3.0, 15.0))
        out.append(f"- modes-shift, RF flow: tau*(mu=15) = {float(r15.tau_star):.3g} vs tau*(mu=3) = "
                   f"{float(r3.tau_star):.3g}; late KL / best KL for mu = 15: "
                   f"{float(r15.kl_ode[-1]):.3g} / {float(r15.kl_star):.3g}; modes at the end: "
                   f"{b['rf_verdict_late_n_modes_mu15']}, lighter side's mass {b['rf_verdict_late_lighter_mass_mu15']:.2f}. "
                   f"Paper's observation (best early, then collapse to one mode) holds: "
                   f"{'yes' if b['rf_verdict_paper_observation_holds'] else '**no**'}.")
    for k, v in b.items():
        if k.startswith("net_verdict_") and k.endswith("paper_observation_holds"):
            opt = k[len("net_verdict_"):].split("_")[0]
            out.append(f"- modes-shift, Swish ({opt}): observation holds: {'yes' if v else '**no**'} "
                       f"(best epoch mu=15: {b.get(f'net_verdict_{opt}_best_epoch_mu15')}, mu=3: "
                       f"{b.get(f'net_verdict_{opt}_best_epoch_mu3')}).")
        elif k.startswith("net_verdict_") and k.endswith("_note"):
            opt = k[len("net_verdict_"):].split("_")[0]
            out.append(f"- modes-shift, Swish ({opt}, not tuned): {v}")
    return out


def _frac(x) -> str:
    from fractions import Fraction

    f = Fraction(float(x)).limit_denominator(20)
    return f"{float(x):+.3g} ({f})"
