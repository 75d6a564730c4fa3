"""Content-addressed cache: keys, round trips, corruption detection (rfdiff/run/cache.py)."""
from __future__ import annotations

import time
import warnings
import zipfile

import numpy as np
import pytest
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from rfdiff.run.cache import Cache, CacheWarning, cache_key, cached, cached_function, default_cache_dir


def _tree():
    return {"kl": 0.25, "n": 7, "ok": True, "label": "relu", "curve": np.linspace(0, 1, 5),
            "grid": np.arange(6, dtype=np.int32).reshape(2, 3), "names": ["a", "b"],
            "coords": {"tau": np.array([0.1, 1.0])}, "empty": {}}


def _data_file(cache: Cache, key: str):
    return next(cache.manifest_path(key).parent.glob(f"{key}-*"))


def test_key_is_canonical_and_sensitive():
    k = cache_key("mod:f", {"n": 3, "x": 0.5}, "v1")
    assert len(k) == 64 and int(k, 16) >= 0
    assert k == cache_key("mod:f", {"x": np.float64(0.5), "n": np.int64(3)}, "v1")
    assert len({k, cache_key("mod:g", {"n": 3, "x": 0.5}, "v1"),
                cache_key("mod:f", {"n": 4, "x": 0.5}, "v1"),
                cache_key("mod:f", {"n": 3, "x": 0.5}, "v2")}) == 4
    with pytest.raises(ValueError, match="non-finite"):
        cache_key("mod:f", {"x": float("nan")}, "v1")


def test_key_defaults_to_code_version(monkeypatch):
    monkeypatch.setenv("RFDIFF_CODE_VERSION", "A")
    a = cache_key("f", {})
    monkeypatch.setenv("RFDIFF_CODE_VERSION", "B")
    assert cache_key("f", {}) != a and cache_key("f", {}, "A") == a


def test_tree_roundtrip(tmp_path):
    c = Cache(tmp_path)
    key = cache_key("f", {"i": 1}, "v")
    assert not c.has(key) and c.get(key, None) is None
    with pytest.raises(KeyError):
        c.get(key)
    c.put(key, _tree(), meta={"params": {"i": 1}})
    assert c.has(key)
    back = c.get(key)
    assert back["kl"] == 0.25 and type(back["kl"]) is float
    assert back["n"] == 7 and type(back["n"]) is int and back["ok"] is True
    assert back["label"] == "relu" and back["names"] == ["a", "b"] and back["empty"] == {}
    np.testing.assert_array_equal(back["grid"], _tree()["grid"])
    assert back["grid"].dtype == np.int32
    np.testing.assert_array_equal(back["coords"]["tau"], [0.1, 1.0])
    assert c.meta(key) == {"params": {"i": 1}}


@settings(max_examples=25, deadline=None)
@given(hnp.arrays(dtype=st.sampled_from([np.float64, np.float32, np.int64, np.bool_,
                                         np.complex128]),
                  shape=hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4)))
def test_any_numeric_array_roundtrips_bit_for_bit(tmp_path_factory, arr):
    c = Cache(tmp_path_factory.mktemp("c"))
    key = cache_key("f", {}, "v")
    c.put(key, {"a": arr})
    back = c.get(key)["a"]
    assert back.dtype == arr.dtype and back.shape == arr.shape
    assert back.tobytes() == arr.tobytes()  # NaN payloads and signed zeros included


def test_dataset_roundtrip(tmp_path):
    c = Cache(tmp_path)
    ds = xr.Dataset({"kl": ("tau", [0.3, 0.2, 0.4])}, coords={"tau": [0.1, 1.0, 10.0]},
                    attrs={"note": "x"})
    key = cache_key("f", {"d": 1}, "v")
    c.put(key, ds)
    xr.testing.assert_identical(c.get(key), ds)


def test_no_pickle_values_refused(tmp_path):
    c = Cache(tmp_path)
    key = cache_key("f", {}, "v")
    with pytest.raises(TypeError, match="without pickle"):
        c.put(key, {"a": np.array([object(), 1], dtype=object)})
    with pytest.raises(TypeError):
        c.put(key, {"a": object()})
    with pytest.raises(TypeError):
        c.put(key, [1, 2])
    assert not c.has(key)
    with pytest.raises(ValueError, match="sha256"):
        c.has("../../etc/passwd")


