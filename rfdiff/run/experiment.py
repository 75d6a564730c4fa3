"""The experiment protocol: an experiment is a set of points, a reduction and a plot.

A *point function* maps keyword parameters (JSON-able values) to a labelled
result: a dict of outputs (numbers, bools, strings, NumPy arrays) with the
optional metadata entries ``"coords"`` (1D coordinate values of extra
dimensions) and ``"dims"`` (the dimension names of each array output); see
:mod:`rfdiff.run.result`. Point functions are opt-in: only functions
decorated with :func:`point_function` can be named by a sweep config or run
by an experiment, so a config cannot call an arbitrary importable function.

An :class:`Experiment` (one module of :mod:`analysis.experiments`) has

- ``presets``: ``{"tiny": ..., "quick": ..., "full": ...}`` parameter dicts;
- ``tasks(params) -> list[Task]``: the points of the figure at those parameters;
- ``reduce(params, results) -> xarray.Dataset``: ``results[i]`` is the result of
  ``tasks(params)[i]`` as an ``xarray.Dataset`` (:func:`as_dataset`);
- ``plot(ds, stem) -> list[Path]`` (PNG, PDF and netCDF) and ``summary(ds) -> dict``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

__all__ = ["Experiment", "Task", "point_function", "registered", "spec_of", "as_dataset",
           "run_serial", "run_params", "reduce_results", "PRESET_NAMES"]

PRESET_NAMES = ("tiny", "quick", "full")

#: "module:qualname" -> function, filled by :func:`point_function`
_REGISTRY: dict[str, Callable] = {}


def spec_of(fn: Callable) -> str:
    """``"module:qualname"`` of a function (how configs and caches name it)."""
    return f"{fn.__module__}:{fn.__qualname__}"


def point_function(fn: Callable) -> Callable:
    """Register ``fn`` as a point function (decorator); returns ``fn`` unchanged."""
    _REGISTRY[spec_of(fn)] = fn
    fn.__rfdiff_point__ = True
    return fn


def registered(spec: str) -> Callable | None:
    """The registered point function named ``spec``, or None."""
    return _REGISTRY.get(spec)


@dataclass(frozen=True)
class Task:
    """One point: a registered point function and its keyword parameters."""

    function: Callable
    params: dict

    def __post_init__(self):
        if not getattr(self.function, "__rfdiff_point__", False):
            raise ValueError(f"{spec_of(self.function)} is not a registered point function "
                             "(decorate it with @rfdiff.run.point_function)")

    @property
    def spec(self) -> str:
        return spec_of(self.function)


@dataclass(frozen=True)
class Experiment:
    """A figure: presets, its points, a reduction and a plot (see the module docstring)."""

    name: str
    title: str
    presets: Mapping[str, Mapping]
    tasks: Callable[[dict], list]
    reduce: Callable[[dict, list], object]
    plot: Callable
    summary: Callable | None = None
    regime: str = ""

    def params(self, preset: str = "quick", overrides: dict | None = None) -> dict:
        if preset not in self.presets:
            raise ValueError(f"preset must be one of {', '.join(self.presets)}, got {preset!r}")
        p = dict(self.presets[preset])
        p.update(overrides or {})
        return p


def as_dataset(result: dict):
    """A point function's result as an ``xarray.Dataset`` (outputs as data variables)."""
    from .result import normalize_result, to_dataset

    return to_dataset(normalize_result(result))


def run_serial(experiment: Experiment, preset: str = "tiny", overrides: dict | None = None):
    """Every point of a preset in this process, no cache: ``experiment.reduce(params, results)``
    with provenance (parameters, seeds, versions, git revision) attached."""
    return run_params(experiment, experiment.params(preset, overrides), preset)


def run_params(experiment: Experiment, params: dict, preset: str | None = None):
    """:func:`run_serial` for explicit parameters (``preset``: only recorded)."""
    results = [as_dataset(t.function(**t.params)) for t in experiment.tasks(params)]
    return reduce_results(experiment, params, results, preset)


def reduce_results(experiment: Experiment, params: dict, results: list, preset: str | None = None):
    """``experiment.reduce(params, results)`` labelled with the experiment's name
    (``attrs["figure"]``) and its regime (``attrs["regime"]``), with provenance
    (parameters, seeds, versions, git revision) attached: the one ending of every
    way of running an experiment."""
    from ..io import attach_provenance
    from ..provenance import provenance

    ds = experiment.reduce(params, results)
    ds.attrs["figure"] = experiment.name
    ds.attrs["regime"] = experiment.regime
    return attach_provenance(ds, provenance({"figure": experiment.name, "preset": preset, **params},
                                            seeds=_seeds(params) or None))


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
