"""Parameter sweeps: a TOML config, a cached resumable parallel runner, one labelled result.

>>> from rfdiff.sweep import load_config, run_sweep, sweep_status, collect
>>> cfg = load_config("scaling.toml")            # doctest: +SKIP
>>> report = run_sweep(cfg, workers=4)            # doctest: +SKIP
>>> ds = collect(cfg)                             # doctest: +SKIP

See :mod:`rfdiff.sweep.config` for the file format, :mod:`rfdiff.sweep.result`
for what an experiment function returns, :mod:`rfdiff.sweep.executors` for
local and Dask execution, and :mod:`rfdiff.sweep.runner` for caching and
failure handling. The command line is ``rfdiff sweep run|status|collect``.
"""
from .config import ConfigError, Param, Point, SweepConfig, load_config, resolve_function
from .executors import DaskUnavailable, SchedulerUnavailable
from .result import normalize_result, stack_results
from .runner import (PointFailure, SweepIncomplete, SweepReport, SweepStatus, collect,
                     evaluate_point, point_key, run_sweep, sweep_status)

__all__ = [
    "ConfigError", "Param", "Point", "SweepConfig", "load_config", "resolve_function",
    "DaskUnavailable", "SchedulerUnavailable", "normalize_result", "stack_results",
    "PointFailure", "SweepIncomplete", "SweepReport", "SweepStatus", "collect",
    "evaluate_point", "point_key", "run_sweep", "sweep_status",
]
