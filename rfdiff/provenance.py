"""Where a result came from: versions, git revision, platform, time, parameters.

:func:`provenance` is attached to every saved result (see
:func:`rfdiff.io.attach_provenance`); :func:`code_version` is part of every
cache key (see :mod:`rfdiff.run.cache`), so **the cache invalidates when the code
changes**:

- in a clean git checkout the code version is ``git:<revision>``: any new
  commit invalidates cached results;
- in a checkout with uncommitted changes under ``rfdiff/`` or ``analysis/`` it
  is ``git:<revision>+dirty:<hash>``, the hash being over the ``.py`` files of
  those two trees, so every further edit invalidates again;
- outside git (an installed wheel) it is ``src:<hash>`` of the same files;
- it is detected once per process, from the files as they were then;
- the environment variable ``RFDIFF_CODE_VERSION``, when set, replaces all of
  this (e.g. to share one cache between machines that differ only in
  checkout, or to pin it while editing plots).

Nothing here raises: a missing package or git is reported as ``None`` /
``"unknown"``. Optional packages are never imported just to read a version.
"""
from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.metadata
import os
import platform
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

from .io import to_jsonable

__all__ = ["provenance", "code_version", "git_info", "package_versions", "environment_report"]

_PACKAGE_DIR = Path(__file__).resolve().parent
_REPO_DIR = _PACKAGE_DIR.parent
_SOURCE_TREES = ("rfdiff", "analysis")

# distribution names to try for each reported package
_DISTRIBUTIONS = {
    "numpy": ("numpy",),
    "scipy": ("scipy",),
    "sympy": ("sympy",),
    "numba": ("numba",),
    "xarray": ("xarray",),
    "h5netcdf": ("h5netcdf",),
    "torch": ("torch",),
    "cupy": ("cupy", "cupy-cuda12x", "cupy-cuda11x", "cupy-cuda13x"),
    "dask": ("dask",),
    "distributed": ("distributed",),
}


def _rfdiff_version() -> str:
    try:
        return importlib.metadata.version("rfdiff")
    except importlib.metadata.PackageNotFoundError:
        pass
    pkg = sys.modules.get("rfdiff")
    return str(getattr(pkg, "__version__", "unknown"))


def package_versions() -> dict[str, str | None]:
    """Versions of rfdiff and its (optional) dependencies; ``None`` if absent.

    A module already imported reports its ``__version__``; otherwise the
    installed distribution's metadata is read, so torch or cupy are never
    imported (slowly) just for this.
    """
    out: dict[str, str | None] = {"rfdiff": _rfdiff_version()}
    for name, dists in _DISTRIBUTIONS.items():
        mod = sys.modules.get(name)
        version = getattr(mod, "__version__", None) if mod is not None else None
        for dist in dists:
            if version is not None:
                break
            try:
                version = importlib.metadata.version(dist)
            except importlib.metadata.PackageNotFoundError:
                continue
        out[name] = None if version is None else str(version)
    return out


