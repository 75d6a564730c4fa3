"""Sweep configs, the runner (serial, local processes, Dask), kill/resume (rfdiff/run/)."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from rfdiff.run.cache import Cache, CacheWarning
from rfdiff.run import (ConfigError, SweepIncomplete, collect, load_config, point_key,
                          run_sweep, sweep_status)
from sweep_points import log_counts, write_config

REPO = Path(__file__).resolve().parents[2]
TESTS = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _pinned_code_version(monkeypatch):
    # Other edits to the source tree during a test must not change the cache keys.
    monkeypatch.setenv("RFDIFF_CODE_VERSION", "sweep-tests")


QUAD = """
[sweep]
name = "quad"
function = "sweep_points:quadratic"
cache_dir = "cache"

[grid]
x = [1, 2, 3]
label = ["a", "bb"]

[fixed]
scale = 2.0
"""


# --------------------------------------------------------------------------- config

def test_config_points_and_fields(tmp_path):
    cfg = load_config(write_config(tmp_path, QUAD + "[run]\nworkers = 2\nretries = 1\n"))
    assert cfg.name == "quad" and cfg.dims == ("x", "label") and cfg.shape == (3, 2)
    assert cfg.cache_dir == tmp_path / "cache" and cfg.workers == 2 and cfg.retries == 1
    pts = cfg.points()
    assert [p.index for p in pts[:3]] == [(0, 0), (0, 1), (1, 0)]
    assert pts[1].params == {"scale": 2.0, "x": 1, "label": "bb"}
    assert pts[1].coords == {"x": 1, "label": "bb"}


def test_mixed_int_float_grid_becomes_float(tmp_path):
    cfg = load_config(write_config(tmp_path, QUAD.replace("x = [1, 2, 3]", "x = [1, 2.5]")))
    assert cfg.grid["x"] == (1.0, 2.5) and all(type(v) is float for v in cfg.grid["x"])


BAD_CONFIGS = [
    # (replace this, with this, expected fragment of the one-line error)
    ("[fixed]", "[fixd]", "unknown section [fixd]"),
    ('cache_dir = "cache"', 'cache_dir = "cache"\nworkers = 2', "unknown key [sweep].workers"),
    ("scale = 2.0", "scale = 2.0\n[run]\nthreads = 2", "unknown key [run].threads"),
    ("x = [1, 2, 3]", "x = 3", "[grid].x: must be a list of values"),
    ("x = [1, 2, 3]", "x = []", "[grid].x: the list of values is empty"),
    ("x = [1, 2, 3]", 'x = [1, "a"]', "[grid].x: values must all have one type"),
    ("x = [1, 2, 3]", "x = [1, 1]", "[grid].x: duplicate value 1"),
    ("x = [1, 2, 3]", "x = [1.0, nan]", "[grid].x: values must be finite"),
    ("x = [1, 2, 3]", "x = [[1, 2]]", "[grid].x: values must be int, float, str or bool"),
    ("scale = 2.0", "scale = inf", "[fixed].scale: must be finite"),
    ("scale = 2.0", "scale = 1979-05-27", "[fixed].scale: values must be numbers"),
    ("scale = 2.0", "scale = 2.0\nx = 1", "[fixed].x: also in [grid]"),
    ("scale = 2.0", "scale = 2.0\nbogus = 1", "[fixed].bogus: not a parameter of sweep_points:quadratic"),
    ('function = "sweep_points:quadratic"', 'function = "os.system(\'rm\'):x"',
     "[sweep].function must look like 'package.module:function'"),
    ('function = "sweep_points:quadratic"', 'function = "sweep_points"',
     "[sweep].function must look like"),
    ('function = "sweep_points:quadratic"', 'function = "no_such_module_xyz:f"',
     "[sweep].function: cannot import module 'no_such_module_xyz'"),
    ('function = "sweep_points:quadratic"', 'function = "sweep_points:nothing"',
     "[sweep].function: module 'sweep_points' has no function 'nothing'"),
    ('function = "sweep_points:quadratic"', "", "missing key [sweep].function"),
    ('name = "quad"', 'name = "a b/c"', "[sweep].name must be"),
    ('name = "quad"', "name = 3", "[sweep].name must be"),
    ("x = [1, 2, 3]", "y = [1, 2]", "[grid].y: not a parameter"),
    ("x = [1, 2, 3]\n", "", "missing parameter 'x' of sweep_points:quadratic"),
    ("scale = 2.0", "scale = 2.0\n[run]\nworkers = 0", "[run].workers must be an integer >= 1, got 0"),
    ("scale = 2.0", 'scale = 2.0\n[run]\nworkers = "4"', "[run].workers must be an integer >= 1"),
    ("scale = 2.0", "scale = 2.0\n[run]\nworkers = true", "[run].workers must be an integer >= 1"),
    ("scale = 2.0", "scale = 2.0\n[run]\nretries = -1", "[run].retries must be an integer >= 0"),
    ("scale = 2.0", "scale = 2.0\n[run]\ntimeout_s = -5", "[run].timeout_s must be a number > 0"),
    ("[grid]", "[grid", "invalid TOML"),
    ("[sweep]", "run = 3\n[sweep]", "run must be a table"),
]


@pytest.mark.parametrize("old, new, fragment", BAD_CONFIGS)
def test_malformed_config_one_line_error(tmp_path, old, new, fragment):
    assert old in QUAD
    path = write_config(tmp_path, QUAD.replace(old, new, 1), name="bad.toml")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    msg = str(info.value)
    assert "\n" not in msg
    assert msg.startswith(f"{path}: ")
    assert fragment in msg


SIZED = """
[sweep]
function = "sweep_points:sized"
[grid]
n = [10, -3]
[fixed]
m = 4
"""


def test_declared_params_reject_negative_sizes_at_load(tmp_path):
    path = write_config(tmp_path, SIZED)
    with pytest.raises(ConfigError, match=r"\[grid\]\.n: values must be integers >= 1, got -3$"):
        load_config(path)
    path = write_config(tmp_path, SIZED.replace("n = [10, -3]", "n = [10]").replace("m = 4", "m = 0"))
    with pytest.raises(ConfigError, match=r"\[fixed\]\.m: must be an integer >= 1, got 0$"):
        load_config(path)
    path = write_config(tmp_path, SIZED.replace("n = [10, -3]", "n = [1.5]"))
    with pytest.raises(ConfigError, match=r"\[grid\]\.n: values must be integers >= 1, got 1.5"):
        load_config(path)
    path = write_config(tmp_path, SIZED.replace("m = 4", "m = 4\nseed = true"))
    with pytest.raises(ConfigError, match=r"\[fixed\]\.seed: must be an integer >= 0, got True"):
        load_config(path)


def test_validate_hook_reports_the_point(tmp_path):
    path = write_config(tmp_path, """
        [sweep]
        function = "sweep_points:checked"
        [grid]
        a = [1, 5]
        b = [2, 3]
        """)
    with pytest.raises(ConfigError, match=r"\[grid\] point \(a=5, b=2\): a must not exceed b"):
        load_config(path)


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="nope.toml: no such file"):
        load_config(tmp_path / "nope.toml")


# --------------------------------------------------------------------------- running

def test_serial_run_collect_and_rerun(tmp_path):
    cfg = load_config(write_config(tmp_path, QUAD))
    rep = run_sweep(cfg, serial=True, progress=False)
    assert (rep.total, rep.cached, rep.computed, rep.failed) == (6, 0, 6, [])
    again = run_sweep(cfg, serial=True, progress=False)
    assert (again.cached, again.computed) == (6, 0)
    ds = collect(cfg)
    assert dict(ds.sizes) == {"x": 3, "label": 2, "k": 4, "pair_dim0": 2}
    assert ds["curve"].dims == ("x", "label", "k") and ds["y"].dims == ("x", "label")
    np.testing.assert_array_equal(ds["y"].sel(label="a").values, [2.0, 8.0, 18.0])
    np.testing.assert_array_equal(ds["curve"].sel(x=3, label="bb").values, [0.0, 6.0, 12.0, 18.0])
    np.testing.assert_array_equal(ds["label_len"].sel(x=1).values, [1, 2])
    assert ds["label_len"].dtype.kind == "i"
    assert list(ds["k"].values) == [0, 1, 2, 3]
    assert ds.attrs["sweep"] == "quad" and ds.attrs["function"] == "sweep_points:quadratic"
    assert '"scale": 2.0' in ds.attrs["fixed"] and "provenance" in ds.attrs
    st = sweep_status(cfg)
    assert (st.done, st.failed, st.pending) == (6, [], [])


def test_failing_point_is_recorded_and_others_finish(tmp_path):
    path = write_config(tmp_path, """
        [sweep]
        function = "sweep_points:flaky"
        cache_dir = "cache"
        [grid]
        x = [1, 2, 3, 4]
        [run]
        retries = 1
        """)
    cfg = load_config(path)
    rep = run_sweep(cfg, serial=True, progress=False)
    assert rep.computed == 3 and len(rep.failed) == 1 and not rep.ok
    fail = rep.failed[0]
    assert fail.coords == {"x": 2} and fail.attempts == 2
    assert fail.error == "ValueError: boom at x=2" and "sweep_points.py" in fail.traceback
    cache = Cache(tmp_path / "cache")
    rec = cache.failure(fail.key)
    assert rec["error"] == "ValueError: boom at x=2" and "Traceback" in rec["traceback"]
    st = sweep_status(cfg)
    assert st.done == 3 and [f.coords for f in st.failed] == [{"x": 2}] and st.pending == []
    with pytest.raises(SweepIncomplete, match="1 of 4 points"):
        collect(cfg)
    ds = collect(cfg, allow_missing=True)
    np.testing.assert_array_equal(ds["y"].values, [10.0, np.nan, 30.0, 40.0])
    assert ds.attrs["points_missing"] == 1
    # a rerun retries only the failed point
    rep2 = run_sweep(cfg, serial=True, progress=False, retries=0)
    assert (rep2.cached, rep2.computed, len(rep2.failed)) == (3, 0, 1)
    assert rep2.failed[0].attempts == 1


def test_local_processes_survive_exceptions_and_dead_workers(tmp_path):
    path = write_config(tmp_path, """
        [sweep]
        function = "sweep_points:misbehave"
        cache_dir = "cache"
        [grid]
        x = [1, 2, 3, 4]
        [run]
        workers = 1
        """)
    rep = run_sweep(path, progress=False)  # the default engine: a process pool
    assert rep.computed == 2
    errors = {f.coords["x"]: f.error for f in rep.failed}
    assert sorted(errors) == [2, 3]
    assert "BrokenProcessPool" in errors[2]  # the pool was restarted for x = 3, 4
    assert errors[3] == "ValueError: boom at x=3"
    np.testing.assert_array_equal(collect(path, allow_missing=True)["y"].values,
                                  [1.0, np.nan, np.nan, 4.0])


def test_timeout_fails_the_point(tmp_path):
    path = write_config(tmp_path, """
        [sweep]
        function = "sweep_points:sleepy"
        cache_dir = "cache"
        [grid]
        delay = [0.0, 30.0]
        [fixed]
        x = 1
        [run]
        timeout_s = 0.5
        """)
    t0 = time.perf_counter()
    rep = run_sweep(path, serial=True, progress=False)
    assert time.perf_counter() - t0 < 10
    assert rep.computed == 1 and [f.coords for f in rep.failed] == [{"delay": 30.0}]
    assert "PointTimeout" in rep.failed[0].error


def test_truncated_cache_entry_is_recomputed_not_loaded(tmp_path):
    log = tmp_path / "log.txt"
    path = write_config(tmp_path, f"""
        [sweep]
        function = "sweep_points:slow"
        cache_dir = "cache"
        [grid]
        i = [0, 1, 2]
        [fixed]
        log = "{log}"
        delay = 0.0
        """)
    cfg = load_config(path)
    run_sweep(cfg, serial=True, progress=False)
    key = point_key(cfg, cfg.points()[1], "sweep-tests")
    cache = Cache(tmp_path / "cache")
    data = next(cache.manifest_path(key).parent.glob(f"{key}-*.npz"))
    data.write_bytes(data.read_bytes()[:50])
    with pytest.warns(CacheWarning, match="truncated"):
        st = sweep_status(cfg)
    assert st.done == 2 and st.pending == [{"i": 1}]
    rep = run_sweep(cfg, serial=True, progress=False)
    assert (rep.cached, rep.computed) == (2, 1)
    assert sorted(int(line.split()[0]) for line in log.read_text().splitlines()) == [0, 1, 1, 2]
    np.testing.assert_array_equal(collect(cfg)["square"].values, [0.0, 1.0, 4.0])


def test_dask_local_cluster_matches_local_processes(tmp_path):
    pytest.importorskip("distributed")
    cfg = load_config(write_config(tmp_path, QUAD))
    local = run_sweep(cfg, cache=tmp_path / "local", workers=2, progress=False)
    dask = run_sweep(cfg, cache=tmp_path / "dask", cluster="local", workers=2, progress=False)
    assert local.computed == dask.computed == 6 and local.ok and dask.ok
    a = collect(cfg, cache=tmp_path / "local")
    b = collect(cfg, cache=tmp_path / "dask")
    a.attrs, b.attrs = {}, {}
    xr.testing.assert_identical(a, b)


# --------------------------------------------------------------------------- kill and resume

def _valid_entries(cache: Cache, cfg, keys) -> set[int]:
    return {i for i, k in enumerate(keys) if cache.has(k)}


def test_sigkill_mid_sweep_then_rerun_computes_each_point_once(tmp_path):
    npts, workers = 12, 2
    log = tmp_path / "log.txt"
    path = write_config(tmp_path, f"""
        [sweep]
        name = "killme"
        function = "sweep_points:slow"
        cache_dir = "cache"
        [grid]
        i = {list(range(npts))}
        [fixed]
        log = "{log}"
        delay = 0.3
        [run]
        workers = {workers}
        """)
    cfg = load_config(path)
    keys = [point_key(cfg, p, "sweep-tests") for p in cfg.points()]
    cache = Cache(tmp_path / "cache")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(TESTS)]),
           "RFDIFF_CODE_VERSION": "sweep-tests"}
    cmd = [sys.executable, "-m", "rfdiff.cli", "sweep", "run", str(path), "--quiet"]

    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    try:
        while len(list((tmp_path / "cache").glob("*/*.json"))) < 4:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "sweep made no progress"
            time.sleep(0.02)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the runner and its worker processes
        proc.wait()
    assert proc.returncode == -signal.SIGKILL

    done_after_kill = _valid_entries(cache, cfg, keys)
    first = log_counts(log)
    assert 4 <= len(done_after_kill) < npts, "the kill must land mid-run"
    for i in done_after_kill:  # whatever was written is whole
        assert cache.get(keys[i])["outputs"]["square"] == float(i * i)

    # What a kill in the middle of writing a result leaves: a temporary file of the dead
    # runner (named after its pid), never a partial entry. The rerun must remove it.
    host = socket.gethostname().replace("~", "-")
    half = tmp_path / "cache" / keys[-1][:2] / f".{keys[-1]}.npz~{host}~{proc.pid}~dead.tmp"
    half.parent.mkdir(parents=True, exist_ok=True)
    half.write_bytes(b"PK\x03\x04 half a zip")

    rerun = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True,
                           timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    second = log_counts(log) - first

    # A point with a result is never recomputed; every other point is computed exactly
    # once by the rerun. Only points that finished in a worker but were still in flight
    # to the runner at the kill (at most one per worker) completed twice.
    assert all(first[i] <= 1 for i in range(npts))
    assert all(second[i] == 0 for i in done_after_kill)
    assert all(second[i] == 1 for i in range(npts) if i not in done_after_kill)
    lost = [i for i in range(npts) if first[i] == 1 and i not in done_after_kill]
    assert len(lost) <= workers
    assert sum((first + second).values()) == npts + len(lost)

    assert _valid_entries(cache, cfg, keys) == set(range(npts))
    assert not list((tmp_path / "cache").rglob(".*.tmp")), "temporary files left behind"
    assert not list((tmp_path / "cache").rglob("*.failed.json"))
    ds = collect(cfg)
    np.testing.assert_array_equal(ds["square"].values, np.arange(npts) ** 2.0)
    np.testing.assert_allclose(ds["trace"].sel(i=11).values, np.linspace(0, 11, 5))
