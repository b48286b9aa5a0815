"""The MessageBus: commands to exactly one handler, events to many, everything logged."""

from __future__ import annotations

import asyncio
import contextvars
import logging
import os
import time
import traceback
import uuid
import weakref
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import datetime
from inspect import isawaitable
from pathlib import Path
from types import TracebackType
from typing import Any, TextIO, TypeVar

from llmgine.bus.registry import HandlerEntry, HandlerRegistry, Registration
from llmgine.bus.session import BusSession, _current_session
from llmgine.errors import BusStateError
from llmgine.messages.commands import Command, CommandResult
from llmgine.messages.events import (
    CommandErrorEvent,
    CommandResultEvent,
    Event,
    EventHandlerFailedEvent,
)
from llmgine.observability.console import ConsolePrinter
from llmgine.observability.events import MetricEvent, SpanContext, TraceEvent
from llmgine.observability.jsonl import JsonlLog, encode_fields, encode_line
from llmgine.observability.spans import Span, _current_span

__all__ = ["BusStats", "MessageBus"]

logger = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")

_Queued = tuple[Event, SpanContext | None]


@dataclass
class BusStats:
    """Running totals of what went through a bus."""

    commands_executed: int = 0
    commands_failed: int = 0
    events_published: int = 0
    events_handled: int = 0
    handler_failures: int = 0


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


async def _on(loop: asyncio.AbstractEventLoop, coroutine: Coroutine[Any, Any, T]) -> T:
    """Run ``coroutine`` on ``loop`` (another thread's) and wait for it from this one."""
    return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coroutine, loop))


def _default_log_filename() -> str:
    stamp = datetime.now().strftime("%Y%m%d_%H%M%S")
    return f"events_{stamp}_{uuid.uuid4().hex[:6]}.jsonl"


