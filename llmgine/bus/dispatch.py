"""Dispatch: a command through the middleware to its handler, an event to its handlers.

The part of a :class:`~llmgine.bus.MessageBus` that runs handlers and turns every
outcome into a result, an event, a span status: nothing it runs can crash the bus.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from inspect import isawaitable

from llmgine.bus.handlers import (
    HandlerThreads,
    HandlerTimedOut,
    as_result,
    call_command_handler,
    cancelled_from_outside,
    describe,
    failure_result,
)
from llmgine.bus.middleware import CallNext, Failed, Middleware, chain
from llmgine.bus.ports import Bridge
from llmgine.bus.queue import delivering
from llmgine.bus.registry import HandlerEntry, HandlerRegistry
from llmgine.bus.session import _current_session
from llmgine.bus.stats import BusStats
from llmgine.bus.surface import BusSurface
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

__all__ = ["Dispatcher"]

logger = logging.getLogger(__name__)


class Dispatcher:
    """Runs the handlers of a bus's commands and events.

    Args:
        registry: Who handles what.
        stats: The bus's totals (executed, failed, handler failures).
        threads: The threads of sync handlers with a timeout.
        emit: Publishes one of the bus's own events (results, failures).
        accept: Hands a record of a handler's failure to the bus's intake.
    """

    def __init__(
        self,
        registry: HandlerRegistry,
        stats: BusStats,
        threads: HandlerThreads,
        emit: Callable[[Event], Awaitable[None]],
        accept: Callable[[Record], None],
    ) -> None:
        self._registry = registry
        self._handlers = registry.handler_cache
        self._stats = stats
        self.threads = threads
        self.emit = emit
        self.accept = accept
        self.middleware: tuple[Middleware, ...] = ()
        """Run around every command's handler, the first outermost."""

    def add_middleware(self, middleware: Middleware, bus: BusSurface) -> None:
        """Run ``middleware`` outside those added before; a policy's events go to ``bus``."""
        if not callable(middleware):
            raise TypeError(f"A middleware must be callable; got {type(middleware).__name__}.")
        bind = getattr(middleware, "bind", None)
        if callable(bind):  # a policy of llmgine.bus.policies: its events go to this bus
            bind(bus)
        self.middleware = (*self.middleware, middleware)

    def remove_middleware(self, middleware: Middleware) -> bool:
        """Stop running ``middleware``; return whether it was added."""
        if middleware not in self.middleware:
            return False
        kept = list(self.middleware)
        kept.remove(middleware)
        self.middleware = tuple(kept)
        return True

    async def execute(
        self, command: Command, timeout: float | None, link: Bridge | None
    ) -> CommandResult:
        """Find ``command``'s handler (here, else through ``link``), run it in a span of its own.

        The command is stamped with the active session and runs in its own; its record
        goes to the intake, then its handler runs (see :meth:`run`).

        Raises:
            TypeError: ``command`` is not a command.
            HandlerNotFoundError: No handler serves the command's type.
        """
        if not isinstance(command, Command):
            raise TypeError(
                f"execute() takes a Command; {type(command).__name__} is not one "
                "(publish events with bus.publish)."
            )
        if link is not None and self._registry.command_handler_of(type(command)) is None:
            # Runs in another process; the timeout bounds the look-up and travels along.
            entry = await link.command_entry(type(command), timeout)
            # The bridge's entry keeps that deadline itself: cut short here, a reply it
            # finds as the deadline passes (its effect happened) would be called a timeout.
            timeout = None
        else:
            entry = self._registry.command_handler(type(command))
        session_id = _current_session.get()
        if session_id is not None and command.session_id == "global":
            command.session_id = session_id
        self._stats.commands_executed += 1
        command_type = type(command).__name__
        span = Span(
            self.emit,
            command_type,
            kind="CHAIN",
            session_id=command.session_id,
            attributes={"llmgine.command.type": command_type},
        )
        # The handler runs in the command's session: what it publishes is stamped with it.
        token = _current_session.set(command.session_id) if command.session_id != "global" else None
        try:
            async with span:
                self.accept(Record("command", command, span.context))
                return await self.run(command, entry, span, timeout)
        finally:
            if token is not None:
                _current_session.reset(token)

    async def run(
        self, command: Command, entry: HandlerEntry, span: Span, timeout: float | None
    ) -> CommandResult:
        """Run ``command``'s handler (through the middleware); publish and return its result."""
        start = time.perf_counter()
        tracebacks: dict[int, str] | None = None
        try:
            if self.middleware:  # the one cost of middleware to a bus that has none
                tracebacks = {}
                failed = _failure(start, tracebacks)
                handler = _handler_call(entry, type(command), timeout, failed, start, self.threads)
                value = await chain(self.middleware, handler, failed)(command)
            else:
                value = await call_command_handler(entry, command, timeout, self.threads)
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
        result = as_result(value, command, start)
        if result.success:
            done = CommandResultEvent(session_id=command.session_id, command_result=result)
            await self.emit(done)
        else:
            tb = tracebacks.get(id(result), "") if tracebacks else ""
            await self._publish_failure(command, result, tb, span)
        return result

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
        await self.emit(failed)

    async def deliver(self, event: Event, span: SpanContext | None) -> None:
        """Run the handlers of one event, in the span and session it was published in.

        Every outcome of a handler is caught and reported (``CancelledError``,
        ``KeyboardInterrupt``, ``GeneratorExit``, any ``BaseException``); only the
        cancellation of the consumer itself propagates, after it is reported too.
        The delivery's mark stays, ended, in the caller's context (the consumer's own).
        """
        handlers = self._handlers.get(type(event))  # the registry's cache, read inline
        if not handlers:
            handlers = self._registry.event_handlers(type(event))
            if not handlers:
                return
        span_token = _current_span.set(span) if span is not None else None
        session_token = (
            _current_session.set(event.session_id) if event.session_id != "global" else None
        )
        # Tasks the handlers start carry the delivery's mark, and see it end. The
        # consumer's context is its own: the mark is left there, ended, not reset.
        running = [True]
        delivering.set(running)
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
            running[0] = False
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
        self.accept(Record("event", failed, _current_span.get()))


