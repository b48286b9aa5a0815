"""Span bookkeeping: the active span in a context variable, and a span context manager."""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from types import TracebackType
from typing import Any

from llmgine.messages.base import utc_now
from llmgine.messages.events import Event
from llmgine.observability.events import SpanContext, TraceEvent

__all__ = ["Emit", "Span", "current_span", "new_span_context"]

Emit = Callable[[Event], Awaitable[None]]
"""How a span publishes its start and end events (the bus's ``publish``, or cheaper)."""

_current_span: ContextVar[SpanContext | None] = ContextVar("llmgine_span", default=None)


def current_span() -> SpanContext | None:
    """Return the span active in the current context, if any."""
    return _current_span.get()


def new_span_context(parent: SpanContext | None = None) -> SpanContext:
    """Return a fresh span context: a child of ``parent``, or the root of a new trace."""
    span_id = f"{random.getrandbits(64):016x}"
    if parent is None:
        return SpanContext(trace_id=f"{random.getrandbits(128):032x}", span_id=span_id)
    return SpanContext(trace_id=parent.trace_id, span_id=span_id, parent_span_id=parent.span_id)


class Span:
    """An async context manager that publishes a span's start and end ``TraceEvent``.

    Inside the block the span is active: every message published there carries its
    ids, and spans opened there are its children. An exception marks the span
    ``ERROR`` and propagates. Attributes set with :meth:`set_attribute` go on the
    end event. Obtain one through ``bus.span(name, **attributes)``.
    """

    def __init__(
        self,
        emit: Emit,
        name: str,
        *,
        kind: str = "INTERNAL",
        session_id: str = "global",
        attributes: dict[str, Any] | None = None,
    ) -> None:
        self.name = name
        self.kind = kind
        self.attributes: dict[str, Any] = dict(attributes or {})
        self.context = new_span_context(_current_span.get())
        self.status = "UNSET"
        self.status_message: str | None = None
        self.duration_ms: float | None = None
        self._emit = emit
        self._session_id = session_id
        self._start = 0.0
        self._token: Any = None

    def set_attribute(self, key: str, value: Any) -> None:
        """Record an attribute; it is written with the span's end event."""
        self.attributes[key] = value

    def set_status(self, status: str, message: str | None = None) -> None:
        """Set the status to end with (``"OK"``/``"ERROR"``), unless an exception ends the span."""
        self.status = status
        self.status_message = message

    async def _publish(self, **fields: Any) -> None:
        event = TraceEvent(
            name=self.name,
            span_context=self.context,
            span_kind=self.kind,
            session_id=self._session_id,
            **fields,
        )
        await self._emit(event)

    async def __aenter__(self) -> Span:
        self._token = _current_span.set(self.context)
        self._start = time.perf_counter()
        await self._publish(start_time=utc_now(), attributes=dict(self.attributes))
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.duration_ms = (time.perf_counter() - self._start) * 1000.0
        if exc is not None:
            self.set_status("ERROR", f"{type(exc).__name__}: {exc}")
        elif self.status == "UNSET":
            self.status = "OK"
        try:
            await self._publish(
                end_time=utc_now(),
                status=self.status,
                status_message=self.status_message,
                duration_ms=self.duration_ms,
                attributes=dict(self.attributes),
            )
        finally:
            _current_span.reset(self._token)
