"""Events (notifications for any number of handlers) the bus itself publishes."""

from __future__ import annotations

from typing import ClassVar
from uuid import UUID

from llmgine.messages.base import Message
from llmgine.messages.commands import CommandResult

__all__ = [
    "CommandErrorEvent",
    "CommandResultEvent",
    "Event",
    "EventHandlerFailedEvent",
    "SinkFailedEvent",
    "SinkRecoveredEvent",
    "YourEvent",
]


class Event(Message):
    """Something that has happened; any number of handlers may react.

    Name subclasses in the past tense, e.g. ``DocumentProcessedEvent``. A handler
    registered for ``Event`` sees every event. A subclass that sets the class
    attribute ``log_to_file = False`` (token-by-token stream events) is handled
    as usual but not written to the JSONL log.
    """

    log_to_file: ClassVar[bool] = True


class CommandResultEvent(Event):
    """A command's handler completed; carries its result."""

    command_result: CommandResult


class CommandErrorEvent(Event):
    """A command's handler raised; carries the failed result and the traceback."""

    command_result: CommandResult
    traceback: str
    """The formatted traceback of the exception."""


class EventHandlerFailedEvent(Event):
    """An event handler raised; the other handlers and the bus went on."""

    event_id: UUID
    """The ``id`` of the event whose handler failed."""
    event_type: str
    """The class name of that event."""
    handler: str
    """The failed handler's qualified name."""
    error: str
    """The exception's message."""
    error_type: str
    """The exception's class name."""
    traceback: str
    """The formatted traceback of the exception."""


class SinkFailedEvent(Event):
    """A sink (the log file, the console, an exporter) started failing; the bus goes on.

    Published once per run of failures; the sink keeps what it could not deliver
    and retries. ``bus.stats.sink_failures`` counts every failed call.
    """

    sink: str
    """The sink's name, e.g. ``"jsonl"``."""
    operation: str
    """What failed: ``"write"``, ``"flush"`` or ``"close"``."""
    error: str
    """The exception's message, e.g. ``No space left on device``."""
    error_type: str
    """The exception's class name."""
    unwritten_lines: int | None = None
    """Lines the sink holds and has not delivered yet, when it counts them."""


class SinkRecoveredEvent(Event):
    """A sink that was failing delivered everything it held."""

    sink: str
    """The sink's name."""


class YourEvent(Event):
    """An event with no fields: the placeholder the original README imports.

    Define your own by subclassing :class:`Event`, e.g.
    ``class DocumentProcessedEvent(Event): path: str``.
    """
