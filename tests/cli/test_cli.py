"""The ``rfdiff`` command line: help, exit codes, one-line errors (rfdiff/cli/)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import xarray as xr

from rfdiff import cli
from rfdiff.cli import Command, main, register
from sweep_points import write_config

REPO = Path(__file__).resolve().parents[2]
TESTS = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _pinned_code_version(monkeypatch):
    monkeypatch.setenv("RFDIFF_CODE_VERSION", "cli-tests")


GOOD = """
[sweep]
name = "flaky"
function = "sweep_points:flaky"
cache_dir = "cache"
[grid]
x = [1, 3]
"""


@pytest.mark.parametrize("argv", [["--help"], ["sweep", "--help"], ["sweep", "run", "--help"],
                                  ["sweep", "status", "--help"], ["sweep", "collect", "--help"],
                                  ["info", "--help"]])
def test_help_everywhere_with_examples(argv, capsys):
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "usage: rfdiff" in out and "examples:" in out


@pytest.mark.parametrize("argv, fragment", [
    ([], "the following arguments are required: COMMAND"),
    (["bogus"], "invalid choice: 'bogus'"),
    (["sweep"], "the following arguments are required"),
    (["sweep", "run"], "the following arguments are required: CONFIG"),
    (["sweep", "run", "x.toml", "--workers", "0"], "must be an integer >= 1, got 0"),
    (["sweep", "run", "x.toml", "--cluster", "slurm"], "invalid choice: 'slurm'"),
    (["sweep", "run", "x.toml", "--serial", "--cluster", "local"], "not allowed with"),
])
def test_bad_usage_exits_2_with_one_line(argv, fragment, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and fragment in err and "Traceback" not in err


def test_bad_config_exits_2_with_one_line(tmp_path, capsys):
    path = write_config(tmp_path, GOOD.replace("x = [1, 3]", "x = [1, 3]\ncolour = ['red']"))
    assert main(["sweep", "run", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("rfdiff sweep: error: ") and str(path) in err and "[grid].colour" in err
    assert main(["sweep", "status", str(tmp_path / "missing.toml")]) == 2
    assert "missing.toml: no such file" in capsys.readouterr().err


def test_sweep_commands_end_to_end(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = write_config(tmp_path, GOOD)
    assert main(["sweep", "status", str(path)]) == 0
    assert "2 points: 0 done, 0 failed, 2 pending" in capsys.readouterr().out
    assert main(["sweep", "run", str(path), "--serial", "--quiet"]) == 0
    assert main(["sweep", "status", str(path)]) == 0
    assert "2 done, 0 failed, 0 pending" in capsys.readouterr().out
    assert main(["sweep", "collect", str(path)]) == 0
    assert "wrote flaky.nc" in capsys.readouterr().out
    with xr.open_dataset(tmp_path / "flaky.nc") as ds:
        assert list(ds["y"].values) == [10.0, 30.0] and "provenance" in ds.attrs


def test_failed_points_exit_1_and_are_listed(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = write_config(tmp_path, GOOD.replace("[1, 3]", "[1, 2, 3]"))
    assert main(["sweep", "run", str(path), "--serial"]) == 1
    err = capsys.readouterr().err
    assert "1 failed" in err and "failed: x=2: ValueError: boom at x=2" in err
    assert main(["sweep", "status", str(path), "--tracebacks"]) == 0
    out = capsys.readouterr().out
    assert "failed  x=2: ValueError: boom at x=2" in out and "Traceback" in out
    assert main(["sweep", "collect", str(path), "-o", "out.nc"]) == 1
    assert "1 of 3 points" in capsys.readouterr().err and not (tmp_path / "out.nc").exists()
    assert main(["sweep", "collect", str(path), "-o", "out.nc", "--allow-missing"]) == 0
    assert (tmp_path / "out.nc").exists()


def test_dask_missing_is_a_one_line_usage_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed -> ImportError
    path = write_config(tmp_path, GOOD)
    assert main(["sweep", "run", str(path), "--cluster", "local"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install 'rfdiff[dist]'" in err


def test_info_text_and_json(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    for word in ("rfdiff", "numba", "torch", "cupy", "dask", "code version"):
        assert word in out
    assert main(["info", "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert {"versions", "numba", "torch", "cupy", "dask", "git", "code_version"} <= set(rep)
    assert rep["code_version"] == "cli-tests"


def test_register_a_command(monkeypatch, capsys):
    monkeypatch.setattr(cli, "COMMANDS", list(cli.COMMANDS))
    seen = {}

    def add(p):
        p.add_argument("name")

    def run(args):
        if args.name == "bad":
            raise ValueError("no such figure\nsecond line is not shown")
        seen["name"] = args.name
        return 0

    register(Command("figure", "draw a figure", add, run, epilog="examples:\n  rfdiff figure a\n"))
    assert main(["figure", "kl"]) == 0 and seen == {"name": "kl"}
    assert main(["figure", "bad"]) == 2
    assert capsys.readouterr().err == "rfdiff figure: error: no such figure\n"
    with pytest.raises(ValueError):
        main(["--traceback", "figure", "bad"])
    assert [c.name for c in cli.COMMANDS].count("figure") == 1


def test_module_entry_point_runs():
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(TESTS)])}
    res = subprocess.run([sys.executable, "-m", "rfdiff.cli", "sweep", "run", "nope.toml"],
                         env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and res.stderr.strip().endswith("nope.toml: no such file")
    assert res.stderr.count("\n") == 1


def test_truncated_cache_entry_is_a_one_line_warning_and_recomputed(tmp_path, capsys):
    path = write_config(tmp_path, GOOD)
    assert main(["sweep", "run", str(path), "--serial", "--quiet"]) == 0
    data = sorted((tmp_path / "cache").rglob("*.npz"))[0]
    data.write_bytes(data.read_bytes()[:20])
    capsys.readouterr()
    assert main(["sweep", "run", str(path), "--serial"]) == 0
    err = capsys.readouterr().err
    warning = [ln for ln in err.splitlines() if "warning" in ln]
    assert len(warning) == 1 and warning[0].startswith("rfdiff sweep: warning: ignoring corrupt")
    assert "1 already cached, 1 computed, 0 failed" in err
