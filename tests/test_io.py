"""Atomic netCDF/JSON writing, strict JSON, provenance attributes (rfdiff/io.py)."""
from __future__ import annotations

import dataclasses
import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st

from rfdiff.io import (atomic_path, attach_provenance, canonical_json, clean_stale_temp,
                       load_dataset, load_json, read_provenance, save_dataset, save_json,
                       temp_path, to_jsonable)


def _tmp_files(d: Path):
    return sorted(d.rglob(".*.tmp"))


@dataclasses.dataclass(frozen=True)
class _Settings:
    n: int
    taus: tuple


def test_to_jsonable_converts_numpy_paths_dataclasses():
    value = {"a": np.float64(1.5), "b": np.int32(3), "c": np.arange(3), "d": (1, 2),
             "e": Path("x/y"), "f": np.bool_(True), "g": _Settings(4, (0.1, 1.0)), 5: "int key"}
    out = to_jsonable(value)
    assert out == {"a": 1.5, "b": 3, "c": [0, 1, 2], "d": [1, 2], "e": "x/y", "f": True,
                   "g": {"n": 4, "taus": [0.1, 1.0], "__class__": f"{__name__}._Settings"},
                   "5": "int key"}
    assert type(out["a"]) is float and type(out["b"]) is int and type(out["f"]) is bool
    json.dumps(out, allow_nan=False)


@pytest.mark.parametrize("bad, where", [({"x": float("nan")}, "value.x"),
                                        ({"y": [1.0, np.inf]}, "value.y[1]"),
                                        ({"z": object()}, "value.z"),
                                        ({"w": np.array([object()])}, "value.w")])
def test_to_jsonable_strict_rejects_with_location(bad, where):
    with pytest.raises(ValueError, match="^" + re.escape(where)):
        to_jsonable(bad)
    json.dumps(to_jsonable(bad, strict=False), allow_nan=False)  # lenient mode never fails


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=5), children, max_size=4),
    max_leaves=20)


@settings(max_examples=30, deadline=None)
@given(st.dictionaries(st.text(max_size=5), json_values, max_size=6), st.randoms())
def test_canonical_json_ignores_dict_order(d, rnd):
    items = list(d.items())
    rnd.shuffle(items)
    assert canonical_json(dict(items)) == canonical_json(d)
    assert json.loads(canonical_json(d)) == d


def test_canonical_json_same_for_numpy_and_python_scalars():
    assert canonical_json({"n": np.int64(3), "x": np.float64(0.1), "t": (1, 2)}) == \
        canonical_json({"t": [1, 2], "x": 0.1, "n": 3})
    # floats keep every bit: the next float up is a different key
    assert canonical_json({"x": 0.1}) != canonical_json({"x": np.nextafter(0.1, 1.0)})


def test_json_roundtrip_and_strictness(tmp_path):
    p = tmp_path / "a.json"
    save_json({"x": np.arange(3), "y": {"z": np.float32(0.5)}}, p)
    assert load_json(p) == {"x": [0, 1, 2], "y": {"z": 0.5}}
    with pytest.raises(ValueError, match="non-finite"):
        save_json({"x": np.nan}, tmp_path / "b.json")
    assert not (tmp_path / "b.json").exists() and not _tmp_files(tmp_path)
    (tmp_path / "c.json").write_text('{"x": NaN}')
    with pytest.raises(ValueError, match="c.json: not a valid JSON file"):
        load_json(tmp_path / "c.json")


def test_load_json_truncated_or_missing_names_the_file(tmp_path):
    p = tmp_path / "t.json"
    save_json({"key": list(range(50))}, p)
    p.write_bytes(p.read_bytes()[:30])
    with pytest.raises(ValueError, match=r"t\.json: not a valid JSON file"):
        load_json(p)
    with pytest.raises(ValueError, match=r"nope\.json: no such file"):
        load_json(tmp_path / "nope.json")


def test_atomic_path_failure_leaves_old_file_and_no_temp(tmp_path):
    p = tmp_path / "f.txt"
    p.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(p) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert p.read_text() == "old"
    assert not _tmp_files(tmp_path)
    with atomic_path(p) as tmp:
        assert tmp.parent == p.parent and tmp.name.startswith(".f.txt~")
        tmp.write_text("new")
    assert p.read_text() == "new"


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_clean_stale_temp_removes_only_dead_writers(tmp_path):
    host = socket.gethostname().replace("~", "-")
    (tmp_path / "sub").mkdir()
    dead = tmp_path / "sub" / f".r.nc~{host}~{_dead_pid()}~abcd.tmp"
    alive = tmp_path / f".r.nc~{host}~{os.getpid()}~abcd.tmp"
    foreign_new = tmp_path / ".r.nc~otherhost~1~abcd.tmp"
    foreign_old = tmp_path / ".q.nc~otherhost~1~abcd.tmp"
    unrelated = tmp_path / ".hidden.tmp"
    for p in (dead, alive, foreign_new, foreign_old, unrelated):
        p.write_text("x")
    old = time.time() - 3 * 24 * 3600
    os.utime(foreign_old, (old, old))
    removed = clean_stale_temp(tmp_path)
    assert sorted(removed) == sorted([dead, foreign_old])
    assert alive.exists() and foreign_new.exists() and unrelated.exists()
    assert temp_path(tmp_path / "x").name.endswith(".tmp")


def _dataset():
    return xr.Dataset(
        {"kl": (("n", "tau"), np.arange(6.0).reshape(2, 3)),
         "count": ("n", np.array([3, 4])),
         "name": ("n", np.array(["a", "bb"]))},
        coords={"n": [10, 20], "tau": [0.1, 1.0, 10.0], "flag": ("n", [True, False])},
        attrs={"title": "test", "level": 3})


def test_dataset_roundtrip_with_provenance(tmp_path):
    ds = attach_provenance(_dataset(), {"params": {"n": [10, 20], "nested": {"a": 1}},
                                        "code_version": "git:abc", "timestamp": "now",
                                        "odd": object()})
    p = save_dataset(ds, tmp_path / "sub" / "r.nc")
    back = load_dataset(p)
    xr.testing.assert_identical(back, ds)
    prov = read_provenance(back)
    assert prov["params"]["nested"] == {"a": 1} and back.attrs["code_version"] == "git:abc"
    assert not _tmp_files(tmp_path)


def test_load_dataset_truncated_names_the_file(tmp_path):
    p = save_dataset(_dataset(), tmp_path / "r.nc")
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"r\.nc: not a readable netCDF file"):
        load_dataset(p)
    with pytest.raises(ValueError, match=r"missing\.nc: no such file"):
        load_dataset(tmp_path / "missing.nc")


def test_save_dataset_rejects_nested_attrs_without_partial_file(tmp_path):
    ds = _dataset()
    ds.attrs["bad"] = {"nested": 1}
    with pytest.raises((TypeError, ValueError)):
        save_dataset(ds, tmp_path / "r.nc")
    assert not (tmp_path / "r.nc").exists() and not _tmp_files(tmp_path)
