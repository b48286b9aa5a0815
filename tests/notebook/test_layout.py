"""The notebook layer's shape: no import circle, no module too long to read."""

from __future__ import annotations

from pathlib import Path

from import_graph import circles
from import_graph import import_graph as package_graph

import llmgine.notebook

ROOT = Path(llmgine.notebook.__file__).parent


def import_graph() -> dict[str, set[str]]:
    """Each module of llmgine/notebook and the modules of it that it imports (anywhere)."""
    return package_graph(ROOT, "llmgine.notebook")


def test_the_notebook_layer_has_no_import_circle() -> None:
    graph = import_graph()
    assert circles(graph) == []


def test_no_notebook_module_is_over_400_lines() -> None:
    lengths = {p.name: len(p.read_text().splitlines()) for p in ROOT.rglob("*.py")}
    assert {name: n for name, n in lengths.items() if n > 400} == {}
