"""The MessageBus: commands to exactly one handler, events to many, everything to the sinks.

Dispatch only: the transport (:mod:`llmgine.bus.transport`) decides where events
wait and how they reach handlers; the sinks (:mod:`llmgine.observability.sinks`)
receive every accepted message; the registry knows the handlers.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
import uuid
from collections.abc import Iterable
from datetime import datetime
from inspect import isawaitable
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, TextIO

from llmgine.bus.handlers import (
    HandlerTimedOut,
    call_command_handler,
    cancelled_from_outside,
    describe,
)
from llmgine.bus.loops import call_on, running_loop
from llmgine.bus.queue import Delivery, delivering, in_handler
from llmgine.bus.registration import HandlerRegistrations
from llmgine.bus.registry import HandlerEntry
from llmgine.bus.session import BusSession, _current_session
from llmgine.bus.stats import BusStats
from llmgine.bus.transport import LocalTransport
from llmgine.errors import BusStateError
from llmgine.messages.commands import Command, CommandResult
from llmgine.messages.events import (
    CommandErrorEvent,
    CommandResultEvent,
    Event,
    EventHandlerFailedEvent,
)
from llmgine.observability.console import ConsolePrinter
from llmgine.observability.events import SpanContext
from llmgine.observability.jsonl import JsonlLog
from llmgine.observability.sinks import Record, Sink, SinkFailure, SinkSet
from llmgine.observability.spans import Span, _current_span

if TYPE_CHECKING:
    from llmgine.bus.remote.link import RedisLink

__all__ = ["BusStats", "MessageBus"]

logger = logging.getLogger(__name__)

FLUSH_INTERVAL = 0.1
"""Seconds an accepted line may wait in a sink's buffer while the bus is busy."""


def _default_log_filename() -> str:
    stamp = datetime.now().strftime("%Y%m%d_%H%M%S")
    return f"events_{stamp}_{uuid.uuid4().hex[:6]}.jsonl"


def _in_consumer() -> BusStateError | None:
    if in_handler():
        return BusStateError(
            "This was called from an event handler (or a task it started), which would wait "
            "for itself; publish and return instead, and wait from outside the handlers."
        )
    return None


