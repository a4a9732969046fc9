"""No import cycle between the packages of builder/.

Each subpackage of builder/ (builder.site, builder.oci, ...) and each top-level module
(builder.lock, builder.build, ...) is one node; an import from one node into another is
an edge. Imports inside a package are not edges, so a package may be as tangled inside as
its one concern needs.

Every import statement counts, wherever it stands: inside a function (deferred so a
command does not load httpx before it needs it) and under `if TYPE_CHECKING:` too. A
deferred import only hides a cycle from the interpreter at start-up; the two packages
still depend on each other, and mypy follows TYPE_CHECKING imports like any other.
"""

from __future__ import annotations

import ast
import itertools
from collections.abc import Iterator
from pathlib import Path

import builder

ROOT = Path(builder.__file__).parent
Edges = dict[str, dict[str, list[str]]]  # node -> node it imports -> "file:line" of each import


def node_of(module: str) -> str:
    """The graph node a dotted module name belongs to: builder, builder.X or builder.pkg."""
    return ".".join(module.split(".")[:2])


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(tree: ast.Module, module: str, is_package: bool) -> Iterator[tuple[str, int]]:
    """Every builder module `tree` imports, with the line of the import."""
    for statement in ast.walk(tree):
        if isinstance(statement, ast.Import):
            for alias in statement.names:
                yield alias.name, statement.lineno
        elif isinstance(statement, ast.ImportFrom):
            base = statement.module or ""
            if statement.level:
                # `from . import x` in a module is relative to its package, in a package to itself.
                anchor = module.split(".")
                anchor = anchor[: len(anchor) - statement.level + (1 if is_package else 0)]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in statement.names:
                # `from builder import lock` imports the module builder.lock.
                yield (f"{base}.{alias.name}" if base == "builder" else base), statement.lineno


def package_edges() -> Edges:
    modules = {module_name(path) for path in ROOT.rglob("*.py")}
    edges: Edges = {}
    for path in sorted(ROOT.rglob("*.py")):
        module = module_name(path)
        source = node_of(module)
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for imported, line in imported_modules(tree, module, path.name == "__init__.py"):
            if imported.split(".")[0] != "builder":
                continue
            # `from builder import __version__` names no module: it is builder/__init__.py.
            target = node_of(imported) if imported in modules or node_of(imported) in modules else "builder"
            if target != source:
                where = f"{path.relative_to(ROOT.parent)}:{line}"
                places = edges.setdefault(source, {}).setdefault(target, [])
                if where not in places:
                    places.append(where)
    return edges


def find_cycle(edges: Edges) -> list[str] | None:
    """One cycle as [a, b, ..., a], or None; depth-first, in sorted order so it is stable."""
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> list[str] | None:
        if node in path:
            return [*path[path.index(node) :], node]
        if node in done:
            return None
        for target in sorted(edges.get(node, {})):
            cycle = visit(target, [*path, node])
            if cycle:
                return cycle
        done.add(node)
        return None

    for node in sorted(edges):
        cycle = visit(node, [])
        if cycle:
            return cycle
    return None


def describe(cycle: list[str], edges: Edges) -> str:
    steps = [f"  {a} -> {b} ({', '.join(edges[a][b])})" for a, b in itertools.pairwise(cycle)]
    return "import cycle between packages of builder/: " + " -> ".join(cycle) + "\n" + "\n".join(steps)


def test_no_import_cycle_between_packages() -> None:
    edges = package_edges()
    cycle = find_cycle(edges)
    assert cycle is None, describe(cycle, edges)


def test_the_check_finds_a_cycle() -> None:
    edges: Edges = {"builder.a": {"builder.b": ["a.py:1"]}, "builder.b": {"builder.a": ["b.py:2"]}}
    cycle = find_cycle(edges)
    assert cycle == ["builder.a", "builder.b", "builder.a"]
    assert "builder.b -> builder.a (b.py:2)" in describe(cycle, edges)


def test_deferred_and_type_checking_imports_count() -> None:
    tree = ast.parse(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from builder.images.spec import ImageSpec\n"
        "def f():\n    from builder import lock\n    from . import closure\n"
    )
    found = sorted(imported_modules(tree, "builder.debian.pin", is_package=False))
    assert found == [
        ("builder.debian", 6),
        ("builder.images.spec", 3),
        ("builder.lock", 5),
        ("typing", 1),
    ]
