"""Sweep configuration files (TOML): strict parsing and validation.

A sweep is an experiment function evaluated on every point of a cartesian
grid. Example (``scaling.toml``)::

    [sweep]
    name = "scaling"                          # names the collected file: scaling.nc
    function = "analysis.experiments.scaling:point"  # module:function, imported (never eval'd)
    cache_dir = ".rfdiff_cache"               # optional; relative to this file

    [grid]                                    # cartesian product, in this order
    n = [100, 200, 400, 800]
    m = [64, 256]
    seed = [0, 1, 2]

    [fixed]                                   # passed to every point
    mu = 3.0
    weighting = "sigma2"

    [run]                                     # optional
    workers = 4                               # local processes (default: CPU count)
    retries = 1                               # extra attempts for a failing point
    timeout_s = 600                           # per point

Every point calls ``function(**fixed, **grid_point)``. Rules, each violation a
one-line :class:`ConfigError` naming the file and the key:

- only the sections and keys above; names of parameters are identifiers;
- ``[grid]`` values are non-empty lists of int/float/str/bool (no NaN or inf,
  no duplicates, one type per list; a list mixing int and float becomes float);
- ``[fixed]`` values are scalars, lists or tables (no dates, NaN or inf), and
  a name is either in ``[grid]`` or in ``[fixed]``, not both;
- every parameter must be accepted by the function's signature, and every
  parameter without a default must be given;
- if the function has a ``PARAMS`` attribute (a dict ``name -> Param``), each
  value is checked against it at load time: ``Param(int, min=1)`` makes
  ``n = [-3]`` fail with ``[grid].n: values must be integers >= 1, got -3``;
- if the function has a ``validate(params)`` attribute, it is called on every
  point and a ``ValueError`` it raises becomes a config error.

The module path may only consist of dotted identifiers; it is imported with
:func:`importlib.import_module` with this file's directory appended to
``sys.path``. Importing it runs its code: only run configs you trust as much
as a script.
"""
from __future__ import annotations

import importlib
import inspect
import itertools
import keyword
import math
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

__all__ = ["ConfigError", "Param", "Point", "SweepConfig", "load_config", "resolve_function"]

_FUNCTION_RE = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*$", re.ASCII)
_NAME_RE = re.compile(r"^[A-Za-z0-9_.\-]+$")
_SECTIONS = {
    "sweep": {"name", "function", "cache_dir"},
    "grid": None,
    "fixed": None,
    "run": {"workers", "retries", "timeout_s"},
}


class ConfigError(ValueError):
    """A sweep config is malformed; the message is one line naming file and key."""


@dataclass(frozen=True)
class Param:
    """Declared type and range of one experiment parameter (see ``PARAMS``).

    ``kind`` is ``int``, ``float``, ``str`` or ``bool`` (an int is accepted for
    a float; a bool never for a number); ``min``/``max`` bound numbers
    inclusively; ``choices`` lists allowed values.
    """

    kind: type
    min: float | None = None
    max: float | None = None
    choices: tuple | None = None

    def __post_init__(self):
        if self.kind not in (int, float, str, bool):
            raise ValueError(f"Param kind must be int, float, str or bool, got {self.kind!r}")

    def describe(self) -> str:
        noun = {int: "integers", float: "numbers", str: "strings", bool: "booleans"}[self.kind]
        if self.choices is not None:
            return f"one of {', '.join(map(repr, self.choices))}"
        bounds = []
        if self.min is not None:
            bounds.append(f">= {self.min:g}")
        if self.max is not None:
            bounds.append(f"<= {self.max:g}")
        return f"{noun} {' and '.join(bounds)}".strip()

    def accepts(self, value) -> bool:
        if self.kind is bool:
            ok = isinstance(value, bool)
        elif self.kind is int:
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif self.kind is float:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        else:
            ok = isinstance(value, str)
        if not ok:
            return False
        if self.choices is not None and value not in self.choices:
            return False
        if self.min is not None and value < self.min:
            return False
        if self.max is not None and value > self.max:
            return False
        return True


@dataclass(frozen=True)
class Point:
    """One grid point: its index in the grid, its grid coordinates, all its parameters."""

    index: tuple[int, ...]
    coords: dict
    params: dict


