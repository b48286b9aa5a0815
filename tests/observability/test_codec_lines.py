"""The envelope line, byte for byte, on the fast path and off it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from uuid import UUID

import pytest

from llmgine.messages import Event
from llmgine.observability.codec import encode
from llmgine.observability.events import SpanContext


class NotedEvent(Event):
    n: int = 0
    text: str = ""


class EmptyEvent(Event):
    pass


ID = UUID("12345678-1234-4234-8234-123456789abc")
HEAD = '{"kind":"event","type":"%s","module":"tests.observability.test_codec_lines",'
IDS = '"id":"12345678-1234-4234-8234-123456789abc","timestamp":"%s",'
SPAN = SpanContext(trace_id="a" * 32, span_id="b" * 16)


@pytest.mark.parametrize(
    ("timestamp", "written"),
    [
        (datetime(2026, 1, 2, 3, 4, 5, 60, tzinfo=UTC), "2026-01-02T03:04:05.000060+00:00"),
        (datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), "2026-01-02T03:04:05+00:00"),
    ],
)
def test_plain_messages_are_written_with_every_envelope_key(
    timestamp: datetime, written: str
) -> None:
    event = NotedEvent(id=ID, timestamp=timestamp, n=3, text='Z","session_id":"global"')
    head = HEAD % "NotedEvent" + IDS % written
    assert encode("event", event, None).decode() == head + (
        '"session_id":"global","trace_id":null,"span_id":null,"metadata":{},'
        '"data":{"n":3,"text":"Z\\",\\"session_id\\":\\"global\\""}}\n'
    )
    assert encode("event", event, SPAN).decode() == head + (
        f'"session_id":"global","trace_id":"{"a" * 32}","span_id":"{"b" * 16}",'
        '"metadata":{},"data":{"n":3,"text":"Z\\",\\"session_id\\":\\"global\\""}}\n'
    )
    empty = EmptyEvent(id=ID, timestamp=timestamp)
    assert encode("event", empty, SPAN).decode().endswith('"metadata":{},"data":{}}\n')
    assert encode("command", empty, None).decode().startswith('{"kind":"command",')


def test_messages_off_the_fast_path_are_written_alike() -> None:
    timestamp = datetime(2026, 1, 2, 3, 4, 5, 60, tzinfo=UTC)
    event = NotedEvent(id=ID, timestamp=timestamp, session_id="s", metadata={"k": 1})
    assert encode("event", event, SPAN).decode() == HEAD % "NotedEvent" + IDS % (
        "2026-01-02T03:04:05.000060+00:00"
    ) + (
        f'"session_id":"s","trace_id":"{"a" * 32}","span_id":"{"b" * 16}",'
        '"metadata":{"k":1},"data":{"n":0,"text":""}}\n'
    )
    odd = NotedEvent(id=ID, timestamp=timestamp)
    odd.timestamp = "2026-01-02T03:04:05.000060Z"  # type: ignore[assignment]
    assert '"timestamp":"2026-01-02T03:04:05.000060Z",' in encode("event", odd, None).decode()
    odd.timestamp = datetime(2026, 1, 2, tzinfo=timezone(timedelta(0)))
    assert '"timestamp":"2026-01-02T00:00:00+00:00",' in encode("event", odd, None).decode()
