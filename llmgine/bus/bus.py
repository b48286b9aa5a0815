"""The MessageBus: commands to exactly one handler, events to many, everything to the sinks.

One class made of its parts, wired in ``__init__``: the registry (who handles what),
the dispatcher (:mod:`llmgine.bus.dispatch`: middleware, handlers, outcomes), the
transport (:mod:`llmgine.bus.transport`: how events wait and reach their handlers),
the intake (:mod:`llmgine.bus.intake`: where accepted messages go) and the lifecycle
(:mod:`llmgine.bus.lifecycle`: start, stop, wait, the bridge to other processes).
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, Self, TextIO

from llmgine.bus.dispatch import Dispatcher
from llmgine.bus.handlers import HandlerThreads
from llmgine.bus.intake import Intake
from llmgine.bus.lifecycle import Lifecycle, jsonl_log
from llmgine.bus.middleware import Middleware
from llmgine.bus.policies.dead_letters import DeadLetter, kept_letters, redrive
from llmgine.bus.ports import BridgeFactory, BusParts
from llmgine.bus.registration import DecoratorForms
from llmgine.bus.registry import HandlerRegistry, Registration
from llmgine.bus.schedules import Scheduled, Scheduler
from llmgine.bus.session import BusSession, _current_session
from llmgine.bus.stats import BusStats
from llmgine.bus.transport import LocalTransport
from llmgine.errors import ConfigurationError
from llmgine.messages.commands import Command, CommandResult
from llmgine.messages.events import Event
from llmgine.observability.console import ConsolePrinter
from llmgine.observability.sinks import Record, Sink
from llmgine.observability.spans import Span, _current_span

__all__ = ["BusStats", "MessageBus"]


class MessageBus(DecoratorForms):
    """Carries commands (exactly one handler each) and events (any number of handlers).

    Every command executed and every event published is accepted once, in order,
    by each sink: the JSONL log, the console printer, exporters. Every
    ``execute()`` is a trace span.

    Args:
        log_dir: Directory of the JSONL log; ``None`` writes no log file.
        log_filename: Name of the log file; ``None`` means a timestamped name.
        enable_console_metrics: Print one line per metric to ``console_stream``.
        enable_console_traces: Print one line per finished span to ``console_stream``.
        console_stream: Where the console lines go; ``None`` means ``sys.stdout``.
        max_queue_size: Events queued before ``publish()`` waits for the handlers
            (publishing from a handler, or a task it started, never waits).
        sinks: More sinks to give every accepted message to (see ``add_sink``).

    Example:
        >>> async with MessageBus(log_dir=None) as bus:  # doctest: +SKIP
        ...     result = await bus.execute(MyCommand())
    """

    bridge_factory: ClassVar[BridgeFactory | None] = None
    """What :meth:`connect` attaches: ``factory(port, url, namespace, **options)``.

    :mod:`llmgine.bus` sets it to the shared bus on Redis
    (:class:`llmgine.bus.remote.RedisLink`); a subclass may attach another bridge.
    """

    def __init__(
        self,
        log_dir: str | os.PathLike[str] | None = "logs",
        log_filename: str | None = None,
        enable_console_metrics: bool = True,
        enable_console_traces: bool = True,
        *,
        console_stream: TextIO | None = None,
        max_queue_size: int = 1_000,
        sinks: Iterable[Sink] = (),
    ) -> None:
        if max_queue_size < 1:
            raise ConfigurationError(f"max_queue_size must be at least 1; got {max_queue_size}.")
        self._registry = HandlerRegistry()
        self._stats = BusStats()
        self._threads = HandlerThreads()  # no thread until a sync handler needs one
        self._dispatch = Dispatcher(
            self._registry, self._stats, self._threads, self._emit, self._accept_later
        )
        self._transport = LocalTransport(self._dispatch.deliver, self._flush_due, max_queue_size)
        self._intake = Intake(self._transport, self._stats)
        self._accept = self._intake.accept  # bound once: it is on every message's path
        self._log = jsonl_log(log_dir, log_filename)
        self.console = ConsolePrinter(
            console_stream, metrics=enable_console_metrics, traces=enable_console_traces
        )
        # Either console flag can be switched on later through bus.console.
        on = enable_console_metrics or enable_console_traces
        for sink in (self._log, self.console if on else None, *sinks):
            if sink is not None:
                self._intake.sinks.add(sink)
        port = BusParts(self._registry, self._transport, self._emit, self._threads)
        self._lifecycle = Lifecycle(self._transport, self._intake, self._threads, self._log, port)
        self._schedules = Scheduler(self)

    def _accept_later(self, record: Record) -> None:
        self._accept(record)

    def _flush_due(self) -> None:
        self._intake.flush_due()

    def __repr__(self) -> str:
        state = "running" if self.is_running else "stopped"
        return (
            f"<{type(self).__name__} {state} log={str(self.log_path) if self.log_path else None!r}>"
        )

    def _repr_html_(self) -> str:
        from llmgine._html import table

        state = "running" if self.is_running else "stopped"
        rows = self.stats.rows(state, self.log_path, len(self.registrations()), self.pending_events)
        return table(type(self).__name__, rows)

    # ------------------------------------------------------------ handlers

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

    # ------------------------------------------------------------ middleware

    def add_middleware(self, middleware: Middleware) -> None:
        """Run ``middleware`` around the handler of every command executed from now on.

        A middleware is an async callable ``mw(command, call_next) -> CommandResult``
        (see :mod:`llmgine.bus.middleware`); the first added runs outermost. It runs
        in the command's span and session, for local handlers and for commands run
        in another process alike, and for the commands of every session (a session
        cannot scope one: look at ``command.session_id``). A middleware that raises
        gives a failed ``CommandResult`` and a ``CommandErrorEvent``, like a handler;
        ``execute(timeout=)`` bounds each call of the handler, not the middleware. A
        command that no handler serves raises ``HandlerNotFoundError`` before any runs.
        """
        if not callable(middleware):
            raise TypeError(f"A middleware must be callable; got {type(middleware).__name__}.")
        bind = getattr(middleware, "bind", None)
        if callable(bind):  # a policy of llmgine.bus.policies: its events go to this bus
            bind(self)
        self._dispatch.middleware = (*self._dispatch.middleware, middleware)

    @property
    def dead_letters(self) -> list[DeadLetter]:
        """The commands a ``DeadLetters`` middleware kept (see :mod:`llmgine.bus.policies`)."""
        return kept_letters(self._dispatch.middleware)

    async def redrive(self, dead_letter_id: str) -> CommandResult:
        """Run a dead letter's command again; the result's ``metadata["redrive_of"]`` names it."""
        return await redrive(self._dispatch.middleware, dead_letter_id)

    def remove_middleware(self, middleware: Middleware) -> bool:
        """Stop running ``middleware``; return whether it was added."""
        if middleware not in self._dispatch.middleware:
            return False
        kept = list(self._dispatch.middleware)
        kept.remove(middleware)
        self._dispatch.middleware = tuple(kept)
        return True

    # ------------------------------------------------------------ scopes

    def session(self, session_id: str | None = None) -> BusSession:
        """Return a session scope: ``async with bus.session("name") as s:``."""
        return BusSession(self, self._registry, session_id or f"session-{uuid.uuid4().hex[:8]}")

    def span(self, name: str, *, kind: str = "INTERNAL", **attributes: Any) -> Span:
        """Return a custom span: ``async with bus.span("load", rows=10) as span:``."""
        session_id = _current_session.get() or "global"
        return Span(self._emit, name, kind=kind, session_id=session_id, attributes=attributes)

    # ------------------------------------------------------------ messages

    async def execute(self, command: Command, *, timeout: float | None = None) -> CommandResult:
        """Run the handler of ``command`` and return its ``CommandResult``.

        A handler's exception never propagates: it gives ``success=False`` and a
        ``CommandErrorEvent`` with the traceback; success gives a
        ``CommandResultEvent``. The command runs in a trace span, a child of the
        span active where ``execute`` was called. Only the cancellation of the
        caller and a ``KeyboardInterrupt`` propagate, after the failure is recorded.

        Args:
            command: The command to run.
            timeout: Seconds the handler may take, sync handlers included (they
                then run in a worker thread); past that the result is a failure.

        Raises:
            HandlerNotFoundError: No handler is registered for the command's type.
        """
        if not isinstance(command, Command):
            raise TypeError(
                f"execute() takes a Command; {type(command).__name__} is not one "
                "(publish events with bus.publish)."
            )
        link = self._intake.link
        if link is not None and self._registry.command_handler_of(type(command)) is None:
            # Runs in another process; the timeout bounds the look-up and travels along.
            looked_up = time.monotonic()
            entry = await link.command_entry(type(command), timeout)
            if timeout is not None:
                timeout = max(0.0, timeout - (time.monotonic() - looked_up))
        else:
            entry = self._registry.command_handler(type(command))
        self._stamp(command)
        self._stats.commands_executed += 1
        return await self._dispatch.execute(command, entry, timeout)

    async def publish(self, event: Event) -> None:
        """Accept ``event``: give it to the sinks and queue it for its handlers.

        Returns before the handlers run. When the queue is full this waits for
        room, except in a handler or a task it started (so it cannot deadlock).
        Events published while the bus is stopped are handled after ``start()``.
        """
        if not isinstance(event, Event):
            raise TypeError(
                f"publish() takes an Event; {type(event).__name__} is not one "
                "(run commands with bus.execute)."
            )
        session_id = _current_session.get()  # _stamp(), inlined: the hot path
        if session_id is not None and event.session_id == "global":
            event.session_id = session_id
        transport = self._transport
        if transport.queue.is_full():
            await transport.reserve()
        self._accept(Record("event", event, _current_span.get()))

    async def _emit(self, event: Event) -> None:
        """Publish one of the bus's own events; with no handler for it, only the sinks get it."""
        if not self._registry.event_handlers(type(event)) and self._transport.is_running:
            self._accept(Record("event", event, _current_span.get()), queue=False)
        else:
            await self.publish(event)

    @staticmethod
    def _stamp(message: Command | Event) -> None:
        session_id = _current_session.get()
        if session_id is not None and message.session_id == "global":
            message.session_id = session_id

    # ------------------------------------------------------------ state

    @property
    def stats(self) -> BusStats:
        """Running totals: messages, failures of handlers and sinks, restarts, stalls."""
        stats = self._stats
        stats.sink_failures = self._intake.sinks.failures
        stats.events_handled = self._transport.delivered
        stats.consumer_restarts = self._transport.restarts
        stats.publisher_stalls = self._transport.queue.stalls
        return stats

    @property
    def log_path(self) -> Path | None:
        """Path of the JSONL log, or ``None`` when the bus writes no file."""
        return None if self._log is None else self._log.path

    @property
    def sinks(self) -> tuple[Sink, ...]:
        """The sinks every accepted message goes to, in order."""
        return tuple(self._intake.sinks)

    @property
    def is_running(self) -> bool:
        """Whether the bus is started and handling events."""
        return self._transport.is_running

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The event loop the bus runs on while started (in a notebook: the kernel's)."""
        return self._transport.loop

    @property
    def pending_events(self) -> int:
        """Events published but not yet handled."""
        return self._transport.pending

    def add_sink(self, sink: Sink) -> None:
        """Give every message accepted from now on to ``sink`` too (see :class:`Sink`)."""
        self._intake.sinks.add(sink)

    def remove_sink(self, sink: Sink) -> bool:
        """Stop giving messages to ``sink`` (it is not closed); return whether it was there."""
        return self._intake.sinks.remove(sink)

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Start handling events on the running event loop (a no-op if started).

        Events published before ``start()`` are handled now, in order. A stopped
        bus may be started again, on the same or another event loop.

        Raises:
            OSError: The log file cannot be created or opened (a wrong ``log_dir``);
                write failures later on are reported, not raised.
        """
        await self._lifecycle.start()

    async def stop(self) -> None:
        """Handle every queued event, then flush and close the sinks (idempotent).

        This process's pending schedules are lost (a warning and a ``ScheduleLostEvent``
        each); those kept in the shared bus's Redis stay for the other processes.

        Raises:
            BusStateError: Called from a handler, or from another thread while the
                bus's loop is not running.
        """
        if self.loop is None or self.loop is asyncio.get_running_loop():
            await self._schedules.stop()
        await self._lifecycle.stop()

    def on_stop(self, callback: Callable[[], Awaitable[None]]) -> Callable[[], None]:
        """Await ``callback()`` in every ``stop()``, once the queued events are handled.

        For what lives as long as the bus (an engine's MCP server processes). A
        callback that raises is logged and the others still run. Returns a function
        that removes the callback.
        """
        return self._lifecycle.add_on_stop(callback)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def flush(self) -> None:
        """Deliver what the sinks buffered (the log's lines) now; failures are reported."""
        self._intake.flush()

    async def wait_for_events(self) -> None:
        """Return once every event published so far has been handled, and flush the sinks.

        Events that handlers publish meanwhile are waited for too. On a bus that is
        not running this returns at once: its events are handled after ``start()``.

        Raises:
            BusStateError: Called from a handler, or from another thread while the
                bus's loop is not running.
        """
        await self._lifecycle.wait_for_events()

    # ----------------------------------------------- other processes (a bridge)

    @property
    def remote(self) -> Any:
        """The bridge to the shared bus while connected (see :meth:`connect`), else ``None``.

        With the default bridge, a :class:`llmgine.bus.remote.RedisLink`.
        """
        return self._intake.link

    async def connect(self, url: str, namespace: str = "llmgine", **options: Any) -> None:
        """Join the shared bus on the Redis server at ``url`` (starts this bus if needed).

        Commands with no local handler then run in a connected process that has one;
        events reach every connected process that handles them; local handlers run
        here as before. Needs the ``redis`` extra (``pip install 'llmgine[redis]'``).

        Args:
            url: The Redis URL, e.g. ``redis://127.0.0.1:6379/0``.
            namespace: Buses in one namespace form one shared bus.
            **options: ``heartbeat``, ``claim_after``, ``max_concurrency``, ``max_buffer``,
                ``forget_after``, ``max_deliveries``, ``connect_timeout`` (default 5 s),
                ``stop_timeout`` (default 5 s) (see :class:`llmgine.bus.remote.RedisLink`).

        Raises:
            BusStateError: The bus is connected already.
            SharedBusConnectionError: Redis cannot be reached at ``url``, or does not
                answer within ``connect_timeout`` seconds (also a ``ConnectionError``).
            ConfigurationError: ``url`` is not a Redis URL, Redis refuses its settings
                (a database index it lacks, a wrong password), or an option is out of
                range (also a ``ValueError``).
        """
        await self._lifecycle.connect(type(self).bridge_factory, url, namespace, **options)
        self._schedules.connected()

    async def disconnect(self) -> None:
        """Leave the shared bus: finish remote commands running here, send buffered events.

        A no-op when not connected; ``stop()`` calls it.
        """
        await self._schedules.disconnected()
        await self._lifecycle.disconnect()

    # ------------------------------------------------------------ schedules

    async def schedule(
        self, message: Command | Event, *, after: float | None = None, at: datetime | None = None
    ) -> str:
        """Execute a command, or publish an event, later; return the schedule's id.

        Each firing is a ``ScheduleFiredEvent`` (a command's says whether it
        succeeded). While the bus is connected to Redis the schedule lives there: it
        survives this process and fires exactly once in the namespace. Otherwise it
        fires while this process runs, and is lost (and said to be) at ``stop()``.

        Args:
            message: The command or event.
            after: Seconds from now.
            at: A timezone-aware time.

        Raises:
            ConfigurationError: Neither or both of ``after`` and ``at``, a negative
                ``after`` or a naive ``at``.
        """
        return await self._schedules.schedule(message, after=after, at=at)

    @property
    def scheduled(self) -> list[Scheduled]:
        """The schedules this process made that have not fired yet, soonest first."""
        return self._schedules.pending

    async def cancel_scheduled(self, schedule_id: str) -> bool:
        """Cancel a schedule (also one in the shared bus); return whether it was pending."""
        return await self._schedules.cancel(schedule_id)
