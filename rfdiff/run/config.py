"""Config files (TOML): one strict reader for sweeps and ``rfdiff trajectory``.

:func:`read_config` reads a TOML file whose sections are declared as frozen
dataclasses (keys and types) or as free tables: an unknown section, an
unknown key or a value of the wrong type is a one-line :class:`ConfigError`
naming the file and every offending name.

A sweep is a *registered point function* evaluated on every point of a
cartesian grid. Example (``scaling.toml``; ``tests/test_readme.py`` loads it
and runs one of its points)::

    [sweep]
    name = "scaling"                                  # names the collected file: scaling.nc
    function = "analysis.experiments.scaling:point"   # a registered point function
    cache_dir = "cache"                               # optional; relative to this file

    [grid]                                            # cartesian product, in this order
    n = [16, 64]
    seed = [0, 1]

    [fixed]                                           # passed to every point
    m = 32
    mu = 3.0
    q1 = 0.5
    n_time = 16
    t_min = 1e-3
    T = 8.0
    weighting = "sigma2"
    coarse_lo = 2.0
    coarse_hi = 12.0
    fine_per_decade = 3
    kl_tol = 0.02
    coarse_kl_tol = 0.02

    [run]                                             # optional
    workers = 2                                       # local processes (default: CPU count)
    retries = 1                                       # extra attempts for a failing point
    timeout_s = 600                                   # per point

Every point calls ``function(**fixed, **grid_point)``. Rules, each violation a
one-line :class:`ConfigError` naming the file and the key:

- only the sections and keys above; names of parameters are identifiers;
- ``[grid]`` values are non-empty lists of int/float/str/bool (no NaN or inf,
  no duplicates, one type per list; a list mixing int and float becomes float);
- ``[fixed]`` values are scalars, lists or tables (no dates, NaN or inf), and
  a name is either in ``[grid]`` or in ``[fixed]``, not both;
- ``function`` must name a function decorated with
  :func:`rfdiff.run.point_function` in its module. Anything else
  (``os:system``, ``subprocess:getoutput``, an undecorated function) is
  refused before any point runs: a config can only call code that was written
  to be a sweep point;
- every parameter must be accepted by the function's signature, and every
  parameter without a default must be given;
- if the function has a ``PARAMS`` attribute (a dict ``name -> Param``), each
  value is checked against it at load time: ``Param(int, min=1)`` makes
  ``n = [-3]`` fail with ``[grid].n: values must be integers >= 1, got -3``;
- if the function has a ``validate(params)`` attribute, it is called on every
  point and a ``ValueError`` it raises becomes a config error.

Where the function comes from: ``module:name`` is imported with
:func:`importlib.import_module` from ``sys.path`` as it is (the installed
packages, the current directory under ``python -m``, ``$PYTHONPATH``); the
config's directory is **not** added. A module of your own is named either
through ``PYTHONPATH=dir rfdiff sweep run cfg.toml`` or explicitly in the
config, ``module_file = "points.py"`` in ``[sweep]`` (relative to the config;
``function = "points:name"`` must then use the file's stem as its module).
Importing a module runs its top-level code, as ``import`` always does; nothing
in the config is evaluated. ``rfdiff sweep status`` and ``collect`` import
nothing: a point's cache key needs only the function's name, its parameters
and the code version (``load_config(path, import_function=False)``).
"""
from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import inspect
import itertools
import keyword
import math
import re
import sys
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

__all__ = ["ConfigError", "Param", "Point", "SweepConfig", "SweepSection", "RunSection",
           "load_config", "read_config", "read_table", "resolve_function", "check_function",
           "tomllib"]

_FUNCTION_RE = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*$", re.ASCII)
_NAME_RE = re.compile(r"^[A-Za-z0-9_.\-]+$")

REGISTER_HINT = ("decorate it with @point_function (from rfdiff.run import point_function) "
                 "in its module")


