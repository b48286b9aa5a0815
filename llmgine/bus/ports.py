"""The bus's port for a bridge: how a bus attaches to other processes (the shared bus).

A bridge carries a bus's messages to other processes and back. The bus gives it a
:class:`BusPort` (what an attached bridge may do to the bus: look up its handlers
and registrations, run a handler, hand it the events received from elsewhere) and
uses it as a :class:`Bridge` (forward every accepted record, find who runs a
command with no local handler here, close). ``bus.connect(url)`` makes one with
the bus's ``bridge_factory``: the Redis one (:class:`llmgine.bus.remote.RedisLink`)
by default, wired in :mod:`llmgine.bus` only; the core names no bridge.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from llmgine.bus.handlers import HandlerThreads, call_command_handler
from llmgine.bus.registry import HandlerEntry, HandlerRegistry, Registration
from llmgine.bus.transport import LocalTransport
from llmgine.messages.commands import Command
from llmgine.messages.events import Event
from llmgine.observability.events import SpanContext
from llmgine.observability.sinks import Record

__all__ = ["Bridge", "BridgeFactory", "BusParts", "BusPort"]


class BusPort(Protocol):
    """What an attached bridge is given: the bus, as far as a bridge may reach into it."""

    def registrations(self) -> list[Registration]:
        """Every handler registration of the bus, commands first."""
        ...

    def handles_event(self, event_type: type[Event]) -> bool:
        """Whether a handler here hears ``event_type``."""
        ...

    def command_handler(self, command_type: type[Command]) -> HandlerEntry:
        """The local handler of ``command_type`` (raises ``HandlerNotFoundError``)."""
        ...

    async def call_handler(
        self, entry: HandlerEntry, command: Command, timeout: float | None
    ) -> Any:
        """Run a local command handler for another process (a sync one in a handler thread)."""
        ...

    async def emit(self, event: Event) -> None:
        """Publish one of the bus's own events (a span's, say)."""
        ...

    async def deliver(self, event: Event, span: SpanContext | None) -> None:
        """Queue an event received from elsewhere for the local handlers (waits for room)."""
        ...

    async def join(self) -> None:
        """Return once every queued event is handled."""
        ...


class Bridge(Protocol):
    """What the bus needs of an attached bridge."""

    def forward(self, record: Record) -> None:
        """Take an accepted record to the other processes (called under the bus's lock)."""
        ...

    async def command_entry(
        self, command_type: type[Command], timeout: float | None = None
    ) -> HandlerEntry:
        """A handler entry that runs ``command_type`` elsewhere (no local handler has it).

        The entry keeps ``timeout`` itself (counted from this call): the bus does not cut
        it short, so a result it learns as the deadline passes (a reply recorded before
        the caller gave up) is the command's result. Past the deadline it raises
        :class:`~llmgine.errors.HandlerTimedOut` (or returns that result).
        """
        ...

    async def open(self) -> None:
        """Connect; raise if the other side cannot be reached."""
        ...

    async def close(self) -> None:
        """Finish what runs here for others, send what is buffered, leave."""
        ...


BridgeFactory = Callable[..., Bridge]
"""``factory(port, url, namespace, **options) -> Bridge``: what ``bus.connect`` calls."""


class BusParts:
    """The :class:`BusPort` of a bus, made of its parts (registry, transport, emit, threads)."""

    __slots__ = ("_emit", "_registry", "_threads", "_transport")

    def __init__(
        self,
        registry: HandlerRegistry,
        transport: LocalTransport,
        emit: Callable[[Event], Awaitable[None]],
        threads: HandlerThreads,
    ) -> None:
        self._registry = registry
        self._transport = transport
        self._emit = emit
        self._threads = threads

    def registrations(self) -> list[Registration]:
        """Every handler registration of the bus, commands first."""
        return self._registry.registrations()

    def handles_event(self, event_type: type[Event]) -> bool:
        """Whether a handler here hears ``event_type``."""
        return bool(self._registry.event_handlers(event_type))

    def command_handler(self, command_type: type[Command]) -> HandlerEntry:
        """The local handler of ``command_type`` (raises ``HandlerNotFoundError``)."""
        return self._registry.command_handler(command_type)

    async def call_handler(
        self, entry: HandlerEntry, command: Command, timeout: float | None
    ) -> Any:
        """Run a local command handler for another process (a sync one in a handler thread)."""
        return await call_command_handler(entry, command, timeout, self._threads, in_thread=True)

    async def emit(self, event: Event) -> None:
        """Publish one of the bus's own events (a span's, say)."""
        await self._emit(event)

    async def deliver(self, event: Event, span: SpanContext | None) -> None:
        """Queue an event received from elsewhere for the local handlers (waits for room)."""
        transport = self._transport
        if transport.queue.is_full():
            await transport.reserve()
        transport.put((event, span))

    async def join(self) -> None:
        """Return once every queued event is handled."""
        await self._transport.join()
