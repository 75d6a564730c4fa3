"""The ``rfdiff`` command line.

Each subcommand is one :class:`Command` in the module-level list
:data:`COMMANDS`: a name, a one-line help, an ``add_arguments(parser)`` that
declares its flags (with an epilog of examples), and a ``run(args) -> int``
that does the work. To add one, append to :data:`COMMANDS` (or call
:func:`register` before :func:`main` builds the parser); :func:`lazy` keeps the
implementation's imports out of ``rfdiff --help``::

    COMMANDS.append(Command(
        "figure", "make one figure of the paper",
        add_arguments=lazy("analysis.figures:add_figure_arguments"),
        run=lazy("analysis.figures:run_figure"),
        epilog="examples:\\n  rfdiff figure kl-dynamics --quick\\n"))

Exit status: 0 success; 1 the work ran but part of it failed (e.g. sweep
points); 2 bad usage, bad config or a missing optional dependency, with a
one-line reason on stderr (``--traceback`` shows the full one instead);
3 a run in parts stopped at its ``--max-seconds`` with points left (those
computed are cached; the same command resumes); 130 interrupted.
"""
from __future__ import annotations

import argparse
import importlib
import json
import sys
import warnings
from dataclasses import dataclass
from typing import Callable, Sequence

from . import sweep as _sweep
from .usage import UsageError

__all__ = ["Command", "COMMANDS", "UsageError", "register", "lazy", "build_parser", "main"]


class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors are one line naming the command, and exit 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


@dataclass(frozen=True)
class Command:
    """One subcommand: ``rfdiff NAME ...``."""

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]
    epilog: str = ""
    description: str = ""


def lazy(spec: str) -> Callable:
    """A function that imports ``"package.module:attr"`` on first call and calls it."""
    module_name, attr = spec.split(":")

    def call(*args, **kwargs):
        return getattr(importlib.import_module(module_name), attr)(*args, **kwargs)

    call.__name__ = attr
    call.__qualname__ = spec
    return call


# --------------------------------------------------------------------------- info

_INFO_EPILOG = """\
examples:
  rfdiff info           # versions, git revision, numba threads, GPU and Dask availability
  rfdiff info --json    # the same, machine-readable
"""


def _info_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print JSON instead of text")


def _describe(value, fmt: Callable[[dict], str]) -> str:
    return fmt(value) if isinstance(value, dict) else str(value)


def _run_info(args: argparse.Namespace) -> int:
    from ..provenance import environment_report

    rep = environment_report()
    if args.json:
        print(json.dumps(rep, indent=2, sort_keys=True, default=str))
        return 0
    git = rep["git"]
    state = {True: ", uncommitted changes", False: "", None: ""}[git["dirty"]]
    v = rep["versions"]
    core = ", ".join(f"{k} {v[k]}" for k in ("numpy", "scipy", "sympy", "xarray", "h5netcdf")
                     if v.get(k))
    lines = [
        f"rfdiff       {rep['rfdiff']}",
        f"git          {git['revision']}{state}",
        f"code version {rep['code_version']}  (part of every cache key)",
        f"python       {rep['python']} on {rep['platform']}, {rep['cpu_count']} CPUs",
        f"packages     {core}",
        "numba        " + _describe(rep["numba"], lambda d: (
            f"{d['version']}, {d['threads_in_use']} threads "
            f"(NUMBA_NUM_THREADS={d['num_threads']})")),
        "torch        " + _describe(rep["torch"], lambda d: (
            f"{d['version']}, CUDA {'available: ' + str(d['device']) if d['cuda'] else 'not available'}")),
        "cupy / GPU   " + _describe(rep["cupy"], lambda d: (
            f"{d['version']}, {d['devices']} device(s), GPU "
            f"{'usable: ' + str(d['device']) if d['gpu_usable'] else 'not usable'}")),
        "dask         " + (f"{rep['dask']['dask']} (distributed {rep['dask']['distributed']}, "
                           f"dask-jobqueue {rep['dask']['dask_jobqueue'] or 'not installed'})"
                           if rep["dask"]["distributed"]
                           else "not installed (pip install 'rfdiff[dist]')"),
        f"cache dir    {rep['cache_dir']}",
    ]
    print("\n".join(lines))
    return 0


# --------------------------------------------------------------------------- registry

_TRAJ_EPILOG = """\
examples:
  rfdiff trajectory --mu 3 --n 1000 --m 256 --out traj.nc --plot traj.png
  rfdiff trajectory --mu 15 --taus 1e0:1e12:25 --metrics train_loss,population_loss,kl_ode
  rfdiff trajectory --config run.toml        # a [trajectory] table with the same keys
--out and --plot are checked for writability before anything is computed.

config keys ([trajectory] table): target ("two_modes"), mu, q1, n, data_seed, m,
activation, seed, t_min, T, weighting, n_time, taus ("start:stop:count", log-spaced),
metrics (list), tol, out, plot.
"""

