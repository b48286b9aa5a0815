"""Sinks: everything that receives each message once the bus has accepted it.

The JSONL log, the console printer and exporters are sinks. A sink is any object
with ``write``, ``flush`` and ``close``; the bus hands it one :class:`Record` per
accepted command or event, in order. A sink that raises never stops the bus or the
other sinks: :class:`SinkSet` catches the failure and reports it once per run of
failures, until the sink works again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from llmgine.messages.base import Message
from llmgine.messages.events import SinkFailedEvent, SinkRecoveredEvent
from llmgine.observability.codec import Kind, encode
from llmgine.observability.events import SpanContext
from llmgine.observability.jsonsafe import safe_repr, safe_str

__all__ = ["Record", "Sink", "SinkFailure", "SinkSet", "sink_name"]

logger = logging.getLogger(__name__)


class Record:
    """One accepted message, as sinks receive it.

    Attributes:
        kind: ``"command"`` or ``"event"``.
        message: The command or event (a ``TraceEvent`` is a span's start or end).
        span: The span active where the message was published, if any.
    """

    __slots__ = ("_line", "kind", "message", "span")

    def __init__(self, kind: Kind, message: Message, span: SpanContext | None) -> None:
        self.kind: Kind = kind
        self.message = message
        self.span = span
        self._line: bytes | None = None

    def __repr__(self) -> str:
        return f"Record({self.kind!r}, {type(self.message).__name__}, id={self.message.id})"

    @property
    def line(self) -> bytes:
        """The message's envelope line (encoded once, on first use)."""
        if self._line is None:
            self._line = encode(self.kind, self.message, self.span)
        return self._line


@runtime_checkable
class Sink(Protocol):
    """What the bus needs of a sink."""

    def write(self, record: Record) -> None:
        """Take one accepted message; called in order, must not block for long."""

    def flush(self) -> None:
        """Deliver what ``write`` buffered (called when the bus idles, waits or stops)."""

    def close(self) -> None:
        """Deliver everything and release resources; a later ``write`` may reopen."""


def sink_name(sink: Sink) -> str:
    """Return a short name for ``sink`` in reports: its ``name`` attribute, else its repr."""
    name = getattr(sink, "name", None)
    return name if isinstance(name, str) else safe_repr(sink)


@dataclass(frozen=True, slots=True)
class SinkFailure:
    """A sink started failing (``recovered=False``) or works again (``recovered=True``)."""

    sink: str
    operation: str
    error: str
    error_type: str
    unwritten_lines: int | None
    recovered: bool = False

    def event(self) -> SinkFailedEvent | SinkRecoveredEvent:
        """The event that tells the bus's handlers and log about this change."""
        if self.recovered:
            return SinkRecoveredEvent(sink=self.sink)
        return SinkFailedEvent(
            sink=self.sink,
            operation=self.operation,
            error=self.error,
            error_type=self.error_type,
            unwritten_lines=self.unwritten_lines,
        )


_INTERRUPTS = (KeyboardInterrupt, SystemExit)
"""The user's own interrupts pass through a sink; every other exception is the sink's failure."""


def _delivered(sink: Sink, operation: str) -> bool:
    """Whether a call that succeeded shows the sink delivers again."""
    if hasattr(type(sink), "pending_lines"):
        return _unwritten(sink) == 0  # it kept lines: recovered once they are all out
    return False  # a sink that keeps nothing recovers on its next successful write


def _unwritten(sink: Sink) -> int | None:
    count = getattr(sink, "pending_lines", None)
    return count if isinstance(count, int) else None


class SinkSet:
    """The sinks of a bus: every record to each of them, failures caught and counted.

    Args:
        on_change: Called with a :class:`SinkFailure` when a sink starts failing
            and when it works again (once per run of failures, not per failure).
    """

    def __init__(self, on_change: Callable[[SinkFailure], None]) -> None:
        self._sinks: tuple[Sink, ...] = ()  # replaced, never changed: safe to iterate
        self._failing: dict[int, Sink] = {}
        self._on_change = on_change
        self.failures = 0
        """Every failed call, including repeats within a run."""

    def __iter__(self) -> Iterator[Sink]:
        return iter(self._sinks)

    def __len__(self) -> int:
        return len(self._sinks)

    def add(self, sink: Sink) -> None:
        """Add ``sink``; it receives every message accepted from now on."""
        for method in ("write", "flush", "close"):
            if not callable(getattr(sink, method, None)):
                raise TypeError(
                    f"A sink needs write(record), flush() and close(); {safe_repr(sink)} has no "
                    f"{method}()."
                )
        if any(s is sink for s in self._sinks):
            return
        self._sinks = (*self._sinks, sink)

    def remove(self, sink: Sink) -> bool:
        """Remove ``sink`` (without closing it); return whether it was there."""
        kept = tuple(s for s in self._sinks if s is not sink)
        if len(kept) == len(self._sinks):
            return False
        self._sinks = kept
        self._failing.pop(id(sink), None)
        return True

    def write(self, record: Record) -> None:
        """Give ``record`` to every sink."""
        for sink in self._sinks:
            try:
                sink.write(record)
            except _INTERRUPTS:
                raise
            except BaseException as exc:
                self._failed(sink, "write", exc)
            else:
                # A sink that keeps lines recovers when a flush delivers them, not on a write.
                if (
                    self._failing
                    and id(sink) in self._failing
                    and not hasattr(type(sink), "pending_lines")
                ):
                    self._recovered(sink)

    def flush(self, *, due: bool = False) -> None:
        """Flush every sink; with ``due``, a routine flush (``flush_due`` where a sink has it)."""
        self._each("flush_due" if due else "flush")

    def close(self) -> None:
        """Close every sink (each flushes first).

        Sinks with a ``begin_close`` (exporters waiting for a network endpoint) are
        told first, so that their waits run at once instead of one after another.
        """
        for sink in self._sinks:
            begin = getattr(sink, "begin_close", None)
            if begin is not None:
                try:
                    begin()
                except _INTERRUPTS:
                    raise
                except BaseException as exc:
                    self._failed(sink, "close", exc)
        self._each("close")

    def _each(self, operation: str) -> None:
        for sink in self._sinks:
            try:
                (getattr(sink, operation, None) or sink.flush)()
            except _INTERRUPTS:
                raise
            except BaseException as exc:
                self._failed(sink, operation, exc)
            else:
                if self._failing and id(sink) in self._failing and _delivered(sink, operation):
                    self._recovered(sink)

    def _failed(self, sink: Sink, operation: str, exc: BaseException) -> None:
        self.failures += 1
        if id(sink) in self._failing:
            logger.debug("Sink %s still failing: %s", sink_name(sink), exc)
            return
        self._failing[id(sink)] = sink
        failure = SinkFailure(
            sink=sink_name(sink),
            operation=operation,
            error=safe_str(exc),
            error_type=type(exc).__name__,
            unwritten_lines=_unwritten(sink),
        )
        logger.warning(
            "Sink %s failed (%s: %s)%s; the bus goes on and retries.",
            failure.sink,
            failure.error_type,
            failure.error,
            "" if failure.unwritten_lines is None else f"; {failure.unwritten_lines} lines kept",
        )
        self._on_change(failure)

    def _recovered(self, sink: Sink) -> None:
        del self._failing[id(sink)]
        logger.warning("Sink %s works again; nothing it held was lost.", sink_name(sink))
        self._on_change(
            SinkFailure(sink_name(sink), "flush", "", "", _unwritten(sink), recovered=True)
        )
