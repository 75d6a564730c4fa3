"""``rfdiff sweep run|status|collect CONFIG``: the command-line face of the sweeps of :mod:`rfdiff.run`."""
from __future__ import annotations

import argparse
import sys

from .usage import UsageError, int_at_least

__all__ = ["add_arguments", "run", "HELP", "EPILOG"]

HELP = "run a parameter sweep from a TOML config; show its status; collect its results"
EPILOG = """\
examples:
  rfdiff sweep run scaling.toml                 # local processes, cached, resumable
  rfdiff sweep status scaling.toml              # done / failed / pending
  rfdiff sweep collect scaling.toml -o scaling.nc

config (see rfdiff.run.config for all keys; README.md has a complete one):
  [sweep]  name = "scaling"   function = "analysis.experiments.scaling:point"
  [grid]   n = [16, 64]   seed = [0, 1]
  [fixed]  m = 32   mu = 3.0   ...
  [run]    workers = 2   retries = 1   timeout_s = 600
function must be a registered point function (@rfdiff.run.point_function);
a module of your own: PYTHONPATH=DIR, or module_file = "points.py" in [sweep].
"""

_RUN_EPILOG = """\
examples:
  rfdiff sweep run scaling.toml                         # local processes (CPU count)
  rfdiff sweep run scaling.toml --workers 8 --quiet
  rfdiff sweep run scaling.toml --cluster local -j 4    # a Dask LocalCluster
  rfdiff sweep run scaling.toml --scheduler tcp://10.0.0.5:8786

Finished points are never recomputed: rerun the same command after a crash or
^C and only the missing points run. Failed points are retried on every run.
Two runs on one cache share the work (each point is claimed before it runs).
On Slurm/PBS, start a dask-jobqueue cluster (pip install dask-jobqueue):
  from dask_jobqueue import SLURMCluster
  cluster = SLURMCluster(cores=1, memory="4GB"); cluster.scale(jobs=32)
  print(cluster.scheduler_address)      # pass it to --scheduler
exit status: 0 all points done, 1 some points failed, 2 bad usage or config.
"""

_STATUS_EPILOG = """\
examples:
  rfdiff sweep status scaling.toml
  rfdiff sweep status scaling.toml --tracebacks   # full tracebacks of failed points
  rfdiff sweep status scaling.toml --repair       # also remove corrupt entries
status imports no experiment code and (without --repair) deletes nothing.
"""

_COLLECT_EPILOG = """\
examples:
  rfdiff sweep collect scaling.toml                 # writes scaling.nc (the sweep's name)
  rfdiff sweep collect scaling.toml -o out/kl.nc
  rfdiff sweep collect scaling.toml --allow-missing # unfinished points become NaN
then:  python -c "import xarray as xr; print(xr.open_dataset('scaling.nc'))"
exit status: 0 written, 1 points missing, 2 bad usage or config.
"""