@dataclass(frozen=True)
class SweepConfig:
    """A validated sweep configuration (build it with :func:`load_config`)."""

    path: Path
    name: str
    function: str
    grid: dict[str, tuple]
    fixed: dict[str, Any]
    cache_dir: Path | None = None
    workers: int | None = None
    retries: int = 0
    timeout_s: float | None = None
    text: str = field(default="", repr=False)

    @property
    def dims(self) -> tuple[str, ...]:
        return tuple(self.grid)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(len(v) for v in self.grid.values())

    @property
    def search_path(self) -> tuple[str, ...]:
        """Directories appended to ``sys.path`` to import the function."""
        return (str(self.path.resolve().parent),)

    def points(self) -> list[Point]:
        """All grid points in C order (the last grid parameter varies fastest)."""
        names = list(self.grid)
        ranges = [range(len(v)) for v in self.grid.values()]
        out = []
        for index in itertools.product(*ranges):
            coords = {k: self.grid[k][i] for k, i in zip(names, index)}
            out.append(Point(index=index, coords=coords, params={**self.fixed, **coords}))
        return out

    def resolve(self) -> Callable:
        return resolve_function(self.function, self.search_path)


def resolve_function(spec: str, search_path=()) -> Callable:
    """Import ``"package.module:function"``; a spec of any other shape is refused."""
    if not isinstance(spec, str) or not _FUNCTION_RE.match(spec):
        raise ValueError(f"function must look like 'package.module:function', got {spec!r}")
    module_name, attr = spec.split(":")
    for p in search_path:
        if p not in sys.path:
            sys.path.append(p)
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise ValueError(f"cannot import module {module_name!r} "
                         f"({type(exc).__name__}: {_first_line(exc)})") from None
    fn = getattr(module, attr, None)
    if fn is None or not callable(fn):
        raise ValueError(f"module {module_name!r} has no function {attr!r}")
    return fn


# --------------------------------------------------------------------------- loading

def load_config(path) -> SweepConfig:
    """Read, validate and return a sweep config; any problem raises a one-line ConfigError."""
    path = Path(path)
    where = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{where}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{where}: cannot read ({_first_line(exc)})") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where}: invalid TOML: {_first_line(exc)}") from None

    def err(msg: str) -> ConfigError:
        return ConfigError(f"{where}: {msg}")

    for section, value in raw.items():
        if section not in _SECTIONS:
            raise err(f"unknown section [{section}] (allowed: "
                      f"{', '.join(f'[{s}]' for s in _SECTIONS)})")
        if not isinstance(value, dict):
            raise err(f"{section} must be a table [{section}]")
        allowed = _SECTIONS[section]
        for key in value:
            if allowed is not None and key not in allowed:
                raise err(f"unknown key [{section}].{key} (allowed: {', '.join(sorted(allowed))})")
    if "sweep" not in raw:
        raise err("missing section [sweep]")
    sweep = raw["sweep"]
    if "function" not in sweep:
        raise err("missing key [sweep].function (e.g. function = \"package.module:function\")")
    function = sweep["function"]
    if not isinstance(function, str) or not _FUNCTION_RE.match(function):
        raise err(f"[sweep].function must look like 'package.module:function', got {function!r}")
    name = sweep.get("name", path.stem)
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise err(f"[sweep].name must be a non-empty string of letters, digits, '_', '-', '.', "
                  f"got {name!r}")
    cache_dir = sweep.get("cache_dir")
    if cache_dir is not None:
        if not isinstance(cache_dir, str) or not cache_dir:
            raise err(f"[sweep].cache_dir must be a non-empty string, got {cache_dir!r}")
        cache_dir = (path.parent / cache_dir) if not Path(cache_dir).is_absolute() else Path(cache_dir)

    grid = {k: _grid_values(err, k, v) for k, v in raw.get("grid", {}).items()}
    fixed = {k: _fixed_value(err, f"[fixed].{k}", v) for k, v in raw.get("fixed", {}).items()}
    for k in (*grid, *fixed):
        section = "grid" if k in grid else "fixed"
        if not k.isidentifier() or keyword.iskeyword(k):
            raise err(f"[{section}].{k}: parameter names must be Python identifiers")
    both = set(grid) & set(fixed)
    if both:
        raise err(f"[fixed].{sorted(both)[0]}: also in [grid]; give it in one place")

    run = raw.get("run", {})
    workers = run.get("workers")
    if workers is not None and not _is_int(workers, 1):
        raise err(f"[run].workers must be an integer >= 1, got {workers!r}")
    retries = run.get("retries", 0)
    if not _is_int(retries, 0):
        raise err(f"[run].retries must be an integer >= 0, got {retries!r}")
    timeout_s = run.get("timeout_s")
    if timeout_s is not None and not (_is_number(timeout_s) and timeout_s > 0):
        raise err(f"[run].timeout_s must be a number > 0, got {timeout_s!r}")

    config = SweepConfig(path=path, name=name, function=function, grid=grid, fixed=fixed,
                         cache_dir=cache_dir, workers=workers, retries=retries,
                         timeout_s=None if timeout_s is None else float(timeout_s), text=text)
    try:
        fn = config.resolve()
    except ValueError as exc:
        raise err(f"[sweep].function: {exc}") from None
    _check_against_function(err, config, fn)
    return config


