"""One codec: the envelope on disk is unchanged, and every line reads back."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmgine import LogFormatError, MetricEvent, SpanContext, TraceEvent
from llmgine.llm import LLMResponseEvent
from llmgine.messages import Event
from llmgine.observability import Metric, decode, encode, read_log
from llmgine.observability.codec import ENVELOPE_FIELDS

RECORDED = Path(__file__).resolve().parents[2] / "notebooks" / "data" / "support_desk.jsonl"


class NamedEvent(Event):
    name: str
    count: int = 0


def test_a_message_round_trips_through_the_codec() -> None:
    event = NamedEvent(name="x", count=3, session_id="s1", metadata={"who": "me"})
    span = SpanContext(trace_id="a" * 32, span_id="b" * 16)
    line = encode("event", event, span)
    assert line.endswith(b"}\n") and line.count(b"\n") == 1
    assert list(json.loads(line)) == list(ENVELOPE_FIELDS)  # the envelope, in its order
    envelope = decode(line)
    assert (envelope.kind, envelope.type, envelope.trace_id) == ("event", "NamedEvent", "a" * 32)
    assert envelope.span_context() == span
    assert envelope.to_message() == event


def test_nan_and_infinity_in_metadata_are_written_as_null_and_the_line_reads_back(
    tmp_path: Path,
) -> None:
    nan, inf = float("nan"), float("inf")
    event = NamedEvent(name="x", metadata={"row": nan, "limit": inf, "seen": [nan, 1.5, -inf]})
    line = encode("event", event, None)
    assert b"NaN" not in line and b"Infinity" not in line
    strict = json.loads(line, parse_constant=lambda name: pytest.fail(f"{name} in the line"))
    assert strict["metadata"] == {"row": None, "limit": None, "seen": [None, 1.5, None]}
    path = tmp_path / "nan.jsonl"
    path.write_bytes(line)
    bad: list[int] = []
    assert [e.metadata for e in read_log(path, bad_lines=bad)] == [strict["metadata"]]
    assert bad == []


def test_lines_written_by_version_one_still_read_back() -> None:
    bad: list[int] = []
    envelopes = list(read_log(RECORDED, bad_lines=bad))
    assert bad == []
    assert len(envelopes) == len(RECORDED.read_text().splitlines())
    responses = [e.to_message() for e in envelopes if e.type == "LLMResponseEvent"]
    assert responses and all(isinstance(r, LLMResponseEvent) for r in responses)
    spans = [e.to_message() for e in envelopes if e.type == "TraceEvent"]
    assert all(isinstance(s, TraceEvent) for s in spans)
    for envelope in envelopes:  # the same message encodes to the same envelope keys again
        if envelope.type == "MetricEvent":
            again = json.loads(encode("event", envelope.to_message(), envelope.span_context()))
            assert {k: again[k] for k in ("type", "module", "id", "data")} == {
                "type": envelope.type,
                "module": envelope.module,
                "id": envelope.id,
                "data": envelope.data,
            }


@pytest.mark.parametrize(
    "line",
    [b"not json", b"[1, 2]", b'{"kind": "event"}', b'{"kind":"event","type":"X","module":"m",'],
)
def test_what_is_not_an_envelope_is_a_clear_error(line: bytes) -> None:
    with pytest.raises(LogFormatError):
        decode(line)


def test_classes_of_unimported_modules_are_not_imported_unless_asked() -> None:
    line = encode("event", MetricEvent(metrics=[Metric(name="m", value=1)]), None)
    foreign = line.replace(b'"llmgine.observability.events"', b'"some_app.not_imported"')
    envelope = decode(foreign)
    assert envelope.message_class() is None
    with pytest.raises(LogFormatError, match="import_modules=True"):
        envelope.to_message()


class AnyEvent(Event):
    value: object = None


class Inner(Event):
    pass


class NestingEvent(Event):
    inner: Inner


def _odd_messages() -> list[tuple[Event, SpanContext | None]]:
    """Messages whose base fields sit anywhere near the fast path's fixed places."""
    from datetime import UTC, datetime, timedelta, timezone
    from uuid import UUID

    times: list[object] = [
        datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC),
        datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),  # no microseconds: a shorter text
        datetime(7, 1, 1, tzinfo=UTC),
        datetime(2026, 1, 2, 3, 4, 5, 600, tzinfo=timezone(timedelta(hours=-3))),
        datetime(2026, 1, 2, 3, 4, 5, 600),  # naive
        "2026-01-02",
    ]
    ids: list[object] = [UUID(int=7), str(UUID(int=8)), 12, 'a"b']
    out: list[tuple[Event, SpanContext | None]] = []
    span = SpanContext(trace_id="ab" * 16, span_id="cd" * 8)
    for n, (ts, mid) in enumerate((t, i) for t in times for i in ids):
        event = AnyEvent(value={"n": n, "text": 'Z","session_id":"global","metadata":{}'})
        event.timestamp = ts  # type: ignore[assignment]
        event.id = mid  # type: ignore[assignment]
        out.append((event, span if n % 2 else None))
    nested = NestingEvent(inner=Inner())
    nested.timestamp = datetime(2026, 1, 2, 3, 4, 5)  # naive: the inner one's must not be taken
    out += [
        (nested, None),
        (Inner(), span),  # no fields of its own
        (AnyEvent(session_id="alice"), None),
        (AnyEvent(metadata={"k": b"\xff"}), span),
        (AnyEvent(value="\udcff"), None),  # a surrogate: pydantic cannot serialize it
    ]
    return out


def test_the_fast_path_writes_what_the_general_path_writes() -> None:
    from llmgine.observability.codec import _encode

    for message, span in _odd_messages():
        line = encode("event", message, span)
        assert line == _encode("event", type(message), message, span)
        decoded = decode(line)
        assert decoded.data == json.loads(_encode("event", type(message), message, span))["data"]
    nested, _ = _odd_messages()[-5]
    assert decode(encode("event", nested, None)).timestamp.tzinfo is None
