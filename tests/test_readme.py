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


def test_readme_sweep_config_runs(tmp_path):
    """The README's sweep config loads (its function exists and takes these parameters) and
    one of its points runs (issue 21 item 8: the documented function did not exist)."""
    from rfdiff.run import load_config, run_sweep, sweep_status

    block = re.search(r"```toml\n(.*?)```", README.read_text(), re.S).group(1)
    cfg_path = tmp_path / "sweep.toml"
    cfg_path.write_text(block)
    cfg = load_config(cfg_path)
    assert cfg.function == "analysis.experiments.scaling:point" and cfg.shape == (2, 2)
    small = tmp_path / "one.toml"
    small.write_text(block.replace("n = [16, 64]", "n = [16]").replace("seed = [0, 1]", "seed = [0]"))
    report = run_sweep(small, cache=tmp_path / "cache", serial=True, progress=False)
    assert report.ok and report.computed == 1
    assert sweep_status(small, cache=tmp_path / "cache").done == 1