@pytest.mark.parametrize("damage", ["truncate", "flip", "delete", "manifest"])
def test_damaged_entry_is_missing_with_warning(tmp_path, damage):
    c = Cache(tmp_path)
    key = cache_key("f", {"i": 2}, "v")
    c.put(key, _tree())
    data = _data_file(c, key)
    if damage == "truncate":
        data.write_bytes(data.read_bytes()[:100])
    elif damage == "flip":
        blob = bytearray(data.read_bytes())
        blob[len(blob) // 2] ^= 0xFF
        data.write_bytes(bytes(blob))
    elif damage == "delete":
        data.unlink()
    else:
        m = c.manifest_path(key)
        m.write_text(m.read_text()[:40])
    with pytest.warns(CacheWarning, match="recomputed"):
        assert not c.has(key)
    assert not c.manifest_path(key).exists()  # the bad entry is gone, not loaded later
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert c.get(key, "missing") == "missing"
    c.put(key, _tree())  # recomputing replaces it
    assert c.has(key)


def test_data_without_manifest_is_missing_silently(tmp_path):
    """A writer killed between moving the data file and writing the manifest."""
    c = Cache(tmp_path)
    key = cache_key("f", {}, "v")
    c.put(key, _tree())
    c.manifest_path(key).unlink()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not c.has(key)


def test_overwrite_keeps_one_data_file(tmp_path):
    c = Cache(tmp_path)
    key = cache_key("f", {}, "v")
    c.put(key, {"a": 1.0})
    c.put(key, {"a": 2.0})
    assert c.get(key) == {"a": 2.0}
    assert len(list(c.manifest_path(key).parent.glob(f"{key}-*"))) == 1
    c.delete(key)
    assert not any(tmp_path.rglob("*.npz"))


def test_npz_is_plain_arrays(tmp_path):
    c = Cache(tmp_path)
    key = cache_key("f", {}, "v")
    c.put(key, _tree())
    with zipfile.ZipFile(_data_file(c, key)) as z:
        assert all(n.endswith(".npy") for n in z.namelist())
    with np.load(_data_file(c, key), allow_pickle=False) as npz:
        assert all(npz[k].dtype != object for k in npz.files)


def test_failure_records(tmp_path):
    c = Cache(tmp_path)
    key = cache_key("f", {}, "v")
    assert c.failure(key) is None
    c.record_failure(key, {"error": "ValueError: x", "traceback": "tb"})
    assert c.failure(key)["error"] == "ValueError: x"
    assert not c.has(key)
    c.failure_path(key).write_text("{trunc")
    assert c.failure(key) is None
    c.clear_failure(key)
    assert not c.failure_path(key).exists()


def test_default_root(tmp_path, monkeypatch):
    monkeypatch.delenv("RFDIFF_CACHE_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    assert str(default_cache_dir()) == ".rfdiff_cache" and Cache().root == default_cache_dir()
    monkeypatch.setenv("RFDIFF_CACHE_DIR", str(tmp_path / "elsewhere"))
    assert Cache().root == tmp_path / "elsewhere"
    assert Cache(tmp_path / "param").root == tmp_path / "param"


def _slow_square(x, delay=0.3):
    _slow_square.calls += 1
    time.sleep(delay)
    return {"y": np.float64(x) ** 2, "v": np.arange(3) * x}


_slow_square.calls = 0


def test_cached_computes_once_and_reruns_fast(tmp_path, monkeypatch):
    monkeypatch.setenv("RFDIFF_CODE_VERSION", "test")
    c = Cache(tmp_path)
    _slow_square.calls = 0
    t0 = time.perf_counter()
    first = cached(_slow_square, {"x": 3}, c)
    t1 = time.perf_counter()
    second = cached(_slow_square, {"x": 3}, c)
    t2 = time.perf_counter()
    assert _slow_square.calls == 1
    assert first["y"] == second["y"] == 9.0 and type(first["y"]) is type(second["y"])
    np.testing.assert_array_equal(first["v"], second["v"])
    assert (t2 - t1) * 10 < (t1 - t0)  # the figures rerun >= 10x faster from cache
    cached(_slow_square, {"x": 4, "delay": 0.0}, c)
    assert _slow_square.calls == 2


def test_cached_function_decorator(tmp_path, monkeypatch):
    monkeypatch.setenv("RFDIFF_CODE_VERSION", "test")
    calls = []

    @cached_function(Cache(tmp_path), name="demo")
    def f(a, b=1):
        calls.append((a, b))
        return {"s": a + b}

    assert f(a=1) == {"s": 2} and f(a=1) == {"s": 2} and f(a=1, b=2) == {"s": 3}
    assert calls == [(1, 1), (1, 2)]
    assert f.uncached(a=5) == {"s": 6}


def test_clean_removes_temp_of_dead_writer(tmp_path):
    import socket
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    host = socket.gethostname().replace("~", "-")
    stale = tmp_path / "ab" / f".abc.npz~{host}~{proc.pid}~0000.tmp"
    stale.parent.mkdir()
    stale.write_bytes(b"half")
    assert Cache(tmp_path).clean() == [stale] and not stale.exists()
