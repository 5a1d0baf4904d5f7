"""The shape of the engine package: no import cycles, no oversized modules.

Imports are read with ``ast`` (nothing is executed), at every depth: module level, inside functions and
under ``TYPE_CHECKING``. ``from pkg import name`` is an edge to the submodule ``pkg.name`` when there is
one, else to ``pkg`` itself (its ``__init__``).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "core"
MAX_LINES = 450


def module_files(package: str = PACKAGE, root: Path = ROOT) -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package (``__init__`` named by its package)."""
    mods: dict[str, Path] = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = path
    return mods


def _owner(name: str, mods: dict[str, Path]) -> str | None:
    """The module a dotted name lives in (the longest known prefix), or None outside the package."""
    while name and name not in mods:
        name = name.rpartition(".")[0]
    return name or None


def _targets(node: ast.Import | ast.ImportFrom, module: str, is_package: bool, mods: dict[str, Path]) -> set[str]:
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        if node.level:
            base = module.split(".") if is_package else module.split(".")[:-1]
            base = base[: len(base) - node.level + 1]
            source = ".".join(base + ([node.module] if node.module else []))
        else:
            source = node.module or ""
        names = [f"{source}.{alias.name}" if f"{source}.{alias.name}" in mods else source for alias in node.names]
    return {owner for owner in (_owner(n, mods) for n in names) if owner and owner != module}


def import_graph(package: str = PACKAGE, root: Path = ROOT) -> dict[str, set[str]]:
    """module -> the package's modules it imports anywhere in its body."""
    mods = module_files(package, root)
    graph: dict[str, set[str]] = {}
    for module, path in mods.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        edges: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                edges |= _targets(node, module, path.name == "__init__.py", mods)
        graph[module] = edges
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
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


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        # a cycle hidden inside a function
        ({"pkg/__init__.py": "", "pkg/a.py": "def f():\n    from pkg.b import g\n", "pkg/b.py": "from pkg.a import f\n"},
         [["pkg.a", "pkg.b"]]),
        # a cycle under TYPE_CHECKING, through a relative import
        ({"pkg/__init__.py": "", "pkg/a.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .b import B\n",
          "pkg/b.py": "from . import a\n"}, [["pkg.a", "pkg.b"]]),
        # a package __init__ that re-exports a submodule which imports a name back from the package
        ({"pkg/__init__.py": "from pkg.a import f\nX = 1\n", "pkg/a.py": "from pkg import X\n"}, [["pkg", "pkg.a"]]),
        # importing a sibling submodule through the package is not a cycle with the package
        ({"pkg/__init__.py": "from pkg.a import f\n", "pkg/a.py": "from pkg import b\n", "pkg/b.py": ""}, []),
        # a three-module loop
        ({"pkg/__init__.py": "", "pkg/a.py": "import pkg.b\n", "pkg/b.py": "import pkg.c\n", "pkg/c.py": "import pkg.a\n"},
         [["pkg.a", "pkg.b", "pkg.c"]]),
    ],
)
def test_cycle_finder_sees_every_kind_of_import(tmp_path, files, expected):
    _write(tmp_path, files)
    assert cycles(import_graph("pkg", tmp_path)) == expected


def test_core_has_no_import_cycle():
    graph = import_graph()
    assert len(graph) > 100, "the walk must see the whole package"
    found = cycles(graph)
    detail = "\n".join(" <-> ".join(c) for c in found)
    assert not found, f"import cycles in core (move the shared type or function to its own module):\n{detail}"


def test_no_core_module_is_over_the_line_limit():
    sizes = {name: len(path.read_text(encoding="utf-8").splitlines()) for name, path in module_files().items()}
    over = {name: n for name, n in sizes.items() if n > MAX_LINES}
    assert not over, f"modules over {MAX_LINES} lines (split them by what they hold): {over}"
