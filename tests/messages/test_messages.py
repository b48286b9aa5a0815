from datetime import UTC, datetime, timedelta, timezone
from uuid import UUID

import pydantic
import pytest

from llmgine.messages import Command, CommandResult, Event


class ProcessDocumentCommand(Command):
    path: str


class DocumentProcessedEvent(Event):
    path: str


def test_messages_have_the_base_fields_with_defaults() -> None:
    before = datetime.now(UTC)
    cmd = ProcessDocumentCommand(path="a.txt")
    assert isinstance(cmd.id, UUID)
    assert cmd.timestamp.tzinfo is UTC
    assert before <= cmd.timestamp <= datetime.now(UTC)
    assert cmd.session_id == "global"
    assert cmd.metadata == {}


def test_each_message_gets_its_own_id_and_metadata() -> None:
    a, b = DocumentProcessedEvent(path="a"), DocumentProcessedEvent(path="b")
    assert a.id != b.id
    a.metadata["x"] = 1
    assert b.metadata == {}


def test_timestamps_are_converted_to_utc() -> None:
    plus_two = timezone(timedelta(hours=2))
    event = DocumentProcessedEvent(path="a", timestamp=datetime(2026, 1, 1, 12, tzinfo=plus_two))
    assert event.timestamp == datetime(2026, 1, 1, 10, tzinfo=UTC)
    assert event.timestamp.utcoffset() == timedelta(0)


def test_unknown_fields_are_rejected() -> None:
    with pytest.raises(pydantic.ValidationError, match="pth"):
        ProcessDocumentCommand(pth="a.txt")  # type: ignore[call-arg]


def test_command_result_holds_any_value() -> None:
    marker = object()
    result = CommandResult(success=True, result=marker)
    assert result.result is marker
    assert result.error is None