class ConfigError(ValueError):
    """A config file is malformed; the message is one line naming file and key."""


@dataclass(frozen=True)
class Param:
    """Declared type and range of one experiment parameter (see ``PARAMS``).

    ``kind`` is ``int``, ``float``, ``str`` or ``bool`` (an int is accepted for
    a float; a bool never for a number); ``min``/``max`` bound numbers
    inclusively; ``choices`` lists allowed values.

    >>> Param(int, min=1).accepts(0), Param(int, min=1).describe()
    (False, 'integers >= 1')
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
    module_file: Path | None = None
    text: str = field(default="", repr=False)

    @property
    def dims(self) -> tuple[str, ...]:
        return tuple(self.grid)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(len(v) for v in self.grid.values())

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
        return resolve_function(self.function, self.module_file)


def _load_module_file(module_name: str, path) -> None:
    """Import the file ``path`` as module ``module_name`` (once per process)."""
    path = Path(path)
    mod = sys.modules.get(module_name)
    if mod is not None and Path(getattr(mod, "__file__", "") or "").resolve() == path.resolve():
        return
    if not path.is_file():
        raise ValueError(f"module_file {str(path)!r}: no such file")
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ValueError(f"module_file {str(path)!r}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[module_name]
        raise ValueError(f"cannot import module_file {str(path)!r} "
                         f"({type(exc).__name__}: {_first_line(exc)})") from None


def resolve_function(spec: str, module_file=None) -> Callable:
    """The registered point function ``"package.module:function"``; anything else is refused.

    Imports the module (which registers its point functions; from
    ``module_file`` if given, else from ``sys.path`` as it is), then looks the
    name up in the registry of :func:`rfdiff.run.point_function`. Nothing is
    called.

    >>> resolve_function("os:system")
    Traceback (most recent call last):
    ...
    ValueError: os:system is not a registered point function; decorate it with @point_function (from rfdiff.run import point_function) in its module
    """
    from .experiment import registered

    if not isinstance(spec, str) or not _FUNCTION_RE.match(spec):
        raise ValueError(f"function must look like 'package.module:function', got {spec!r}")
    fn = registered(spec)
    if fn is not None:
        return fn
    module_name, attr = spec.split(":")
    if module_file is not None:
        _load_module_file(module_name, module_file)
        module = sys.modules[module_name]
    else:
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:
            raise ValueError(f"cannot import module {module_name!r} "
                             f"({type(exc).__name__}: {_first_line(exc)}; a module of your own: "
                             f"set PYTHONPATH or module_file in [sweep])") from None
    fn = registered(spec)
    if fn is not None:
        return fn
    if not callable(getattr(module, attr, None)):
        raise ValueError(f"module {module_name!r} has no function {attr!r}")
    raise ValueError(f"{spec} is not a registered point function; {REGISTER_HINT}")


# --------------------------------------------------------------------------- the one reader

def _type_name(tp) -> str:
    return getattr(tp, "__name__", str(tp)).replace("NoneType", "None")


def _coerce(value, tp):
    """``value`` as an instance of the annotation ``tp``; TypeError saying what was expected."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, getattr(types, "UnionType", typing.Union)):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        expected = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a)
            except TypeError as exc:
                expected.append(str(exc))
        raise TypeError(" or ".join(expected))
    if origin is list:
        (item,) = typing.get_args(tp) or (object,)
        if not isinstance(value, list):
            raise TypeError(f"a list of {_type_name(item)}")
        try:
            return [_coerce(v, item) for v in value]
        except TypeError:
            raise TypeError(f"a list of {_type_name(item)}") from None
    if tp is object or tp is typing.Any:
        return value
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise TypeError("a finite number")
            return float(value)
        raise TypeError("a number")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise TypeError("an integer")
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise TypeError("true or false")
    if tp is str:
        if isinstance(value, str):
            return value
        raise TypeError("a string")
    raise TypeError(_type_name(tp))


