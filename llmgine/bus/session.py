"""Sessions: a named scope for handler registrations and published messages."""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar, Token
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol

from llmgine.bus.queue import in_handler
from llmgine.bus.registration import DecoratorForms
from llmgine.messages.commands import Command, CommandResult
from llmgine.messages.events import Event

if TYPE_CHECKING:
    from llmgine.bus.registry import HandlerEntry, HandlerRegistry
    from llmgine.bus.transport import LocalTransport

__all__ = ["BusSession", "current_session_id"]

_current_session: ContextVar[str | None] = ContextVar("llmgine_session", default=None)


def current_session_id() -> str | None:
    """Return the id of the session active in the current context, if any."""
    return _current_session.get()


class SessionBus(Protocol):
    """What a session needs of its bus (a :class:`~llmgine.bus.MessageBus` is one)."""

    _transport: LocalTransport

    @property
    def is_running(self) -> bool:
        """Whether the bus is started and handling events."""
        ...

    async def publish(self, event: Event) -> None:
        """Publish ``event``."""
        ...

    async def execute(self, command: Command, *, timeout: float | None = None) -> CommandResult:
        """Execute ``command``."""
        ...

    async def wait_for_events(self) -> None:
        """Return once the events published so far are handled."""
        ...


class BusSession(DecoratorForms):
    """A named scope on a bus, used as ``async with bus.session("name") as s:``.

    Inside the block every command and event published (through the session or
    the bus) gets ``session_id`` set to the session's id, unless it names one
    already. Handlers registered through the session hear every event published
    inside it; at exit, once those events are handled, they are removed, and a
    bus handler a session registration replaced is put back.
    """

    def __init__(self, bus: SessionBus, registry: HandlerRegistry, session_id: str) -> None:
        self.bus = bus
        self._registry = registry
        self.session_id = session_id
        self._commands: list[tuple[type[Command], HandlerEntry, HandlerEntry | None]] = []
        self._events: list[tuple[type[Event], HandlerEntry, HandlerEntry | None]] = []
        self._token: Token[str | None] | None = None

    def __repr__(self) -> str:
        return f"BusSession({self.session_id!r})"

    def register_command_handler(
        self, command_type: type[Command], handler: Callable[[Any], Any], *, replace: bool = False
    ) -> None:
        """Register the handler of ``command_type`` until the session ends.

        ``replace=True`` overrides the bus's handler of the type for as long as the
        session lasts; at its end the bus's handler is put back.

        Raises:
            HandlerAlreadyRegisteredError: A different handler serves the type already
                and ``replace`` is not set.
        """
        entry, previous = self._registry.add_command(
            command_type, handler, owner=self.session_id, replace=replace
        )
        self._commands.append((command_type, entry, previous))

    def register_event_handler(
        self, event_type: type[Event], handler: Callable[[Any], Any]
    ) -> None:
        """Add a handler of ``event_type`` until the session ends."""
        entry, previous = self._registry.add_event(event_type, handler, owner=self.session_id)
        self._events.append((event_type, entry, previous))

    def _stamp(self, message: Command | Event) -> None:
        if message.session_id == "global":
            message.session_id = self.session_id

    async def publish(self, event: Event) -> None:
        """Publish ``event`` on the bus with this session's id."""
        self._stamp(event)
        await self.bus.publish(event)

    async def execute(self, command: Command, *, timeout: float | None = None) -> CommandResult:
        """Execute ``command`` on the bus with this session's id (its handler runs in it)."""
        self._stamp(command)
        return await self.bus.execute(command, timeout=timeout)

    async def __aenter__(self) -> BusSession:
        self._token = _current_session.set(self.session_id)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        commands, events = list(self._commands), list(self._events)

        def restore() -> None:
            for command_type, command_entry, previous_command in reversed(commands):
                self._registry.restore_command(command_type, command_entry, previous_command)
            for event_type, event_entry, previous_event in reversed(events):
                self._registry.restore_event(event_type, event_entry, previous_event)

        if self.bus.is_running and in_handler():
            # Waiting here would wait for this very handler: retire the session's handlers
            # once the consumer reaches what the session published.
            self.bus._transport.call_after_queued(restore)
        else:
            if self.bus.is_running:
                await self.bus.wait_for_events()  # its handlers hear what it published
            restore()
        self._commands.clear()
        self._events.clear()
        if self._token is not None:
            _current_session.reset(self._token)
            self._token = None
