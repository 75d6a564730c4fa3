"""The package's shape: module-level imports of rfdiff form no cycle, imports inside
analysis/ form none either (function-level ones included: a lazy import still closes a
cycle of responsibilities, as analysis.figures <-> analysis.experiments._report did), and
the string "relu" (activation properties) lives in the features module only."""
import ast
from pathlib import Path

import rfdiff

ROOT = Path(rfdiff.__file__).parent


ANALYSIS = ROOT.parent / "analysis"


def _module(path):
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = list(rel.parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path, mods, deep=False):
    """Modules of ``mods`` imported by ``path``: at module level (not inside functions),
    or anywhere with ``deep``."""
    name = _module(path)
    pkg = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out = set()
    tree = ast.parse(path.read_text())
    for node in (ast.walk(tree) if deep else tree.body):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name in mods}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for a in node.names:
                if f"{target}.{a.name}" in mods:
                    out.add(f"{target}.{a.name}")
                elif target in mods:
                    out.add(target)
    out.discard(name)
    return out


def import_graph(root=ROOT, deep=False):
    files = {_module(p): p for p in root.rglob("*.py")}
    mods = set(files)
    graph = {m: _imports(p, mods, deep) for m, p in files.items()}
    # importing rfdiff.a.b first runs rfdiff.a's __init__ (unless the importer is inside rfdiff.a)
    def ancestors(m):
        parts = m.split(".")
        return {".".join(parts[:i]) for i in range(2, len(parts))}
    for m in graph:
        graph[m] = {a for t in graph[m] for a in ancestors(t) | {t}} - ancestors(m) - {m, root.name}
    return graph


def _find_cycle(graph):
    state, stack = {}, []

    def visit(u):
        state[u] = 1
        stack.append(u)
        for w in sorted(graph.get(u, ())):
            if state.get(w) == 1:
                return stack[stack.index(w):] + [w]
            if w not in state:
                c = visit(w)
                if c:
                    return c
        state[u] = 2
        stack.pop()
        return None

    for u in sorted(graph):
        if u not in state:
            c = visit(u)
            if c:
                return c
    return None


def test_no_import_cycles():
    graph = import_graph()
    assert len(graph) > 30
    assert _find_cycle(graph) is None, _find_cycle(graph)


def test_no_import_cycles_in_analysis():
    graph = import_graph(ANALYSIS, deep=True)
    assert "analysis.figures" in graph and "analysis.experiments._report" in graph
    assert _find_cycle(graph) is None, _find_cycle(graph)


def test_cli_and_sweep_commands_do_not_import_each_other():
    """rfdiff.cli <-> its sweep command was a cycle (for UsageError only): anywhere, also
    inside functions, the sweep command imports only rfdiff.cli.usage of the CLI."""
    graph = import_graph(deep=True)
    assert "rfdiff.cli" not in graph["rfdiff.cli.sweep"]
    assert "rfdiff.cli.usage" in graph["rfdiff.cli.sweep"]


def test_cycle_finder_finds_a_cycle():
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def _shortest_path(graph, a, b):
    """Modules on the shortest import path from ``a`` to ``b`` (both included)."""
    prev, frontier = {a: None}, [a]
    while frontier:
        nxt = []
        for u in frontier:
            for w in sorted(graph.get(u, ())):
                if w not in prev:
                    prev[w] = u
                    nxt.append(w)
        frontier = nxt
    if b not in prev:
        return None
    path = [b]
    while path[-1] != a:
        path.append(prev[path[-1]])
    return path[::-1]


def test_kl_ode_reaches_the_ode_solver_through_few_modules():
    """Issue 15: kl_ode's score reaches the Runge-Kutta solver through at most 4 rfdiff modules
    (now kl.ode -> kl.log_density -> numerics.rk)."""
    graph = import_graph()
    path = _shortest_path(graph, "rfdiff.kl.ode", "rfdiff.numerics.rk")
    assert path is not None and len(path) <= 4, path
    assert _shortest_path({"a": {"b"}, "b": {"c"}}, "a", "c") == ["a", "b", "c"]


def test_relu_string_only_in_features():
    hits = [p for p in ROOT.rglob("*.py") if '"relu"' in p.read_text()]
    assert hits == [ROOT / "model" / "features.py"], hits
