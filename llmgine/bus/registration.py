"""The decorator forms of registering a handler, for a bus and a session alike."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from llmgine.messages.commands import Command
from llmgine.messages.events import Event

__all__ = ["DecoratorForms", "Registers"]

F = TypeVar("F", bound=Callable[..., Any])


class Registers(Protocol):
    """What registers handlers: a bus or a session."""

    def register_command_handler(
        self, command_type: type[Command], handler: Callable[[Any], Any]
    ) -> None:
        """Make ``handler`` the handler of ``command_type``."""
        ...

    def register_event_handler(
        self, event_type: type[Event], handler: Callable[[Any], Any]
    ) -> None:
        """Add ``handler`` for ``event_type``."""
        ...


class DecoratorForms:
    """``@x.command_handler(T)`` and ``@x.event_handler(T)`` for whatever :class:`Registers`."""

    def command_handler(self: Registers, command_type: type[Command]) -> Callable[[F], F]:
        """Decorator form of ``register_command_handler``."""

        def decorate(fn: F) -> F:
            self.register_command_handler(command_type, fn)
            return fn

        return decorate

    def event_handler(self: Registers, event_type: type[Event]) -> Callable[[F], F]:
        """Decorator form of ``register_event_handler``."""

        def decorate(fn: F) -> F:
            self.register_event_handler(event_type, fn)
            return fn

        return decorate
