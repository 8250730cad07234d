"""No import cycles between flexent's own modules (issue #20).

The graph is read from the source with :mod:`ast`, without importing anything. One node per
module (``flexent.sweep.spec``; a package is its ``__init__``: ``flexent.sweep``). Every import
statement counts, wherever it stands: at the top, inside a function or method, under
``if TYPE_CHECKING:`` or in a ``try``. A lazy import hides a cycle from the interpreter, not from
the design, so it is an edge like any other. The edges:

- ``import flexent.a.b`` -> ``flexent.a.b``.
- ``from flexent.a import b`` -> ``flexent.a.b`` when ``b`` is a submodule, else ``flexent.a``
  (the ``__init__``, which is where a re-exported name comes from).
- Relative imports are resolved against the importing module's package first.
- A string constant that is exactly a flexent module's dotted name (``"flexent.rewards.format"``)
  is an edge too: that is how ``importlib.import_module`` tables (the CLI's commands, the reward
  built-ins) import, and a cycle through one is still a cycle.

The implicit import of a parent package (importing ``flexent.a.b`` runs ``flexent/a/__init__``
first) is *not* an edge: otherwise every package ``__init__`` that re-exports its submodules
would form a cycle with each of them. So a package importing its own submodules is fine; it is a
cycle only when a submodule also imports the package's ``__init__`` (``from flexent.a import
name`` with ``name`` not a submodule) while that ``__init__`` imports the submodule, directly or
through others. A module importing itself is a cycle of length one.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "flexent"

Graph = Mapping[str, Iterable[str]]


def module_name(path: Path, root: Path = SRC) -> str:
    """``src/flexent/sweep/spec.py`` -> ``flexent.sweep.spec``; an ``__init__`` is its package."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _known(name: str, modules: set[str]) -> str | None:
    """``name`` or its longest prefix that is one of ``modules`` (None outside the package)."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def imports_of(tree: ast.AST, module: str, is_package: bool, modules: set[str]) -> set[str]:
    """The flexent modules that ``module`` (parsed as ``tree``) imports, per the module doc."""
    anchor = module if is_package else module.rpartition(".")[0]
    found: set[str | None] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(_known(alias.name, modules) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = anchor.rsplit(".", node.level - 1)[0] if node.level > 1 else anchor
                base = f"{package}.{base}" if base else package
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.add(sub if sub in modules else _known(base, modules))
        elif isinstance(node, ast.Constant) and node.value in modules:
            found.add(node.value)
    return {m for m in found if m is not None}


def import_graph(root: Path = SRC, package: str = PACKAGE) -> dict[str, set[str]]:
    """``{module: {flexent modules it imports}}`` for every ``.py`` under ``root/package``."""
    files = {module_name(p, root): p for p in sorted((root / package).rglob("*.py"))}
    modules = set(files)
    return {
        name: imports_of(ast.parse(path.read_text(), str(path)), name,
                         path.name == "__init__.py", modules)
        for name, path in files.items()
    }  # fmt: skip


def strongly_connected(graph: Graph) -> list[list[str]]:
    """Tarjan's strongly connected components of ``graph``, each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def one_cycle(graph: Graph, component: list[str]) -> list[str]:
    """A shortest cycle through ``component[0]`` inside ``component``: ``[a, b, ..., a]``."""
    start, inside = component[0], set(component)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(graph.get(v, ())):
                if w == start:
                    return [*paths[v], start]
                if w in inside and w not in paths:
                    paths[w] = [*paths[v], w]
                    nxt.append(w)
        frontier = nxt
    raise AssertionError(f"{component} is not a cycle")


def _cyclic(graph: Graph) -> list[list[str]]:
    return [c for c in strongly_connected(graph) if len(c) > 1 or c[0] in graph.get(c[0], ())]


def cycles(graph: Graph) -> list[list[str]]:
    """One cycle per strongly connected component of size > 1, and each self-loop."""
    return [one_cycle(graph, comp) for comp in _cyclic(graph)]


def test_detector_finds_cycles_on_a_synthetic_graph():
    # a -> b -> c -> a is one component; d -> d is a self-loop; e -> a joins nothing.
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"d"}, "e": {"a"}, "f": set()}
    assert sorted(map(sorted, strongly_connected(graph))) == [["a", "b", "c"], ["d"], ["e"], ["f"]]
    assert cycles(graph) == [["a", "b", "c", "a"], ["d", "d"]]
    assert describe(graph)[0] == "a -> b -> c -> a (component: ['a', 'b', 'c'])"
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_edges_follow_the_documented_rule(tmp_path):
    pkg = tmp_path / "p"
    (pkg / "sub").mkdir(parents=True)
    sources = {
        "__init__.py": "from p.sub import leaf\nfrom p.sub import NAME\n",
        "sub/__init__.py": "from .leaf import NAME\n",
        "sub/leaf.py": "def f():\n    from .. import top\n    import p.sub\n",
        "top.py": "x = 'p.sub.leaf'\nfrom typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
        "    from . import NAME\n",
    }
    for rel, text in sources.items():
        (pkg / rel).write_text(text)
    graph = import_graph(tmp_path, "p")
    assert graph == {
        "p": {"p.sub.leaf", "p.sub"},  # `leaf` is a submodule, `NAME` comes from the __init__
        "p.sub": {"p.sub.leaf"},
        "p.sub.leaf": {"p.top", "p.sub"},  # lazy and relative imports count
        "p.top": {"p.sub.leaf", "p"},  # a module's dotted name as a string, TYPE_CHECKING
    }
    assert cycles(graph) == [["p", "p.sub.leaf", "p.top", "p"]]


def describe(graph: Graph) -> list[str]:
    """One line per cycle: a shortest cycle, and every module of its component."""
    return [
        f"{' -> '.join(cycle)} (component: {comp})"
        for cycle, comp in zip(cycles(graph), _cyclic(graph), strict=True)
    ]


def test_flexent_has_no_import_cycles():
    graph = import_graph()
    assert {"flexent.sweep.spec", "flexent.demo", "flexent.models"} <= set(graph)
    found = describe(graph)
    if found:
        pytest.fail("import cycles in src/flexent:\n" + "\n".join(found))
