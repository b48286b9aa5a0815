"""The JSONL log: one JSON object per command and event, in the order they happened."""

from __future__ import annotations

import io
import json
import logging
import threading
from collections import deque
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, Literal
from uuid import UUID

from pydantic_core import to_json

from llmgine.messages.base import BASE_FIELDS, Message, new_id, utc_now
from llmgine.observability.events import SpanContext

__all__ = ["JsonlLog", "encode_fields", "encode_line"]

logger = logging.getLogger(__name__)

Kind = Literal["command", "event"]

_prefixes: dict[tuple[str, type[Message]], bytes] = {}


def _prefix(kind: Kind, cls: type[Message]) -> bytes:
    key = (kind, cls)
    prefix = _prefixes.get(key)
    if prefix is None:
        fields = (("kind", kind), ("type", cls.__name__), ("module", cls.__module__))
        prefix = ("{" + ",".join(f"{json.dumps(k)}:{json.dumps(v)}" for k, v in fields)).encode()
        _prefixes[key] = prefix
    return prefix


def _dumps(value: Any) -> str:
    return json.dumps(value, default=repr, ensure_ascii=False)


def _head(
    kind: Kind,
    cls: type[Message],
    message_id: UUID,
    timestamp: datetime,
    session_id: str,
    metadata: dict[str, Any],
    span: SpanContext | None,
) -> bytes:
    if span is None:
        ids = '"trace_id":null,"span_id":null'
    else:
        ids = f'"trace_id":"{span.trace_id}","span_id":"{span.span_id}"'
    session = '"global"' if session_id == "global" else _dumps(session_id)
    meta = _dumps(metadata) if metadata else "{}"
    head = (
        f',"id":"{message_id}","timestamp":"{timestamp.isoformat()}"'
        f',"session_id":{session},{ids},"metadata":{meta},"data":'
    )
    return _prefix(kind, cls) + head.encode()


def encode_line(kind: Kind, message: Message, span: SpanContext | None) -> bytes:
    """Return the UTF-8 log line of ``message``, newline included.

    The envelope holds ``kind``, ``type``, ``module``, the base fields, and the
    ``trace_id``/``span_id`` of ``span``; ``data`` holds the message's own fields.
    A value JSON cannot hold is written as its ``repr``.
    """
    # The serializer itself, not model_dump_json: bytes, and less than half the overhead.
    data = type(message).__pydantic_serializer__.to_json(
        message, exclude=BASE_FIELDS, fallback=repr
    )
    head = _head(
        kind,
        type(message),
        message.id,
        message.timestamp,
        message.session_id,
        message.metadata,
        span,
    )
    return b"".join((head, data, b"}\n"))


_defaults: dict[type[Message], list[tuple[str, Any, Callable[[], Any] | None]]] = {}


def _own_fields(cls: type[Message]) -> list[tuple[str, Any, Callable[[], Any] | None]]:
    fields = _defaults.get(cls)
    if fields is None:
        fields = [
            (name, info.default, info.default_factory)  # type: ignore[misc]
            for name, info in cls.model_fields.items()
            if name not in BASE_FIELDS
        ]
        _defaults[cls] = fields
    return fields


def encode_fields(
    cls: type[Message],
    fields: dict[str, Any],
    *,
    session_id: str,
    span: SpanContext | None,
) -> bytes:
    """Return the log line ``encode_line`` would give for ``cls(**fields)``, without building it.

    For the bus's own events, whose fields are already valid: a span start or end
    that no handler listens to is written, but never becomes a pydantic object.
    Fields left out take their defaults.
    """
    data = {
        name: fields[name] if name in fields else (factory() if factory else default)
        for name, default, factory in _own_fields(cls)
    }
    head = _head("event", cls, new_id(), utc_now(), session_id, {}, span)
    return b"".join((head, to_json(data, fallback=repr), b"}\n"))


class JsonlLog:
    """An append-only JSONL file with one handle and whole-line buffering.

    Lines are kept in memory and written in whole-line chunks, so a reader never
    sees half a line after a flush. Lines written before :meth:`open` wait in the
    buffer and reach the file when it opens. Safe to write from several threads.
    """

    def __init__(self, path: Path, *, max_buffered_lines: int = 4096) -> None:
        self.path = path
        self.lines_written = 0
        self._buffer: deque[bytes] = deque()
        self._max = max_buffered_lines
        self._file: io.FileIO | None = None
        self._lock = threading.Lock()

    @property
    def is_open(self) -> bool:
        """Whether the file is open for writing."""
        return self._file is not None

    def open(self) -> None:
        """Open (or create) the file for appending, creating its directory."""
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = io.FileIO(self.path, "a")
            self.flush()

    def write(self, line: bytes) -> None:
        """Add one UTF-8 line (ending in a newline); written at the next flush."""
        buffer = self._buffer
        buffer.append(line)  # a deque: atomic, so any thread may write without a lock
        if len(buffer) >= self._max and self._file is not None:
            self.flush()

    def flush(self) -> None:
        """Write every buffered line to the file, if it is open."""
        with self._lock:  # one flush at a time; writers never wait for it
            buffer = self._buffer
            if self._file is None or not buffer:
                return
            pop = buffer.popleft
            lines = [pop() for _ in range(len(buffer))]
            view = memoryview(b"".join(lines))
            while view:
                written = self._file.write(view)
                view = view[written or 0 :]
            self.lines_written += len(lines)

    def close(self) -> None:
        """Flush and close the file; :meth:`open` may reopen it later."""
        if self._file is not None:
            try:
                self.flush()
            finally:
                with self._lock:
                    if self._file is not None:
                        self._file.close()
                        self._file = None
        elif self._buffer:
            logger.debug(
                "%d log lines were never written: the log was not opened", len(self._buffer)
            )
