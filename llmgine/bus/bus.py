"""The MessageBus: commands to exactly one handler, events to many, everything to the sinks.

One class made of its parts, each in a module of its own, wired in ``__init__``.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar, Self, TextIO

from llmgine.bus.dispatch import Dispatcher
from llmgine.bus.handlers import HandlerThreads
from llmgine.bus.intake import Intake
from llmgine.bus.lifecycle import Lifecycle, jsonl_log
from llmgine.bus.middleware import Middleware
from llmgine.bus.policies.dead_letters import DeadLetter, kept_letters, redrive
from llmgine.bus.ports import BridgeFactory, BusParts
from llmgine.bus.registration import DecoratorForms
from llmgine.bus.registry import Handler, HandlerRegistry, Registration
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

    Each command executed and event published goes once, in order, to every sink (the
    JSONL log, the console printer, exporters); each ``execute()`` is a trace span.

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
    """What :meth:`connect` attaches, ``factory(port, url, namespace, **options)``: in
    :mod:`llmgine.bus`, the shared bus on Redis (:class:`llmgine.bus.remote.RedisLink`)."""

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
            self._registry, self._stats, self._threads, self._emit, lambda r: self._accept(r)
        )
        self._transport = LocalTransport(
            self._dispatch.deliver, lambda: self._intake.flush_due(), max_queue_size
        )
        self._queue = self._transport.queue
        self._event_types: set[type] = set()
        """The classes of the events published so far (each an :class:`Event`)."""
        self._log = jsonl_log(log_dir, log_filename)
        self.console = ConsolePrinter(
            console_stream, metrics=enable_console_metrics, traces=enable_console_traces
        )
        # Either console flag can be switched on later through bus.console.
        on = enable_console_metrics or enable_console_traces
        first = (self._log, self.console if on else None, *sinks)
        self._intake = Intake(self._transport, self._stats, first)
        self._accept = self._intake.accept  # bound once: it is on every message's path
        self._dispatch.accept = self._accept  # in place of the lambda it needed until now
        port = BusParts(self._registry, self._transport, self._emit, self._threads)
        self._schedules = Scheduler(self)
        self._lifecycle = Lifecycle(
            self._transport, self._intake, self._threads, self._log, port, (self._schedules,)
        )

    def __repr__(self) -> str:
        log = str(self.log_path) if self.log_path else None
        return f"<{type(self).__name__} {'running' if self.is_running else 'stopped'} log={log!r}>"

    def _repr_html_(self) -> str:
        from llmgine._html import table

        state = "running" if self.is_running else "stopped"
        rows = self.stats.rows(state, self.log_path, len(self.registrations()), self.pending_events)
        return table(type(self).__name__, rows)

    # ------------------------------------------------------------ handlers
    def register_command_handler(
        self, command_type: type[Command], handler: Handler, *, replace: bool = False
    ) -> None:
        """Make ``handler`` (sync or async, taking a command) the one handler of ``command_type``.

        A new definition of the same function (same module and qualified name, as when a
        notebook cell runs again) replaces the old one; ``replace=True`` any, with a warning.

        Raises:
            HandlerAlreadyRegisteredError: A different handler serves the type already.
        """
        self._registry.add_command(command_type, handler, owner=None, replace=replace)

    def unregister_command_handler(self, command_type: type[Command]) -> bool:
        """Remove the handler of ``command_type``; return whether there was one."""
        return self._registry.remove_command(command_type)

    def command_handler_of(self, command_type: type[Command]) -> Handler | None:
        """Return the handler registered for exactly ``command_type``, if any."""
        return self._registry.command_handler_of(command_type)

    def register_event_handler(self, event_type: type[Event], handler: Handler) -> None:
        """Add ``handler`` (sync or async) for ``event_type`` and its subclasses.

        Handlers run in registration order; a new definition of a registered function
        replaces it in place.
        """
        self._registry.add_event(event_type, handler, owner=None)

    def unregister_event_handler(self, event_type: type[Event], handler: Handler) -> bool:
        """Remove ``handler`` from ``event_type``; return whether it was registered."""
        return self._registry.remove_event(event_type, handler)

    def registrations(self) -> list[Registration]:
        """Return every handler registration, commands first."""
        return self._registry.registrations()

    # ------------------------------------------------------------ middleware
    def add_middleware(self, middleware: Middleware) -> None:
        """Run ``middleware``, ``async mw(command, call_next) -> CommandResult``, around commands.

        The first added runs outermost (see :mod:`llmgine.bus.middleware`), in the
        command's span and session, for local and remote handlers and every session's
        commands. One that raises gives a failed result, like a handler;
        ``execute(timeout=)`` bounds the handler, not the middleware.
        """
        self._dispatch.add_middleware(middleware, self)

    def remove_middleware(self, middleware: Middleware) -> bool:
        """Stop running ``middleware``; return whether it was added."""
        return self._dispatch.remove_middleware(middleware)

    @property
    def dead_letters(self) -> list[DeadLetter]:
        """The commands a ``DeadLetters`` middleware kept (see :mod:`llmgine.bus.policies`)."""
        return kept_letters(self._dispatch.middleware)

    async def redrive(self, dead_letter_id: str) -> CommandResult:
        """Run a dead letter's command again; the result's ``metadata["redrive_of"]`` names it."""
        return await redrive(self._dispatch.middleware, dead_letter_id)

    # ------------------------------------------------------------ messages
    def session(self, session_id: str | None = None) -> BusSession:
        """Return a session scope: ``async with bus.session("name") as s:``."""
        return BusSession(self, self._registry, session_id or f"session-{uuid.uuid4().hex[:8]}")

    def span(self, name: str, *, kind: str = "INTERNAL", **attributes: Any) -> Span:
        """Return a custom span: ``async with bus.span("load", rows=10) as span:``."""
        session_id = _current_session.get() or "global"
        return Span(self._emit, name, kind=kind, session_id=session_id, attributes=attributes)

    async def execute(self, command: Command, *, timeout: float | None = None) -> CommandResult:
        """Run the handler of ``command`` (through the middleware); return its ``CommandResult``.

        A handler's exception never propagates: it gives ``success=False`` and a
        ``CommandErrorEvent`` with the traceback; success gives a ``CommandResultEvent``.
        The command runs in a trace span, a child of the span active where ``execute``
        was called. Only the caller's cancellation, a ``KeyboardInterrupt`` and a
        handler's ``SystemExit`` (``sys.exit()``: it ends the program) propagate, after the
        failure is recorded. (A tool's ``SystemExit`` is an error sent to the model.)

        Args:
            command: The command to run.
            timeout: Seconds the handler may take (a sync one then runs in a worker
                thread); past that the result is a failure.

        Raises:
            HandlerNotFoundError: No handler is registered for the command's type.
        """
        return await self._dispatch.execute(command, timeout, self._intake.link)

    async def publish(self, event: Event) -> None:
        """Accept ``event``: give it to the sinks and queue it for its handlers; return.

        When the queue is full this waits for room, except in a handler or a task it started
        (so it cannot deadlock). Events published while stopped are handled after ``start()``.
        """
        if type(event) not in self._event_types:  # isinstance() costs more: the hot path
            if not isinstance(event, Event):
                raise TypeError(
                    f"publish() takes an Event; {type(event).__name__} is not one "
                    "(run commands with bus.execute)."
                )
            self._event_types.add(type(event))
        session_id = _current_session.get()  # the session stamp, inlined: the hot path
        if session_id is not None and event.session_id == "global":
            event.session_id = session_id
        queue = self._queue  # queue.is_full(), inlined: the hot path
        if queue._waiters or len(queue._items) + queue._granted >= queue.maxsize:
            await self._transport.reserve()
        self._accept(Record("event", event, _current_span.get()))

    async def _emit(self, event: Event) -> None:
        """Publish one of the bus's own events; with no handler for it, only the sinks get it."""
        if not self._registry.event_handlers(type(event)) and self._transport.is_running:
            self._accept(Record("event", event, _current_span.get()), queue=False)
        else:
            await self.publish(event)

    # ------------------------------------------------------------ state
    @property
    def stats(self) -> BusStats:
        """Running totals: messages, failures of handlers and sinks, restarts, stalls."""
        return self._intake.totals()

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
        """Start handling events on the running loop; those published before are handled now.

        A no-op if started; a stopped bus may start again, on the same or another loop.

        Raises:
            OSError: The log file cannot be opened (a wrong ``log_dir``); later write
                failures are reported, not raised.
        """
        await self._lifecycle.start()

    async def stop(self) -> None:
        """Handle every queued event, then flush and close the sinks (idempotent).

        This process's pending schedules are lost (a warning and a ``ScheduleLostEvent``
        each); those kept in the shared bus's Redis stay for the other processes.

        Raises:
            BusStateError: Called from a handler, or from another thread while the
                bus's loop is not running (the same for ``wait_for_events``).
        """
        await self._lifecycle.stop()

    def on_stop(
        self, callback: Callable[[], Awaitable[None]], *, first: bool = False
    ) -> Callable[[], None]:
        """Await ``callback()`` in every ``stop()`` once the queued events are handled.

        For what lives as long as the bus (an engine's MCP servers); one that raises is
        logged, the others still run. Returns a function that removes the callback.

        Args:
            callback: What to await.
            first: Await it at the start of ``stop()`` instead, while the bus still
                delivers events and is still connected to the shared bus: for work in
                flight that must end for the stop to finish (an engine withdraws the tool
                calls waiting for approval, and the other processes hear of it). They get
                30 s in all; then, or if one raises, the stop goes on without them.
        """
        return self._lifecycle.add_on_stop(callback, first=first)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def flush(self) -> None:
        """Deliver what the sinks buffered (the log's lines) now; failures are reported."""
        self._intake.flush()

    async def wait_for_events(self) -> None:
        """Return once every event published so far, and those it led to, is handled; flush.

        On a bus that is not running this returns at once (its events are handled
        after ``start()``). Raises ``BusStateError`` as ``stop()`` does.
        """
        await self._lifecycle.wait_for_events()

    # ----------------------------------------------- other processes (a bridge)
    @property
    def remote(self) -> Any:
        """The bridge to the shared bus while connected (a ``RedisLink``), else ``None``."""
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
            SharedBusConnectionError: Redis is unreachable at ``url`` or silent past
                ``connect_timeout`` (also a ``ConnectionError``).
            ConfigurationError: Not a Redis URL, settings Redis refuses (a database it
                lacks, a wrong password), an option out of range (also a ``ValueError``).
        """
        await self._lifecycle.connect(type(self).bridge_factory, url, namespace, **options)

    async def disconnect(self) -> None:
        """Leave the shared bus once its commands running here end and buffered events are sent.

        A no-op when not connected; ``stop()`` calls it.
        """
        await self._lifecycle.disconnect()

    # ------------------------------------------------------------ schedules
    async def schedule(
        self, message: Command | Event, *, after: float | None = None, at: datetime | None = None
    ) -> str:
        """Execute a command or publish an event ``after`` seconds or ``at`` a time; return its id.

        Each firing is a ``ScheduleFiredEvent`` (a command's says whether it
        succeeded). While the bus is connected the schedule lives in Redis: it
        survives this process and fires exactly once in the namespace. Otherwise it
        fires while this process runs, and is lost (and said to be) at ``stop()``.

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