def _refuse_unknown(err, kind: str, unknown: list, allowed) -> None:
    """One error naming every unknown ``kind`` (key or section) and what is allowed."""
    if unknown:
        raise err(f"unknown {kind}{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} "
                  f"(allowed: {', '.join(allowed)})")


def read_table(cls, table: dict, err, section: str):
    """A frozen dataclass ``cls`` from one TOML table: unknown keys and wrong types refused.

    A field's ``metadata`` may hold ``{"min": x}`` (value >= x) or ``{"gt": x}``
    (value > x) for numbers.
    """
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    _refuse_unknown(err, "key", [f"[{section}].{k}" for k in table if k not in fields], fields)
    values = {}
    for name, f in fields.items():
        if name in table:
            lo, gt = f.metadata.get("min"), f.metadata.get("gt")
            bound = (f" >= {lo}" if lo is not None else "") + (f" > {gt}" if gt is not None else "")
            try:
                v = _coerce(table[name], hints[name])
                if v is not None and ((lo is not None and v < lo) or (gt is not None and not v > gt)):
                    raise TypeError(_expected(hints[name]))
            except TypeError as exc:
                raise err(f"[{section}].{name} must be {exc}{bound}, got {table[name]!r}") from None
            values[name] = v
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise err(f"missing key [{section}].{name}")
    try:
        return cls(**values)
    except ValueError as exc:
        raise err(f"[{section}]: {_first_line(exc)}") from None


def _expected(tp) -> str:
    try:
        _coerce(object(), tp)
    except TypeError as exc:
        return str(exc)
    return _type_name(tp)


