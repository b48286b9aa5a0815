"""The registration half of the bus's public API: which handler serves what."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from llmgine.bus.registry import HandlerRegistry, Registration
from llmgine.messages.commands import Command
from llmgine.messages.events import Event

__all__ = ["DecoratorForms", "HandlerRegistrations"]

F = TypeVar("F", bound=Callable[..., Any])


class DecoratorForms:
    """``@x.command_handler(T)`` and ``@x.event_handler(T)``, for a bus and a session alike."""

    def register_command_handler(
        self, command_type: type[Command], handler: Callable[[Any], Any]
    ) -> None:
        """Make ``handler`` the handler of ``command_type`` (defined by subclasses)."""
        raise NotImplementedError

    def register_event_handler(
        self, event_type: type[Event], handler: Callable[[Any], Any]
    ) -> None:
        """Add ``handler`` for ``event_type`` (defined by subclasses)."""
        raise NotImplementedError

    def command_handler(self, command_type: type[Command]) -> Callable[[F], F]:
        """Decorator form of :meth:`register_command_handler`."""

        def decorate(fn: F) -> F:
            self.register_command_handler(command_type, fn)
            return fn

        return decorate

    def event_handler(self, event_type: type[Event]) -> Callable[[F], F]:
        """Decorator form of :meth:`register_event_handler`."""

        def decorate(fn: F) -> F:
            self.register_event_handler(event_type, fn)
            return fn

        return decorate


class HandlerRegistrations(DecoratorForms):
    """Registering and looking up handlers; ``MessageBus`` inherits these methods."""

    def __init__(self) -> None:
        self._registry = HandlerRegistry()

    def register_command_handler(
        self, command_type: type[Command], handler: Callable[[Any], Any], *, replace: bool = False
    ) -> None:
        """Make ``handler`` (sync or async) the one handler of ``command_type``.

        Args:
            command_type: The command class.
            handler: A function or bound method taking the command.
            replace: Replace a different handler the type has (logged as a warning).

        Raises:
            HandlerAlreadyRegisteredError: A different handler serves the type already.
                Registering a new definition of the same function (same module and
                qualified name, as when a notebook cell runs again) replaces it.
        """
        self._registry.add_command(command_type, handler, owner=None, replace=replace)

    def unregister_command_handler(self, command_type: type[Command]) -> bool:
        """Remove the handler of ``command_type``; return whether there was one."""
        return self._registry.remove_command(command_type)

    def command_handler_of(self, command_type: type[Command]) -> Callable[[Any], Any] | None:
        """Return the handler registered for exactly ``command_type``, if any."""
        return self._registry.command_handler_of(command_type)

    def register_event_handler(
        self, event_type: type[Event], handler: Callable[[Any], Any]
    ) -> None:
        """Add ``handler`` (sync or async) for ``event_type`` and all its subclasses.

        Handlers run in registration order; a new definition of a registered
        function replaces it in place.
        """
        self._registry.add_event(event_type, handler, owner=None)

    def unregister_event_handler(
        self, event_type: type[Event], handler: Callable[[Any], Any]
    ) -> bool:
        """Remove ``handler`` from ``event_type``; return whether it was registered."""
        return self._registry.remove_event(event_type, handler)

    def registrations(self) -> list[Registration]:
        """Return every handler registration, commands first."""
        return self._registry.registrations()