def _git(*args: str) -> str | None:
    try:
        res = subprocess.run(["git", *args], cwd=_PACKAGE_DIR, capture_output=True,
                             text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return res.stdout.strip() if res.returncode == 0 else None


def git_info() -> dict:
    """``{"revision": sha or "unknown", "dirty": bool or None}`` for the rfdiff source tree.

    Dirty means uncommitted changes (untracked files included) under
    ``rfdiff/`` or ``analysis/``. A package not tracked by the enclosing
    repository (e.g. installed into a virtualenv inside some other checkout)
    counts as not a git checkout.
    """
    revision = _git("rev-parse", "HEAD")
    if not revision or not _git("ls-files", "--", "."):
        return {"revision": "unknown", "dirty": None}
    trees = [str(_REPO_DIR / t) for t in _SOURCE_TREES if (_REPO_DIR / t).is_dir()]
    status = _git("status", "--porcelain", "--", *trees)
    return {"revision": revision, "dirty": None if status is None else bool(status)}


def source_hash() -> str:
    """sha256 over the paths and contents of the ``.py`` files of rfdiff/ and analysis/."""
    h = hashlib.sha256()
    for tree in _SOURCE_TREES:
        root = _REPO_DIR / tree
        if not root.is_dir():
            continue
        for p in sorted(root.rglob("*.py")):
            if "__pycache__" in p.parts:
                continue
            try:
                data = p.read_bytes()
            except OSError:
                continue
            h.update(p.relative_to(_REPO_DIR).as_posix().encode())
            h.update(b"\0")
            h.update(hashlib.sha256(data).digest())
    return h.hexdigest()


def code_version() -> str:
    """The code identity used in cache keys (see the module docstring).

    Detected once per process (a process runs the code it imported when it
    started, whatever happens to the files later); ``RFDIFF_CODE_VERSION`` is
    read on every call.
    """
    override = os.environ.get("RFDIFF_CODE_VERSION")
    if override:
        return override
    return _detected_code_version()


@functools.lru_cache(maxsize=1)
def _detected_code_version() -> str:
    git = git_info()
    if git["revision"] == "unknown":
        return f"src:{source_hash()[:16]}"
    if git["dirty"] is False:
        return f"git:{git['revision']}"
    return f"git:{git['revision']}+dirty:{source_hash()[:16]}"


def provenance(params: dict | None = None, seeds=None) -> dict:
    """A JSON-safe record of what produced a result.

    Keys: ``rfdiff_version``, ``versions`` (see :func:`package_versions`),
    ``python``, ``platform``, ``git`` (``revision``, ``dirty``),
    ``code_version``, ``timestamp`` (UTC, ISO 8601), ``params``, ``seeds``.
    Parameters that JSON cannot hold are stored as their ``repr``.
    """
    versions = package_versions()
    return {
        "rfdiff_version": versions["rfdiff"],
        "versions": versions,
        "python": sys.version.split()[0],
        "python_implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "git": git_info(),
        "code_version": code_version(),
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "params": to_jsonable(params if params is not None else {}, strict=False),
        "seeds": to_jsonable(seeds, strict=False),
    }


# --------------------------------------------------------------------------- environment

def _try(fn):
    try:
        return fn()
    except ModuleNotFoundError:
        return "not installed"
    except Exception as exc:  # optional backends fail in many ways; report, never raise
        return f"unavailable ({type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''})"


def _numba_report() -> dict:
    import numba

    return {"version": numba.__version__,
            "num_threads": numba.config.NUMBA_NUM_THREADS,
            "threads_in_use": numba.get_num_threads(),
            "threading_layer_config": numba.config.THREADING_LAYER}


def _torch_report() -> dict:
    torch = importlib.import_module("torch")
    cuda = bool(torch.cuda.is_available())
    return {"version": torch.__version__, "cuda": cuda,
            "device": torch.cuda.get_device_name(0) if cuda else None,
            "threads": torch.get_num_threads()}


def _cupy_report() -> dict:
    cupy = importlib.import_module("cupy")
    n = cupy.cuda.runtime.getDeviceCount()
    usable = False
    name = None
    if n > 0:
        usable = float(cupy.arange(3, dtype=cupy.float64).sum()) == 3.0
        props = cupy.cuda.runtime.getDeviceProperties(0)
        name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
    return {"version": cupy.__version__, "devices": n, "gpu_usable": usable, "device": name}


def _dask_report() -> dict:
    out = {"dask": package_versions()["dask"], "distributed": package_versions()["distributed"]}
    try:
        out["dask_jobqueue"] = importlib.metadata.version("dask-jobqueue")
    except importlib.metadata.PackageNotFoundError:
        out["dask_jobqueue"] = None
    return out


def environment_report() -> dict:
    """What ``rfdiff info`` prints: versions, git, CPU threads and optional backends.

    Unlike :func:`provenance` this does import torch and cupy, to check that a
    GPU is actually usable.
    """
    return {
        "rfdiff": _rfdiff_version(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "git": git_info(),
        "code_version": code_version(),
        "versions": package_versions(),
        "numba": _try(_numba_report),
        "torch": _try(_torch_report),
        "cupy": _try(_cupy_report),
        "dask": _dask_report(),
        "cache_dir": os.environ.get("RFDIFF_CACHE_DIR", ".rfdiff_cache"),
    }
