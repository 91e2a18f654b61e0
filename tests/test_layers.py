"""The layers and the import graph, read from the source with ``ast``.

Nothing is imported: every module of ``models/``, ``providers/``,
``producer/``, ``worker/`` and ``smsq/`` is parsed, and every ``import`` in
it counts, function-local ones included, except those under
``if TYPE_CHECKING:`` (they never run). ``from x import y`` is an import of
module ``x.y`` when ``y`` is a submodule, else of ``x``. Importing ``a.b.c``
also runs ``a/__init__`` and ``a/b/__init__``; those implicit edges are left
out, as import-linter and pydeps do, so that a package's ``__init__``
re-exporting its own modules is not a cycle.

The rules (docs/architecture.md, issue 9): no import cycle between modules;
each layer imports only the layers of :data:`MAY_IMPORT`; nothing below the
shell imports it; production code never imports the provider simulator.
When a module moves (``smsq/core/``, a vendor's folder), update
:data:`LAYERS`.
"""

from __future__ import annotations

import ast
import itertools
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest

# --- the table: update it when modules move -----------------------------------

# Which layer a module belongs to: the longest matching prefix wins. "core" is
# smsq's ground floor, smsq/core/ (settings, names, logs, netguard, the task
# publisher: every layer may import it), "shell" is the rest of smsq/ (CLI,
# demo, the served app), which may import everything and which nothing below
# it may import.
LAYERS: dict[str, tuple[str, ...]] = {
    "models": ("models",),
    "core": ("smsq.core",),
    "providers": ("providers",),
    "simulator": ("providers.simulator",),  # a test double: the shell and tests only
    "producer": ("producer",),
    "worker": ("worker",),
    "shell": ("smsq",),
}

# The layers each layer may import (itself included). The shell is the top.
# ``core`` imports the provider account schema (settings validate the
# providers file: docs/architecture.md), hence "providers" in its row.
MAY_IMPORT: dict[str, frozenset[str]] = {
    "models": frozenset({"models"}),
    "core": frozenset({"core", "models", "providers"}),
    "providers": frozenset({"providers", "models", "core"}),
    "simulator": frozenset({"simulator", "providers", "models", "core"}),
    "producer": frozenset({"producer", "providers", "models", "core"}),
    "worker": frozenset({"worker", "providers", "models", "core"}),
    "shell": frozenset(LAYERS),
}

