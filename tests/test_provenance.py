"""Versions, git revision, code version and provenance records (rfdiff/provenance.py)."""
from __future__ import annotations

import json
import shutil
import subprocess
from datetime import datetime, timezone

import numpy as np
import pytest

import rfdiff.provenance as prov_mod
from rfdiff.provenance import code_version, git_info, package_versions, provenance

HAVE_GIT = shutil.which("git") is not None


def test_provenance_record_is_strict_json():
    rec = provenance({"n": np.int64(100), "taus": np.array([0.1, 1.0]), "f": object()},
                     seeds=[np.int32(1), 2])
    text = json.dumps(rec, allow_nan=False)  # JSON-safe, no NaN
    back = json.loads(text)
    for key in ("rfdiff_version", "versions", "python", "platform", "git", "code_version",
                "timestamp", "params", "seeds"):
        assert key in back
    assert back["params"]["n"] == 100 and back["params"]["taus"] == [0.1, 1.0]
    assert back["params"]["f"].startswith("<object")  # unsupported objects as repr, no failure
    assert back["seeds"] == [1, 2]
    ts = datetime.fromisoformat(back["timestamp"])
    assert ts.utcoffset() == timezone.utc.utcoffset(None)
    assert back["versions"]["numpy"] == np.__version__


def test_package_versions_missing_package_is_none(monkeypatch):
    monkeypatch.setitem(prov_mod._DISTRIBUTIONS, "surely_not_installed_pkg",
                        ("surely-not-installed-pkg",))
    v = package_versions()
    assert v["surely_not_installed_pkg"] is None
    assert v["scipy"] is not None and "rfdiff" in v


def test_code_version_env_override(monkeypatch):
    monkeypatch.setenv("RFDIFF_CODE_VERSION", "pinned-1")
    assert code_version() == "pinned-1"
    assert provenance({})["code_version"] == "pinned-1"


def _fake_tree(tmp_path, monkeypatch):
    pkg = tmp_path / "rfdiff"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "a.py").write_text("x = 1\n")
    (pkg / "sub" / "b.py").write_text("y = 2\n")
    (tmp_path / "analysis").mkdir()
    (tmp_path / "analysis" / "c.py").write_text("z = 3\n")
    monkeypatch.setattr(prov_mod, "_PACKAGE_DIR", pkg)
    monkeypatch.setattr(prov_mod, "_REPO_DIR", tmp_path)
    monkeypatch.delenv("RFDIFF_CODE_VERSION", raising=False)
    prov_mod._detected_code_version.cache_clear()
    return pkg


def fresh_code_version() -> str:
    """code_version() as a new process would see it (it is memoised per process)."""
    prov_mod._detected_code_version.cache_clear()
    return code_version()


@pytest.fixture(autouse=True)
def _forget_detected_version():
    yield
    prov_mod._detected_code_version.cache_clear()


def test_outside_git_code_version_hashes_sources(tmp_path, monkeypatch):
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))  # don't find an enclosing repo
    pkg = _fake_tree(tmp_path, monkeypatch)
    assert git_info() == {"revision": "unknown", "dirty": None}
    v1 = code_version()
    assert v1.startswith("src:") and fresh_code_version() == v1
    (tmp_path / "analysis" / "c.py").write_text("z = 4\n")
    assert code_version() == v1  # this process still runs the code it imported
    v2 = fresh_code_version()
    assert v2 != v1
    (pkg / "notes.txt").write_text("not code")  # only .py files count
    assert fresh_code_version() == v2


@pytest.mark.skipif(not HAVE_GIT, reason="git not installed")
def test_git_checkout_revision_and_dirty_flag(tmp_path, monkeypatch):
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    pkg = _fake_tree(tmp_path, monkeypatch)

    def git(*args):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
                       cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q")
    git("add", ".")
    git("commit", "-q", "-m", "init")
    rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=tmp_path, capture_output=True,
                         text=True, check=True).stdout.strip()
    assert git_info() == {"revision": rev, "dirty": False}
    assert fresh_code_version() == f"git:{rev}"
    (tmp_path / "README").write_text("docs only")  # outside rfdiff/ and analysis/
    assert git_info()["dirty"] is False
    (pkg / "a.py").write_text("x = 2\n")
    assert git_info()["dirty"] is True
    v_dirty = fresh_code_version()
    assert v_dirty.startswith(f"git:{rev}+dirty:")
    (pkg / "a.py").write_text("x = 3\n")  # every further edit changes the version
    assert fresh_code_version() not in (v_dirty, f"git:{rev}")
    (pkg / "new.py").write_text("")  # untracked source counts as dirty too
    git("checkout", "--", "rfdiff/a.py")
    assert git_info()["dirty"] is True


def test_this_checkout_reports_a_revision():
    if not HAVE_GIT or not (prov_mod._REPO_DIR / ".git").exists():
        pytest.skip("not a git checkout")
    info = git_info()
    assert len(info["revision"]) == 40 and info["dirty"] in (True, False)
