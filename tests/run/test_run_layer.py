"""The one experiment layer (rfdiff/run): what issue 21 items 1-6 and 14 asked of it.

Each test here fails on the code before the layer: a config naming ``os:system`` ran
the command; a swapped manifest went unnoticed; ``sweep status`` deleted entries; an
unwritable output was found only after the work; a SIGKILLed runner left its workers
computing; two runs on one cache computed every point twice.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

from rfdiff.cli import main
from rfdiff.run import (Cache, CacheWarning, ConfigError, collect, load_config, point_key,
                        run_sweep, sweep_status)
from rfdiff.run.cache import cache_key
from rfdiff.run.runner import PointJob, evaluate_point, run_points
from sweep_points import log_counts, write_config

REPO = Path(__file__).resolve().parents[2]
TESTS = Path(__file__).resolve().parents[1]
CV = "run-layer-tests"


@pytest.fixture(autouse=True)
def _pinned_code_version(monkeypatch):
    monkeypatch.setenv("RFDIFF_CODE_VERSION", CV)


def _env():
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(TESTS)]),
            "RFDIFF_CODE_VERSION": CV, "OMP_NUM_THREADS": "1"}


def _snapshot(root: Path) -> dict:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _alive(pid: int) -> bool:
    """Running (a zombie, dead but not yet reaped, counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state != "Z"


def _children(pid: int) -> set[int]:
    out = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.add(int(stat.parent.name))
    return out


COUNTED = """
[sweep]
name = "counted"
function = "sweep_points:counted"
cache_dir = "cache"
[grid]
i = {grid}
[fixed]
log = "{log}"
"""


# --------------------------------------------------------------------------- 21.1: only registered

@pytest.mark.parametrize("function, fixed", [("os:system", 'command = "touch {mark}"'),
                                             ("subprocess:getoutput", 'cmd = "touch {mark}"')])
def test_unregistered_function_is_refused_and_nothing_runs(tmp_path, capsys, function, fixed):
    mark = tmp_path / "MARK"
    path = write_config(tmp_path, f"""
        [sweep]
        function = "{function}"
        cache_dir = "cache"
        [fixed]
        {fixed.format(mark=mark)}
        """)
    with pytest.raises(ConfigError, match=r"is not a registered point function; decorate it "
                                          r"with @point_function \(from rfdiff.run import"):
        load_config(path)
    assert main(["sweep", "run", str(path), "--serial"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a registered point function" in err
    with pytest.raises(ConfigError):
        run_sweep(path, serial=True, progress=False)
    # the worker side refuses it too (defence in depth)
    key = function.split(":")[1]
    out = evaluate_point(function, {("command" if key == "system" else "cmd"): f"touch {mark}"})
    assert not out["ok"] and "not a registered point function" in out["traceback"]
    time.sleep(0.2)
    assert not mark.exists()
    assert not (tmp_path / "cache").exists() or not list((tmp_path / "cache").rglob("*.json"))


def test_an_undecorated_function_is_refused(tmp_path):
    path = write_config(tmp_path, """
        [sweep]
        function = "sweep_points:unregistered"
        [grid]
        x = [1]
        """)
    with pytest.raises(ConfigError, match="sweep_points:unregistered is not a registered point"):
        load_config(path)


MODULE = '''
from pathlib import Path
from rfdiff.run import point_function

Path(__file__).with_name("IMPORTED").write_text("x")

@point_function
def double(x):
    return {"y": 2.0 * x}
'''


def test_config_directory_is_not_on_sys_path_module_file_is_explicit(tmp_path, capsys):
    (tmp_path / "mypoints.py").write_text(MODULE)
    body = """
        [sweep]
        function = "mypoints:double"
        cache_dir = "cache"
        {extra}
        [grid]
        x = [1, 2, 3]
        """
    implicit = write_config(tmp_path, body.format(extra=""), "implicit.toml")
    before = list(sys.path)
    with pytest.raises(ConfigError, match="cannot import module 'mypoints'.*PYTHONPATH or module_file"):
        load_config(implicit)
    assert sys.path == before and not (tmp_path / "IMPORTED").exists()
    # status and collect import nothing
    assert main(["sweep", "status", str(implicit)]) == 0
    assert "3 pending" in capsys.readouterr().out and not (tmp_path / "IMPORTED").exists()
    explicit = write_config(tmp_path, body.format(extra='module_file = "mypoints.py"'), "explicit.toml")
    rep = run_sweep(explicit, workers=2, progress=False)      # spawned workers load the file too
    assert rep.ok and rep.computed == 3 and sys.path == before
    np.testing.assert_array_equal(collect(explicit)["y"].values, [2.0, 4.0, 6.0])
    bad = write_config(tmp_path, body.format(extra='module_file = "other.py"'), "bad.toml")
    with pytest.raises(ConfigError, match=r"\[sweep\].module_file must be a .py file named after"):
        load_config(bad)


# --------------------------------------------------------------------------- 21.3: manifest checksum

def test_swapped_leaf_names_in_a_manifest_are_detected(tmp_path):
    c = Cache(tmp_path)
    key = cache_key("f", {"i": 1}, "v")
    c.put(key, {"a": 1.0, "b": 2.0})
    m = c.manifest_path(key)
    man = json.loads(m.read_text())
    la, lb = man["leaves"]
    la["array"], lb["array"] = lb["array"], la["array"]
    m.write_text(json.dumps(man))
    with pytest.warns(CacheWarning, match="manifest checksum mismatch"):
        assert c.get(key, None) is None          # not {"a": 2.0, "b": 1.0}
    c.put(key, {"a": 1.0, "b": 2.0})
    assert c.get(key) == {"a": 1.0, "b": 2.0}


def test_swapped_manifest_in_a_sweep_is_recomputed(tmp_path):
    log = tmp_path / "log.txt"
    path = write_config(tmp_path, COUNTED.format(grid=[1, 2], log=log))
    cfg = load_config(path)
    run_sweep(cfg, serial=True, progress=False)
    keys = [point_key(cfg, p, CV) for p in cfg.points()]
    cache = Cache(tmp_path / "cache")
    m = cache.manifest_path(keys[0])
    man = json.loads(m.read_text())
    arrays = [leaf for leaf in man["leaves"] if "array" in leaf]
    arrays[0]["array"], arrays[1]["array"] = arrays[1]["array"], arrays[0]["array"]
    m.write_text(json.dumps(man))
    with pytest.warns(CacheWarning, match="manifest checksum"):
        ds = collect(cfg, allow_missing=True)
    assert np.isnan(ds["square"].values[0]) and ds["square"].values[1] == 4.0
    with pytest.warns(CacheWarning, match="recomputed"):
        rep = run_sweep(cfg, serial=True, progress=False)
    assert (rep.cached, rep.computed) == (1, 1)
    assert log_counts(log) == {1: 2, 2: 1}
    np.testing.assert_array_equal(collect(cfg)["square"].values, [1.0, 4.0])


# --------------------------------------------------------------------------- 21.6: status reports only

def test_status_and_collect_delete_nothing_repair_does(tmp_path, capsys):
    log = tmp_path / "log.txt"
    path = write_config(tmp_path, COUNTED.format(grid=[1, 2, 3], log=log))
    cfg = load_config(path)
    run_sweep(cfg, serial=True, progress=False)
    cache = Cache(tmp_path / "cache")
    keys = [point_key(cfg, p, CV) for p in cfg.points()]
    data = next(cache.manifest_path(keys[1]).parent.glob(f"{keys[1]}-*.npz"))
    data.write_bytes(data.read_bytes()[:30])                       # a corrupt entry
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    import socket
    stale = tmp_path / "cache" / f".x.npz~{socket.gethostname()}~{dead.pid}~0000.tmp"
    stale.write_bytes(b"half")                                     # a dead writer's temp file
    before = _snapshot(tmp_path / "cache")
    with pytest.warns(CacheWarning, match="left in place"):
        st = sweep_status(cfg)
    assert st.done == 2 and st.pending == [{"i": 2}]
    assert main(["sweep", "status", str(path)]) == 0
    assert "2 done, 0 failed, 1 pending" in capsys.readouterr().out
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CacheWarning)
        collect(cfg, allow_missing=True)
        assert main(["sweep", "collect", str(path), "--allow-missing", "-o",
                     str(tmp_path / "out.nc")]) == 0
    assert _snapshot(tmp_path / "cache") == before                 # nothing deleted or changed
    assert main(["sweep", "status", str(path), "--repair"]) == 0
    assert not stale.exists() and not cache.manifest_path(keys[1]).exists()
    assert cache.has(keys[0]) and cache.has(keys[2])


# --------------------------------------------------------------------------- 21.2: unwritable paths

def _no_trajectory(*args, **kwargs):
    raise AssertionError("computed before the output path was checked")


@pytest.mark.parametrize("case", ["out-is-dir", "parent-is-file", "plot-is-dir"])
def test_trajectory_unwritable_output_exit_2_before_compute(tmp_path, capsys, monkeypatch, case):
    import rfdiff.trajectory  # noqa: F401  (the module; rfdiff.trajectory is also a function)

    monkeypatch.setattr(sys.modules["rfdiff.trajectory"], "trajectory", _no_trajectory)
    (tmp_path / "afile").write_text("x")
    (tmp_path / "adir").mkdir()
    args = {"out-is-dir": ["--out", str(tmp_path / "adir")],
            "parent-is-file": ["--out", str(tmp_path / "afile" / "x.nc")],
            "plot-is-dir": ["--out", str(tmp_path / "t.nc"), "--plot", str(tmp_path / "adir")]}[case]
    assert main(["trajectory", "--n", "20", "--m", "4", "--n-time", "8", "--taus", "1:10:2",
                 "--metrics", "train_loss", *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert ("is an existing directory" in err) or ("is a file, not a directory" in err)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_trajectory_read_only_directory_exit_2(tmp_path, capsys, monkeypatch):
    import rfdiff.trajectory  # noqa: F401  (the module; rfdiff.trajectory is also a function)

    monkeypatch.setattr(sys.modules["rfdiff.trajectory"], "trajectory", _no_trajectory)
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        assert main(["trajectory", "--out", str(ro / "x.nc")]) == 2
        assert "not writable" in capsys.readouterr().err
    finally:
        ro.chmod(0o700)


def test_sweep_cache_that_is_a_file_exit_2_before_compute(tmp_path, capsys):
    log = tmp_path / "log.txt"
    path = write_config(tmp_path, COUNTED.format(grid=[1, 2], log=log))
    (tmp_path / "cache").write_text("not a directory")
    assert main(["sweep", "run", str(path), "--serial"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cache directory" in err and "is a file" in err
    assert not log.exists()                                        # nothing was computed
    (tmp_path / "cache").unlink()
    (tmp_path / "out").mkdir()
    assert main(["sweep", "run", str(path), "--serial", "--quiet"]) == 0
    assert main(["sweep", "collect", str(path), "-o", str(tmp_path / "out")]) == 2
    assert "is an existing directory" in capsys.readouterr().err


def test_figure_out_that_is_a_file_exit_2_before_compute(tmp_path, capsys):
    (tmp_path / "out").write_text("x")
    assert main(["figure", "width", "--tiny", "--out", str(tmp_path / "out"),
                 "--cache-dir", str(tmp_path / "cache")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--out" in err and "is a file" in err
    assert not (tmp_path / "cache").exists()


def test_a_late_cache_write_failure_keeps_the_result_and_says_where(tmp_path, monkeypatch):
    cache = Cache(tmp_path / "cache")
    real_put = Cache.put

    def put(self, key, value, meta=None):
        if self.root == cache.root:
            raise PermissionError(13, "Permission denied")
        return real_put(self, key, value, meta)

    monkeypatch.setattr(Cache, "put", put)
    log = tmp_path / "log.txt"
    jobs = [PointJob("sweep_points:counted", {"i": i, "log": str(log)},
                     cache_key("sweep_points:counted", {"i": i, "log": str(log)}, CV)) for i in (1, 2)]
    with pytest.warns(CacheWarning, match="the result is kept in"):
        rep = run_points(jobs, cache, serial=True, progress=False)
    assert rep.computed == 2 and not rep.ok and len(rep.rescued) == 1
    kept = Cache(rep.rescued[0])
    assert [kept.get(j.key)["outputs"]["square"] for j in jobs] == [1.0, 4.0]


# --------------------------------------------------------------------------- 21.4: claims

def test_claims_are_exclusive_and_stale_ones_taken_over(tmp_path):
    import socket

    c = Cache(tmp_path)
    key = cache_key("f", {}, "v")
    assert c.claim(key) and not c.claimed_by_other(key)
    owner = c.claim_owner(key)
    assert owner["pid"] == os.getpid() and owner["host"] == socket.gethostname()
    c.release(key)
    assert not c.claim_path(key).exists()
    # a live owner's claim (our parent process) is respected
    c.claim_path(key).write_text(json.dumps({"pid": os.getppid(), "host": socket.gethostname(),
                                             "time": time.time()}))
    assert c.claimed_by_other(key) and not c.claim(key)
    # an owner that is gone: taken over
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    c.claim_path(key).write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname(),
                                             "time": time.time()}))
    assert not c.claimed_by_other(key) and c.claim(key)
    assert c.claim_owner(key)["pid"] == os.getpid()


def test_two_runs_on_one_cache_compute_each_point_once(tmp_path):
    npts = 10
    log = tmp_path / "log.txt"
    path = write_config(tmp_path, COUNTED.format(grid=list(range(npts)), log=log))
    cmd = [sys.executable, "-m", "rfdiff.cli", "sweep", "run", str(path), "--serial"]
    procs = [subprocess.Popen(cmd, cwd=tmp_path, env=_env(), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=240) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert log_counts(log) == {i: 1 for i in range(npts)}             # once in total
    shared = load_config(path)
    ds = collect(shared)
    single = write_config(tmp_path, COUNTED.format(grid=list(range(npts)), log=tmp_path / "log1.txt")
                   .replace('cache_dir = "cache"', 'cache_dir = "single"'), "single.toml")
    run_sweep(single, serial=True, progress=False)
    np.testing.assert_array_equal(ds["square"].values, collect(single)["square"].values)
    np.testing.assert_array_equal(ds["square"].values, np.arange(npts) ** 2.0)
    assert not list((tmp_path / "cache").rglob("*.claim"))


def test_a_run_in_parts_stops_at_max_seconds_and_resumes_the_rest_once(tmp_path):
    cache = Cache(tmp_path / "cache")
    log = tmp_path / "log.txt"
    jobs = [PointJob("sweep_points:counted", {"i": i, "log": str(log)},
                     cache_key("sweep_points:counted", {"i": i, "log": str(log)}, CV)) for i in range(6)]
    first = run_points(jobs, cache, serial=True, progress=False, max_seconds=0.2)   # 0.15 s a point
    assert 1 <= first.computed < 6 and first.pending == 6 - first.computed and first.ok
    assert "left for a later run" in first.summary()
    rest = run_points(jobs, cache, serial=True, progress=False)
    assert rest.cached == first.computed and rest.computed == first.pending and rest.pending == 0
    assert log_counts(log) == {i: 1 for i in range(6)}                # each point once over both parts
    with pytest.raises(ValueError, match="max_seconds"):
        run_points(jobs, cache, serial=True, progress=False, max_seconds=0)


def test_progress_in_a_log_is_one_line_per_refresh_with_counts(tmp_path, capsys, monkeypatch):
    """stderr not a terminal (a background run's log): the tqdm line, ETA included, on lines of
    their own at most every LOG_PROGRESS_EVERY_S (0 here: every point), no carriage returns."""
    import rfdiff.run.runner as runner

    monkeypatch.setattr(runner, "LOG_PROGRESS_EVERY_S", 0.0)
    log = tmp_path / "log.txt"
    jobs = [PointJob("sweep_points:counted", {"i": i, "log": str(log)},
                     cache_key("sweep_points:counted", {"i": i, "log": str(log)}, CV)) for i in range(3)]
    run_points(jobs, Cache(tmp_path / "cache"), name="demo", serial=True, progress=True)
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("demo")]
    assert "\r" not in err and len(lines) >= 3, err
    assert "3/3" in lines[-1] and any("<" in ln for ln in lines)     # tqdm's "elapsed<remaining"


def test_figure_in_parts_exit_3_then_resumes(tmp_path, capsys):
    args = ["figure", "width", "--tiny", "--out", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache")]
    assert main(args + ["--max-seconds", "1e-9"]) == 3            # no point starts: all left
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "run the same command again to resume" in err
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())
    assert main(args + ["--max-seconds", "600"]) == 0
    assert (tmp_path / "out" / "width_tiny.nc").is_file()
    assert main(args[:-2] + ["--no-cache", "--max-seconds", "5"]) == 2   # parts need the cache
    assert "max_seconds" in capsys.readouterr().err
    assert main(args + ["--max-seconds", "0"]) == 2
    assert "--max-seconds" in capsys.readouterr().err


# --------------------------------------------------------------------------- 21.5: SIGKILL

def test_sigkill_of_the_runner_leaves_no_worker_and_resume_computes_the_rest_once(tmp_path):
    npts, workers = 12, 2
    log = tmp_path / "log.txt"
    path = write_config(tmp_path, f"""
        [sweep]
        name = "orphans"
        function = "sweep_points:slow"
        cache_dir = "cache"
        [grid]
        i = {list(range(npts))}
        [fixed]
        log = "{log}"
        delay = 0.4
        [run]
        workers = {workers}
        """)
    cfg = load_config(path)
    keys = [point_key(cfg, p, CV) for p in cfg.points()]
    cache = Cache(tmp_path / "cache")
    cmd = [sys.executable, "-m", "rfdiff.cli", "sweep", "run", str(path), "--quiet"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    children: set[int] = set()
    try:
        while len(list((tmp_path / "cache").glob("*/*[0-9a-f].json"))) < 3:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "sweep made no progress"
            children |= _children(proc.pid)
            time.sleep(0.05)
        children |= _children(proc.pid)
        os.kill(proc.pid, signal.SIGKILL)         # the runner alone, not its process group
    finally:
        proc.wait()
    workers_seen = {int(line.split()[1]) for line in log.read_text().splitlines()}
    assert workers_seen and workers_seen <= children
    gone_by = time.monotonic() + 15
    while any(_alive(p) for p in children) and time.monotonic() < gone_by:
        time.sleep(0.1)
    assert not [p for p in children if _alive(p)], "a worker survived its parent"

    done = {i for i, k in enumerate(keys) if cache.has(k)}
    assert 3 <= len(done) < npts, "the kill must land mid-run"
    first = log_counts(log)
    rerun = subprocess.run(cmd, cwd=tmp_path, env=_env(), capture_output=True, text=True,
                           timeout=240)
    assert rerun.returncode == 0, rerun.stderr
    second = log_counts(log) - first
    assert all(second[i] == 0 for i in done)
    assert all(second[i] == 1 for i in range(npts) if i not in done)   # exactly once
    np.testing.assert_array_equal(collect(cfg)["square"].values, np.arange(npts) ** 2.0)
    assert not list((tmp_path / "cache").rglob("*.claim"))           # stale claims taken over


# --------------------------------------------------------------------------- 21.14 (config part)

def test_trajectory_config_unknown_section_refused(tmp_path, capsys):
    cfg = tmp_path / "run.toml"
    cfg.write_text("[trajectory]\nm = 8\n[trajectry]\nn = 3\n[extra]\na = 1\n")
    assert main(["trajectory", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown sections [trajectry], [extra]" in err


def test_sweep_config_unknown_keys_all_named(tmp_path):
    path = write_config(tmp_path, """
        [sweep]
        function = "sweep_points:flaky"
        worker = 2
        cache = "c"
        [grid]
        x = [1]
        """)
    with pytest.raises(ConfigError, match=r"unknown keys \[sweep\].worker, \[sweep\].cache "):
        load_config(path)


@pytest.mark.parametrize("taus, fragment", [("1:1e3:2.5", "taus count (--taus start:stop:count) "
                                                         "must be a positive integer, got '2.5'"),
                                            ("a:1e3:3", "taus start (--taus start:stop:count) "
                                                        "must be a number, got 'a'")])
def test_taus_errors_name_the_flag(taus, fragment, capsys, tmp_path):
    assert main(["trajectory", "--out", str(tmp_path / "x.nc"), "--taus", taus]) == 2
    err = capsys.readouterr().err
    assert fragment in err and "invalid literal" not in err
