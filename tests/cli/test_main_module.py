"""``python -m rfdiff ARGS`` is ``rfdiff ARGS`` (issue 15 item 6)."""
import subprocess
import sys


def test_python_m_rfdiff_runs_the_cli():
    res = subprocess.run([sys.executable, "-m", "rfdiff", "--version"], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0 and res.stdout.startswith("rfdiff ")
    bad = subprocess.run([sys.executable, "-m", "rfdiff", "no-such-command"], capture_output=True,
                         text=True, timeout=120)
    assert bad.returncode == 2 and "invalid choice" in bad.stderr