class MessageBus:
    """Carries commands (exactly one handler each) and events (any number of handlers).

    Every command executed and every event published is written, exactly once and
    in order, as one JSON line to the log. Every ``execute()`` is a trace span.

    Args:
        log_dir: Directory of the JSONL log; ``None`` writes no log file.
        log_filename: Name of the log file; ``None`` means a timestamped name.
        enable_console_metrics: Print one line per metric to ``console_stream``.
        enable_console_traces: Print one line per finished span to ``console_stream``.
        console_stream: Where the console lines go; ``None`` means ``sys.stdout``.
        max_queue_size: Events queued before ``publish()`` waits for the handlers
            (publishing from inside a handler never waits).

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
    ) -> None:
        if max_queue_size < 1:
            raise ValueError(f"max_queue_size must be at least 1; got {max_queue_size}.")
        self._registry = HandlerRegistry()
        self._log: JsonlLog | None = None
        if log_dir is not None:
            self._log = JsonlLog(Path(log_dir) / (log_filename or _default_log_filename()))
            # Nothing is lost if the bus is never stopped: flush when it is collected or at exit.
            weakref.finalize(self, self._log.close)
        self.console = ConsolePrinter(
            console_stream, metrics=enable_console_metrics, traces=enable_console_traces
        )
        self.stats = BusStats()
        self._max = max_queue_size
        self._queue: deque[_Queued] = deque()
        self._running = False
        self._stopping = False
        self._consumer: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._dispatching = False
        self._wakeup = asyncio.Event()
        self._idle = asyncio.Event()
        self._space = asyncio.Event()
        self._space_waiters = 0
        if enable_console_metrics or enable_console_traces:
            # Both are registered so either flag can be switched on later via bus.console.
            self.register_event_handler(MetricEvent, self.console.on_metric)
            self.register_event_handler(TraceEvent, self.console.on_trace)

    def __repr__(self) -> str:
        state = "running" if self.is_running else "stopped"
        return f"<MessageBus {state} log={str(self.log_path) if self.log_path else None!r}>"

    def _repr_html_(self) -> str:
        from llmgine._html import table

        stats = self.stats
        return table(
            "MessageBus",
            [
                ("state", "running" if self.is_running else "stopped"),
                ("log", str(self.log_path) if self.log_path else "off"),
                ("handlers", len(self.registrations())),
                ("commands executed", stats.commands_executed),
                ("commands failed", stats.commands_failed),
                ("events published", stats.events_published),
                ("handler failures", stats.handler_failures),
                ("events pending", self.pending_events),
            ],
        )

    # ---------------------------------------------------------------- state

    @property
    def log_path(self) -> Path | None:
        """Path of the JSONL log, or ``None`` when the bus writes no file."""
        return None if self._log is None else self._log.path

    @property
    def is_running(self) -> bool:
        """Whether the bus is started and handling events."""
        return self._running and self._consumer is not None and not self._consumer.done()

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The event loop the bus runs on while started (in a notebook: the kernel's)."""
        return self._loop if self.is_running else None

    @property
    def pending_events(self) -> int:
        """Events published but not yet handled."""
        return len(self._queue)

    async def start(self) -> None:
        """Start handling events on the running event loop (a no-op if started).

        Events published before ``start()`` are handled now, in order. A stopped
        bus may be started again, on the same or another event loop.
        """
        if self.is_running:
            return
        self._running = False
        self._wakeup = asyncio.Event()
        self._idle = asyncio.Event()
        self._space = asyncio.Event()
        self._space_waiters = 0
        if self._log is not None:
            self._log.open()
        self._stopping = False
        self._running = True
        self._loop = asyncio.get_running_loop()
        # A fresh context: handlers must not inherit the span or session of start()'s caller.
        self._consumer = asyncio.create_task(
            self._consume(), name="llmgine-bus", context=contextvars.Context()
        )

    async def stop(self) -> None:
        """Handle every queued event, then flush and close the log (idempotent)."""
        consumer = self._consumer
        if consumer is not None and consumer is asyncio.current_task():
            raise BusStateError(
                "bus.stop() was called from an event handler, which would wait for itself; "
                "call it from outside the handlers."
            )
        loop = self._loop
        if loop is not None and loop is not _running_loop() and not loop.is_closed():
            await _on(loop, self.stop())
            return
        if consumer is not None and not consumer.done():
            self._stopping = True
            self._wakeup.set()
            await asyncio.shield(consumer)
        self._consumer = None
        self._running = False
        self._loop = None
        if self._log is not None:
            self._log.close()

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
        """Write the log lines buffered so far to the file (no-op without a log or before start)."""
        if self._log is not None and self._log.is_open:
            self._log.flush()

    async def wait_for_events(self) -> None:
        """Return once every event published so far has been handled, and flush the log.

        Events that handlers publish meanwhile are waited for too. On a bus that is
        not running this returns at once: its events are handled after ``start()``.
        """
        if asyncio.current_task() is self._consumer:
            raise BusStateError(
                "wait_for_events() was called from an event handler, which would wait for "
                "itself; publish and return instead."
            )
        loop = self._loop
        if loop is not None and loop is not _running_loop():
            await _on(loop, self.wait_for_events())
            return
        while self.is_running and (self._queue or self._dispatching):
            await self._idle.wait()
        self.flush()

    # --------------------------------------------------------- registration

    def register_command_handler(
        self, command_type: type[Command], handler: Callable[[Any], Any]
    ) -> None:
        """Make ``handler`` (sync or async) the one handler of ``command_type``.

        Raises:
            HandlerAlreadyRegisteredError: A different handler serves the type already.
                Registering a new definition of the same function (same module and
                qualified name, as when a notebook cell runs again) replaces it.
        """
        self._registry.add_command(command_type, handler, owner=None)

    def unregister_command_handler(self, command_type: type[Command]) -> bool:
        """Remove the handler of ``command_type``; return whether there was one."""
        return self._registry.remove_command(command_type)

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

    def registrations(self) -> list[Registration]:
        """Return every handler registration, commands first."""
        return self._registry.registrations()

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
        span active where ``execute`` was called.

        Args:
            command: The command to run.
            timeout: Seconds the handler may take; past that it fails with ``TimeoutError``.

        Raises:
            HandlerNotFoundError: No handler is registered for the command's type.
        """
        if not isinstance(command, Command):
            raise TypeError(
                f"execute() takes a Command; {type(command).__name__} is not one "
                "(publish events with bus.publish)."
            )
        entry = self._registry.command_handler(type(command))
        self._stamp(command)
        command_type = type(command).__name__
        self.stats.commands_executed += 1
        span = Span(
            self._emit,
            command_type,
            kind="CHAIN",
            session_id=command.session_id,
            attributes={
                "llmgine.command.type": command_type,
            },
        )
        # The handler runs in the command's session: what it publishes is stamped with it.
        session_token = (
            _current_session.set(command.session_id) if command.session_id != "global" else None
        )
        try:
            return await self._execute_in_span(command, entry, span, timeout)
        finally:
            if session_token is not None:
                _current_session.reset(session_token)

    async def _execute_in_span(
        self, command: Command, entry: HandlerEntry, span: Span, timeout: float | None
    ) -> CommandResult:
        command_type = span.name
        async with span:
            if self._log is not None:
                self._log.write(encode_line("command", command, span.context))
            start = time.perf_counter()
            try:
                value = entry.fn(command)
                if isawaitable(value):
                    if timeout is None:
                        value = await value
                    else:
                        async with asyncio.timeout(timeout):
                            value = await value
            except asyncio.CancelledError:
                failed = self._failure(
                    command, start, "the command was cancelled", "CancelledError"
                )
                await self._publish_failure(command, failed, "", span)
                raise
            except Exception as exc:
                if isinstance(exc, TimeoutError) and timeout is not None:
                    message = f"the handler did not finish within {timeout:g} s"
                else:
                    message = str(exc) or type(exc).__name__
                result = self._failure(command, start, message, type(exc).__name__)
                await self._publish_failure(command, result, traceback.format_exc(), span)
                return result
            if isinstance(value, CommandResult):
                result = value
            else:
                result = CommandResult(success=True, result=value)
            result.command_id = result.command_id or command.id
            result.command_type = result.command_type or command_type
            if result.duration_ms is None:
                result.duration_ms = (time.perf_counter() - start) * 1000.0
            if result.success:
                await self._emit(CommandResultEvent, command.session_id, {"command_result": result})
            else:
                await self._publish_failure(command, result, "", span)
        return result

    @staticmethod
    def _failure(command: Command, start: float, error: str, error_type: str) -> CommandResult:
        return CommandResult(
            success=False,
            error=error,
            error_type=error_type,
            command_id=command.id,
            command_type=type(command).__name__,
            duration_ms=(time.perf_counter() - start) * 1000.0,
        )

    async def _publish_failure(
        self, command: Command, result: CommandResult, tb: str, span: Span
    ) -> None:
        self.stats.commands_failed += 1
        span.set_status("ERROR", f"{result.error_type}: {result.error}")
        await self._emit(
            CommandErrorEvent, command.session_id, {"command_result": result, "traceback": tb}
        )

    async def publish(self, event: Event) -> None:
        """Queue ``event`` for its handlers and write it to the log; returns before handling.

        When the queue is full this waits for the handlers to catch up, except
        when called from a handler, which never waits (so it cannot deadlock).
        Events published while the bus is stopped are handled after ``start()``.
        """
        if not isinstance(event, Event):
            raise TypeError(
                f"publish() takes an Event; {type(event).__name__} is not one "
                "(run commands with bus.execute)."
            )
        self._stamp(event)
        span = _current_span.get()
        loop = self._loop
        if loop is not None and loop is not asyncio.get_running_loop():
            # Another event loop, e.g. a notebook subshell's thread: the bus's own loop queues it.
            await _on(loop, self._enqueue(event, span))
            return
        if (
            len(self._queue) >= self._max
            and self._running
            and asyncio.current_task() is not self._consumer
        ):
            await self._wait_for_space()
        self._append(event, span)

    async def _enqueue(self, event: Event, span: SpanContext | None) -> None:
        if len(self._queue) >= self._max and self._running:
            await self._wait_for_space()
        self._append(event, span)

    def _append(self, event: Event, span: SpanContext | None) -> None:
        if self._log is not None and type(event).log_to_file:
            self._log.write(encode_line("event", event, span))
        self._queue.append((event, span))
        self.stats.events_published += 1
        if self._running:
            self._idle.clear()
            self._wakeup.set()

    async def _emit(self, event_type: type[Event], session_id: str, fields: dict[str, Any]) -> None:
        """Publish one of the bus's own events, building it only if a handler listens.

        With no handler for ``event_type`` the event is written to the log straight
        from ``fields`` (the same line ``publish`` would write) and goes no further.
        """
        if self._running and not self._registry.event_handlers(event_type):
            self.stats.events_published += 1
            if self._log is not None:
                span = _current_span.get()
                self._log.write(encode_fields(event_type, fields, session_id=session_id, span=span))
            return
        await self.publish(event_type(session_id=session_id, **fields))

    @staticmethod
    def _stamp(message: Command | Event) -> None:
        session_id = _current_session.get()
        if session_id is not None and message.session_id == "global":
            message.session_id = session_id

    async def _wait_for_space(self) -> None:
        self._space_waiters += 1
        try:
            while len(self._queue) >= self._max and self.is_running:
                self._space.clear()
                await self._space.wait()
        finally:
            self._space_waiters -= 1

    # ------------------------------------------------------------ handling

    async def _consume(self) -> None:
        queue = self._queue
        handlers_for = self._registry.event_handlers
        stats = self.stats
        try:
            while True:
                if not queue:
                    self._dispatching = False
                    if self._log is not None:
                        self._log.flush()
                    self._idle.set()
                    if self._stopping:
                        return
                    self._wakeup.clear()
                    await self._wakeup.wait()
                    continue
                event, span = queue.popleft()
                if self._space_waiters and len(queue) < self._max:
                    self._space.set()
                self._dispatching = True
                stats.events_handled += 1
                handlers = handlers_for(type(event))
                if not handlers:
                    continue
                # Handlers run in the span and session the event was published in.
                span_token = _current_span.set(span) if span is not None else None
                session_token = (
                    _current_session.set(event.session_id) if event.session_id != "global" else None
                )
                try:
                    for entry in handlers:
                        try:
                            value = entry.fn(event)
                            if entry.is_async or (value is not None and isawaitable(value)):
                                await value
                        except Exception as exc:
                            await self._handler_failed(event, entry, exc)
                finally:
                    if session_token is not None:
                        _current_session.reset(session_token)
                    if span_token is not None:
                        _current_span.reset(span_token)
        finally:
            # Whatever is still queued (a cancelled loop) waits for the next start().
            self._running = False
            self._loop = None
            self._dispatching = False
            self._idle.set()
            self._space.set()

    async def _handler_failed(self, event: Event, entry: HandlerEntry, exc: Exception) -> None:
        self.stats.handler_failures += 1
        logger.error(
            "Event handler %s failed on %s: %s: %s",
            entry.name,
            type(event).__name__,
            type(exc).__name__,
            exc,
            exc_info=exc,
        )
        if isinstance(event, EventHandlerFailedEvent):
            return  # a failing failure handler is logged, not published again
        await self.publish(
            EventHandlerFailedEvent(
                event_id=event.id,
                event_type=type(event).__name__,
                handler=entry.name,
                error=str(exc),
                error_type=type(exc).__name__,
                traceback="".join(traceback.format_exception(exc)),
                session_id=event.session_id,
            )
        )