_int_at_least = int_at_least


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", metavar="CONFIG", help="sweep config file (TOML)")
    p.add_argument("--cache-dir", metavar="DIR",
                   help="cache directory (default: [sweep].cache_dir, else $RFDIFF_CACHE_DIR, "
                        "else ./.rfdiff_cache)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="sweep_command", metavar="{run,status,collect}",
                                required=True)
    fmt = argparse.RawDescriptionHelpFormatter
    p = sub.add_parser("run", help="compute every point not yet cached",
                       description="Compute every point of the sweep that has no cached "
                                   "result, in parallel.", epilog=_RUN_EPILOG,
                       formatter_class=fmt)
    _common(p)
    engine = p.add_mutually_exclusive_group()
    engine.add_argument("--scheduler", metavar="ADDRESS",
                        help="address of a running dask.distributed scheduler")
    engine.add_argument("--cluster", choices=["local"],
                        help="start a Dask LocalCluster (one single-threaded process per worker)")
    engine.add_argument("--serial", action="store_true",
                        help="run the points one by one in this process (debugging)")
    p.add_argument("-j", "--workers", type=_int_at_least(1), metavar="N",
                   help="worker processes (default: [run].workers, else the CPU count)")
    p.add_argument("--retries", type=_int_at_least(0), metavar="N",
                   help="extra attempts per failing point (default: [run].retries, else 0)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar or summary")

    p = sub.add_parser("status", help="count done / failed / pending points",
                       description="Show how many points are done, failed or pending for the "
                                   "current code version, with the error of each failed point.",
                       epilog=_STATUS_EPILOG, formatter_class=fmt)
    _common(p)
    p.add_argument("--tracebacks", action="store_true", help="print full tracebacks")
    p.add_argument("--pending", action="store_true", help="list every pending point")
    p.add_argument("--repair", action="store_true",
                   help="remove corrupt entries and temporary files of dead writers "
                        "(without it, status only reports them)")

    p = sub.add_parser("collect", help="gather results into one netCDF file",
                       description="Stack the results of every point into one labelled "
                                   "xarray Dataset (dimensions = grid parameters) with "
                                   "provenance, and save it as netCDF.",
                       epilog=_COLLECT_EPILOG, formatter_class=fmt)
    _common(p)
    p.add_argument("-o", "--output", metavar="FILE",
                   help="output netCDF file (default: <sweep name>.nc)")
    p.add_argument("--allow-missing", action="store_true",
                   help="write even if points are missing (their values are NaN)")


def _fmt_coords(coords: dict) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in coords.items()) or "(single point)"


def run(args: argparse.Namespace) -> int:
    from ..run import (ConfigError, DaskUnavailable, SchedulerUnavailable, SweepIncomplete,
                       load_config)

    try:
        # status and collect need only the file: no experiment module is imported
        config = load_config(args.config, import_function=args.sweep_command == "run")
    except ConfigError as exc:
        raise UsageError(str(exc)) from None
    try:
        return {"run": _run, "status": _status, "collect": _collect}[args.sweep_command](
            config, args)
    except (DaskUnavailable, SchedulerUnavailable) as exc:
        raise UsageError(str(exc)) from None
    except SweepIncomplete as exc:
        print(f"rfdiff sweep collect: {exc}", file=sys.stderr)
        return 1


def _run(config, args) -> int:
    from ..run import run_sweep

    report = run_sweep(config, cache=args.cache_dir, workers=args.workers, serial=args.serial,
                       scheduler=args.scheduler, cluster=args.cluster, retries=args.retries,
                       progress=not args.quiet)
    if not args.quiet:
        print(report.summary(), file=sys.stderr)
    for f in report.failed:
        print(f"failed: {f.describe()}", file=sys.stderr)
    for where in report.rescued:
        print(f"results that could not be cached are in {where}", file=sys.stderr)
    if report.failed:
        print(f"see 'rfdiff sweep status {config.path} --tracebacks'; rerun to retry them",
              file=sys.stderr)
    return 0 if report.ok else 1


def _status(config, args) -> int:
    from ..run import sweep_status

    st = sweep_status(config, cache=args.cache_dir, repair=args.repair)
    print(st.summary())
    for f in st.failed:
        print(f"  failed  {f.describe()}  [{f.attempts} attempt(s)]")
        if args.tracebacks:
            print("    " + f.traceback.rstrip().replace("\n", "\n    "))
    shown = st.pending if args.pending else st.pending[:10]
    for coords in shown:
        print(f"  pending {_fmt_coords(coords)}")
    if len(shown) < len(st.pending):
        print(f"  ... and {len(st.pending) - len(shown)} more pending (--pending lists all)")
    return 0


def _collect(config, args) -> int:
    from pathlib import Path

    from ..io import save_dataset
    from ..run.cache import check_writable_file
    from ..run.runner import collect, default_output

    out = Path(args.output) if args.output else default_output(config)
    check_writable_file(out, "--output")          # before reading every result
    ds = collect(config, cache=args.cache_dir, allow_missing=args.allow_missing)
    save_dataset(ds, out)
    missing = ds.attrs.get("points_missing", 0)
    extra = f" ({missing} missing points are NaN)" if missing else ""
    print(f"wrote {out}: {dict(ds.sizes)}, variables {', '.join(map(str, ds.data_vars))}{extra}")
    return 0
