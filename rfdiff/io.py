"""Saving and loading results: netCDF datasets and strict JSON, written atomically.

Every writer here goes through :func:`atomic_path`: the data is written to a
temporary file in the destination's directory and moved into place with
``os.replace``, which is atomic on POSIX and Windows. A process killed
mid-write therefore leaves either the old file or the new one, never half of
one; at worst it leaves a temporary file named
``.<name>~<host>~<pid>~<token>.tmp``, which readers ignore and
:func:`clean_stale_temp` removes once its writer is dead.

Nothing is ever pickled: datasets are netCDF-4 (engine ``h5netcdf``), metadata
is strict JSON (no NaN, no Infinity), arrays go to ``.npz`` with
``allow_pickle=False`` (see :mod:`rfdiff.run.cache`).
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import secrets
import socket
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np

__all__ = [
    "to_jsonable",
    "canonical_json",
    "atomic_path",
    "temp_path",
    "clean_stale_temp",
    "save_json",
    "load_json",
    "save_dataset",
    "netcdf_engine",
    "load_dataset",
    "attach_provenance",
    "read_provenance",
]

_TMP_SUFFIX = ".tmp"
_SEP = "~"
# A temporary file from another machine cannot be checked for a live writer;
# past this age it is considered abandoned.
_FOREIGN_TMP_MAX_AGE_S = 24 * 3600.0


# --------------------------------------------------------------------------- JSON

def to_jsonable(obj: Any, *, strict: bool = True, _where: str = "value") -> Any:
    """Convert ``obj`` to plain JSON types (dict, list, str, int, float, bool, None).

    NumPy scalars become Python scalars, arrays become (nested) lists, tuples
    become lists, paths become strings, dataclasses become dicts of their
    fields plus ``"__class__"``. With ``strict=True`` (used for cache keys and
    :func:`save_json`) a non-finite float or an unsupported object raises
    ``ValueError`` naming where it sits; with ``strict=False`` (used for
    provenance, which must never fail) they are replaced by their ``repr``.
    """
    if obj is None or isinstance(obj, (str, bool)):
        return obj
    if isinstance(obj, (int, np.integer)) and not isinstance(obj, np.bool_):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, (float, np.floating)):
        x = float(obj)
        if math.isfinite(x):
            return x
        if strict:
            raise ValueError(f"{_where}: non-finite float {x} is not allowed in strict JSON")
        return repr(x)
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind in "biufU":
            return to_jsonable(obj.tolist(), strict=strict, _where=_where)
        if strict:
            raise ValueError(f"{_where}: arrays of dtype {obj.dtype} cannot be stored as JSON")
        return repr(obj)
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            if isinstance(k, (np.integer, int)) and not isinstance(k, bool):
                k = str(int(k))
            if not isinstance(k, str):
                if strict:
                    raise ValueError(f"{_where}: dict key {k!r} is not a string")
                k = repr(k)
            out[k] = to_jsonable(v, strict=strict, _where=f"{_where}.{k}")
        return out
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v, strict=strict, _where=f"{_where}[{i}]") for i, v in enumerate(obj)]
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        fields = {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
        fields["__class__"] = f"{type(obj).__module__}.{type(obj).__qualname__}"
        return to_jsonable(fields, strict=strict, _where=_where)
    if strict:
        raise ValueError(f"{_where}: objects of type {type(obj).__name__} cannot be stored as JSON")
    return repr(obj)


def canonical_json(obj: Any) -> str:
    """One canonical strict-JSON text for ``obj``: sorted keys, no spaces, ASCII.

    Equal values give equal text whatever the dict order, tuple-vs-list, or
    NumPy-vs-Python scalar type; floats keep their exact ``repr``.
    """
    return json.dumps(to_jsonable(obj, strict=True), sort_keys=True,
                      separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def _reject_constant(name: str):
    raise ValueError(f"non-standard JSON constant {name}")


def save_json(obj: Any, path) -> Path:
    """Write ``obj`` as strict, indented JSON to ``path``, atomically."""
    path = Path(path)
    text = json.dumps(to_jsonable(obj, strict=True), indent=2, sort_keys=True,
                      allow_nan=False, ensure_ascii=False) + "\n"
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
    return path


def load_json(path) -> Any:
    """Read strict JSON; a missing, unreadable or malformed file raises ValueError naming it."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
        return json.loads(text, parse_constant=_reject_constant)
    except FileNotFoundError:
        raise ValueError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ValueError(f"{path}: not a valid JSON file ({_one_line(exc)})") from None


