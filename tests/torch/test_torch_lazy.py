"""The core never imports torch; rfdiff.torch imports it lazily (rfdiff/torch/_lazy.py)."""
import subprocess
import sys

import pytest


def _run(code):
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_core_does_not_import_torch():
    r = _run("import sys, rfdiff, rfdiff.model.scorematching, rfdiff.model.flow; print('torch' in sys.modules)")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "False"


def test_missing_torch_gives_install_hint():
    # sys.modules['torch'] = None makes 'import torch' raise ImportError, as if not installed
    r = _run("import sys; sys.modules['torch'] = None\n"
             "import rfdiff\n"
             "try:\n"
             "    from rfdiff import torch as rft\n"
             "except ImportError as e:\n"
             "    print('ERR', e)\n")
    assert r.returncode == 0, r.stderr
    assert "ERR" in r.stdout and "pip install 'rfdiff[torch]'" in r.stdout and "torch==2.13.0" in r.stdout


def test_absolute_import_is_real_torch():
    torch = pytest.importorskip("torch")
    from rfdiff import torch as rft
    mods = [sys.modules[f"rfdiff.torch.{name}"] for name in ("rf", "nets", "train", "_common")]
    assert rft is not torch and rft.__name__ == "rfdiff.torch"
    for mod in mods:
        assert mod.torch is torch and hasattr(mod.torch, "tensor")
    import rfdiff
    assert rfdiff.torch is rft