class MessageBus(HandlerRegistrations):
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
            raise ValueError(f"max_queue_size must be at least 1; got {max_queue_size}.")
        super().__init__()
        self._stats = BusStats()
        self._sinks = SinkSet(self._sink_changed)
        self._notices: list[SinkFailure] = []
        self._flush_armed = False
        self._lock = threading.Lock()  # one order for the sinks and the queue, across threads
        self._transport = LocalTransport(self._deliver, self._flush_due, max_queue_size)
        self._log: JsonlLog | None = None
        self._remote: RedisLink | None = None  # several processes: set by connect()
        if log_dir is not None:
            self._log = JsonlLog(Path(log_dir) / (log_filename or _default_log_filename()))
            self._sinks.add(self._log)
        self.console = ConsolePrinter(
            console_stream, metrics=enable_console_metrics, traces=enable_console_traces
        )
        if enable_console_metrics or enable_console_traces:
            # Either flag can be switched on later through bus.console.
            self._sinks.add(self.console)
        for sink in sinks:
            self._sinks.add(sink)

    def __repr__(self) -> str:
        state = "running" if self.is_running else "stopped"
        return f"<MessageBus {state} log={str(self.log_path) if self.log_path else None!r}>"

    def _repr_html_(self) -> str:
        from llmgine._html import table

        stats = self.stats
        rows: list[tuple[str, Any]] = [
            ("state", "running" if self.is_running else "stopped"),
            ("log", str(self.log_path) if self.log_path else "off"),
            ("handlers", len(self.registrations())),
            ("commands executed", stats.commands_executed),
            ("commands failed", stats.commands_failed),
            ("events published", stats.events_published),
            ("handler failures", stats.handler_failures),
            ("sink failures", stats.sink_failures),
            ("events pending", self.pending_events),
        ]
        return table("MessageBus", rows)

    # ---------------------------------------------------------------- state

    @property
    def stats(self) -> BusStats:
        """Running totals: messages, failures of handlers and sinks, restarts, stalls."""
        stats = self._stats
        stats.sink_failures = self._sinks.failures
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
        return tuple(self._sinks)

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
        self._sinks.add(sink)

    def remove_sink(self, sink: Sink) -> bool:
        """Stop giving messages to ``sink`` (it is not closed); return whether it was there."""
        return self._sinks.remove(sink)

    async def start(self) -> None:
        """Start handling events on the running event loop (a no-op if started).

        Events published before ``start()`` are handled now, in order. A stopped
        bus may be started again, on the same or another event loop.

        Raises:
            OSError: The log file cannot be created or opened (a wrong ``log_dir``);
                write failures later on are reported, not raised.
        """
        if self._log is not None and not self.is_running:
            self._log.open()  # a wrong log_dir fails here, clearly, not on the first flush
        self._flush_armed = False  # a timer left on a closed loop never fires
        self._transport.start()

    async def stop(self) -> None:
        """Handle every queued event, then flush and close the sinks (idempotent).

        Raises:
            BusStateError: Called from a handler, or from another thread while the
                bus's loop is not running.
        """
        if (error := _in_consumer()) is not None:
            raise error
        loop = self._transport.loop
        if loop is not None and loop is not running_loop() and not loop.is_closed():
            await call_on(loop, self.stop(), "bus.stop()")
            return
        if self._remote is not None:
            await self.disconnect()
        await self._transport.stop()
        self._flush_armed = False  # from now on each accepted line is written at once
        self._sinks.close()
        self._report_sinks()

    async def __aenter__(self) -> MessageBus:
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
        self._sinks.flush()
        self._report_sinks()

    async def wait_for_events(self) -> None:
        """Return once every event published so far has been handled, and flush the sinks.

        Events that handlers publish meanwhile are waited for too. On a bus that is
        not running this returns at once: its events are handled after ``start()``.

        Raises:
            BusStateError: Called from a handler, or from another thread while the
                bus's loop is not running.
        """
        if (error := _in_consumer()) is not None:
            raise error
        loop = self._transport.loop
        if loop is not None and loop is not running_loop():
            await call_on(loop, self.wait_for_events(), "bus.wait_for_events()")
            return
        await self._transport.join()
        self.flush()

    # ----------------------------------------------- several processes (Redis)

    @property
    def remote(self) -> RedisLink | None:
        """The link to the shared bus on Redis while connected (see :meth:`connect`)."""
        return self._remote

    async def connect(self, url: str, namespace: str = "llmgine", **options: Any) -> None:
        """Join the shared bus on the Redis server at ``url`` (starts this bus if needed).

        Commands with no local handler then run in a connected process that has one;
        events reach every connected process that handles them; local handlers run
        here as before. Needs the ``redis`` extra (``pip install 'llmgine[redis]'``).

        Args:
            url: The Redis URL, e.g. ``redis://127.0.0.1:6379/0``.
            namespace: Buses in one namespace form one shared bus.
            **options: ``heartbeat``, ``claim_after``, ``max_concurrency``, ``max_buffer``
                (see :class:`llmgine.bus.remote.RedisLink`).

        Raises:
            BusStateError: The bus is connected already.
            ConnectionError: Redis cannot be reached at ``url``.
        """
        if self._remote is not None:
            raise BusStateError("This bus is connected already; call bus.disconnect() first.")
        try:
            from llmgine.bus.remote.link import RedisLink
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise BusStateError(
                "bus.connect() needs the redis package: pip install 'llmgine[redis]'."
            ) from exc
        await self.start()
        link = RedisLink(self, url, namespace, **options)
        await link.open()
        self._remote = link

    async def disconnect(self) -> None:
        """Leave the shared bus: finish remote commands running here, send buffered events.

        A no-op when not connected; ``stop()`` calls it.
        """
        link = self._remote
        if link is None:
            return
        try:
            await link.close()
        finally:
            self._remote = None

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
        if self._remote is not None and self._registry.command_handler_of(type(command)) is None:
            entry = await self._remote.command_entry(type(command))  # runs in another process
        else:
            entry = self._registry.command_handler(type(command))
        self._stamp(command)
        self._stats.commands_executed += 1
        command_type = type(command).__name__
        attributes = {"llmgine.command.type": command_type}
        span = Span(
            self._emit,
            command_type,
            kind="CHAIN",
            session_id=command.session_id,
            attributes=attributes,
        )
        # The handler runs in the command's session: what it publishes is stamped with it.
        token = _current_session.set(command.session_id) if command.session_id != "global" else None
        try:
            async with span:
                self._accept(Record("command", command, span.context), queue=False)
                return await self._run(command, entry, span, timeout)
        finally:
            if token is not None:
                _current_session.reset(token)

    async def _run(
        self, command: Command, entry: HandlerEntry, span: Span, timeout: float | None
    ) -> CommandResult:
        start = time.perf_counter()
        try:
            value = await call_command_handler(entry, command, timeout)
        except HandlerTimedOut as exc:
            return await self._failed(command, start, span, str(exc), "TimeoutError", "")
        except BaseException as exc:
            message, error_type, tb = describe(exc)
            cancelled = isinstance(exc, asyncio.CancelledError) and cancelled_from_outside()
            if cancelled:
                message = "the command was cancelled"
            result = await self._failed(command, start, span, message, error_type, tb)
            if cancelled or isinstance(exc, KeyboardInterrupt | SystemExit):
                raise
            return result
        if isinstance(value, CommandResult):
            result = value
        else:
            result = CommandResult(success=True, result=value)
        result.command_id = result.command_id or command.id
        result.command_type = result.command_type or type(command).__name__
        if result.duration_ms is None:
            result.duration_ms = (time.perf_counter() - start) * 1000.0
        if result.success:
            done = CommandResultEvent(session_id=command.session_id, command_result=result)
            await self._emit(done)
        else:
            await self._publish_failure(command, result, "", span)
        return result

    async def _failed(
        self, command: Command, start: float, span: Span, error: str, error_type: str, tb: str
    ) -> CommandResult:
        result = CommandResult(
            success=False,
            error=error,
            error_type=error_type,
            command_id=command.id,
            command_type=type(command).__name__,
            duration_ms=(time.perf_counter() - start) * 1000.0,
        )
        await self._publish_failure(command, result, tb, span)
        return result

    async def _publish_failure(
        self, command: Command, result: CommandResult, tb: str, span: Span
    ) -> None:
        self._stats.commands_failed += 1
        span.set_status("ERROR", f"{result.error_type}: {result.error}")
        failed = CommandErrorEvent(
            session_id=command.session_id, command_result=result, traceback=tb
        )
        await self._emit(failed)

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
        if self._transport.is_running and not self._registry.event_handlers(type(event)):
            self._accept(Record("event", event, _current_span.get()), queue=False)
        else:
            await self.publish(event)

    def _accept(self, record: Record, *, queue: bool = True) -> None:
        with self._lock:
            try:
                self._sinks.write(record)
            finally:  # even an interrupt in a sink leaves the event counted and queued
                if record.kind == "event":
                    self._stats.events_published += 1
                    if queue:
                        self._transport.put((record.message, record.span))  # type: ignore[arg-type]
                    if self._remote is not None:
                        self._remote.forward(record)  # buffered; a sender task sends it to Redis
        if self._notices:
            self._report_sinks()
        if not self._flush_armed:
            self._arm_flush()

    def _arm_flush(self) -> None:
        """Flush the sinks within ~100 ms, however long the handlers keep the bus busy."""
        loop = self._transport.loop
        if loop is None or not loop.is_running():
            self.flush()  # nobody will flush on idle or on a timer: write it now
        elif loop is running_loop():
            self._flush_armed = True
            loop.call_later(FLUSH_INTERVAL, self._timed_flush)

    def _timed_flush(self) -> None:
        self._flush_armed = False
        self._flush_due()

    def _flush_due(self) -> None:
        """The routine flush (idle, timer): a failing sink is retried after a pause, not now."""
        self._sinks.flush(due=True)
        self._report_sinks()

    @staticmethod
    def _stamp(message: Command | Event) -> None:
        session_id = _current_session.get()
        if session_id is not None and message.session_id == "global":
            message.session_id = session_id

    # ------------------------------------------------------------- sinks

    def _sink_changed(self, failure: SinkFailure) -> None:
        self._notices.append(failure)

    def _report_sinks(self) -> None:
        """Publish the sink failures and recoveries noticed so far (never waits)."""
        notices, self._notices = self._notices, []
        for notice in notices:
            self._accept(Record("event", notice.event(), None))

    # ------------------------------------------------------------ handling

    async def _deliver(self, event: Event, span: SpanContext | None) -> None:
        """Run the handlers of one event, in the span and session it was published in.

        Every outcome of a handler is caught and reported (``CancelledError``,
        ``KeyboardInterrupt``, ``GeneratorExit``, any ``BaseException``); only the
        cancellation of the consumer itself propagates, after it is reported too.
        """
        handlers = self._registry.event_handlers(type(event))
        if not handlers:
            return
        span_token = _current_span.set(span) if span is not None else None
        session_token = (
            _current_session.set(event.session_id) if event.session_id != "global" else None
        )
        delivery = Delivery()  # tasks the handlers start share it, and see it end
        delivery_token = delivering.set(delivery)
        try:
            for entry in handlers:  # inlined: this loop is the hot path of every event
                try:
                    value = entry.fn(event)
                    if entry.is_async or (value is not None and isawaitable(value)):
                        await value
                except asyncio.CancelledError as exc:
                    self._handler_failed(event, entry, exc)
                    if cancelled_from_outside():
                        raise
                except BaseException as exc:
                    self._handler_failed(event, entry, exc)
        finally:
            delivery.active = False
            delivering.reset(delivery_token)
            if session_token is not None:
                _current_session.reset(session_token)
            if span_token is not None:
                _current_span.reset(span_token)

    def _handler_failed(self, event: Event, entry: HandlerEntry, exc: BaseException) -> None:
        self._stats.handler_failures += 1
        message, error_type, tb = describe(exc)
        logger.error(
            "Event handler %s failed on %s: %s: %s",
            entry.name,
            type(event).__name__,
            error_type,
            message,
        )
        if isinstance(event, EventHandlerFailedEvent):
            return  # a failing failure handler is logged, not published again
        failed = EventHandlerFailedEvent(
            event_id=event.id,
            event_type=type(event).__name__,
            handler=entry.name,
            error=message,
            error_type=error_type,
            traceback=tb,
            session_id=event.session_id,
        )
        self._accept(Record("event", failed, _current_span.get()))