# --------------------------------------------------------------------------- atomic files

def temp_path(path) -> Path:
    """A unique temporary name next to ``path`` (hidden, recognised by :func:`clean_stale_temp`)."""
    path = Path(path)
    host = socket.gethostname().replace(_SEP, "-") or "host"
    return path.with_name(f".{path.name}{_SEP}{host}{_SEP}{os.getpid()}{_SEP}"
                          f"{secrets.token_hex(4)}{_TMP_SUFFIX}")


@contextlib.contextmanager
def atomic_path(path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success move it onto ``path``.

    The caller writes the complete file to the yielded path (by any library
    that takes a file name). If the block raises, the temporary file is
    removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def clean_stale_temp(directory, *, recursive: bool = True) -> list[Path]:
    """Remove temporary files left by :func:`atomic_path` writers that died.

    A file written on this host is removed when its writer's pid is gone; one
    from another host when it is older than a day. Returns the removed paths.
    """
    directory = Path(directory)
    if not directory.is_dir():
        return []
    host = socket.gethostname().replace(_SEP, "-") or "host"
    pattern = f"**/.*{_TMP_SUFFIX}" if recursive else f".*{_TMP_SUFFIX}"
    removed = []
    for p in directory.glob(pattern):
        parts = p.name[: -len(_TMP_SUFFIX)].rsplit(_SEP, 3)
        if len(parts) != 4 or not parts[2].isdigit():
            continue
        _, p_host, pid, _ = parts
        try:
            if p_host == host:
                stale = not _pid_alive(int(pid))
            else:
                stale = time.time() - p.stat().st_mtime > _FOREIGN_TMP_MAX_AGE_S
            if stale:
                p.unlink()
                removed.append(p)
        except OSError:
            continue
    return removed


# --------------------------------------------------------------------------- netCDF

def netcdf_engine() -> str:
    """``"h5netcdf"`` (needs h5py), else ``"netcdf4"``; both write netCDF-4/HDF5 files."""
    import importlib.util

    if importlib.util.find_spec("h5py") is not None:
        return "h5netcdf"
    if importlib.util.find_spec("netCDF4") is not None:
        return "netcdf4"
    raise ImportError("writing netCDF needs h5py: pip install h5py (or h5netcdf[h5py])")


def save_dataset(ds, path) -> Path:
    """Write an ``xarray.Dataset`` to netCDF-4 (engine h5netcdf), atomically.

    Attributes must be strings, numbers or arrays (netCDF's rule); put nested
    metadata in one JSON string, as :func:`attach_provenance` does.
    """
    path = Path(path)
    with atomic_path(path) as tmp:
        ds.to_netcdf(tmp, engine=netcdf_engine())
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    return path


def load_dataset(path):
    """Read a netCDF file fully into memory; a bad file raises ValueError naming it."""
    import xarray as xr

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    try:
        with xr.open_dataset(path, engine=netcdf_engine()) as ds:
            return ds.load()
    except Exception as exc:  # h5py/h5netcdf raise OSError, ValueError, KeyError...
        raise ValueError(f"{path}: not a readable netCDF file ({_one_line(exc)})") from None


def attach_provenance(ds, prov: dict):
    """Return a copy of ``ds`` whose attrs carry ``prov`` as one JSON string ``provenance``.

    netCDF attributes must be strings, numbers or arrays, so the nested
    provenance dict is serialised whole; the code version and timestamp are
    also copied to flat attributes for quick inspection (``ncdump -h``).
    """
    out = ds.copy(deep=False)
    out.attrs = dict(ds.attrs)
    out.attrs["provenance"] = json.dumps(to_jsonable(prov, strict=False), sort_keys=True)
    for k in ("code_version", "timestamp", "rfdiff_version"):
        if isinstance(prov.get(k), str):
            out.attrs[k] = prov[k]
    return out


def read_provenance(ds) -> dict:
    """The provenance dict stored by :func:`attach_provenance` (``{}`` if none)."""
    text = ds.attrs.get("provenance")
    if text is None:
        return {}
    return json.loads(text)


def _one_line(exc: BaseException) -> str:
    msg = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {msg[0]}" if msg else type(exc).__name__
