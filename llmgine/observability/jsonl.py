"""The JSONL log: one JSON object per command and event, in the order they happened."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path
from typing import Any, Literal

from llmgine.messages.base import BASE_FIELDS, Message
from llmgine.observability.events import SpanContext

__all__ = ["JsonlLog", "encode_line"]

logger = logging.getLogger(__name__)

Kind = Literal["command", "event"]

_prefixes: dict[tuple[str, type[Message]], str] = {}


def _prefix(kind: Kind, cls: type[Message]) -> str:
    key = (kind, cls)
    prefix = _prefixes.get(key)
    if prefix is None:
        prefix = "{" + ",".join(
            f"{json.dumps(k)}:{json.dumps(v)}"
            for k, v in (("kind", kind), ("type", cls.__name__), ("module", cls.__module__))
        )
        _prefixes[key] = prefix
    return prefix


def _dumps(value: Any) -> str:
    return json.dumps(value, default=repr, ensure_ascii=False)


def encode_line(kind: Kind, message: Message, span: SpanContext | None) -> str:
    """Return the log line of ``message``, newline included.

    The envelope holds ``kind``, ``type``, ``module``, the base fields, and the
    ``trace_id``/``span_id`` of ``span``; ``data`` holds the message's own fields.
    A value JSON cannot hold is written as its ``repr``.
    """
    if span is None:
        ids = '"trace_id":null,"span_id":null'
    else:
        ids = f'"trace_id":"{span.trace_id}","span_id":"{span.span_id}"'
    metadata = _dumps(message.metadata) if message.metadata else "{}"
    data = message.model_dump_json(exclude=BASE_FIELDS, fallback=repr)
    return (
        f'{_prefix(kind, type(message))},"id":"{message.id}",'
        f'"timestamp":"{message.timestamp.isoformat(timespec="microseconds")}",'
        f'"session_id":{_dumps(message.session_id)},{ids},'
        f'"metadata":{metadata},"data":{data}}}\n'
    )


class JsonlLog:
    """An append-only JSONL file with one handle and whole-line buffering.

    Lines are kept in memory and written in whole-line chunks, so a reader never
    sees half a line after a flush. Lines written before :meth:`open` wait in the
    buffer and reach the file when it opens.
    """

    def __init__(self, path: Path, *, max_buffered_lines: int = 4096) -> None:
        self.path = path
        self.lines_written = 0
        self._buffer: list[str] = []
        self._max = max_buffered_lines
        self._file: io.FileIO | None = None

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

    def write(self, line: str) -> None:
        """Add one line (ending in a newline); written at the next flush."""
        buffer = self._buffer
        buffer.append(line)
        if len(buffer) >= self._max and self._file is not None:
            self.flush()

    def flush(self) -> None:
        """Write every buffered line to the file, if it is open."""
        if self._file is None or not self._buffer:
            return
        lines, self._buffer = self._buffer, []
        data = "".join(lines).encode("utf-8")
        view = memoryview(data)
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
                self._file.close()
                self._file = None
        elif self._buffer:
            logger.debug(
                "%d log lines were never written: the log was not opened", len(self._buffer)
            )
