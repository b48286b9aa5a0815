"""The notebook layer's shape: no import circle, no module too long to read."""

from __future__ import annotations

import ast
from pathlib import Path

import llmgine.notebook

ROOT = Path(llmgine.notebook.__file__).parent


def module_name(path: Path) -> str:
    parts = [p for p in path.relative_to(ROOT).with_suffix("").parts if p != "__init__"]
    return ".".join(["llmgine", "notebook", *parts])


def import_graph() -> dict[str, set[str]]:
    """Each module of llmgine/notebook and the modules of it that it imports (anywhere)."""
    modules = {module_name(p): p for p in ROOT.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        imported: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                for alias in node.names:
                    submodule = f"{node.module}.{alias.name}"
                    imported.add(submodule if submodule in modules else node.module)
            elif isinstance(node, ast.Import):
                imported.update(alias.name for alias in node.names)
        graph[name] = {m for m in imported if m in modules and m != name}
    return graph


def test_the_notebook_layer_has_no_import_circle() -> None:
    graph = import_graph()
    circles: list[list[str]] = []
    state: dict[str, str] = {}

    def visit(name: str, path: list[str]) -> None:
        state[name] = "open"
        for imported in sorted(graph[name]):
            if state.get(imported) == "open":
                circles.append([*path[path.index(imported) :], imported])
            elif imported not in state:
                visit(imported, [*path, imported])
        state[name] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert circles == []


def test_no_notebook_module_is_over_400_lines() -> None:
    lengths = {p.name: len(p.read_text().splitlines()) for p in ROOT.rglob("*.py")}
    assert {name: n for name, n in lengths.items() if n > 400} == {}
