"""The import graph of a subpackage of llmgine, and its circles: for the layout tests."""

from __future__ import annotations

import ast
from pathlib import Path


def import_graph(root: Path, package: str) -> dict[str, set[str]]:
    """Each module under ``root`` (the package ``package``) and the ones of it that it imports.

    Anywhere in the module: ``TYPE_CHECKING`` blocks and function bodies count too.
    """

    def module_name(path: Path) -> str:
        parts = [p for p in path.relative_to(root).with_suffix("").parts if p != "__init__"]
        return ".".join([package, *parts])

    modules = {module_name(p): p for p in root.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        imported: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module:
                for alias in node.names:
                    submodule = f"{node.module}.{alias.name}"
                    imported.add(submodule if submodule in modules else node.module)
            elif isinstance(node, ast.Import):
                imported.update(alias.name for alias in node.names)
        graph[name] = {m for m in imported if m in modules and m != name}
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every circle a depth-first walk of ``graph`` meets, as the path that closes it."""
    found: list[list[str]] = []
    state: dict[str, str] = {}

    def visit(name: str, path: list[str]) -> None:
        state[name] = "open"
        for imported in sorted(graph[name]):
            if state.get(imported) == "open":
                found.append([*path[path.index(imported) :], imported])
            elif imported not in state:
                visit(imported, [*path, imported])
        state[name] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    return found
