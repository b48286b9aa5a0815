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


def test_new_id_is_the_uuid4_the_checked_constructor_would_make() -> None:
    import copy
    import pickle
    import random
    from uuid import UUID

    from llmgine.messages.base import new_id

    state = random.getstate()
    fast = [new_id() for _ in range(2_000)]
    random.setstate(state)
    checked = [UUID(int=random.getrandbits(128), version=4) for _ in range(2_000)]
    assert fast == checked
    for value in fast[:50]:
        assert value.version == 4 and value.variant == "specified in RFC 4122"
        assert UUID(str(value)) == value and hash(UUID(str(value))) == hash(value)
        assert pickle.loads(pickle.dumps(value)) == value == copy.deepcopy(value)
    assert len(set(fast)) == len(fast)
