"""A content-addressed on-disk cache of results.

Key: ``sha256`` of the canonical JSON of ``(experiment name, params,
code_version)`` (:func:`cache_key`). Because :func:`rfdiff.provenance.code_version`
is part of the key, **editing the code invalidates the cache** (see that module
for exactly what counts as an edit).

Layout, under the root (``--cache-dir`` / a parameter, else ``$RFDIFF_CACHE_DIR``,
else ``./.rfdiff_cache``)::

    ab/abcd...ef.json                 manifest: format, checksum, size, structure, meta
    ab/abcd...ef-<sha16>.npz          the value (a tree of arrays)  or  -<sha16>.nc
    ab/abcd...ef.failed.json          last failure of that point (sweeps only)
    ab/abcd...ef.claim                a run is computing that point (pid, host)

A value is either an ``xarray.Dataset`` (stored as netCDF) or a *tree*: a dict
with string keys whose leaves are numbers, bools, strings, NumPy arrays of
numbers/bools/strings, lists of those, or nested dicts (stored as one ``.npz``
read with ``allow_pickle=False``). Loading returns scalars as Python scalars,
arrays as arrays and lists as lists.

Writes are atomic and ordered: the data file (named by its own checksum) is
moved into place first, the manifest last. An entry counts only when its
manifest parses, its own checksum (``manifest_sha256``: sha256 of the
canonical JSON of every other field) matches, and the data file has the
recorded size and sha256. So a truncated or corrupted entry - data or
manifest, e.g. two leaf names swapped - is reported with a
:class:`CacheWarning` and treated as missing: it is recomputed, never loaded.
Only a cache opened with ``repair=True`` (the runner's, and ``rfdiff sweep
status --repair``) deletes such entries; ``Cache(root, repair=False)``
(``rfdiff sweep status`` and ``collect``) only reports them and deletes nothing.

Claims (:meth:`Cache.claim`): before computing a point, a runner creates
``<key>.claim`` atomically (``O_CREAT | O_EXCL``) with its pid and host, and
removes it once the result (or failure) is written. Another run that finds
the claim leaves the point alone and waits for its result; a claim whose
owner is gone (same host, pid not alive; another host: older than
``foreign_claim_s``) is stale and taken over.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import os
import re
import socket
import time
import warnings
import zipfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np

from ..io import (_pid_alive, canonical_json, clean_stale_temp, load_dataset, load_json, netcdf_engine,
                 save_json, temp_path, to_jsonable)

__all__ = ["Cache", "CacheWarning", "CacheNotWritable", "cache_key", "default_cache_dir", "cached",
           "cached_function", "check_writable_dir", "check_writable_file"]

FORMAT = "rfdiff-cache/2"
_KEY_RE = re.compile(r"^[0-9a-f]{64}$")
_MISSING = object()


class CacheWarning(UserWarning):
    """A cache entry was unreadable (truncated, corrupted) and is being ignored."""


class CacheNotWritable(ValueError):
    """The cache directory cannot be written (a file, read-only, no permission)."""


def check_writable_dir(path, what: str = "directory") -> Path:
    """Create ``path`` if needed and check a file can be written in it; else one-line ValueError.

    Used before any work starts, so a bad output or cache location costs nothing.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise CacheNotWritable(f"{what} {path} is a file, not a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = temp_path(path / "write-probe")
        with open(probe, "wb") as f:
            f.write(b"ok")
        os.unlink(probe)
    except OSError as exc:
        raise CacheNotWritable(f"{what} {path} is not writable ({exc.strerror or exc})") from None
    return path


def check_writable_file(path, what: str = "output") -> Path:
    """Check ``path`` can be written as a file (its directory writable, not a directory itself)."""
    path = Path(path)
    if path.is_dir():
        raise CacheNotWritable(f"{what} {path} is an existing directory; give a file name")
    try:
        check_writable_dir(path.parent, f"{what} directory")
    except CacheNotWritable as exc:
        raise CacheNotWritable(f"{what} {path}: {exc}") from None
    return path


def _manifest_digest(man: dict) -> str:
    body = {k: v for k, v in man.items() if k != "manifest_sha256"}
    return hashlib.sha256(canonical_json(body).encode("ascii")).hexdigest()


def _host() -> str:
    return socket.gethostname() or "host"


def default_cache_dir() -> Path:
    """``$RFDIFF_CACHE_DIR`` if set, else ``.rfdiff_cache`` in the current directory."""
    return Path(os.environ.get("RFDIFF_CACHE_DIR") or ".rfdiff_cache")


def cache_key(experiment: str, params: dict, code_version: str | None = None) -> str:
    """sha256 hex digest of the canonical JSON of (experiment, params, code_version).

    ``code_version`` defaults to :func:`rfdiff.provenance.code_version`.
    Params must be JSON-representable (numbers, strings, arrays, dataclasses...);
    dict order and NumPy-vs-Python scalar types do not change the key.
    """
    if code_version is None:
        from ..provenance import code_version as _cv
        code_version = _cv()
    text = canonical_json({"experiment": experiment, "params": params,
                           "code_version": code_version})
    return hashlib.sha256(text.encode("ascii")).hexdigest()


# --------------------------------------------------------------------------- trees

def _flatten(value, path: tuple, leaves: list, arrays: dict) -> None:
    """Split a tree into a structure list (JSON) and a dict of arrays (npz)."""
    where = "/".join(map(str, path)) or "value"
    if isinstance(value, dict):
        if not value and path:
            leaves.append({"path": list(path), "kind": "dict"})
        for k, v in value.items():
            if not isinstance(k, str):
                raise TypeError(f"cache value {where}: key {k!r} is not a string")
            _flatten(v, path + (k,), leaves, arrays)
        return
    if isinstance(value, (list, tuple)):
        kind = "list"
    elif isinstance(value, str):
        kind = "str"
    elif isinstance(value, np.ndarray):
        kind = "array"
    elif isinstance(value, (bool, int, float, complex, np.generic)):
        kind = "scalar"
    else:
        raise TypeError(f"cache value {where}: cannot store objects of type {type(value).__name__}")
    arr = np.asarray(value)
    if arr.dtype.kind not in "biufcU":
        raise TypeError(f"cache value {where}: cannot store dtype {arr.dtype} without pickle")
    name = f"a{len(arrays)}"
    arrays[name] = arr
    leaves.append({"path": list(path), "kind": kind, "array": name})


def _unflatten(leaves: list, arrays) -> dict:
    root: dict = {}
    for leaf in leaves:
        *parents, last = leaf["path"]
        node = root
        for p in parents:
            node = node.setdefault(p, {})
        if leaf["kind"] == "dict":
            node[last] = {}
            continue
        arr = arrays[leaf["array"]]
        kind = leaf["kind"]
        if kind == "array":
            node[last] = arr
        elif kind == "list":
            node[last] = arr.tolist()
        else:  # scalar or str
            node[last] = arr[()].item()
    return root


def _file_sha256(path: Path) -> tuple[str, int]:
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size


# --------------------------------------------------------------------------- cache

class Cache:
    """A directory of content-addressed results: ``has``/``get``/``put`` by key.

    ``root`` defaults to :func:`default_cache_dir`. Keys are sha256 hex digests
    (from :func:`cache_key`). ``repair=False``: corrupt entries are reported
    (warning) and treated as missing, but never deleted.
    """

    def __init__(self, root=None, *, repair: bool = True, foreign_claim_s: float = 86400.0):
        self.root = Path(root) if root is not None else default_cache_dir()
        self.repair = bool(repair)
        self.foreign_claim_s = float(foreign_claim_s)

    def __repr__(self) -> str:
        return f"Cache({str(self.root)!r})"

    # paths
    def _check_key(self, key: str) -> str:
        if not isinstance(key, str) or not _KEY_RE.match(key):
            raise ValueError(f"cache key must be a sha256 hex digest, got {key!r}")
        return key

    def _dir(self, key: str) -> Path:
        return self.root / self._check_key(key)[:2]

    def manifest_path(self, key: str) -> Path:
        return self._dir(key) / f"{key}.json"

    def failure_path(self, key: str) -> Path:
        return self._dir(key) / f"{key}.failed.json"

    def claim_path(self, key: str) -> Path:
        return self._dir(key) / f"{key}.claim"

    def check_writable(self) -> None:
        """One-line ValueError now if results could not be stored (before any work)."""
        check_writable_dir(self.root, "cache directory")

    # reading
    def _manifest(self, key: str, deep: bool = True) -> dict | None:
        """The manifest if the entry is complete and intact, else None (warning if corrupt)."""
        mpath = self.manifest_path(key)
        if not mpath.exists():
            return None
        try:
            man = load_json(mpath)
            if not isinstance(man, dict) or man.get("format") != FORMAT or man.get("key") != key:
                raise ValueError(f"{mpath}: not an rfdiff cache manifest for this key")
            if man.get("manifest_sha256") != _manifest_digest(man):
                raise ValueError(f"{mpath}: manifest checksum mismatch (the manifest was altered)")
            data = mpath.parent / man["file"]
            if Path(man["file"]).name != man["file"] or not man["file"].startswith(key):
                raise ValueError(f"{mpath}: bad data file name {man['file']!r}")
            if not data.is_file():
                raise ValueError(f"{data}: data file missing")
            if data.stat().st_size != man["size"]:
                raise ValueError(f"{data}: truncated or altered ({data.stat().st_size} bytes, "
                                 f"expected {man['size']})")
            if deep and _file_sha256(data)[0] != man["sha256"]:
                raise ValueError(f"{data}: checksum mismatch")
        except (ValueError, KeyError, TypeError, OSError) as exc:
            self._discard(key, str(exc))
            return None
        return man

    def _discard(self, key: str, reason: str) -> None:
        if not self.repair:
            warnings.warn(f"corrupt cache entry {key[:12]}: {reason}; counted as missing "
                          "(left in place: 'rfdiff sweep run' recomputes it, "
                          "'rfdiff sweep status --repair' removes it)",
                          CacheWarning, stacklevel=4)
            return
        warnings.warn(f"ignoring corrupt cache entry {key[:12]}: {reason}; it will be recomputed",
                      CacheWarning, stacklevel=4)
        mpath = self.manifest_path(key)
        # Manifest first: without it the entry is missing whatever remains.
        for p in [mpath, *mpath.parent.glob(f"{key}-*")]:
            try:
                p.unlink()
            except OSError:
                pass

    def has(self, key: str) -> bool:
        """True if a complete, checksum-verified entry exists for ``key``."""
        return self._manifest(key) is not None

    def get(self, key: str, default=_MISSING):
        """The stored value; a missing or corrupt entry returns ``default`` or raises KeyError."""
        man = self._manifest(key, deep=False)
        if man is None:
            if default is _MISSING:
                raise KeyError(key)
            return default
        data = self.manifest_path(key).parent / man["file"]
        blob = data.read_bytes()
        if hashlib.sha256(blob).hexdigest() != man["sha256"]:
            self._discard(key, f"{data}: checksum mismatch")
            if default is _MISSING:
                raise KeyError(key)
            return default
        try:
            if man["kind"] == "dataset":
                return load_dataset(data)
            with np.load(io.BytesIO(blob), allow_pickle=False) as npz:
                return _unflatten(man["leaves"], npz)
        except (ValueError, KeyError, TypeError, OSError, zipfile.BadZipFile) as exc:
            self._discard(key, f"{data}: unreadable ({type(exc).__name__}: {exc})")
            if default is _MISSING:
                raise KeyError(key) from None
            return default

    def meta(self, key: str) -> dict | None:
        """The ``meta`` dict stored with an intact entry, or None."""
        man = self._manifest(key)
        return None if man is None else man.get("meta", {})

    # writing
    def put(self, key: str, value, meta: dict | None = None) -> Path:
        """Store ``value`` (a tree dict or an xarray Dataset) under ``key``, atomically.

        ``meta`` (JSON-able) is kept in the manifest, e.g. the parameters.
        Returns the manifest path.
        """
        d = self._dir(key)
        d.mkdir(parents=True, exist_ok=True)
        leaves: list | None = None
        if _is_dataset(value):
            kind, suffix = "dataset", ".nc"
        elif isinstance(value, dict):
            kind, suffix, leaves, arrays = "tree", ".npz", [], {}
            _flatten(value, (), leaves, arrays)
        else:
            raise TypeError(f"cache values are dicts or xarray Datasets, got {type(value).__name__}")
        # The data file is named by its checksum, known only once written, so it
        # is staged under a temporary name and then renamed (atomic).
        tmp = temp_path(d / f"{key}{suffix}")
        try:
            if kind == "dataset":
                value.to_netcdf(tmp, engine=netcdf_engine())
            else:
                with open(tmp, "wb") as f:
                    np.savez(f, **arrays)
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
            digest, size = _file_sha256(tmp)
            final = d / f"{key}-{digest[:16]}{suffix}"
            os.replace(tmp, final)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
        old = None
        mpath = self.manifest_path(key)
        if mpath.exists():
            try:
                old = load_json(mpath).get("file")
            except (ValueError, AttributeError):
                old = None
        manifest = {"format": FORMAT, "key": key, "kind": kind, "file": final.name,
                    "size": size, "sha256": digest, "leaves": leaves,
                    "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                    "meta": to_jsonable(meta or {}, strict=False)}
        manifest["manifest_sha256"] = _manifest_digest(manifest)
        save_json(manifest, mpath)  # last: the entry exists from this moment
        if isinstance(old, str) and old != final.name and Path(old).name == old \
                and old.startswith(f"{key}-"):
            try:
                (d / old).unlink()
            except OSError:
                pass
        return mpath

    def delete(self, key: str) -> None:
        """Remove the entry and any failure record for ``key``."""
        mpath = self.manifest_path(key)
        for p in [mpath, self.failure_path(key), self.claim_path(key),
                  *mpath.parent.glob(f"{key}-*")]:
            try:
                p.unlink()
            except FileNotFoundError:
                pass

    # failure records (used by the sweep runner)
    def record_failure(self, key: str, info: dict) -> Path:
        """Write ``info`` (traceback, params...) to ``<key>.failed.json``, atomically."""
        return save_json(info, self.failure_path(key))

    def failure(self, key: str) -> dict | None:
        """The failure record for ``key``, or None (an unreadable record counts as None)."""
        p = self.failure_path(key)
        if not p.exists():
            return None
        try:
            rec = load_json(p)
        except ValueError:
            return None
        return rec if isinstance(rec, dict) else None

    def clear_failure(self, key: str) -> None:
        try:
            self.failure_path(key).unlink()
        except FileNotFoundError:
            pass

    def clean(self) -> list[Path]:
        """Remove temporary files left by writers that were killed; return them."""
        return clean_stale_temp(self.root)

    # claims (two runs on one cache compute each point once)
    def claim(self, key: str) -> bool:
        """Claim ``key`` for this process; False if a live owner holds it.

        A claim of a dead owner is taken over (see the module docstring).
        """
        path = self.claim_path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        mine = canonical_json({"pid": os.getpid(), "host": _host(), "time": time.time()})
        for _ in range(3):
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                if not self._claim_stale(path):
                    return False
                # take over: move the stale claim aside (only one taker's rename succeeds)
                aside = path.with_name(f".{path.name}~{_host()}~{os.getpid()}~stale.tmp")
                try:
                    os.rename(path, aside)
                except FileNotFoundError:
                    continue
                with contextlib.suppress(OSError):
                    os.unlink(aside)
                continue
            with os.fdopen(fd, "w") as f:
                f.write(mine)
            return True
        return False

    def claim_owner(self, key: str) -> dict | None:
        """``{"pid", "host", "time"}`` of the claim on ``key``, or None."""
        try:
            rec = load_json(self.claim_path(key))
        except ValueError:
            return None
        return rec if isinstance(rec, dict) else None

    def _claim_stale(self, path: Path) -> bool:
        try:
            rec = load_json(path)
            age = time.time() - path.stat().st_mtime
        except (ValueError, OSError):
            try:   # unreadable: half-written by a creator that is still writing, or junk
                return time.time() - path.stat().st_mtime > 10.0
            except OSError:
                return False
        if not isinstance(rec, dict):
            return age > 10.0
        if rec.get("host") == _host() and isinstance(rec.get("pid"), int):
            return not _pid_alive(rec["pid"])
        return age > self.foreign_claim_s

    def claimed_by_other(self, key: str) -> bool:
        """True if a live owner other than this process holds a claim on ``key``."""
        path = self.claim_path(key)
        if not path.exists():
            return False
        rec = self.claim_owner(key)
        if rec and rec.get("pid") == os.getpid() and rec.get("host") == _host():
            return False
        return not self._claim_stale(path)

    def release(self, key: str) -> None:
        """Remove this process's claim on ``key`` (another owner's claim is left alone)."""
        rec = self.claim_owner(key)
        if rec and rec.get("pid") == os.getpid() and rec.get("host") == _host():
            with contextlib.suppress(FileNotFoundError):
                self.claim_path(key).unlink()


def _is_dataset(value) -> bool:
    xr = __import__("sys").modules.get("xarray")
    return xr is not None and isinstance(value, xr.Dataset)


# --------------------------------------------------------------------------- helpers

def _fn_name(fn: Callable) -> str:
    return f"{fn.__module__}:{fn.__qualname__}"


def cached(fn: Callable, params: dict, cache: Cache | None = None, *,
           name: str | None = None, code_version: str | None = None):
    """``fn(**params)``, computed once and then read from ``cache``.

    The key is :func:`cache_key` of ``name`` (default ``module:qualname`` of
    ``fn``), ``params`` and the code version. ``fn`` must return a tree dict or
    an xarray Dataset. The first call returns the value as read back from the
    cache, so first and later calls return identical types.
    """
    cache = cache if cache is not None else Cache()
    key = cache_key(name or _fn_name(fn), params, code_version)
    value = cache.get(key, None)
    if value is not None:
        return value
    value = fn(**params)
    cache.put(key, value, meta={"experiment": name or _fn_name(fn), "params": params})
    return cache.get(key)


def cached_function(cache: Cache | None = None, *, name: str | None = None):
    """Decorator form of :func:`cached`: ``f(**params)`` goes through the cache.

    The cache (default: :func:`default_cache_dir` at call time) and the name
    are looked up at each call; only keyword arguments are accepted.
    """
    def decorate(fn):
        @functools.wraps(fn)
        def wrapper(**params):
            return cached(fn, params, cache if cache is not None else Cache(), name=name)
        wrapper.uncached = fn
        return wrapper
    return decorate