# --- reading the source ---------------------------------------------------------

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("models", "providers", "producer", "worker", "smsq")


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def modules() -> dict[str, Path]:
    """Every module of ours, by dotted name."""
    found = {_module_name(p): p for pkg in PACKAGES for p in sorted((REPO / pkg).rglob("*.py"))}
    assert "worker.app" in found and "models.tables" in found, f"not a source tree: {REPO}"
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_nodes(node: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement under ``node``, skipping ``if TYPE_CHECKING:`` bodies."""
    if isinstance(node, ast.Import | ast.ImportFrom):
        yield node
        return
    if isinstance(node, ast.If) and _is_type_checking(node.test):
        children: list[ast.AST] = list(node.orelse)
    else:
        children = list(ast.iter_child_nodes(node))
    for child in children:
        yield from _import_nodes(child)


def _resolve(module: str, node: ast.Import | ast.ImportFrom) -> list[str]:
    """The modules of ours that ``node``, found in ``module``, imports."""
    ours = modules()
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name in ours]
    base = node.module or ""
    if node.level:
        is_package = ours[module].name == "__init__.py"
        package = module.split(".")
        anchor = package[: len(package) - node.level + (1 if is_package else 0)]
        base = ".".join([*anchor, *([base] if base else [])])
    targets = []
    for alias in node.names:
        if f"{base}.{alias.name}" in ours:
            targets.append(f"{base}.{alias.name}")
        elif base in ours:
            targets.append(base)
    return targets


@cache
def import_graph() -> dict[str, dict[str, int]]:
    """module -> {imported module -> line of the first such import}."""
    graph: dict[str, dict[str, int]] = {}
    for name, path in modules().items():
        edges: dict[str, int] = {}
        for node in _import_nodes(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            for target in _resolve(name, node):
                if target != name:
                    edges.setdefault(target, node.lineno)
        graph[name] = edges
    return graph


def layer_of(module: str) -> str:
    matches = [
        (len(prefix), layer)
        for layer, prefixes in LAYERS.items()
        for prefix in prefixes
        if module == prefix or module.startswith(prefix + ".")
    ]
    assert matches, f"{module} is in no layer: add it to LAYERS"
    return max(matches)[1]


# --- cycles -----------------------------------------------------------------------


def strongly_connected(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """Tarjan's components with more than one module (iterative: no recursion limit)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def shortest_cycle(graph: dict[str, dict[str, int]], start: str, within: set[str]) -> list[str]:
    """The shortest import chain from ``start`` back to itself inside ``within``."""
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for child in sorted(graph[node]):
                if child not in within:
                    continue
                if child == start:
                    chain = [node]
                    while chain[-1] != start:
                        chain.append(previous[chain[-1]])
                    return [start, *reversed(chain[:-1]), start]
                if child not in previous:
                    previous[child] = node
                    following.append(child)
        frontier = following
    raise AssertionError(f"{start} is on no cycle")


def cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """Each cycle found, as the chain ``[a, b, a]``: the shortest one through
    each module of every strongly connected set, without repeats."""
    chains: list[list[str]] = []
    seen: set[frozenset[tuple[str, str]]] = set()
    for component in strongly_connected(graph):
        for start in component:
            chain = shortest_cycle(graph, start, set(component))
            edges = frozenset(itertools.pairwise(chain))
            if edges not in seen:
                seen.add(edges)
                chains.append(chain)
    return chains


def readable(graph: dict[str, dict[str, int]], chain: list[str]) -> str:
    """``a:12 -> b:3 -> a``: each module with the line of its import of the next."""
    steps = [f"{a}:{graph[a][b]}" for a, b in itertools.pairwise(chain)]
    return " -> ".join([*steps, chain[-1]])


# --- the checker checks itself ------------------------------------------------------


def test_imports_are_read_as_python_runs_them(tmp_path: Path) -> None:
    """Function-local and relative imports count, TYPE_CHECKING ones do not,
    and ``from package import submodule`` is an import of the submodule."""
    source = """
from typing import TYPE_CHECKING
import worker.claims
from models import tables
from models.status import MessageStatus
if TYPE_CHECKING:
    from smsq.cli import main
else:
    from providers import errors
def later():
    from producer.api import send
    from .retry_policy import RetryPolicy
    from . import metrics
"""
    tree = ast.parse(source)
    found = sorted({t for n in _import_nodes(tree) for t in _resolve("worker.outcomes", n)})
    assert found == [
        "models.status",
        "models.tables",
        "producer.api",
        "providers.errors",
        "worker.claims",
        "worker.metrics",
        "worker.retry_policy",
    ]


def test_cycles_are_reported_as_chains() -> None:
    graph = {
        "a": {"b": 1},
        "b": {"c": 2, "a": 3},
        "c": {"a": 4},
        "d": {"a": 5},
        "e": {"f": 6},
        "f": {"e": 7},
    }
    assert strongly_connected(graph) == [["a", "b", "c"], ["e", "f"]]
    assert [readable(graph, chain) for chain in cycles(graph)] == [
        "a:1 -> b:3 -> a",
        "c:4 -> a:1 -> b:2 -> c",
        "e:6 -> f:7 -> e",
    ]


def test_every_module_has_a_layer() -> None:
    assert {layer_of(m) for m in modules()} <= set(MAY_IMPORT)
    assert layer_of("smsq.core.settings") == "core"
    assert layer_of("providers.simulator.wire") == "simulator"
    assert layer_of("smsq.cli.fleet") == "shell"


# --- the rules ------------------------------------------------------------------------


@pytest.mark.parametrize("package", PACKAGES)
def test_no_import_cycle(package: str) -> None:
    """One test per package (a cycle through two packages fails both)."""
    graph = import_graph()
    found = [
        readable(graph, chain)
        for chain in cycles(graph)
        if any(m == package or m.startswith(f"{package}.") for m in chain)
    ]
    assert not found, "import cycles (module:line of the import):\n" + "\n".join(found)


def _wrong_imports(layer: str) -> list[str]:
    allowed = MAY_IMPORT[layer]
    return [
        f"{module}:{line} imports {target} ({layer_of(target)})"
        for module, edges in sorted(import_graph().items())
        if layer_of(module) == layer
        for target, line in sorted(edges.items())
        if layer_of(target) not in allowed
    ]


@pytest.mark.parametrize("layer", list(MAY_IMPORT))
def test_each_layer_imports_only_the_layers_below_it(layer: str) -> None:
    wrong = _wrong_imports(layer)
    assert not wrong, f"{layer} may import only {sorted(MAY_IMPORT[layer])}:\n" + "\n".join(wrong)


def test_the_table_says_what_the_architecture_says() -> None:
    """The rules of docs/architecture.md and issue 9, as the table must keep them."""
    assert MAY_IMPORT["models"] == {"models"}
    assert MAY_IMPORT["providers"] <= {"providers", "models", "core"}
    assert "worker" not in MAY_IMPORT["producer"]
    assert "producer" not in MAY_IMPORT["worker"]  # siblings: they share the layers below
    for layer in ("models", "core", "providers", "producer", "worker"):
        assert "shell" not in MAY_IMPORT[layer], layer
        assert "simulator" not in MAY_IMPORT[layer], layer


@pytest.mark.parametrize("package", ["producer", "worker", "models"])
def test_no_production_code_names_the_simulator(package: str) -> None:
    """``grep -rn providers.simulator producer worker models`` is empty: not even
    a string names it (a lazy import would slip past the graph)."""
    hits = [
        f"{path.relative_to(REPO)}:{number}: {line.strip()}"
        for path in sorted((REPO / package).rglob("*.py"))
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if "providers.simulator" in line
    ]
    assert not hits, "\n".join(hits)