def _is_int(v, minimum: int) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= minimum


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _scalar_type(v):
    if isinstance(v, bool):
        return bool
    if isinstance(v, int):
        return int
    if isinstance(v, float):
        return float
    if isinstance(v, str):
        return str
    return None


def _grid_values(err, key: str, values) -> tuple:
    where = f"[grid].{key}"
    if not isinstance(values, list):
        raise err(f"{where}: must be a list of values, e.g. {key} = [1, 2, 3], got {values!r}")
    if not values:
        raise err(f"{where}: the list of values is empty")
    types = set()
    for v in values:
        t = _scalar_type(v)
        if t is None:
            raise err(f"{where}: values must be int, float, str or bool, got {v!r}")
        if t is float and not math.isfinite(v):
            raise err(f"{where}: values must be finite, got {v!r}")
        types.add(t)
    if types == {int, float}:
        values = [float(v) for v in values]
    elif len(types) > 1:
        raise err(f"{where}: values must all have one type, got "
                  f"{', '.join(sorted(t.__name__ for t in types))}")
    if len(set(values)) != len(values):
        dup = next(v for v in values if values.count(v) > 1)
        raise err(f"{where}: duplicate value {dup!r}")
    return tuple(values)


def _fixed_value(err, where: str, value):
    if isinstance(value, dict):
        return {k: _fixed_value(err, f"{where}.{k}", v) for k, v in value.items()}
    if isinstance(value, list):
        return [_fixed_value(err, f"{where}[{i}]", v) for i, v in enumerate(value)]
    t = _scalar_type(value)
    if t is None:
        raise err(f"{where}: values must be numbers, strings, booleans, lists or tables, "
                  f"got {type(value).__name__} {value!r}")
    if t is float and not math.isfinite(value):
        raise err(f"{where}: must be finite, got {value!r}")
    return value


def _check_against_function(err, config: SweepConfig, fn: Callable) -> None:
    given = {**{k: "fixed" for k in config.fixed}, **{k: "grid" for k in config.grid}}
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        sig = None
    if sig is not None:
        params = sig.parameters
        takes_kwargs = any(p.kind is p.VAR_KEYWORD for p in params.values())
        named = {k for k, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
        for k, section in given.items():
            if k not in named and not takes_kwargs:
                raise err(f"[{section}].{k}: not a parameter of {config.function} "
                          f"(it takes: {', '.join(sorted(named)) or 'nothing'})")
        for k, p in params.items():
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and \
                    p.default is p.empty and k not in given:
                raise err(f"missing parameter {k!r} of {config.function}: "
                          f"give it in [grid] or [fixed]")
            if p.kind is p.POSITIONAL_ONLY and p.default is p.empty:
                raise err(f"{config.function} has a positional-only parameter {k!r}; "
                          f"sweep functions take keyword arguments")

    schema = getattr(fn, "PARAMS", None)
    if schema is not None:
        if not isinstance(schema, dict) or not all(isinstance(v, Param) for v in schema.values()):
            raise err(f"{config.function}.PARAMS must be a dict of name -> rfdiff.sweep.Param")
        for k, section in given.items():
            spec = schema.get(k)
            if spec is None:
                raise err(f"[{section}].{k}: not a declared parameter of {config.function} "
                          f"(declared: {', '.join(sorted(schema))})")
            if section == "grid":
                bad = next((v for v in config.grid[k] if not spec.accepts(v)), None)
                if bad is not None:
                    raise err(f"[grid].{k}: values must be {spec.describe()}, got {bad!r}")
            elif not spec.accepts(config.fixed[k]):
                raise err(f"[fixed].{k}: must be {_singular(spec.describe())}, "
                          f"got {config.fixed[k]!r}")

    validate = getattr(fn, "validate", None)
    if callable(validate):
        for point in config.points():
            try:
                validate(dict(point.params))
            except (ValueError, TypeError) as exc:
                at = ", ".join(f"{k}={v!r}" for k, v in point.coords.items())
                raise err(f"[grid] point ({at}): {_first_line(exc)}" if at
                          else f"[fixed]: {_first_line(exc)}") from None


def _singular(text: str) -> str:
    for plural, single in (("integers", "an integer"), ("numbers", "a number"),
                           ("strings", "a string"), ("booleans", "a boolean")):
        if text.startswith(plural):
            return single + text[len(plural):]
    return text


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
