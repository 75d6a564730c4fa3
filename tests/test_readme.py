"""The README's worked example runs as written and prints a finite KL."""
import math
import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_example_runs(capsys):
    text = README.read_text()
    block = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    namespace = {}
    exec(compile(block, str(README), "exec"), namespace)
    kl = namespace["kl"]
    assert math.isfinite(kl.value) and kl.value > 0
    assert namespace["A"].shape == (25, 1, 256)
    assert "KL(p0 || p_gen)" in capsys.readouterr().out
    first_lines = text.splitlines()[:15]
    assert any("rfdiff figures --quick" in line for line in first_lines)
    assert any("python -m pytest" in line for line in first_lines)
    ci = (README.parent / ".ci" / "run").read_text()
    assert "pip install -q -e '.[test,torch,dist]' && python -m pytest -q" in ci