def _failure(start: float, tracebacks: dict[int, str]) -> Failed:
    """Turns what the middleware or the handler raised into a failed result (see ``chain``).

    An interrupt, or a cancel from outside, is raised again: it must stop the command.
    The traceback goes to ``tracebacks``, for the ``CommandErrorEvent``.
    """

    def failed(command: Command, exc: BaseException) -> CommandResult:
        if isinstance(exc, HandlerTimedOut):
            return failure_result(command, start, str(exc), "TimeoutError")
        if isinstance(exc, KeyboardInterrupt | SystemExit) or (
            isinstance(exc, asyncio.CancelledError) and cancelled_from_outside()
        ):
            raise exc
        message, error_type, tb = describe(exc)
        result = failure_result(command, start, message, error_type)
        tracebacks[id(result)] = tb
        return result

    return failed


def _handler_call(
    entry: HandlerEntry,
    command_type: type[Command],
    timeout: float | None,
    failed: Failed,
    start: float,
    threads: HandlerThreads,
) -> CallNext:
    """The end of the middleware chain: the handler of ``command_type``, failures as results."""

    async def handler(command: Command) -> CommandResult:
        try:
            if not isinstance(command, command_type):
                raise TypeError(
                    f"A middleware passed a {type(command).__name__} to call_next, but "
                    f"this chain ends in the handler of {command_type.__name__}; pass the "
                    "command (or command.model_copy(update=...)), and run another command "
                    "with `await bus.execute(other)`."
                )
            value = await call_command_handler(entry, command, timeout, threads)
        except BaseException as exc:
            return failed(command, exc)
        return as_result(value, command, start)

    return handler
