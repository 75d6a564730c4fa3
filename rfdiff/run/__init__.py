"""One way to run things: the experiment protocol, its config reader, runner, cache and executors.

- :mod:`rfdiff.run.experiment`: :class:`Experiment`, :class:`Task`, :func:`point_function`
  (the registry: only registered functions can be named by a config);
- :mod:`rfdiff.run.config`: the one strict TOML reader (sweeps, ``rfdiff trajectory``);
- :mod:`rfdiff.run.cache`: the content-addressed, checksummed cache with claims;
- :mod:`rfdiff.run.runner`: points -> cache -> executor (sweeps and figures);
- :mod:`rfdiff.run.executors`: serial, local processes, Dask;
- :mod:`rfdiff.run.result`: what a point function returns, and how results stack.

>>> from rfdiff.run import load_config, run_sweep, sweep_status, collect
>>> cfg = load_config("scaling.toml")            # doctest: +SKIP
>>> report = run_sweep(cfg, workers=4)            # doctest: +SKIP
>>> ds = collect(cfg)                             # doctest: +SKIP
"""
from .experiment import (PRESET_NAMES, Experiment, Task, as_dataset, point_function, registered,
                         run_params, run_serial, spec_of)
from .cache import Cache, CacheNotWritable, CacheWarning, cache_key, default_cache_dir
from .config import ConfigError, Param, Point, SweepConfig, load_config, read_config, resolve_function
from .executors import DaskUnavailable, SchedulerUnavailable
from .result import normalize_result, stack_results, to_dataset
from .runner import (PointFailure, PointsFailed, PointsPending, RunReport, SweepIncomplete, SweepReport,
                     SweepStatus, collect, point_key, run_experiment, run_experiments, run_points,
                     run_sweep, sweep_status)

__all__ = ["PRESET_NAMES", "Experiment", "Task", "as_dataset", "point_function", "registered",
           "run_params", "run_serial", "spec_of",
           "Cache", "CacheNotWritable", "CacheWarning", "cache_key", "default_cache_dir",
           "ConfigError", "Param", "Point", "SweepConfig", "load_config", "read_config",
           "resolve_function", "DaskUnavailable", "SchedulerUnavailable", "normalize_result",
           "stack_results", "to_dataset", "PointFailure", "PointsFailed", "PointsPending", "RunReport",
           "SweepIncomplete", "SweepReport", "SweepStatus", "collect", "point_key",
           "run_experiment", "run_experiments", "run_points", "run_sweep", "sweep_status"]
