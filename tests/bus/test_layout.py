"""The bus's shape: one class of parts, no import circle, the core names no bridge.

The shared bus's link alone composes its parts, and none of them is too long to read.
"""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest
from import_graph import circles
from import_graph import import_graph as package_graph

import llmgine.bus
from llmgine.bus import MessageBus

ROOT = Path(llmgine.bus.__file__).parent


def import_graph() -> dict[str, set[str]]:
    """Each module of llmgine/bus (remote/ included) and the ones of it that it imports."""
    return package_graph(ROOT, "llmgine.bus")


def imported(path: Path) -> set[str]:
    """Every module ``path`` imports, TYPE_CHECKING blocks and function bodies included."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("name", ["bus.py", "intake.py", "lifecycle.py", "session.py", "ports.py"])
def test_the_core_of_the_bus_imports_nothing_of_the_shared_bus(name: str) -> None:
    assert {m for m in imported(ROOT / name) if m.startswith("llmgine.bus.remote")} == set()


def test_no_module_of_the_core_imports_the_bus_class_back() -> None:
    # bus.py stands on its parts; none of them reaches up for MessageBus.
    for path in ROOT.glob("*.py"):
        if path.name not in {"bus.py", "__init__.py"}:
            assert "llmgine.bus.bus" not in imported(path), path.name


def test_the_bus_is_one_class_made_of_its_parts() -> None:
    from llmgine.bus.registration import DecoratorForms

    assert MessageBus.__mro__ == (MessageBus, DecoratorForms, object)
    for name in ("bus.py", "dispatch.py", "lifecycle.py", "registration.py"):
        text = (ROOT / name).read_text(encoding="utf-8")
        assert "NotImplementedError" not in text, name
        assert "cast(" not in text, name


def test_the_bus_and_the_shared_bus_have_no_import_circle() -> None:
    graph = import_graph()
    assert "llmgine.bus.remote.link" in graph  # the walk sees the subpackage
    assert circles(graph) == []


def test_only_the_link_composes_the_parts_of_the_shared_bus() -> None:
    # The parts get a Connection and what they need of each other, never the link:
    # only what starts a link imports it (the default bridge, the package, the worker).
    graph = import_graph()
    importers = {name for name, imported in graph.items() if "llmgine.bus.remote.link" in imported}
    assert importers == {"llmgine.bus", "llmgine.bus.remote", "llmgine.bus.remote.worker"}


def test_the_parts_of_the_shared_bus_share_one_connection_value() -> None:
    graph = import_graph()
    link_parts = graph["llmgine.bus.remote.link"]
    for part in ("caller", "events", "listeners", "recovery", "runner"):
        assert f"llmgine.bus.remote.{part}" in link_parts
        assert "llmgine.bus.remote.connection" in graph[f"llmgine.bus.remote.{part}"], part


@pytest.mark.parametrize("folder", [".", "remote", "policies"])
def test_no_module_of_the_bus_is_over_400_lines(folder: str) -> None:
    lengths = {p.name: len(p.read_text().splitlines()) for p in (ROOT / folder).glob("*.py")}
    assert {name: n for name, n in lengths.items() if n > 400} == {}


def test_every_public_member_of_the_bus_says_what_it_does() -> None:
    # The facade is short, not silent: help(MessageBus.execute) and the others still explain.
    public = [name for name in dir(MessageBus) if not name.startswith("_")]
    assert {"execute", "publish", "add_middleware", "schedule", "connect", "stats"} <= set(public)
    assert [name for name in public if not inspect.getdoc(getattr(MessageBus, name))] == []
