"""The README's examples run as written (the worked example prints a finite KL; the sweep
config loads and runs), and so do the examples of every ``--help`` text and of the config
module's docstrings (issue 21 item 8)."""
import math
import re
from pathlib import Path

import pytest

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


# --------------------------------------------------------------------------- --help examples

def _help_epilogs():
    """(command, epilog) of the main parser and every subcommand, recursively."""
    import argparse

    from rfdiff.cli import build_parser

    out = []

    def walk(parser, name):
        out.append((name, parser.epilog or ""))
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub, p in action.choices.items():
                    walk(p, f"{name} {sub}")
    walk(build_parser(), "rfdiff")
    return out


def help_examples() -> list[str]:
    """Every ``rfdiff ...`` example line of every ``--help`` text and of the README's
    command-line block (comments removed)."""
    lines = []
    for _, epilog in _help_epilogs():
        lines += [ln.split("#")[0].strip() for ln in epilog.splitlines()
                  if ln.strip().startswith("rfdiff ")]
    block = re.search(r"## Command line\n\n```bash\n(.*?)```", README.read_text(), re.S).group(1)
    lines += [ln.split("#")[0].strip() for ln in block.splitlines() if ln.startswith("rfdiff ")]
    return list(dict.fromkeys(lines))


def test_help_examples_are_valid_commands():
    """Every example parses (flags, choices, figure names exist) - issue 21 item 8."""
    import shlex

    from analysis.figures import FIGURES
    from rfdiff.cli import build_parser

    examples = help_examples()
    assert len(examples) > 20
    assert any("--cluster local" in e and e.startswith("rfdiff figure ") for e in examples)
    for ex in examples:
        argv = shlex.split(ex)[1:]
        try:
            args = build_parser().parse_args(argv)
        except SystemExit as exc:
            raise AssertionError(f"help example does not parse: {ex}") from exc
        if args.command == "figure":
            assert args.name in FIGURES, ex


def _tiny(ex: str, scheduler: str | None) -> list[str]:
    """An example at tiny size: figures --tiny, trajectories on a small problem."""
    import shlex

    argv = shlex.split(ex)[1:]
    argv = ["--tiny" if a in ("--quick", "--full") else a for a in argv]
    if argv[0] in ("figure", "figures") and "--tiny" not in argv:
        argv.append("--tiny")
    if scheduler:
        argv = [scheduler if a.startswith("tcp://") else a for a in argv]
    if argv[0] == "trajectory" and "--config" not in argv:
        argv += ["--n", "50", "--m", "16", "--n-time", "16", "--taus", "1:1e4:3", "--tol", "1e-2"]
    if argv[0] == "figures" and "--only" not in argv:
        argv += ["--only", "width"]
    return argv


@pytest.mark.slow
def test_help_examples_run_at_tiny_size(tmp_path, monkeypatch):
    """Every example of the help texts and the README's command-line block runs (at tiny
    size, in a scratch directory with the README's sweep config as scaling.toml / sweep.toml
    and a small trajectory config as run.toml; the --scheduler examples against a
    LocalCluster started here)."""
    distributed = pytest.importorskip("distributed")
    from rfdiff.cli import main

    block = re.search(r"```toml\n(.*?)```", README.read_text(), re.S).group(1)
    tiny = block.replace("n = [16, 64]", "n = [16]").replace("seed = [0, 1]", "seed = [0]")
    for name in ("scaling.toml", "sweep.toml"):
        (tmp_path / name).write_text(tiny)
    (tmp_path / "run.toml").write_text('[trajectory]\nn = 40\nm = 8\nn_time = 8\ntaus = "1:100:3"\n'
                                       'metrics = ["train_loss"]\n')
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RFDIFF_CACHE_DIR", str(tmp_path / "cache"))
    examples = help_examples()
    # sweeps: run before status and collect
    examples.sort(key=lambda e: (not e.startswith("rfdiff sweep run"), e.startswith("rfdiff sweep collect")))
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, dashboard_address=None) as cl:
        for ex in examples:
            code = main(_tiny(ex, cl.scheduler_address))
            assert code == 0, ex


def test_config_module_docstring_examples_run(tmp_path):
    """The doctests of rfdiff.run.config, and its module docstring's sweep config: it loads
    (a registered function taking these parameters) and one of its points runs."""
    import doctest
    import textwrap

    import rfdiff.run.config as config_module
    from rfdiff.run import load_config, run_sweep

    res = doctest.testmod(config_module, optionflags=doctest.ELLIPSIS)
    assert res.attempted >= 4 and res.failed == 0
    doc = config_module.__doc__
    block = textwrap.dedent(doc.split("runs one of its points)::\n", 1)[1].split("\nEvery point")[0])
    path = tmp_path / "scaling.toml"
    path.write_text(block)
    cfg = load_config(path)
    assert cfg.function == "analysis.experiments.scaling:point" and cfg.shape == (2, 2)
    assert (cfg.workers, cfg.retries, cfg.timeout_s) == (2, 1, 600.0)
    path.write_text(block.replace("n = [16, 64]", "n = [16]").replace("seed = [0, 1]", "seed = [0]"))
    report = run_sweep(path, serial=True, progress=False)
    assert report.ok and report.computed == 1
