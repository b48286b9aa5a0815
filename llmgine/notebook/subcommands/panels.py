"""``%llmgine ui``, ``monitor`` and ``form``: widgets over the default bus and engine."""

from __future__ import annotations

from typing import Any

from llmgine.errors import MagicError
from llmgine.messages.commands import Command
from llmgine.notebook.arguments import message_class
from llmgine.notebook.runtime import get_runtime

__all__ = ["form", "monitor", "ui"]


def ui(shell: Any, line: str, cell: str | None) -> Any:
    """A chat panel for the default engine; it follows the bus a later ``start`` makes."""
    from llmgine.notebook.widgets import ChatWidget

    runtime = get_runtime()
    panel = ChatWidget(runtime.get_engine(), conversation_id=runtime.conversation_id)
    runtime.follow(panel)  # a later `%llmgine start` moves it to the new bus and log
    return panel


def monitor(shell: Any, line: str, cell: str | None) -> Any:
    """A live table of the bus's events; it follows the bus a later ``start`` makes."""
    from llmgine.notebook.widgets import BusMonitor

    runtime = get_runtime()
    panel = BusMonitor(runtime.get_bus())
    runtime.follow_bus(panel)  # a later `%llmgine start` moves it to the new bus
    return panel


def form(shell: Any, line: str, cell: str | None) -> Any:
    """A form for the command class named on the line; it follows a later ``start``'s bus."""
    from llmgine.notebook.widgets import CommandForm

    name = line.strip()
    if not name:
        raise MagicError("usage: %llmgine form CLASS")
    runtime = get_runtime()
    panel = CommandForm(message_class(shell, name, Command), runtime.get_bus())
    runtime.follow_bus(panel)  # a later `%llmgine start` moves it to the new bus
    return panel