COMMANDS: list[Command] = [
    Command("sweep", _sweep.HELP, add_arguments=_sweep.add_arguments, run=_sweep.run,
            epilog=_sweep.EPILOG,
            description="Parameter sweeps: a TOML config naming an experiment function and "
                        "a grid; every point is computed once, cached, and collected into "
                        "one netCDF file."),
    Command("trajectory", "one closed-form training trajectory: losses, KL (ODE/SDE), bound",
            add_arguments=lazy("rfdiff.cli.trajectory:add_arguments"),
            run=lazy("rfdiff.cli.trajectory:run"), epilog=_TRAJ_EPILOG,
            description="Solve the gradient flow of a random-feature score model once and "
                        "evaluate losses and exact KL at every training time tau."),
    Command("info", "versions, git revision, numba threads, GPU and Dask availability",
            add_arguments=_info_arguments, run=_run_info, epilog=_INFO_EPILOG,
            description="Print the versions and the compute backends rfdiff can use here."),
]

_FIGURE_EPILOG = """\
examples:
  rfdiff figure width --tiny --out figures/            # seconds
  rfdiff figure width --tiny --jobs 2 --out figures/   # its points in 2 processes
  rfdiff figure width --tiny --cluster local --jobs 2 --out figures/   # a Dask LocalCluster
  rfdiff figure width --tiny --no-cache --out figures/ # recompute, store nothing
  rfdiff figure scaling --full --out paper/            # paper size
  rfdiff figure large-lr --full --max-seconds 3600 --out paper/   # in parts: rerun to resume
  rfdiff figure kl-dynamics --scheduler tcp://10.0.0.5:8786 --out paper/
figures: kl-dynamics, scaling, modes-shift, width, memorization-time, large-lr, resnet-ode,
  pre-memorization, quantile-vs-l2, reproducibility, real-digits
Every point of a figure is cached (as a sweep's): a rerun reads them, a killed
run (or one stopped by --max-seconds, exit status 3) resumes. Files:
<out>/<name>.png, .pdf and .nc (the numbers, with parameters, seeds, versions
and git revision in its 'provenance' attribute).
"""

_FIGURES_EPILOG = """\
examples:
  rfdiff figures --tiny --out figures/              # all figures, seconds each
  rfdiff figures --quick                            # the README's size (about 40 min for all on 2 cores)
  rfdiff figures --quick --jobs 2                   # points of all figures in 2 processes
  rfdiff figures --full --out paper/
  rfdiff figures --quick --out docs/figures --snippet docs/figures/README_snippet.md
a rerun with the same parameters and code reads every point from the cache.
"""


# The paper's figures (analysis.figures: registry; its points go through rfdiff.run's runner);
# imported only when used.
COMMANDS += [
    Command("figure", "make one figure of the paper (PNG, PDF and the numbers behind it)",
            add_arguments=lazy("analysis.figures:add_figure_arguments"),
            run=lazy("analysis.figures:run_figure"),
            epilog=_FIGURE_EPILOG,
            description="Compute the points of one figure (cached, resumable; in this process, "
                        "local processes or Dask), reduce, plot and save it."),
    Command("figures", "make all figures of the papers (--quick: the README's size)",
            add_arguments=lazy("analysis.figures:add_figures_arguments"),
            run=lazy("analysis.figures:run_figures"),
            epilog=_FIGURES_EPILOG,
            description="Compute the points of every figure (cached, resumable), reduce, plot "
                        "and save them."),
]


def register(command: Command) -> Command:
    """Add (or replace, by name) a subcommand; call before :func:`main`."""
    COMMANDS[:] = [c for c in COMMANDS if c.name != command.name] + [command]
    return command


_MAIN_EPILOG = """\
examples:
  rfdiff info
  rfdiff figure width --tiny --out figures/
  rfdiff sweep run scaling.toml --workers 4
  rfdiff sweep status scaling.toml
  rfdiff sweep collect scaling.toml -o scaling.nc
run 'rfdiff COMMAND --help' for the options and examples of each command.
exit status: 0 ok, 1 partly failed (e.g. sweep points), 2 bad usage or config.
"""


def _version() -> str:
    from ..provenance import package_versions

    return package_versions()["rfdiff"]


def build_parser() -> argparse.ArgumentParser:
    """The full parser: one subparser per entry of :data:`COMMANDS`."""
    parser = _Parser(prog="rfdiff", description="Exact training trajectories and "
                     "generalization of random-feature diffusion score models.",
                     epilog=_MAIN_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"rfdiff {_version()}")
    parser.add_argument("--traceback", action="store_true",
                        help="on errors, show the full Python traceback")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for cmd in COMMANDS:
        p = sub.add_parser(cmd.name, help=cmd.help, description=cmd.description or cmd.help,
                           epilog=cmd.epilog,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        cmd.add_arguments(p)
        p.set_defaults(_run=cmd.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (see the module docstring)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, usage errors
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    prog = f"rfdiff {args.command}"

    def show_warning(message, category, filename, lineno, file=None, line=None):
        print(f"{prog}: warning: {message}", file=sys.stderr)

    try:
        with warnings.catch_warnings():
            warnings.showwarning = show_warning  # one line, no source location
            return int(args._run(args) or 0)
    except (UsageError, ValueError) as exc:
        if args.traceback:
            raise
        lines = str(exc).strip().splitlines()
        print(f"{prog}: error: {lines[0] if lines else type(exc).__name__}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130


