"""Outside the package (analysis/, scripts/, benchmarks/) only rfdiff's public surface is
used: no ``_``-prefixed rfdiff module or name is imported or reached as an attribute."""
import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
OUTSIDE = ("analysis", "scripts", "benchmarks")


def _private(dotted: str) -> bool:
    """A ``_``-prefixed component (dunders such as ``__version__`` are public)."""
    return any(p.startswith("_") and not (p.startswith("__") and p.endswith("__")) for p in dotted.split("."))


def private_uses(source: str) -> list[str]:
    """Every private rfdiff module or name that ``source`` imports or reaches."""
    tree = ast.parse(source)
    bad, aliases = [], set()      # aliases: local names bound to rfdiff modules
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name == "rfdiff" or a.name.startswith("rfdiff."):
                    if _private(a.name):
                        bad.append(a.name)
                    aliases.add(a.asname or "rfdiff")
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and (
                node.module == "rfdiff" or node.module.startswith("rfdiff.")):
            for a in node.names:
                full = f"{node.module}.{a.name}"
                if _private(full):
                    bad.append(full)
                aliases.add(a.asname or a.name)     # may be a module (rfdiff.torch): checked below
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _private(node.attr):
            base = node.value
            while isinstance(base, ast.Attribute):
                base = base.value
            if isinstance(base, ast.Name) and base.id in aliases:
                bad.append(f"{ast.unparse(node)}")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            # importlib.import_module("rfdiff._x"), mock.patch("rfdiff.a._b") and the like
            for m in re.finditer(r"\brfdiff(?:\.\w+)+", node.value):
                if _private(m.group(0)):
                    bad.append(m.group(0))
    return bad


def _files():
    return sorted(p for d in OUTSIDE for p in (REPO / d).rglob("*.py"))


@pytest.mark.parametrize("path", _files(), ids=lambda p: str(p.relative_to(REPO)))
def test_no_private_rfdiff_outside_the_package(path):
    bad = private_uses(path.read_text())
    assert not bad, f"{path.relative_to(REPO)} uses private rfdiff names: {bad}"


def test_checker_catches_private_uses():
    """The checker itself: each form of private use is found, public uses are not."""
    assert private_uses("from rfdiff.model.batch import RFBatch") == []
    assert private_uses("import rfdiff._numba") == ["rfdiff._numba"]
    assert private_uses("from rfdiff import _validate as v") == ["rfdiff._validate"]
    assert private_uses("from rfdiff.kl.girsanov import _bound_batch") == ["rfdiff.kl.girsanov._bound_batch"]
    assert private_uses("from rfdiff.kl._relu_flow import x") == ["rfdiff.kl._relu_flow.x"]
    assert private_uses("import rfdiff as rf\nrf.kl._relu_flow.f()") == ["rf.kl._relu_flow"]
    assert private_uses("from rfdiff import torch as rft\nrft._common.x") == ["rft._common"]
    assert private_uses("import importlib\nimportlib.import_module('rfdiff.numerics._hermite_pm')") == [
        "rfdiff.numerics._hermite_pm"]
    assert private_uses("import rfdiff as rf\nrf.__version__\nrf.kl_ode\nx._private") == []


def _from_imports(source: str):
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and (
                node.module == "rfdiff" or node.module.startswith("rfdiff.")):
            yield node.module, [a.name for a in node.names]


@pytest.mark.parametrize("path", _files(), ids=lambda p: str(p.relative_to(REPO)))
def test_names_imported_from_rfdiff_are_declared_public(path):
    """``from rfdiff.X import name``: ``name`` is a submodule of X or listed in X's ``__all__``."""
    import importlib
    import importlib.util

    for module, names in _from_imports(path.read_text()):
        mod = importlib.import_module(module)
        public = set(getattr(mod, "__all__", dir(mod)))
        for name in names:
            is_module = importlib.util.find_spec(f"{module}.{name}") is not None if hasattr(mod, "__path__") \
                else False
            assert is_module or name in public, (
                f"{path.relative_to(REPO)}: {name!r} is not in {module}.__all__")
