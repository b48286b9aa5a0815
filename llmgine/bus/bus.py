"""The MessageBus: commands to exactly one handler, events to many, everything to the sinks.

Dispatch only: the lifecycle and the parts (:mod:`llmgine.bus.lifecycle`), where
accepted messages go (:mod:`llmgine.bus.intake`), how events wait and reach their
handlers (:mod:`llmgine.bus.transport`) and who handles what (the registry) are
elsewhere.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from inspect import isawaitable
from typing import Any

from llmgine.bus.handlers import (
    HandlerThreads,
    HandlerTimedOut,
    as_result,
    call_command_handler,
    cancelled_from_outside,
    describe,
    failure_result,
)
from llmgine.bus.lifecycle import BusLifecycle
from llmgine.bus.middleware import CallNext, Middleware, chain
from llmgine.bus.queue import Delivery, delivering
from llmgine.bus.registry import HandlerEntry
from llmgine.bus.session import BusSession, _current_session
from llmgine.bus.stats import BusStats
from llmgine.messages.commands import Command, CommandResult
from llmgine.messages.events import (
    CommandErrorEvent,
    CommandResultEvent,
    Event,
    EventHandlerFailedEvent,
)
from llmgine.observability.events import SpanContext
from llmgine.observability.sinks import Record
from llmgine.observability.spans import Span, _current_span

__all__ = ["BusStats", "MessageBus"]

logger = logging.getLogger(__name__)


class MessageBus(BusLifecycle):
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

    _middleware: tuple[Middleware, ...] = ()

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
        self._middleware = (*self._middleware, middleware)

    def remove_middleware(self, middleware: Middleware) -> bool:
        """Stop running ``middleware``; return whether it was added."""
        if middleware not in self._middleware:
            return False
        kept = list(self._middleware)
        kept.remove(middleware)
        self._middleware = tuple(kept)
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
        tracebacks: dict[int, str] = {}
        try:
            if self._middleware:  # the one cost of middleware to a bus that has none
                handler = self._handler_call(entry, timeout, start, tracebacks, self._threads)
                result = as_result(await chain(self._middleware, handler)(command), command, start)
            else:
                result = as_result(
                    await call_command_handler(entry, command, timeout, self._threads),
                    command,
                    start,
                )
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
        if result.success:
            done = CommandResultEvent(session_id=command.session_id, command_result=result)
            await self._emit(done)
        else:
            await self._publish_failure(command, result, tracebacks.get(id(result), ""), span)
        return result

    @staticmethod
    def _handler_call(
        entry: HandlerEntry,
        timeout: float | None,
        start: float,
        tracebacks: dict[int, str],
        threads: HandlerThreads,
    ) -> CallNext:
        """The end of the middleware chain: the handler, its failures as failed results."""

        async def handler(command: Command) -> CommandResult:
            try:
                value = await call_command_handler(entry, command, timeout, threads)
            except HandlerTimedOut as exc:
                return failure_result(command, start, str(exc), "TimeoutError")
            except BaseException as exc:
                if isinstance(exc, KeyboardInterrupt | SystemExit) or (
                    isinstance(exc, asyncio.CancelledError) and cancelled_from_outside()
                ):
                    raise
                message, error_type, tb = describe(exc)
                failed = failure_result(command, start, message, error_type)
                tracebacks[id(failed)] = tb  # the CommandErrorEvent carries it
                return failed
            return as_result(value, command, start)

        return handler

    async def _failed(
        self, command: Command, start: float, span: Span, error: str, error_type: str, tb: str
    ) -> CommandResult:
        result = failure_result(command, start, error, error_type)
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
        if not self._registry.event_handlers(type(event)) and self._transport.is_running:
            self._accept(Record("event", event, _current_span.get()), queue=False)
        else:
            await self.publish(event)

    @staticmethod
    def _stamp(message: Command | Event) -> None:
        session_id = _current_session.get()
        if session_id is not None and message.session_id == "global":
            message.session_id = session_id

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
