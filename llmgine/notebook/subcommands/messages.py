"""``%llmgine register``, ``handlers``, ``execute`` and ``publish``: commands and events."""

from __future__ import annotations

from typing import Any

from llmgine.errors import MagicError
from llmgine.messages.commands import Command
from llmgine.messages.events import Event
from llmgine.notebook.arguments import evaluate, instantiate, lookup
from llmgine.notebook.notes import Note
from llmgine.notebook.runtime import get_runtime
from llmgine.notebook.sync import run_sync

__all__ = ["execute", "handlers", "publish", "register"]


def register(shell: Any, line: str, cell: str | None) -> Any:
    """Register a notebook function for a Command or Event class of the notebook."""
    parts = line.split()
    if len(parts) != 2:
        raise MagicError("usage: %llmgine register CLASS FUNC")
    class_name, function_name = parts
    message_type = lookup(shell, class_name, "Command or Event class")
    handler = lookup(shell, function_name, "function")
    if not callable(handler):
        raise MagicError(f"{function_name} is not a function")
    bus = get_runtime().get_bus()
    if isinstance(message_type, type) and issubclass(message_type, Command):
        bus.register_command_handler(message_type, handler)
    elif isinstance(message_type, type) and issubclass(message_type, Event):
        bus.register_event_handler(message_type, handler)
    else:
        raise MagicError(f"{class_name} is neither a Command nor an Event class")
    return Note(f"registered `{function_name}` for `{class_name}`")


def handlers(shell: Any, line: str, cell: str | None) -> Any:
    """The bus's registrations as a DataFrame."""
    import pandas as pd

    rows = [
        {
            "kind": r.kind,
            "message": r.message_type.__name__,
            "handler": r.handler,
            "session": r.session or "",
        }
        for r in get_runtime().get_bus().registrations()
    ]
    return pd.DataFrame(rows, columns=["kind", "message", "handler", "session"])


def execute(shell: Any, line: str, cell: str | None) -> Any:
    """Execute the command the line evaluates to (a class alone: with its defaults)."""
    command = evaluate(shell, line, "execute")
    if isinstance(command, type) and issubclass(command, Command):
        command = instantiate(command, "execute")
    if not isinstance(command, Command):
        raise MagicError(f"{line.strip()} is a {type(command).__name__}, not a Command")
    bus = get_runtime().get_bus()
    result = run_sync(bus.execute(command))
    run_sync(bus.wait_for_events())
    return result


def publish(shell: Any, line: str, cell: str | None) -> Any:
    """Publish the event the line evaluates to and wait for its handlers."""
    event = evaluate(shell, line, "publish")
    if isinstance(event, type) and issubclass(event, Event):
        event = instantiate(event, "publish")
    if not isinstance(event, Event):
        raise MagicError(f"{line.strip()} is a {type(event).__name__}, not an Event")
    bus = get_runtime().get_bus()
    run_sync(bus.publish(event))
    run_sync(bus.wait_for_events())
    return Note(f"published `{type(event).__name__}`")
