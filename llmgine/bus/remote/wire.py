"""What travels in the streams' entries, beside the keys: field names and the envelope.

An entry on the events stream has one field. An event's is named ``e ORIGIN TYPE``
(:func:`event_field`) and holds the envelope line; a process's notice of the event
types it handles is named ``n ORIGIN`` (:func:`notice_field`). The sender and the type
travel in the name, so a reader parses one pair per entry and skips its own entries,
and the events it has no handler for, without decoding them.

:func:`load_message` turns an envelope line into a message of a class known in
advance (the type named in the entry, the type of a command stream), validated by
pydantic straight from the JSON values, without the codec's general-purpose path.
"""

from __future__ import annotations

from typing import TypeVar

import orjson

from llmgine.errors import LogFormatError
from llmgine.messages.base import Message
from llmgine.observability.events import SpanContext

__all__ = ["entry_order", "event_field", "load_message", "notice_field"]

M = TypeVar("M", bound=Message)


def event_field(origin: bytes, key: bytes) -> bytes:
    """The one field name of an event's entry on the events stream: ``e ORIGIN TYPE``.

    Its value is the envelope line. The sender and the type travel in the name, so a
    reader parses one pair per entry and skips its own and unhandled ones undecoded.
    """
    return b"e " + origin + b" " + key


def notice_field(origin: bytes) -> bytes:
    """The one field name of a process's notice on the events stream: ``n ORIGIN``."""
    return b"n " + origin


def load_message(cls: type[M], line: bytes) -> tuple[M, SpanContext | None]:
    """Validate the envelope ``line`` as a ``cls`` and return it with its span.

    Raises:
        ValueError: The line is not an envelope (a ``LogFormatError``), or its data
            does not fit ``cls`` (pydantic's ``ValidationError`` and orjson's
            ``JSONDecodeError`` are ones).
    """
    try:
        raw = orjson.loads(line)
        data = raw.get("data") or {}
        message = cls.model_validate(
            {
                **data,
                "id": raw["id"],
                "timestamp": raw["timestamp"],
                "session_id": raw.get("session_id") or "global",
                "metadata": raw.get("metadata") or {},
            }
        )
    except (KeyError, TypeError, AttributeError) as exc:
        raise LogFormatError(f"Not an llmgine envelope: {type(exc).__name__}: {exc}") from exc
    trace_id, span_id = raw.get("trace_id"), raw.get("span_id")
    if isinstance(trace_id, str) and isinstance(span_id, str):
        return message, SpanContext(trace_id=trace_id, span_id=span_id)
    return message, None


def entry_order(entry_id: bytes | str) -> tuple[int, int]:
    """A stream entry's id (``ms-seq``) as something that sorts in stream order."""
    raw = entry_id.encode() if isinstance(entry_id, str) else entry_id
    ms, _, seq = raw.partition(b"-")
    return int(ms), int(seq or 0)