def read_config(path, sections: dict, *, required=()) -> tuple[dict, str]:
    """Read a TOML file strictly: ``sections`` maps each allowed section to a frozen
    dataclass (its keys and types) or ``None`` (a free table). Returns
    ``({section: value}, text)``; unknown sections and keys, wrong types, a
    missing required section or an unreadable file: one-line :class:`ConfigError`.

    >>> import dataclasses, pathlib, tempfile
    >>> @dataclasses.dataclass(frozen=True)
    ... class Job:
    ...     n: int = 1
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "job.toml"
    >>> _ = path.write_text("[job]\\nn = 3\\n[jbo]\\nn = 4\\n")
    >>> read_config(path, {"job": Job})
    Traceback (most recent call last):
    ...
    rfdiff.run.config.ConfigError: ...job.toml: unknown section [jbo] (allowed: [job])
    >>> _ = path.write_text("[job]\\nn = 3\\n")
    >>> read_config(path, {"job": Job})[0]["job"]
    Job(n=3)
    """
    path = Path(path)
    where = str(path)

    def err(msg: str) -> ConfigError:
        return ConfigError(f"{where}: {msg}")

    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise err("no such file") from None
    except IsADirectoryError:
        raise err("is a directory, not a config file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise err(f"cannot read ({_first_line(exc)})") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise err(f"invalid TOML: {_first_line(exc)}") from None
    _refuse_unknown(err, "section", [f"[{s}]" for s in raw if s not in sections],
                    [f"[{s}]" for s in sections])
    out = {}
    for section, value in raw.items():
        if not isinstance(value, dict):
            raise err(f"{section} must be a table [{section}]")
        cls = sections[section]
        out[section] = value if cls is None else read_table(cls, value, err, section)
    for section in required:
        if section not in out:
            raise err(f"missing section [{section}]")
    return out, text


@dataclass(frozen=True)
class SweepSection:
    """The ``[sweep]`` table."""

    function: str
    name: str | None = None
    cache_dir: str | None = None
    module_file: str | None = None


@dataclass(frozen=True)
class RunSection:
    """The ``[run]`` table."""

    workers: int | None = field(default=None, metadata={"min": 1})
    retries: int = field(default=0, metadata={"min": 0})
    timeout_s: float | None = field(default=None, metadata={"gt": 0})


# --------------------------------------------------------------------------- sweeps

def load_config(path, *, import_function: bool = True) -> SweepConfig:
    """Read, validate and return a sweep config; any problem raises a one-line ConfigError.

    ``import_function=False`` checks only the file (no module is imported):
    enough for the status and the results of a sweep.
    """
    path = Path(path)

    def err(msg: str) -> ConfigError:
        return ConfigError(f"{path}: {msg}")

    try:
        raw, text = read_config(path, {"sweep": SweepSection, "grid": None, "fixed": None,
                                       "run": RunSection}, required=("sweep",))
    except ConfigError as exc:
        if "missing key [sweep].function" in str(exc):
            raise ConfigError(f"{exc} (e.g. function = \"package.module:function\")") from None
        raise
    sweep = raw["sweep"]
    function = sweep.function
    if not _FUNCTION_RE.match(function):
        raise err(f"[sweep].function must look like 'package.module:function', got {function!r}")
    name = sweep.name if sweep.name is not None else path.stem
    if not _NAME_RE.match(name):
        raise err(f"[sweep].name must be a non-empty string of letters, digits, '_', '-', '.', "
                  f"got {name!r}")
    cache_dir = sweep.cache_dir
    if cache_dir is not None:
        if not cache_dir:
            raise err(f"[sweep].cache_dir must be a non-empty string, got {cache_dir!r}")
        cache_dir = Path(cache_dir) if Path(cache_dir).is_absolute() else path.parent / cache_dir
    module_file = sweep.module_file
    if module_file is not None:
        module_file = Path(module_file) if Path(module_file).is_absolute() else path.parent / module_file
        if module_file.suffix != ".py" or module_file.stem != function.split(":")[0]:
            raise err(f"[sweep].module_file must be a .py file named after the function's module "
                      f"({function.split(':')[0]}.py), got {sweep.module_file!r}")

    grid = {k: _grid_values(err, k, v) for k, v in raw.get("grid", {}).items()}
    fixed = {k: _fixed_value(err, f"[fixed].{k}", v) for k, v in raw.get("fixed", {}).items()}
    for k in (*grid, *fixed):
        section = "grid" if k in grid else "fixed"
        if not k.isidentifier() or keyword.iskeyword(k):
            raise err(f"[{section}].{k}: parameter names must be Python identifiers")
    both = set(grid) & set(fixed)
    if both:
        raise err(f"[fixed].{sorted(both)[0]}: also in [grid]; give it in one place")
    run = raw.get("run") or RunSection()
    config = SweepConfig(path=path, name=name, function=function, grid=grid, fixed=fixed,
                         cache_dir=cache_dir, workers=run.workers, retries=run.retries,
                         timeout_s=run.timeout_s, module_file=module_file, text=text)
    if import_function:
        check_function(config)
    return config


def check_function(config: SweepConfig) -> Callable:
    """Import and check the config's point function against its parameters (one-line errors)."""
    def err(msg: str) -> ConfigError:
        return ConfigError(f"{config.path}: {msg}")

    try:
        fn = config.resolve()
    except ValueError as exc:
        raise err(f"[sweep].function: {_first_line(exc)}") from None
    _check_against_function(err, config, fn)
    return fn


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
    kinds = set()
    for v in values:
        t = _scalar_type(v)
        if t is None:
            raise err(f"{where}: values must be int, float, str or bool, got {v!r}")
        if t is float and not math.isfinite(v):
            raise err(f"{where}: values must be finite, got {v!r}")
        kinds.add(t)
    if kinds == {int, float}:
        values = [float(v) for v in values]
    elif len(kinds) > 1:
        raise err(f"{where}: values must all have one type, got "
                  f"{', '.join(sorted(t.__name__ for t in kinds))}")
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
            raise err(f"{config.function}.PARAMS must be a dict of name -> rfdiff.run.Param")
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
